//! The one application state, built once in [`crate::app::App::build`] and
//! cloned into every handler. Features pull their part out with `FromRef`.

use std::sync::Arc;

use axum::extract::FromRef;
use sqlx::PgPool;

use crate::auth::Auth;
use crate::config::Config;
use crate::tts::Tts;
use crate::users::Users;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: PgPool,
    pub auth: Auth,
    pub users: Users,
    pub tts: Tts,
    pub chat: crate::chat::Chat,
}

impl FromRef<AppState> for PgPool {
    fn from_ref(state: &AppState) -> PgPool {
        state.db.clone()
    }
}
