//! Who a user is, beneath both `auth` (which proves it) and `users`
//! (which administers it): the `users` row and its status, application
//! roles and the effective role set, principals resolved from tokens and
//! their cache, and ending a user's sessions.
//!
//! Nothing here knows about HTTP requests, tokens' wire format or
//! Keycloak's admin API; `auth` and `users` depend on this module and
//! never on each other.

mod principal;
mod principals;
mod repo;
mod role;
mod user;

pub use principal::{AuthMethod, CurrentUser, RequireRole};
pub use principals::{PrincipalCache, Resolved, TokenKey, record_sign_in, resolve};
pub use repo::{SignedIn, effective_roles, end_sessions, find_row};
pub use role::{Admin, AppRole, RoleName};
pub(crate) use user::query_user;
pub use user::{UserRow, UserStatus};
