//! The `users` row every feature reads users through, and where it stands.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::ApiError;

/// Where a user row stands. Only `Active` users may sign in or be changed;
/// `Pending` is a creation saga in flight, `Failed` one that was undone.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum UserStatus {
    Pending,
    Active,
    Failed,
    Deleted,
}

impl UserStatus {
    pub const ALL: [UserStatus; 4] = [
        UserStatus::Pending,
        UserStatus::Active,
        UserStatus::Failed,
        UserStatus::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Pending => "pending",
            UserStatus::Active => "active",
            UserStatus::Failed => "failed",
            UserStatus::Deleted => "deleted",
        }
    }

    /// Parses a `status` filter, naming the accepted values when it fails.
    pub fn parse_filter(raw: &str) -> Result<UserStatus, ApiError> {
        UserStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "status must be one of pending, active, failed, deleted (got `{raw}`)."
                ))
            })
    }
}

impl std::fmt::Display for UserStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so table columns (`{:<8}`) line up.
        f.pad(self.as_str())
    }
}

/// A `users` row: the one type every feature reads users through.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserRow {
    pub id: Uuid,
    pub keycloak_id: Option<String>,
    pub username: String,
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub enabled: bool,
    pub status: UserStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_login_at: Option<OffsetDateTime>,
}

impl UserRow {
    /// May sign in and be served: enabled, and not a creation in flight,
    /// undone or deleted.
    pub fn is_active(&self) -> bool {
        self.enabled && self.status == UserStatus::Active
    }
}

/// A compile-time checked `query_as!` whose statement is `$head`, then the
/// columns of [`UserRow`] (table alias `u`), then `$tail` (in parentheses: literals joined by `+`). sqlx's macros
/// take only string literals, so the shared column list is spliced in here
/// rather than with `concat!`. `$row` is a type in scope whose fields are
/// those columns (plus any `$tail` adds).
macro_rules! query_user {
    ($row:ident, $head:tt, ($($tail:tt)+) $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $row,
            $head
                + r#"u.id, u.keycloak_id, u.username::text AS "username!", u.email::text AS email,
    u.first_name, u.last_name, u.enabled, u.status AS "status: UserStatus", u.created_at,
    u.last_login_at"#
                + $($tail)+
            $(, $arg)*
        )
    };
}
pub(crate) use query_user;
