//! Test-facing fault injection and observation: added latency, failing the next N matching
//! requests, per-endpoint counters, and the optional `/_standin` control API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::Shared;

#[derive(Debug, Clone)]
struct FailRule {
    method: Option<String>,
    path_contains: String,
    remaining: usize,
    status: u16,
}

#[derive(Default)]
pub struct Faults {
    latency_ms: AtomicU64,
    rules: Mutex<Vec<FailRule>>,
    token_requests: Mutex<HashMap<(String, String, String), usize>>,
    jwks_fetches: Mutex<HashMap<String, usize>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Faults {
    pub fn set_latency(&self, d: Duration) {
        self.latency_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn fail_next(&self, method: Option<&str>, path_contains: &str, n: usize, status: u16) {
        lock(&self.rules).push(FailRule {
            method: method.map(str::to_uppercase),
            path_contains: path_contains.to_string(),
            remaining: n,
            status,
        });
    }

    fn take_failure(&self, method: &Method, path: &str) -> Option<u16> {
        let mut rules = lock(&self.rules);
        let rule = rules.iter_mut().find(|r| {
            r.remaining > 0
                && path.contains(&r.path_contains)
                && r.method.as_deref().is_none_or(|m| m == method.as_str())
        })?;
        rule.remaining -= 1;
        let status = rule.status;
        rules.retain(|r| r.remaining > 0);
        Some(status)
    }

    pub fn token_requests(&self, realm: &str, grant_type: &str, client_id: &str) -> usize {
        lock(&self.token_requests)
            .get(&(
                realm.to_string(),
                grant_type.to_string(),
                client_id.to_string(),
            ))
            .copied()
            .unwrap_or(0)
    }

    pub fn jwks_fetches(&self, realm: &str) -> usize {
        lock(&self.jwks_fetches).get(realm).copied().unwrap_or(0)
    }

    pub fn counters_json(&self) -> serde_json::Value {
        let token: Vec<_> = lock(&self.token_requests)
            .iter()
            .map(|((r, g, c), n)| json!({"realm": r, "grant_type": g, "client_id": c, "count": n}))
            .collect();
        let jwks: serde_json::Map<String, serde_json::Value> = lock(&self.jwks_fetches)
            .iter()
            .map(|(r, n)| (r.clone(), json!(n)))
            .collect();
        json!({ "token_requests": token, "jwks_fetches": jwks })
    }
}

/// A Keycloak-shaped body for an injected failure.
pub fn fault_response(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = if code.is_server_error() {
        json!({"error": "unknown_error", "error_description": "For more on this error consult the server log."})
    } else {
        json!({"error": format!("HTTP {} {}", code.as_u16(), code.canonical_reason().unwrap_or(""))})
    };
    (code, axum::Json(body)).into_response()
}

fn realm_segment(path: &str) -> Option<&str> {
    path.strip_prefix("/realms/")?.split('/').next()
}

/// Latency, counters, injected failures, and state persistence after writes.
pub async fn layer(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let latency = shared.faults.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut req = req;
    if let Some(realm) = realm_segment(&path) {
        if path.ends_with("/protocol/openid-connect/certs") {
            *lock(&shared.faults.jwks_fetches)
                .entry(realm.to_string())
                .or_default() += 1;
        } else if path.ends_with("/protocol/openid-connect/token") && method == Method::POST {
            let (parts, body) = req.into_parts();
            let bytes = to_bytes(body, 1 << 20).await.unwrap_or_default();
            let form = crate::http::parse_form(&bytes);
            let grant = crate::http::form_get(&form, "grant_type").unwrap_or_default();
            let client = crate::http::form_get(&form, "client_id")
                .or_else(|| crate::http::basic_credentials(&parts.headers).map(|(id, _)| id))
                .unwrap_or_default();
            *lock(&shared.faults.token_requests)
                .entry((realm.to_string(), grant, client))
                .or_default() += 1;
            req = Request::from_parts(parts, Body::from(bytes));
        }
    }
    if !path.starts_with("/_standin") {
        if let Some(status) = shared.faults.take_failure(&method, &path) {
            return fault_response(status);
        }
    }
    let response = next.run(req).await;
    let writes_state = path.starts_with("/admin/") || path.contains("/login-actions/");
    if shared.state_file.is_some() && method != Method::GET && writes_state {
        shared.persist();
    }
    response
}
