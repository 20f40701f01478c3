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
    let ready = checks.iter().all(|c| c.ok || !c.required);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(Readiness { ready, checks }))
}
