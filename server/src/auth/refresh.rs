//! The session behind a request's cookie, with its access token refreshed
//! when it is about to expire.
//!
//! One request per session refreshes at a time, claimed through a short
//! lease column rather than a row lock: a lock would hold a pooled
//! connection for as long as Keycloak takes to answer, and a slow Keycloak
//! would then starve every other request of connections.

use axum::http::request::Parts;
use axum_extra::extract::cookie::CookieJar;
use time::OffsetDateTime;

use super::oidc::{self, ExchangeError};
use super::session::{self, SessionRow};
use super::token::Expect;
use crate::state::AppState;

/// Refresh this long before the access token expires.
const REFRESH_MARGIN: time::Duration = time::Duration::seconds(60);

/// The live session for the request's cookie, refreshed if needed.
pub(super) async fn session_for(
    parts: &Parts,
    state: &AppState,
) -> anyhow::Result<Option<SessionRow>> {
    let jar = CookieJar::from_headers(&parts.headers);
    let Some(cookie) = jar.get(&state.config.session.cookie_name) else {
        return Ok(None);
    };
    let Some(row) =
        session::find_live(&state.db, cookie.value(), state.config.session.idle).await?
    else {
        return Ok(None);
    };
    session::touch(&state.db, &row.id_hash).await?;
    if row.access_expires_at - OffsetDateTime::now_utc() < REFRESH_MARGIN {
        return refresh_session(state, row).await;
    }
    Ok(Some(row))
}

/// Refreshes a session's access token. `None`: the session is over.
async fn refresh_session(state: &AppState, row: SessionRow) -> anyhow::Result<Option<SessionRow>> {
    // Claimed by another request of this session: carry on with what we
    // have rather than wait for its network call.
    let Some(current) = session::claim_refresh(&state.db, &row.id_hash).await? else {
        return Ok(Some(row));
    };
    let now = OffsetDateTime::now_utc();
    let still_valid = current.access_expires_at > now;
    let (Some(refresh_token), Some(endpoints)) = (
        current.refresh_token.clone(),
        state.auth.provider.endpoints().await,
    ) else {
        if still_valid {
            return keep(state, current).await;
        }
        return end(
            state,
            &current,
            "access token expired and cannot be refreshed",
        )
        .await;
    };
    let redirect = format!(
        "{}/auth/callback",
        state.config.public_url.as_str().trim_end_matches('/')
    );
    let refreshed = oidc::refresh(
        &state.auth.http,
        &state.config.oidc,
        &endpoints,
        &redirect,
        &refresh_token,
    )
    .await;
    let tokens = match refreshed {
        Ok(tokens) => tokens,
        Err(ExchangeError::Refused(reason)) => {
            tracing::info!(%reason, "refresh refused by the identity provider");
            return end(state, &current, "refresh token refused").await;
        }
        Err(ExchangeError::Unreachable(reason)) => {
            tracing::warn!(%reason, "cannot refresh: identity provider unreachable");
            if still_valid {
                return keep(state, current).await;
            }
            return end(
                state,
                &current,
                "access token expired while the identity provider was unreachable",
            )
            .await;
        }
    };
    let claims = match state
        .auth
        .validator
        .validate(&tokens.access_token, Expect::Access)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "refreshed access token refused");
            return end(state, &current, "refreshed access token refused").await;
        }
    };
    let roles = claims.session_roles(&state.config.oidc.client_id);
    let expires =
        now + time::Duration::try_from(tokens.expires_in).unwrap_or(time::Duration::minutes(1));
    session::store_refreshed(
        &state.db,
        &current.id_hash,
        &tokens.access_token,
        tokens.refresh_token.as_deref(),
        tokens.id_token.as_deref(),
        expires,
        &roles,
    )
    .await?;
    Ok(Some(SessionRow {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token.or(current.refresh_token),
        id_token: tokens.id_token.unwrap_or(current.id_token),
        access_expires_at: expires,
        keycloak_roles: roles,
        ..current
    }))
}

/// Ends the session for `reason`.
async fn end(
    state: &AppState,
    row: &SessionRow,
    reason: &'static str,
) -> anyhow::Result<Option<SessionRow>> {
    session::delete(&state.db, &row.id_hash).await?;
    tracing::info!(reason, "session ended");
    Ok(None)
}

/// Keeps the session with its current tokens, giving up the claim.
async fn keep(state: &AppState, row: SessionRow) -> anyhow::Result<Option<SessionRow>> {
    session::release_refresh(&state.db, &row.id_hash).await?;
    Ok(Some(row))
}
