//! The checked principal handlers receive. The extractors that produce
//! it from a bearer token or a session cookie are `crate::auth`'s.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;

use uuid::Uuid;

use super::role::{AppRole, RoleName};
use super::user::UserRow;

/// How the request proved who it is.
#[derive(Debug, Clone)]
pub enum AuthMethod {
    Session {
        id_hash: Vec<u8>,
        csrf_token: String,
    },
    Bearer,
}

impl AuthMethod {
    pub fn name(&self) -> &'static str {
        match self {
            AuthMethod::Session { .. } => "session",
            AuthMethod::Bearer => "bearer",
        }
    }
}

/// A signed-in, enabled user with their effective roles.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: Uuid,
    pub keycloak_id: String,
    pub username: String,
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub roles: Arc<BTreeSet<String>>,
    pub method: AuthMethod,
}

impl CurrentUser {
    pub fn has_role(&self, role: AppRole) -> bool {
        self.roles.contains(role.as_str())
    }

    /// A label for audit records.
    pub fn label(&self) -> String {
        self.username.clone()
    }

    /// Staff (agents and admins) speak, listen and chat without the daily
    /// budgets; the per-minute rates still apply.
    pub fn unmetered(&self) -> bool {
        self.has_role(AppRole::Agent) || self.has_role(AppRole::Admin)
    }

    /// The principal of an enabled, active user; `None` for anyone else,
    /// whatever their credentials say.
    pub fn active(
        user: &UserRow,
        roles: Arc<BTreeSet<String>>,
        sub: &str,
        method: AuthMethod,
    ) -> Option<CurrentUser> {
        if !user.is_active() {
            return None;
        }
        Some(CurrentUser {
            id: user.id,
            keycloak_id: user.keycloak_id.clone().unwrap_or_else(|| sub.to_string()),
            username: user.username.clone(),
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            roles,
            method,
        })
    }
}

/// The current user, who must hold role `R`: 401 if not signed in, 403
/// (never 401) if signed in without the role.
pub struct RequireRole<R: RoleName>(pub CurrentUser, pub PhantomData<R>);
