//! The chat and admin pages. They render with askama (auto-escaped: user
//! text is never inserted as markup) and are shells: their scripts fetch
//! the data from `/api`, sending the CSRF token rendered into the page.
//! What every HTML response shares (assets, security headers, the error
//! page) is [`crate::web`]'s.

mod views;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(views::chat))
        .route("/admin", get(views::admin))
}
