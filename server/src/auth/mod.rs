//! Authentication and authorization.
//!
//! voxgate trusts Keycloak for identity and nothing else. A request is
//! anonymous, a browser session created by our own login flow
//! (backend-for-frontend: tokens stay server-side), or a Keycloak bearer
//! token. Handlers never parse tokens: they take [`CurrentUser`],
//! [`MaybeUser`] or [`RequireRole`] and get a checked principal.

mod extract;
mod flow;
mod oidc;
mod origin;
pub mod provider;
mod refresh;
mod routes;
pub mod session;
mod subject;
pub mod throttle;
pub mod token;

use std::sync::Arc;

pub use extract::{MaybeUser, PageUser};
pub use origin::external_base;
pub use routes::{me_routes, router};

use crate::config::Config;
use crate::identity::PrincipalCache;
use provider::Provider;
use token::TokenValidator;

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
