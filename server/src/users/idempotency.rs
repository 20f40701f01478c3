//! `Idempotency-Key` for user creation: a retry with the same key and body
//! gets the first result instead of a second user. The table is owned
//! here; the saga itself knows nothing of keys.

use sha2::{Digest, Sha256};
use sqlx::{PgExecutor, PgPool};

use super::model::{CreateUserRequest, UserView};
use crate::error::ApiError;

/// A client-chosen key, 1 to 255 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<IdempotencyKey, ApiError> {
        if raw.is_empty() || raw.len() > 255 {
            return Err(ApiError::bad_request(
                "Idempotency-Key must be 1 to 255 characters.",
            ));
        }
        Ok(IdempotencyKey(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a claim found.
pub(super) enum Claim {
    /// The key is ours: run the request, then [`complete`] or [`release`].
    Fresh,
    /// The same request finished before; here is its result.
    Replay(UserView),
}

/// The request fingerprint. The password is left out: a stored hash of it
/// could be brute-forced from a database dump.
fn fingerprint(request: &CreateUserRequest) -> Vec<u8> {
    let mut request = request.clone();
    if let Some(p) = request.password.as_mut() {
        p.value.clear();
    }
    Sha256::digest(serde_json::to_vec(&request).unwrap_or_default()).to_vec()
}

fn in_progress() -> ApiError {
    ApiError::Conflict {
        detail: "A request with this Idempotency-Key is still being processed; retry shortly."
            .into(),
        field: None,
    }
}

/// Claims `key` for `actor_key`, or explains why the request cannot run.
pub(super) async fn claim(
    db: &PgPool,
    actor_key: &str,
    key: &IdempotencyKey,
    request: &CreateUserRequest,
) -> Result<Claim, ApiError> {
    let hash = fingerprint(request);
    if insert(db, actor_key, key.as_str(), &hash).await? {
        return Ok(Claim::Fresh);
    }
    let seen = sqlx::query!(
        "SELECT request_hash, status, response FROM idempotency_keys WHERE actor_key = $1 AND key = $2",
        actor_key,
        key.as_str(),
    )
    .fetch_optional(db)
    .await?;
    let Some(seen) = seen else {
        return Err(in_progress());
    };
    if seen.request_hash != hash {
        return Err(ApiError::validation(
            "Idempotency-Key",
            "this key was already used with a different request body",
        ));
    }
    match (seen.status, seen.response) {
        (Some(_), Some(body)) => Ok(Claim::Replay(
            serde_json::from_value(body).map_err(|e| ApiError::Internal(e.into()))?,
        )),
        _ => Err(in_progress()),
    }
}

/// `false` if the key was already there.
async fn insert(db: &PgPool, actor_key: &str, key: &str, hash: &[u8]) -> sqlx::Result<bool> {
    let mut conn = db.acquire().await?;
    // A claim that never completed (crash) expires after five minutes.
    sqlx::query!(
        "DELETE FROM idempotency_keys WHERE actor_key = $1 AND key = $2 AND status IS NULL
           AND created_at < now() - interval '5 minutes'",
        actor_key,
        key,
    )
    .execute(&mut *conn)
    .await?;
    let inserted = sqlx::query!(
        "INSERT INTO idempotency_keys (actor_key, key, request_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        actor_key,
        key,
        hash,
    )
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Stores the result for later replays.
pub(super) async fn complete(
    db: impl PgExecutor<'_>,
    actor_key: &str,
    key: &IdempotencyKey,
    user: &UserView,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE idempotency_keys SET status = 201, response = $3 WHERE actor_key = $1 AND key = $2",
        actor_key,
        key.as_str(),
        serde_json::to_value(user).unwrap_or_default(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Frees the key after a failed attempt, which may be retried with it.
pub(super) async fn release(
    db: impl PgExecutor<'_>,
    actor_key: &str,
    key: &IdempotencyKey,
) -> sqlx::Result<()> {
    sqlx::query!(
        "DELETE FROM idempotency_keys WHERE actor_key = $1 AND key = $2 AND status IS NULL",
        actor_key,
        key.as_str(),
    )
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_characters() {
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(255))
                .unwrap()
                .as_str()
                .len(),
            255
        );
    }
}
