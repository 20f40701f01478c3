//! The browser sign-in and sign-out use cases: starting a sign-in,
//! finishing it when Keycloak sends the browser back, signing out, and
//! Keycloak's back-channel logout. The handlers in `routes.rs` only read
//! and set cookies and redirect.

use axum::http::StatusCode;
use axum::http::request::Parts;
use time::OffsetDateTime;

use super::extract::Failure;
use super::oidc::{self, ExchangeError};
use super::origin::{check_same_origin, client_address, constant_time_eq, external_base};
use super::refresh::session_for;
use super::session::{self, LoginFlow, NewSession};
use super::subject;
use super::token::Expect;
use crate::error::{ApiError, PageError};
use crate::state::AppState;

/// Only same-site paths: `/x`, never `//x`, `/\x`, a scheme or an encoded
/// variant of those.
pub fn safe_return_to(raw: Option<&str>) -> String {
    let Some(raw) = raw else { return "/".into() };
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    let ok = |s: &str| {
        s.starts_with('/')
            && !s.starts_with("//")
            && !s.contains('\\')
            && !s.chars().any(|c| c.is_control())
            && s.len() <= 2048
    };
    if ok(raw) && ok(&decoded) && !decoded.starts_with("/\\") {
        raw.to_string()
    } else {
        "/".into()
    }
}

fn unavailable_page() -> PageError {
    PageError::page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in is unavailable",
        "The sign-in service (Keycloak) cannot be reached right now. Please try again in a minute.",
    )
}

fn failed(message: impl Into<String>) -> PageError {
    PageError::page(
        StatusCode::BAD_REQUEST,
        "Sign-in could not be completed",
        message,
    )
}

/// A sign-in under way: where to send the browser, and the value binding
/// the flow to this browser (kept in a cookie until Keycloak sends it back).
pub(super) struct Started {
    pub url: String,
    pub binding: String,
}

/// Starts a sign-in that brings the browser back to `return_to` (any
/// unsafe value becomes `/`). `binding` is the browser's binding cookie
/// from an earlier attempt, reused so two tabs signing in at once both
/// finish.
pub(super) async fn start(
    state: &AppState,
    parts: &Parts,
    return_to: Option<&str>,
    binding: Option<&str>,
) -> Result<Started, PageError> {
    let return_to = safe_return_to(return_to);
    // A peer with no address of its own (an untrusted one on the Unix
    // socket) is counted all together under one.
    let address = client_address(parts, state)
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    if let Err(retry_after) = state.auth.sign_ins.admit(address) {
        return Err(PageError::Busy {
            message: "Too many sign-ins were started from your network just now. Please wait a minute and try again.".into(),
            retry_after,
        });
    }
    let Some(endpoints) = state.auth.provider.endpoints().await else {
        return Err(unavailable_page());
    };
    if !state.auth.provider.reachable().await {
        return Err(unavailable_page());
    }
    let redirect = format!("{}/auth/callback", external_base(parts, state));
    let authz = oidc::authorization(&state.config.oidc, &endpoints, &redirect)
        .map_err(|e| PageError::internal(anyhow::anyhow!(e)))?;
    let binding = binding
        .filter(|v| v.len() >= 40)
        .map(str::to_string)
        .unwrap_or_else(session::random_token);
    let flow = LoginFlow {
        browser_hash: session::hash(&binding),
        nonce: authz.nonce,
        pkce_verifier: authz.pkce_verifier,
        return_to,
    };
    session::insert_login_flow(&state.db, &authz.state, &flow).await?;
    Ok(Started {
        url: authz.url.to_string(),
        binding,
    })
}

/// What Keycloak sent the browser back with, and the browser's cookies.
pub(super) struct Answer<'a> {
    pub state: Option<&'a str>,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
    pub error_description: Option<&'a str>,
    /// The binding cookie set when the sign-in started.
    pub binding: &'a str,
    /// A session cookie the browser still had.
    pub previous_session: Option<&'a str>,
}

/// A finished sign-in: the new session's cookie value and where to go.
pub(super) struct SignedIn {
    pub session: String,
    pub return_to: String,
}

/// Finishes a sign-in: the flow is consumed whatever happens, the code is
/// exchanged, both tokens are verified, the user recorded, and a new
/// session replaces whatever session the browser had (session fixation).
pub(super) async fn finish(
    state: &AppState,
    parts: &Parts,
    answer: Answer<'_>,
) -> Result<SignedIn, PageError> {
    let Some(flow_state) = answer.state.filter(|s| !s.is_empty() && s.len() <= 512) else {
        return Err(failed(
            "The sign-in response has no state. Please start again from the sign-in link.",
        ));
    };
    // Single use: the flow row is consumed whatever happens next.
    let Some(flow) = session::take_login_flow(&state.db, flow_state).await? else {
        return Err(failed(
            "This sign-in link has expired or was already used. Please sign in again.",
        ));
    };
    if !constant_time_eq(
        &hex::encode(session::hash(answer.binding)),
        &hex::encode(&flow.browser_hash),
    ) {
        return Err(failed(
            "This sign-in was started in another browser. Please sign in again here.",
        ));
    }
    if let Some(error) = answer.error {
        let detail = answer.error_description.unwrap_or("no reason given");
        return Err(failed(format!(
            "The sign-in service refused the sign-in ({error}: {detail})."
        )));
    }
    let Some(code) = answer.code else {
        return Err(failed("The sign-in response has no authorization code."));
    };
    let Some(endpoints) = state.auth.provider.endpoints().await else {
        return Err(unavailable_page());
    };
    let redirect = format!("{}/auth/callback", external_base(parts, state));
    let tokens = match oidc::exchange_code(
        &state.auth.http,
        &state.config.oidc,
        &endpoints,
        &redirect,
        code,
        &flow.pkce_verifier,
    )
    .await
    {
        Ok(t) => t,
        Err(ExchangeError::Refused(reason)) => {
            tracing::warn!(%reason, "code exchange refused");
            return Err(failed(
                "The sign-in service did not accept this sign-in. Please sign in again.",
            ));
        }
        Err(ExchangeError::Unreachable(reason)) => {
            tracing::warn!(%reason, "code exchange failed");
            return Err(unavailable_page());
        }
    };
    let Some(id_token) = tokens.id_token.as_deref() else {
        return Err(failed("The sign-in service sent no ID token."));
    };
    let validator = &state.auth.validator;
    let id_claims = validator
        .validate(id_token, Expect::Id { nonce: &flow.nonce })
        .await
        .map_err(|e| failed(format!("The ID token was refused: {e}.")))?;
    let access_claims = validator
        .validate(&tokens.access_token, Expect::Access)
        .await
        .map_err(|e| failed(format!("The access token was refused: {e}.")))?;
    if access_claims.sub != id_claims.sub {
        return Err(failed("The tokens describe different users."));
    }
    // ID tokens carry no realm roles; the access token does.
    let mut profile = id_claims.clone();
    profile.realm_access = access_claims.realm_access.clone();
    let user = subject::record_sign_in(&state.db, &profile)
        .await
        .map_err(|e| PageError::from(Failure::from(e)))?;
    if !user.is_active() {
        return Err(Failure::Disabled.into());
    }
    if let Some(old) = answer.previous_session {
        session::delete(&state.db, &session::hash(old)).await?;
    }
    let expires_in =
        time::Duration::try_from(tokens.expires_in).unwrap_or(time::Duration::minutes(1));
    let roles = access_claims.session_roles(&state.config.oidc.client_id);
    let id = session::insert(
        &state.db,
        NewSession {
            user_id: user.id,
            keycloak_sid: id_claims.sid.as_deref().or(access_claims.sid.as_deref()),
            id_token,
            access_token: &tokens.access_token,
            refresh_token: tokens.refresh_token.as_deref(),
            access_expires_at: OffsetDateTime::now_utc() + expires_in,
            keycloak_roles: &roles,
            absolute: state.config.session.absolute,
        },
    )
    .await?;
    tracing::info!(user = %user.username, "signed in");
    Ok(SignedIn {
        session: id,
        return_to: flow.return_to,
    })
}

/// Ends the request's session, if any, when the request proves it comes
/// from this site (same origin and the session's CSRF token `sent`), and
/// says where the browser goes next: Keycloak's end-session endpoint, so
/// the Keycloak session ends too, when it offers one.
pub(super) async fn sign_out(
    state: &AppState,
    parts: &Parts,
    sent: &str,
) -> Result<String, PageError> {
    let Some(row) = session_for(parts, state)
        .await
        .map_err(PageError::internal)?
    else {
        return Ok("/auth/signed-out".to_string());
    };
    if check_same_origin(parts, state).is_err() || !constant_time_eq(sent, &row.csrf_token) {
        return Err(PageError::page(
            StatusCode::FORBIDDEN,
            "Sign-out refused",
            "This sign-out request did not come from this site. Use the sign-out button.",
        ));
    }
    session::delete(&state.db, &row.id_hash).await?;
    let signed_out = format!("{}/auth/signed-out", external_base(parts, state));
    let end_session = state
        .auth
        .provider
        .endpoints()
        .await
        .and_then(|e| e.end_session_endpoint);
    Ok(match end_session {
        Some(end_session) => {
            let mut url = url::Url::parse(&end_session).map_err(PageError::internal)?;
            url.query_pairs_mut()
                .append_pair("id_token_hint", &row.id_token)
                .append_pair("post_logout_redirect_uri", &signed_out)
                .append_pair("client_id", &state.config.oidc.client_id);
            url.to_string()
        }
        None => "/auth/signed-out".to_string(),
    })
}

/// Why a back-channel logout was refused.
pub(super) enum Refused {
    /// The token is invalid or was used before (a 400 for Keycloak).
    Invalid(String),
    Internal(ApiError),
}

impl From<sqlx::Error> for Refused {
    fn from(e: sqlx::Error) -> Self {
        Refused::Internal(e.into())
    }
}

/// Keycloak's back-channel logout: ends every local session of the
/// Keycloak session (or, without `sid`, the user) named by the verified
/// logout token. Each token is accepted once.
pub(super) async fn backchannel_logout(state: &AppState, token: &str) -> Result<(), Refused> {
    let claims = state
        .auth
        .validator
        .validate(token, Expect::Logout)
        .await
        .map_err(|e| Refused::Invalid(e.to_string()))?;
    let jti = claims.jti.as_deref().unwrap_or_default();
    // Remembered as long as the token is accepted (past exp by the leeway),
    // plus a minute for the clocks of the database and of this instance.
    let replayable_until = claims.exp + state.auth.validator.leeway() as i64 + 60;
    if !session::remember_logout_token(&state.db, &claims.iss, jti, replayable_until).await? {
        return Err(Refused::Invalid(
            "this logout token was already used".into(),
        ));
    }
    let ended = match claims.sid.as_deref() {
        Some(sid) => session::delete_by_keycloak_sid(&state.db, sid).await?,
        None => session::delete_for_keycloak_subject(&state.db, &claims.sub).await?,
    };
    tracing::info!(sessions = ended, "back-channel logout");
    Ok(())
}
