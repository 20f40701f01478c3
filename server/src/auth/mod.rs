//! Authentication and authorization.
//!
//! voxgate trusts Keycloak for identity and nothing else. A request is
//! anonymous, a browser session created by our own login flow
//! (backend-for-frontend: tokens stay server-side), or a Keycloak bearer
//! token. Handlers never parse tokens: they take [`CurrentUser`],
//! [`MaybeUser`] or [`RequireRole`] and get a checked principal.

mod extract;
mod oidc;
mod origin;
pub mod provider;
mod refresh;
mod role;
mod routes;
pub mod session;
pub mod throttle;
pub mod token;
pub mod users;

use std::sync::Arc;

pub use extract::{Admin, AuthMethod, CurrentUser, MaybeUser, PageUser, RequireRole, RoleName};
pub use origin::external_base;
pub use role::AppRole;
pub use routes::{me_routes, router};

use crate::config::Config;
use provider::Provider;
use token::TokenValidator;
use users::PrincipalCache;

/// Everything authentication needs, shared through the app state.
#[derive(Clone)]
pub struct Auth {
    pub provider: Provider,
    pub validator: Arc<TokenValidator>,
    pub principals: Arc<PrincipalCache>,
    pub sign_ins: Arc<throttle::SignInThrottle>,
    pub http: reqwest::Client,
}

impl Auth {
    pub fn new(config: &Config, http: reqwest::Client) -> Auth {
        let provider = Provider::new(config.oidc.clone(), http.clone());
        let mut issuers = vec![
            config
                .oidc
                .issuer
                .as_str()
                .trim_end_matches('/')
                .to_string(),
        ];
        issuers.extend(config.oidc.extra_issuers.iter().cloned());
        let validator = TokenValidator::new(
            provider.clone(),
            issuers,
            config.oidc.audience.clone(),
            config.oidc.client_id.clone(),
            config.oidc.leeway.as_secs(),
        )
        .allowing_clients(config.oidc.allowed_clients.clone());
        Auth {
            provider,
            validator: Arc::new(validator),
            principals: Arc::new(PrincipalCache::default()),
            sign_ins: Arc::new(throttle::SignInThrottle::new(
                config.session.sign_ins_per_address,
                config.session.sign_ins_per_instance,
            )),
            http,
        }
    }
}
