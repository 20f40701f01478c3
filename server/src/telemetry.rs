//! Logs, request ids and metrics.
//!
//! Every request gets an id (a sane incoming `x-request-id` is kept, else a
//! fresh UUID) that is echoed in the response header, attached to the span,
//! and available to error rendering through a task-local. Spans and metrics
//! are labelled with the *matched route* (`/api/admin/users/{id}`), never the
//! raw path, to keep cardinality low. Headers are never logged: they carry
//! tokens and cookies.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

use crate::config::LogFormat;

pub const REQUEST_ID: &str = "x-request-id";

tokio::task_local! {
    static CURRENT_REQUEST_ID: HeaderValue;
}

/// The id of the request being handled, if any.
pub fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID
        .try_with(|id| id.to_str().ok().map(str::to_string))
        .ok()
        .flatten()
}

/// Installs the global subscriber. Safe to call more than once (tests).
pub fn init_tracing(format: LogFormat, filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The process-wide Prometheus recorder. Metrics are process-global by
/// nature; several apps in one process (tests) share it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by a host
            // program); our handle still renders what we record through it.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Folds recorded histogram samples into their buckets every `every`.
/// The recorder queues each sample until a render or an upkeep drains it,
/// so without this task an instance nobody scrapes grows by every request
/// it serves.
pub fn spawn_metrics_upkeep(every: Duration) -> tokio::task::JoinHandle<()> {
    let handle = metrics_handle();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            handle.run_upkeep();
        }
    })
}

fn valid_incoming_id(v: &HeaderValue) -> bool {
    let s = v.as_bytes();
    !s.is_empty()
        && s.len() <= 64
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// A fresh v4 UUID from the thread-local generator (uuid's own v4 asks the
/// OS for randomness on every call), formatted without a heap string.
fn fresh_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let text = uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Request id, span, access log and HTTP metrics for every request.
///
/// This runs for every request, so it avoids per-request heap work where
/// it can: the id is one header value shared by the request, the response
/// and the task-local; the route is the router's shared string; metric
/// handles are looked up once per thread and label set.
pub async fn observe(mut req: Request, next: Next) -> Response {
    let id = match req.headers().get(REQUEST_ID) {
        Some(incoming) if valid_incoming_id(incoming) => incoming.clone(),
        _ => {
            let id = fresh_request_id();
            req.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = method_label(req.method());
    let span = tracing::info_span!(
        "http",
        request_id = id.to_str().unwrap_or_default(),
        method = %req.method(),
        route = route,
        status = tracing::field::Empty
    );
    let started = Instant::now();
    let mut response = CURRENT_REQUEST_ID
        .scope(id.clone(), next.run(req).instrument(span.clone()))
        .await;
    let status = response.status();
    let elapsed = started.elapsed();
    span.record("status", status.as_u16());
    record_http(route, method, status.as_u16(), elapsed.as_secs_f64());
    let quiet = route == "/healthz" || route == "/readyz" || route == "/metrics";
    span.in_scope(|| {
        let ms = elapsed.as_secs_f64() * 1000.0;
        if quiet {
            tracing::debug!(status = status.as_u16(), ms, "request");
        } else {
            tracing::info!(status = status.as_u16(), ms, "request");
        }
    });
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

type HttpHandles = (metrics::Counter, metrics::Histogram);
/// By method and status, for one route.
type RouteHandles = HashMap<(&'static str, u16), HttpHandles>;

thread_local! {
    /// Metric handles by route, then method and status. Every label comes
    /// from a fixed set (matched routes, standard methods, status codes),
    /// so this stays small.
    static HTTP_METRICS: RefCell<HashMap<String, RouteHandles>> =
        RefCell::new(HashMap::new());
}

/// Counts a request and records its duration. Any token is a valid HTTP
/// method and any path can be asked for, so labels are never raw values: a
/// client could otherwise create metric series (memory) without end.
fn record_http(route: &str, method: &'static str, status: u16, seconds: f64) {
    HTTP_METRICS.with_borrow_mut(|routes| {
        if !routes.contains_key(route) {
            routes.insert(route.to_string(), HashMap::new());
        }
        let Some(by_method) = routes.get_mut(route) else {
            return;
        };
        let (requests, duration) = by_method.entry((method, status)).or_insert_with(|| {
            let labels = [
                ("route", route.to_string()),
                ("method", method.to_string()),
                ("status", status.to_string()),
            ];
            (
                metrics::counter!("voxgate_http_requests_total", &labels),
                metrics::histogram!("voxgate_http_request_duration_seconds", &labels),
            )
        });
        requests.increment(1);
        duration.record(seconds);
    });
}

/// The method as a metric label: the standard methods by name, any other
/// token as `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `GET /metrics` in Prometheus text format.
pub async fn metrics_endpoint() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        metrics_handle().render(),
    )
}
