//! The application roles voxgate's own code decides on. The `roles` table
//! may hold more (an operator can add some and map Keycloak roles to
//! them); those are granted and listed by name, but no code path checks
//! them, so they need no variant here.

/// A role that code checks for; a misspelt role is a compile error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppRole {
    /// Everyone signed in holds it.
    User,
    /// Support staff: speech without the daily quota.
    Agent,
    /// Manages users, roles and the audit log.
    Admin,
}

impl AppRole {
    pub const fn as_str(self) -> &'static str {
        match self {
            AppRole::User => "user",
            AppRole::Agent => "agent",
            AppRole::Admin => "admin",
        }
    }
}

impl PartialEq<AppRole> for String {
    fn eq(&self, role: &AppRole) -> bool {
        self == role.as_str()
    }
}

impl PartialEq<AppRole> for &str {
    fn eq(&self, role: &AppRole) -> bool {
        *self == role.as_str()
    }
}

/// A role a route may require, as a type (see `RequireRole`).
pub trait RoleName: Send + Sync {
    const ROLE: AppRole;
}

pub struct Admin;
impl RoleName for Admin {
    const ROLE: AppRole = AppRole::Admin;
}
