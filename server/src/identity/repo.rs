//! The statements identity needs: a token's subject recorded at sign-in,
//! a user's row and effective roles, and the end of a user's sessions.

use std::collections::BTreeSet;

use sqlx::PgExecutor;
use uuid::Uuid;

use super::role::AppRole;
use super::user::{UserRow, UserStatus, query_user};

/// What a valid token says about its subject, recorded at each sign-in.
pub struct SignedIn<'a> {
    pub keycloak_id: &'a str,
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub realm_roles: &'a [String],
}

/// Inserts or refreshes the row for a token's subject in one statement, so
/// concurrent first requests end with exactly one row.
pub async fn upsert_signed_in(db: impl PgExecutor<'_>, s: &SignedIn<'_>) -> sqlx::Result<UserRow> {
    query_user!(
        UserRow,
        r#"
        INSERT INTO users AS u (keycloak_id, username, email, first_name, last_name, status, last_login_at, keycloak_roles)
        VALUES ($1, $2, $3, $4, $5, 'active', now(), $6)
        ON CONFLICT (keycloak_id) DO UPDATE SET
            username = EXCLUDED.username,
            email = EXCLUDED.email,
            first_name = EXCLUDED.first_name,
            last_name = EXCLUDED.last_name,
            last_login_at = now(),
            keycloak_roles = EXCLUDED.keycloak_roles
        RETURNING "#,
        (""),
        s.keycloak_id,
        s.username as _,
        s.email as _,
        s.first_name,
        s.last_name,
        s.realm_roles,
    )
    .fetch_one(db)
    .await
}

/// The bare row of a user, for a session's request.
pub async fn find_row(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<UserRow> {
    query_user!(UserRow, "SELECT ", (" FROM users u WHERE u.id = $1"), id)
        .fetch_one(db)
        .await
}

/// Roles granted directly in voxgate plus those mapped from Keycloak
/// roles, and the default role everyone signed in holds.
pub async fn effective_roles(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    realm_roles: &[String],
    client_roles: &[String],
) -> sqlx::Result<BTreeSet<String>> {
    let rows = sqlx::query_scalar!(
        r#"
        SELECT role AS "role!" FROM user_roles WHERE user_id = $1
        UNION
        SELECT app_role FROM role_mappings
         WHERE (source = 'realm' AND keycloak_role = ANY($2))
            OR (source = 'client' AND keycloak_role = ANY($3))
        "#,
        user_id,
        realm_roles,
        client_roles,
    )
    .fetch_all(db)
    .await?;
    let mut roles: BTreeSet<String> = rows.into_iter().collect();
    roles.insert(AppRole::User.as_str().to_string());
    Ok(roles)
}

/// Ends every browser session of a user: their next request is anonymous.
/// Called inside the transaction that disables, deletes or demotes them.
pub async fn end_sessions(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<u64> {
    Ok(
        sqlx::query!("DELETE FROM sessions WHERE user_id = $1", user_id)
            .execute(db)
            .await?
            .rows_affected(),
    )
}
