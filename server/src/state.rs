//! The one application state, built once in [`crate::app::App::build`].
//! Routers are `Router<AppState>`, and each handler takes only the service
//! it uses (`State<Chat>`, `State<Tts>`, `State<Users>`…, through
//! [`FromRef`]); extractors that authenticate take the whole state.

use std::sync::Arc;

use axum::extract::FromRef;
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
    pub stt: crate::stt::Stt,
    pub chat: crate::chat::Chat,
}

/// Each service is its own sub-state: a handler names the one it uses.
macro_rules! sub_state {
    ($($field:ident: $type:ty),* $(,)?) => {$(
        impl FromRef<AppState> for $type {
            fn from_ref(state: &AppState) -> $type {
                state.$field.clone()
            }
        }
    )*};
}

sub_state! {
    users: Users,
    tts: Tts,
    stt: crate::stt::Stt,
    chat: crate::chat::Chat,
}
