//! Browser sessions and pending sign-ins stored in Postgres: every
//! statement on `sessions`, `login_flows` and `logout_token_jtis`. The cookie carries 32 random bytes;
//! the table keeps only their hash. Idle and absolute timeouts are enforced
//! on every read; Keycloak's `sid` is kept so a back-channel logout can end
//! every local session of a Keycloak session.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hash(value: &str) -> Vec<u8> {
    Sha256::digest(value.as_bytes()).to_vec()
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id_hash: Vec<u8>,
    pub user_id: Uuid,
    pub keycloak_sid: Option<String>,
    pub csrf_token: String,
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub access_expires_at: OffsetDateTime,
    pub keycloak_roles: Vec<String>,
    pub last_seen_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A checked `query_as!` for [`SessionRow`]: `$head`, the session's
/// columns, then `$tail` (sqlx's macros take only string literals, so the
/// column list is spliced in here).
macro_rules! query_session {
    ($head:tt, $tail:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            SessionRow,
            $head
                + "id_hash, user_id, keycloak_sid, csrf_token, id_token, access_token, refresh_token,
         access_expires_at, keycloak_roles, last_seen_at, expires_at"
                + $tail
            $(, $arg)*
        )
    };
}

pub struct NewSession<'a> {
    pub user_id: Uuid,
    pub keycloak_sid: Option<&'a str>,
    pub id_token: &'a str,
    pub access_token: &'a str,
    pub refresh_token: Option<&'a str>,
    pub access_expires_at: OffsetDateTime,
    pub keycloak_roles: &'a [String],
    pub absolute: std::time::Duration,
}

/// Creates a session and returns the cookie value.
pub async fn insert(db: impl PgExecutor<'_>, s: NewSession<'_>) -> sqlx::Result<String> {
    let id = random_token();
    let expires_at = OffsetDateTime::now_utc() + s.absolute;
    sqlx::query!(
        r#"INSERT INTO sessions (id_hash, user_id, keycloak_sid, csrf_token, id_token, access_token,
                                 refresh_token, access_expires_at, keycloak_roles, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"#,
        hash(&id),
        s.user_id,
        s.keycloak_sid,
        random_token(),
        s.id_token,
        s.access_token,
        s.refresh_token,
        s.access_expires_at,
        s.keycloak_roles,
        expires_at,
    )
    .execute(db)
    .await?;
    Ok(id)
}

/// The live session for a cookie value, or `None` if unknown or timed out.
pub async fn find_live(
    db: impl PgExecutor<'_>,
    cookie: &str,
    idle: std::time::Duration,
) -> sqlx::Result<Option<SessionRow>> {
    let idle_secs = idle.as_secs_f64();
    query_session!(
        "SELECT ",
        r#" FROM sessions
            WHERE id_hash = $1 AND expires_at > now()
              AND last_seen_at > now() - make_interval(secs => $2)"#,
        hash(cookie),
        idle_secs,
    )
    .fetch_optional(db)
    .await
}

/// Records activity, at most once a minute to keep reads cheap.
pub async fn touch(db: impl PgExecutor<'_>, id_hash: &[u8]) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE sessions SET last_seen_at = now() WHERE id_hash = $1 AND last_seen_at < now() - interval '1 minute'",
        id_hash,
    )
    .execute(db)
        .await?;
    Ok(())
}

pub async fn delete(db: impl PgExecutor<'_>, id_hash: &[u8]) -> sqlx::Result<Option<SessionRow>> {
    query_session!(
        "DELETE FROM sessions WHERE id_hash = $1 RETURNING ",
        "",
        id_hash
    )
    .fetch_optional(db)
    .await
}

pub async fn delete_by_keycloak_sid(db: impl PgExecutor<'_>, sid: &str) -> sqlx::Result<u64> {
    Ok(
        sqlx::query!("DELETE FROM sessions WHERE keycloak_sid = $1", sid)
            .execute(db)
            .await?
            .rows_affected(),
    )
}

/// Records a back-channel logout token's `jti` until `expires_at` (the
/// last moment the token is accepted: its `exp` plus the leeway); `false`
/// when it was already used (a replay). Expired entries go at the same
/// time, so the table holds only tokens that could still be replayed.
pub async fn remember_logout_token(
    db: &sqlx::PgPool,
    issuer: &str,
    jti: &str,
    expires_at: i64,
) -> sqlx::Result<bool> {
    sqlx::query!("DELETE FROM logout_token_jtis WHERE expires_at < now()")
        .execute(db)
        .await?;
    let inserted = sqlx::query!(
        "INSERT INTO logout_token_jtis (issuer, jti, expires_at)
         VALUES ($1, $2, to_timestamp($3)) ON CONFLICT DO NOTHING",
        issuer,
        jti,
        expires_at as f64,
    )
    .execute(db)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

pub async fn delete_for_keycloak_subject(db: impl PgExecutor<'_>, sub: &str) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        "DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE keycloak_id = $1)",
        sub,
    )
    .execute(db)
    .await?
    .rows_affected())
}

/// Claims the right to refresh a session's tokens for 30 seconds and
/// returns its current row; `None` while another request holds the claim.
pub async fn claim_refresh(
    db: impl PgExecutor<'_>,
    id_hash: &[u8],
) -> sqlx::Result<Option<SessionRow>> {
    query_session!(
        "UPDATE sessions SET refreshing_until = now() + interval '30 seconds'
          WHERE id_hash = $1 AND (refreshing_until IS NULL OR refreshing_until < now())
         RETURNING ",
        "",
        id_hash,
    )
    .fetch_optional(db)
    .await
}

/// Gives up a refresh claim without new tokens.
pub async fn release_refresh(db: impl PgExecutor<'_>, id_hash: &[u8]) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE sessions SET refreshing_until = NULL WHERE id_hash = $1",
        id_hash
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Stores refreshed tokens and ends the refresh claim.
pub async fn store_refreshed(
    db: impl PgExecutor<'_>,
    id_hash: &[u8],
    access_token: &str,
    refresh_token: Option<&str>,
    id_token: Option<&str>,
    access_expires_at: OffsetDateTime,
    keycloak_roles: &[String],
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"UPDATE sessions SET access_token = $2, refresh_token = COALESCE($3, refresh_token),
                  id_token = COALESCE($4, id_token), access_expires_at = $5, keycloak_roles = $6,
                  refreshing_until = NULL
            WHERE id_hash = $1"#,
        id_hash,
        access_token,
        refresh_token,
        id_token,
        access_expires_at,
        keycloak_roles,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A sign-in in progress, bound to the browser that started it.
pub struct LoginFlow {
    pub browser_hash: Vec<u8>,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
}

/// How long a sign-in may take from the login redirect to the callback.
pub const LOGIN_FLOW_LIFETIME_MINUTES: i64 = 10;

pub async fn insert_login_flow(
    db: impl PgExecutor<'_>,
    state: &str,
    flow: &LoginFlow,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO login_flows (state, browser_hash, nonce, pkce_verifier, return_to) VALUES ($1, $2, $3, $4, $5)",
        state,
        flow.browser_hash,
        flow.nonce,
        flow.pkce_verifier,
        flow.return_to,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Consumes the sign-in named by `state`: single use, whatever happens
/// next. `None` if unknown, used or expired.
pub async fn take_login_flow(
    db: impl PgExecutor<'_>,
    state: &str,
) -> sqlx::Result<Option<LoginFlow>> {
    sqlx::query_as!(
        LoginFlow,
        "DELETE FROM login_flows WHERE state = $1 AND created_at > now() - make_interval(mins => $2)
         RETURNING browser_hash, nonce, pkce_verifier, return_to",
        state,
        LOGIN_FLOW_LIFETIME_MINUTES as i32,
    )
    .fetch_optional(db)
    .await
}

/// Removes expired sessions and abandoned sign-ins.
pub async fn sweep(db: &sqlx::PgPool) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM sessions WHERE expires_at < now()")
        .execute(db)
        .await?;
    sqlx::query!("DELETE FROM login_flows WHERE created_at < now() - interval '15 minutes'")
        .execute(db)
        .await?;
    Ok(())
}
