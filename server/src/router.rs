//! Every route, in one place. `/api/**` routes are registered through
//! [`OpenApiRouter`] so each one is documented in `/api/openapi.json` by
//! construction (completed by [`crate::openapi`]); a test fails if a plain
//! `.route("/api…")` sneaks in.

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, PageError};
use crate::state::AppState;
use crate::{auth, chat, health, pages, stt, telemetry, tts, users, web};

/// The `/api` routes with their OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(version))
        .merge(auth::me_routes())
        .merge(users::routes())
        .merge(chat::routes())
        .merge(tts::routes())
        .merge(stt::routes())
}

pub fn router(state: AppState) -> Router {
    let (api, openapi) = api().split_for_parts();
    let openapi_json = crate::openapi::document(&openapi);
    let body_limit = state.config.body_limit;

    Router::new()
        .merge(api)
        .route(
            "/api/openapi.json",
            get(
                move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi_json) },
            ),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(telemetry::metrics_endpoint))
        .merge(auth::router())
        .merge(pages::router())
        .merge(web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(web::security_headers))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(telemetry::observe))
        .with_state(state)
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Version {
    name: &'static str,
    version: &'static str,
}

/// Name and version of this server.
#[utoipa::path(get, path = "/api/version", tag = "meta", responses((status = 200, body = Version)))]
async fn version() -> Json<Version> {
    Json(Version {
        name: "voxgate",
        version: env!("CARGO_PKG_VERSION"),
    })
}

fn is_api(req: &Request) -> bool {
    let path = req.uri().path();
    path == "/api" || path.starts_with("/api/") || path == "/textToSpeech"
}

async fn not_found(req: Request) -> Response {
    if is_api(&req) {
        ApiError::NotFound(format!(
            "There is no API resource at `{}`.",
            req.uri().path()
        ))
        .into_response()
    } else {
        PageError::page(
            StatusCode::NOT_FOUND,
            "Page not found",
            "There is nothing at this address.",
        )
        .into_response()
    }
}

async fn method_not_allowed(req: Request) -> Response {
    let detail = format!(
        "`{}` is not allowed on `{}`.",
        req.method(),
        req.uri().path()
    );
    if is_api(&req) {
        ApiError::MethodNotAllowed(detail).into_response()
    } else {
        PageError::page(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", detail)
            .into_response()
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}
