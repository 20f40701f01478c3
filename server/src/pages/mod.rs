//! HTML pages and static assets. Pages render with askama (auto-escaped:
//! user text is never inserted as markup) and use only files from
//! `web/static/`, so the strict Content-Security-Policy holds: no inline
//! script or style anywhere. The pages are shells: their scripts fetch the
//! data from `/api`, sending the CSRF token rendered into the page.

mod assets;
mod views;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;

use crate::state::AppState;

pub use assets::asset_url;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(views::chat))
        .route("/admin", get(views::admin))
        .route("/static/{*path}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon))
}

#[derive(askama::Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub status: u16,
    pub title: &'a str,
    pub message: &'a str,
    pub request_id: String,
}

impl ErrorPage<'_> {
    fn css(&self) -> String {
        asset_url("app.css")
    }
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
frame-ancestors 'none'";

/// Security headers on every response. The CSP only matters for HTML but
/// is harmless elsewhere; headers a handler already set are kept.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    let defaults = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ];
    for (name, value) in defaults {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}
