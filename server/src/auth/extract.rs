//! Request extractors for principals.
//!
//! [`MaybeUser`] exists because `Option<CurrentUser>` would quietly treat an
//! *invalid* token as "no token": here a broken or expired bearer token is
//! always a 401, and only a request with no credentials at all is anonymous.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::Serialize;
use uuid::Uuid;

use super::origin::{check_same_origin, constant_time_eq, is_unsafe};
use super::refresh::session_for;
use super::subject;
use super::token::{MAX_TOKEN_BYTES, TokenError};
use crate::error::{ApiError, PageError};
use crate::identity::{self, AuthMethod, CurrentUser, RequireRole, RoleName};
use crate::state::AppState;

/// Who is calling, as `GET /api/me` shows it; it borrows from the
/// principal, which is serialized as it is rather than copied first.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeView<'a> {
    pub id: Uuid,
    pub keycloak_id: &'a str,
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub roles: &'a BTreeSet<String>,
    /// `session` or `bearer`.
    pub authenticated_by: &'static str,
}

impl<'a> From<&'a CurrentUser> for MeView<'a> {
    fn from(u: &'a CurrentUser) -> Self {
        MeView {
            id: u.id,
            keycloak_id: &u.keycloak_id,
            username: &u.username,
            email: u.email.as_deref(),
            first_name: &u.first_name,
            last_name: &u.last_name,
            roles: &u.roles,
            authenticated_by: u.method.name(),
        }
    }
}

/// Why authentication failed.
pub(super) enum Failure {
    Token(TokenError),
    BadScheme,
    Disabled,
    Csrf(&'static str),
    /// The token's username belongs to another local user, one whose
    /// Keycloak account is gone (a re-created realm, say).
    UsernameHeld,
    Internal(anyhow::Error),
}

const USERNAME_HELD: &str = "Your username still belongs to another voxgate user, whose Keycloak account no longer exists (was the realm re-created?). An administrator can run `voxgate users reconcile --fix`, which retires that user; then try again.";

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.constraint() == Some("users_username_key") => {
                Failure::UsernameHeld
            }
            _ => Failure::Internal(e.into()),
        }
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Token(TokenError::TooLarge) => ApiError::HeaderTooLarge(format!(
                "The bearer token is larger than {MAX_TOKEN_BYTES} bytes."
            )),
            Failure::Token(TokenError::NoKeys) => ApiError::Unavailable {
                detail:
                    "The identity provider's signing keys are not available yet; try again shortly."
                        .into(),
                retry_after: Some(5),
            },
            Failure::Token(e) => {
                let description = e.to_string().replace('"', "'");
                ApiError::Unauthorized {
                    detail: format!(
                        "Invalid bearer token: {description}. Get a new access token from Keycloak and retry."
                    ),
                    challenge: Some(format!(
                        r#"Bearer error="invalid_token", error_description="{description}""#
                    )),
                }
            }
            Failure::BadScheme => ApiError::Unauthorized {
                detail: "Use `Authorization: Bearer <access token>`.".into(),
                challenge: Some(r#"Bearer error="invalid_request""#.into()),
            },
            Failure::Disabled => ApiError::Forbidden("This account is disabled.".into()),
            Failure::Csrf(why) => ApiError::Forbidden(why.into()),
            Failure::UsernameHeld => ApiError::conflict("username", USERNAME_HELD),
            Failure::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<Failure> for PageError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Disabled => PageError::page(
                StatusCode::FORBIDDEN,
                "Account disabled",
                "This account has been disabled. Ask an administrator if you think this is a mistake.",
            ),
            Failure::UsernameHeld => {
                PageError::page(StatusCode::CONFLICT, "Username in use", USERNAME_HELD)
            }
            Failure::Internal(e) => PageError::internal(e),
            _ => PageError::page(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                "Please sign in again.",
            ),
        }
    }
}

fn bearer_token(parts: &Parts) -> Option<Result<&str, Failure>> {
    let value = parts.headers.get(header::AUTHORIZATION)?;
    if value.len() > MAX_TOKEN_BYTES + 7 {
        return Some(Err(Failure::Token(TokenError::TooLarge)));
    }
    let Ok(text) = value.to_str() else {
        return Some(Err(Failure::BadScheme));
    };
    let Some((scheme, token)) = text.split_once(' ') else {
        return Some(Err(Failure::BadScheme));
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Some(Err(Failure::BadScheme));
    }
    let token = token.trim();
    if token.is_empty() {
        return Some(Err(Failure::Token(TokenError::Malformed("empty token"))));
    }
    Some(Ok(token))
}

async fn from_bearer(token: &str, state: &AppState) -> Result<CurrentUser, Failure> {
    let auth = &state.auth;
    let (claims, key) = auth
        .validator
        .access_token_keyed(token)
        .await
        .map_err(Failure::Token)?;
    let resolved = subject::resolve(
        &state.db,
        &auth.principals,
        &claims,
        key,
        &state.config.oidc.client_id,
    )
    .await?;
    CurrentUser::active(
        &resolved.user,
        resolved.roles.clone(),
        &claims.sub,
        AuthMethod::Bearer,
    )
    .ok_or(Failure::Disabled)
}

async fn from_session(parts: &Parts, state: &AppState) -> Result<Option<CurrentUser>, Failure> {
    let Some(row) = session_for(parts, state).await.map_err(Failure::Internal)? else {
        return Ok(None);
    };
    let user = identity::find_row(&state.db, row.user_id).await?;
    let (client_roles, realm_roles): (Vec<String>, Vec<String>) = row
        .keycloak_roles
        .iter()
        .cloned()
        .partition(|r| r.starts_with("client:"));
    let client_roles: Vec<String> = client_roles
        .iter()
        .map(|r| r.trim_start_matches("client:").to_string())
        .collect();
    let roles = identity::effective_roles(&state.db, user.id, &realm_roles, &client_roles).await?;
    let sub = user.keycloak_id.clone().unwrap_or_default();
    let current = CurrentUser::active(
        &user,
        Arc::new(roles),
        &sub,
        AuthMethod::Session {
            id_hash: row.id_hash.clone(),
            csrf_token: row.csrf_token.clone(),
        },
    )
    .ok_or(Failure::Disabled)?;
    if is_unsafe(&parts.method) {
        check_same_origin(parts, state).map_err(Failure::Csrf)?;
        let sent = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(sent, &row.csrf_token) {
            return Err(Failure::Csrf(
                "Missing or wrong CSRF token: send the X-CSRF-Token header.",
            ));
        }
    }
    Ok(Some(current))
}

/// Bearer first (an `Authorization` header is never ignored), then cookie.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Option<CurrentUser>, Failure> {
    if let Some(token) = bearer_token(parts) {
        return from_bearer(token?, state).await.map(Some);
    }
    from_session(parts, state).await
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match authenticate(parts, state).await? {
            Some(user) => Ok(user),
            None => Err(ApiError::Unauthorized {
                detail: "Sign in, or send `Authorization: Bearer <access token>`.".into(),
                challenge: Some(r#"Bearer realm="voxgate""#.into()),
            }),
        }
    }
}

/// A principal if credentials were sent; invalid credentials still fail.
pub struct MaybeUser(pub Option<CurrentUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(MaybeUser(authenticate(parts, state).await?))
    }
}

impl<R: RoleName> FromRequestParts<AppState> for RequireRole<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        if !user.has_role(R::ROLE) {
            return Err(ApiError::Forbidden(format!(
                "This needs the `{}` role.",
                R::ROLE.as_str()
            )));
        }
        Ok(RequireRole(user, PhantomData))
    }
}

/// The signed-in user of an HTML page; anonymous visitors are sent to sign
/// in and brought back.
pub struct PageUser(pub CurrentUser);

impl FromRequestParts<AppState> for PageUser {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match from_session(parts, state).await? {
            Some(user) => Ok(PageUser(user)),
            None => Err(PageError::LoginRequired {
                return_to: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into()),
            }),
        }
    }
}
