//! A protocol-level stand-in for Amazon Polly.
//!
//! It answers the REST (restJson1) requests the real `aws-sdk-polly` client
//! sends, so voxgate can be tested end to end with its production client
//! pointed at this server via `endpoint_url`. Audio is real: speech comes from
//! the local espeak-ng engine through `voxgate-audio` (or a tone when
//! espeak-ng is not installed).
//!
//! Modules:
//! * [`sigv4`] verifies request signatures against the configured test
//!   credentials.
//! * [`synth`] implements SynthesizeSpeech: validation, audio production,
//!   caching and the streamed response body.
//! * [`describe`] implements DescribeVoices.
//! * [`lexicons`] keeps a minimal in-memory lexicon store.
//! * [`control`] is the optional `/_standin/...` HTTP control surface.
//! * [`faults`] holds call counters and injected faults shared by all of the
//!   above.
//! * [`voices`], [`ssml`] and [`errors`] hold the voice catalogue, SSML
//!   checking and Polly's error wire format.

pub mod control;
pub mod describe;
pub mod errors;
pub mod faults;
pub mod lexicons;
pub mod sigv4;
pub mod ssml;
pub mod synth;
pub mod voices;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use voxgate_audio::{Espeak, EspeakConfig};

use crate::errors::ApiError;
use crate::faults::Faults;

/// How the stand-in runs.
#[derive(Clone, Debug)]
pub struct PollyConfig {
    /// Address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// The only access key id requests may be signed with.
    pub access_key_id: String,
    /// Its secret, used to verify signatures.
    pub secret_access_key: String,
    /// The region requests must be scoped to.
    pub region: String,
    /// Size of the pieces the audio body is streamed in.
    pub chunk_size: usize,
    /// Serve the `/_standin/...` control endpoints.
    pub control_endpoint: bool,
    /// The espeak-ng program used to produce speech.
    pub espeak_program: PathBuf,
}

impl Default for PollyConfig {
    fn default() -> Self {
        PollyConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_key_id: "AKIDVOXGATETEST".into(),
            secret_access_key: "voxgate-test-secret".into(),
            region: "us-east-1".into(),
            chunk_size: 4096,
            control_endpoint: false,
            espeak_program: PathBuf::from("espeak-ng"),
        }
    }
}

/// State shared by every request handler.
pub(crate) struct Shared {
    pub(crate) cfg: PollyConfig,
    pub(crate) verifier: sigv4::Verifier,
    pub(crate) faults: Faults,
    pub(crate) audio: synth::AudioSource,
    pub(crate) lexicons: lexicons::Store,
}

pub(crate) type AppState = Arc<Shared>;

/// A running stand-in. Dropping it without [`PollyStandin::shutdown`] leaves
/// the server running until the runtime stops.
pub struct PollyStandin {
    shared: AppState,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl PollyStandin {
    /// Binds the listener and starts serving in the background.
    pub async fn start(cfg: PollyConfig) -> anyhow::Result<PollyStandin> {
        let espeak = Espeak::new(EspeakConfig {
            program: cfg.espeak_program.clone(),
            timeout: Duration::from_secs(30),
            max_concurrency: 2,
        });
        if !espeak.is_available().await {
            tracing::warn!(
                program = %cfg.espeak_program.display(),
                "espeak-ng is not available; SynthesizeSpeech will return tones instead of speech"
            );
        }
        let shared = Arc::new(Shared {
            verifier: sigv4::Verifier {
                access_key_id: cfg.access_key_id.clone(),
                secret_access_key: cfg.secret_access_key.clone(),
                region: cfg.region.clone(),
                service: "polly".into(),
            },
            faults: Faults::default(),
            audio: synth::AudioSource::new(espeak),
            lexicons: lexicons::Store::default(),
            cfg,
        });
        let listener = tokio::net::TcpListener::bind(shared.cfg.bind).await?;
        let addr = listener.local_addr()?;
        let app = router(shared.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "polly stand-in server failed");
            }
        });
        Ok(PollyStandin {
            shared,
            addr,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// Base URL to give the SDK as `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// SynthesizeSpeech requests that passed authentication (including ones
    /// answered with an injected fault or a validation error).
    pub fn synth_calls(&self) -> usize {
        self.shared.faults.synth_calls()
    }

    /// Billed characters of successful SynthesizeSpeech requests.
    pub fn billed_characters(&self) -> u64 {
        self.shared.faults.billed_characters()
    }

    /// DescribeVoices requests that passed authentication.
    pub fn voices_calls(&self) -> usize {
        self.shared.faults.voices_calls()
    }

    /// Answer the next `n` API calls with `ThrottlingException`.
    pub fn throttle_next(&self, n: usize) {
        self.shared.faults.throttle_next(n);
    }

    /// Answer the next `n` API calls with `ServiceFailureException` and the
    /// given HTTP status (500 is what Polly uses).
    pub fn fail_next(&self, n: usize, status: u16) {
        self.shared.faults.fail_next(n, status);
    }

    /// Wait this long before sending response headers.
    pub fn set_first_byte_delay(&self, d: Duration) {
        self.shared.faults.set_first_byte_delay(d);
    }

    /// Wait this long before each audio body chunk after the first.
    pub fn set_chunk_delay(&self, d: Duration) {
        self.shared.faults.set_chunk_delay(d);
    }

    /// Abort the connection after this many audio body bytes (`None` turns
    /// it off).
    pub fn cut_stream_after(&self, bytes: Option<usize>) {
        self.shared.faults.cut_stream_after(bytes);
    }

    /// Clear every injected fault (counters are kept).
    pub fn reset_faults(&self) {
        self.shared.faults.reset_faults();
    }

    /// Zero the call and character counters.
    pub fn reset_counters(&self) {
        self.shared.faults.reset_counters();
    }

    /// Stops accepting connections and waits (briefly) for open ones.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // A client stuck on a slowed stream must not hold up shutdown.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(3), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

fn router(shared: AppState) -> Router {
    let api = Router::new()
        .route("/v1/speech", post(synth::synthesize_speech))
        .route("/v1/voices", get(describe::describe_voices))
        .route("/v1/lexicons", get(lexicons::list_lexicons))
        .route(
            "/v1/lexicons/{name}",
            get(lexicons::get_lexicon)
                .put(lexicons::put_lexicon)
                .delete(lexicons::delete_lexicon),
        )
        .layer(middleware::from_fn_with_state(shared.clone(), authenticate));
    let mut app = api;
    if shared.cfg.control_endpoint {
        app = app.merge(control::routes());
    }
    app.fallback(unknown_operation)
        .layer(middleware::from_fn(request_id))
        .with_state(shared)
}

/// Largest request body accepted; Polly's own limits are far below this.
const MAX_BODY: usize = 1 << 20;

/// Verifies SigV4 on every API request before it reaches a handler. The body
/// is buffered because its hash is part of the signature.
async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(413, "ValidationException", "Request body is too large")
            .into_response();
    };
    let signed = sigv4::SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &bytes,
    };
    if let Err(e) = state
        .verifier
        .verify(&signed, time::OffsetDateTime::now_utc())
    {
        tracing::debug!(code = e.code, message = %e.message, "rejected request signature");
        return e.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Every response carries a request id, as AWS responses do.
async fn request_id(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

async fn unknown_operation() -> ApiError {
    ApiError::new(404, "UnknownOperationException", "Unknown operation")
}
