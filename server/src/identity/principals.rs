//! Principals resolved from tokens, cached briefly: the local user behind
//! a token's subject and the effective role set.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use super::repo::{self, SignedIn};
use super::user::UserRow;

/// A token's SHA-256: what the cache is keyed by, never the token itself.
pub type TokenKey = [u8; 32];

/// A resolved principal, cached briefly per token so a bearer request
/// neither writes to the database nor copies the token's role lists every
/// time. Admin changes to a user evict it; other instances see them within
/// [`PrincipalCache::TTL`].
#[derive(Clone)]
pub struct Resolved {
    pub user: UserRow,
    pub roles: Arc<BTreeSet<String>>,
}

#[derive(Default)]
pub struct PrincipalCache {
    entries: Mutex<HashMap<TokenKey, (Instant, Arc<Resolved>)>>,
}

impl PrincipalCache {
    pub const TTL: Duration = Duration::from_secs(10);

    pub fn get(&self, key: &TokenKey) -> Option<Arc<Resolved>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < Self::TTL)
            .map(|(_, r)| r.clone())
    }

    pub fn put(&self, key: TokenKey, value: Arc<Resolved>) {
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

/// The user row for a token's subject, created or refreshed on first
/// sight, and the effective roles.
pub async fn resolve(
    db: &PgPool,
    cache: &PrincipalCache,
    token: TokenKey,
    subject: &SignedIn<'_>,
    client_roles: &[String],
) -> sqlx::Result<Arc<Resolved>> {
    // The token fixes the subject and its roles, so a token seen before
    // costs a lookup and an `Arc` clone.
    if let Some(hit) = cache.get(&token) {
        return Ok(hit);
    }
    let user = record_sign_in(db, subject).await?;
    let roles = repo::effective_roles(db, user.id, subject.realm_roles, client_roles).await?;
    let resolved = Arc::new(Resolved {
        user,
        roles: Arc::new(roles),
    });
    cache.put(token, resolved.clone());
    Ok(resolved)
}

/// Creates or refreshes the row for a token's subject.
pub async fn record_sign_in(db: &PgPool, subject: &SignedIn<'_>) -> sqlx::Result<UserRow> {
    match repo::upsert_signed_in(db, subject).await {
        // Two first requests at once: the upsert resolves a clash on the
        // Keycloak id, but the other one may surface first on the unique
        // username index. By now the row exists, so a second try updates it.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            repo::upsert_signed_in(db, subject).await
        }
        result => result,
    }
}
