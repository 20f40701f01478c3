//! What every HTML response shares, whichever feature renders it: the
//! static files of `web/static/` embedded with versioned URLs, the
//! security headers (a strict Content-Security-Policy: no inline script or
//! style anywhere) and the error page.

mod assets;
mod headers;

use axum::Router;
use axum::routing::get;

pub use assets::asset_url;
pub use headers::security_headers;

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/static/{*path}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon))
}

/// The page an HTML request gets when it fails (`crate::error::PageError`).
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

    fn theme(&self) -> String {
        asset_url("theme.js")
    }
}
