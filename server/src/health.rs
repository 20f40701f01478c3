//! Liveness and readiness. `/healthz` only says the process answers;
//! `/readyz` checks every dependency and answers 503 if a required one is
//! down, so load balancers stop sending traffic.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;

use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<Check>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut checks = Vec::new();
    let db = crate::db::ping(&state.db).await;
    checks.push(Check {
        name: "database",
        ok: db.is_ok(),
        required: true,
        detail: db.err(),
    });
    let idp = state.auth.provider.status().await;
    checks.push(Check {
        name: "identity_provider",
        ok: idp.ready,
        required: true,
        detail: Some(match (&idp.last_error, idp.key_age) {
            (Some(e), _) if !idp.ready => e.clone(),
            (last_error, Some(age)) => format!(
                "{} signing key(s), fetched {} s ago, {} failed fetch(es){}",
                idp.key_count,
                age.as_secs(),
                idp.failures,
                last_error
                    .as_ref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            ),
            (Some(e), None) => e.clone(),
            (None, None) => "signing keys not fetched yet".into(),
        }),
    });
    let speech = state.tts.status().await;
    checks.push(Check {
        name: "speech_engine",
        ok: speech.is_ok(),
        // Sign-in, chat text and administration work without speech, so a
        // speech outage must not take instances out of rotation.
        required: false,
        detail: Some({
            let mut detail = match speech {
                Ok(()) => format!("{} engine ready", state.tts.engine_name()),
                Err(e) => format!("{} engine: {e}", state.tts.engine_name()),
            };
            let pids = state.tts.worker_pids();
            if !pids.is_empty() {
                let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
                detail.push_str(&format!("; worker pid {}", pids.join(", ")));
            }
            if let Some(fallback) = state.tts.fallback() {
                detail.push_str(&format!("; {fallback}"));
            }
            detail
        }),
    });
    let (ok, detail) = state.stt.status();
    checks.push(Check {
        name: "speech_recogniser",
        ok,
        // Typing works without it.
        required: false,
        detail: Some(detail),
    });
    let ready = checks.iter().all(|c| c.ok || !c.required);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(Readiness { ready, checks }))
}
