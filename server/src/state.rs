//! The one application state, built once in [`crate::app::App::build`] and
//! cloned into every handler, which takes the parts it needs.

use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::Auth;
use crate::config::Config;
use crate::tts::Tts;
use crate::users::Users;

/// Cheap to clone (one reference count): every extractor and middleware
/// clones the state, so it is a single `Arc` rather than a bundle of them.
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

impl AppState {
    pub fn new(parts: Parts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}

/// What the state holds.
pub struct Parts {
    pub config: Arc<Config>,
    pub db: PgPool,
    pub auth: Auth,
    pub users: Users,
    pub tts: Tts,
    pub chat: crate::chat::Chat,
}
