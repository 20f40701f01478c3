//! Authentication against the Keycloak stand-in and real Postgres: bearer
//! tokens, the browser sign-in flow, sessions and their cookie, CSRF,
//! logout, the local users behind tokens, the identity provider's outages
//! and the limits on sign-in starts. Each submodule covers one of these;
//! `helpers` holds the forging key and the requests they share.

mod bearer;
mod csrf;
mod helpers;
mod logout;
mod provider;
mod sessions;
mod sign_in;
mod throttle;
mod users;
