//! Local users as seen by authentication: the row for a Keycloak subject,
//! created or refreshed on first sight, and the effective role set.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::token::Claims;

/// Everyone signed in holds this role.
pub const DEFAULT_ROLE: &str = "user";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub keycloak_id: Option<String>,
    pub username: String,
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub enabled: bool,
    pub status: String,
}

/// Inserts or refreshes the row for the token's subject in one statement,
/// so concurrent first requests end with exactly one row.
pub async fn upsert_from_claims(db: impl PgExecutor<'_>, claims: &Claims) -> sqlx::Result<UserRow> {
    let username = claims
        .preferred_username
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| claims.sub.clone());
    sqlx::query_as::<_, UserRow>(
        r#"
        INSERT INTO users (keycloak_id, username, email, first_name, last_name, status, last_login_at, keycloak_roles)
        VALUES ($1, $2, $3, $4, $5, 'active', now(), $6)
        ON CONFLICT (keycloak_id) DO UPDATE SET
            username = EXCLUDED.username,
            email = EXCLUDED.email,
            first_name = EXCLUDED.first_name,
            last_name = EXCLUDED.last_name,
            last_login_at = now(),
            keycloak_roles = EXCLUDED.keycloak_roles
        RETURNING id, keycloak_id, username::text, email::text, first_name, last_name, enabled, status
        "#,
    )
    .bind(&claims.sub)
    .bind(username)
    .bind(claims.email.as_deref())
    .bind(claims.given_name.clone().unwrap_or_default())
    .bind(claims.family_name.clone().unwrap_or_default())
    .bind(claims.realm_access.clone().unwrap_or_default().roles)
    .fetch_one(db)
    .await
}

/// Roles granted directly in voxgate plus those mapped from Keycloak roles.
pub async fn effective_roles(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    realm_roles: &[String],
    client_roles: &[String],
) -> sqlx::Result<BTreeSet<String>> {
    let rows: Vec<String> = sqlx::query_scalar(
        r#"
        SELECT role FROM user_roles WHERE user_id = $1
        UNION
        SELECT app_role FROM role_mappings
         WHERE (source = 'realm' AND keycloak_role = ANY($2))
            OR (source = 'client' AND keycloak_role = ANY($3))
        "#,
    )
    .bind(user_id)
    .bind(realm_roles)
    .bind(client_roles)
    .fetch_all(db)
    .await?;
    let mut roles: BTreeSet<String> = rows.into_iter().collect();
    roles.insert(DEFAULT_ROLE.to_string());
    Ok(roles)
}

/// A resolved principal, cached briefly per subject so a bearer request
/// does not write to the database every time. Admin changes to a user
/// evict it; other instances see them within [`PrincipalCache::TTL`].
#[derive(Clone)]
pub struct Resolved {
    pub user: UserRow,
    pub roles: BTreeSet<String>,
}

#[derive(Default)]
pub struct PrincipalCache {
    entries: Mutex<HashMap<String, (Instant, Resolved)>>,
}

impl PrincipalCache {
    pub const TTL: Duration = Duration::from_secs(10);

    pub fn get(&self, key: &str) -> Option<Resolved> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < Self::TTL)
            .map(|(_, r)| r.clone())
    }

    pub fn put(&self, key: String, value: Resolved) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 100_000 {
                entries.clear();
            }
            entries.insert(key, (Instant::now(), value));
        }
    }

    /// Forgets every cached principal of a user (after an admin change).
    pub fn evict_user(&self, user_id: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (_, r)| r.user.id != user_id);
        }
    }
}

pub async fn resolve(
    db: &PgPool,
    cache: &PrincipalCache,
    claims: &Claims,
    client_id: &str,
) -> sqlx::Result<Resolved> {
    let realm_roles = claims.realm_access.clone().unwrap_or_default().roles;
    let client_roles = claims
        .resource_access
        .get(client_id)
        .map(|r| r.roles.clone())
        .unwrap_or_default();
    let key = format!(
        "{}|{}|{}",
        claims.sub,
        realm_roles.join(","),
        client_roles.join(",")
    );
    if let Some(hit) = cache.get(&key) {
        return Ok(hit);
    }
    let user = upsert_from_claims(db, claims).await?;
    let roles = effective_roles(db, user.id, &realm_roles, &client_roles).await?;
    let resolved = Resolved { user, roles };
    cache.put(key, resolved.clone());
    Ok(resolved)
}
