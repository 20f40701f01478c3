//! The `/_standin/...` control endpoints (only served when
//! `PollyConfig::control_endpoint` is set), so tests running the stand-in as
//! a separate process can read counters and inject faults over HTTP.
//!
//! * `GET  /_standin/stats` — counters and current fault settings
//! * `POST /_standin/faults` — JSON with any of `throttle_next`, `fail_next`,
//!   `fail_status`, `first_byte_delay_ms`, `chunk_delay_ms`,
//!   `cut_stream_after` (a number, or `null` to turn it off); omitted fields
//!   keep their values
//! * `POST /_standin/reset` — clear all faults
//! * `POST /_standin/reset-counters` — zero the counters
//!
//! These requests are not signed.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/_standin/stats", get(stats))
        .route("/_standin/faults", post(set_faults))
        .route("/_standin/reset", post(reset))
        .route("/_standin/reset-counters", post(reset_counters))
}

async fn stats(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "counters": state.faults.counters(),
        "faults": state.faults.snapshot(),
    }))
}

#[derive(Deserialize)]
struct FaultUpdate {
    throttle_next: Option<usize>,
    fail_next: Option<usize>,
    fail_status: Option<u16>,
    first_byte_delay_ms: Option<u64>,
    chunk_delay_ms: Option<u64>,
    /// Absent: unchanged; `null`: off; number: cut after that many bytes.
    #[serde(default, deserialize_with = "present")]
    cut_stream_after: Option<Option<usize>>,
}

/// Distinguishes an explicit `null` from an absent field.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<usize>>, D::Error> {
    Option::<usize>::deserialize(d).map(Some)
}

async fn set_faults(State(state): State<AppState>, Json(u): Json<FaultUpdate>) -> Json<Value> {
    let mut s = state.faults.snapshot();
    if let Some(v) = u.throttle_next {
        s.throttle_next = v;
    }
    if let Some(v) = u.fail_next {
        s.fail_next = v;
    }
    if let Some(v) = u.fail_status {
        s.fail_status = v;
    }
    if let Some(v) = u.first_byte_delay_ms {
        s.first_byte_delay_ms = v;
    }
    if let Some(v) = u.chunk_delay_ms {
        s.chunk_delay_ms = v;
    }
    if let Some(v) = u.cut_stream_after {
        s.cut_stream_after = v;
    }
    state.faults.apply(s.clone());
    Json(json!({ "faults": s }))
}

async fn reset(State(state): State<AppState>) -> Json<Value> {
    state.faults.reset_faults();
    Json(json!({ "faults": state.faults.snapshot() }))
}

async fn reset_counters(State(state): State<AppState>) -> Json<Value> {
    state.faults.reset_counters();
    Json(json!({ "counters": state.faults.counters() }))
}
