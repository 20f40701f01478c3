//! The browser login flow (`/auth/*`) and `/api/me`.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Failure, MeView};
use super::oidc::{self, ExchangeError};
use super::origin::{check_same_origin, client_address, constant_time_eq, external_base};
use super::refresh::session_for;
use super::session::{self, LOGIN_FLOW_LIFETIME_MINUTES, LoginFlow, NewSession};
use super::subject;
use super::token::Expect;
use crate::error::{ApiError, PageError};
use crate::extract::AppJson;
use crate::identity::{CurrentUser, UserStatus};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
        .route("/auth/signed-out", get(signed_out))
        .route("/auth/backchannel-logout", post(backchannel_logout))
}

pub fn me_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}

/// Who is calling: identity, effective roles and how they authenticated.
#[utoipa::path(get, path = "/api/me", tag = "auth",
    responses((status = 200, body = MeView), (status = 401, body = crate::error::Problem)))]
async fn me(user: CurrentUser) -> axum::response::Response {
    AppJson(MeView::from(&user)).into_response()
}

fn login_cookie_name(state: &AppState) -> &'static str {
    if state.config.session.secure {
        "__Host-voxgate-login"
    } else {
        "voxgate_login"
    }
}

fn cookie(name: String, value: String, secure: bool, max_age: time::Duration) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(max_age)
        .build()
}

/// Cookies are `Secure` when the public URL is https, and also when a
/// trusted proxy says the browser reached us over https.
fn cookies_secure(parts: &Parts, state: &AppState) -> bool {
    state.config.session.secure || external_base(parts, state).starts_with("https://")
}

fn removal(name: String, secure: bool) -> Cookie<'static> {
    cookie(name, String::new(), secure, time::Duration::ZERO)
}

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

#[derive(Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    Query(q): Query<LoginQuery>,
    jar: CookieJar,
    parts: Parts,
) -> Result<Response, PageError> {
    let return_to = safe_return_to(q.return_to.as_deref());
    // A peer with no address of its own (an untrusted one on the Unix
    // socket) is counted all together under one.
    let address = client_address(&parts, &state)
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
    let redirect = format!("{}/auth/callback", external_base(&parts, &state));
    let authz = oidc::authorization(&state.config.oidc, &endpoints, &redirect)
        .map_err(|e| PageError::internal(anyhow::anyhow!(e)))?;
    let name = login_cookie_name(&state);
    let binding = jar
        .get(name)
        .map(|c| c.value().to_string())
        .filter(|v| v.len() >= 40)
        .unwrap_or_else(session::random_token);
    let flow = LoginFlow {
        browser_hash: session::hash(&binding),
        nonce: authz.nonce,
        pkce_verifier: authz.pkce_verifier,
        return_to,
    };
    session::insert_login_flow(&state.db, &authz.state, &flow).await?;
    let jar = jar.add(cookie(
        name.to_string(),
        binding,
        cookies_secure(&parts, &state),
        time::Duration::minutes(LOGIN_FLOW_LIFETIME_MINUTES),
    ));
    Ok((jar, Redirect::to(authz.url.as_str())).into_response())
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn failed(message: impl Into<String>) -> PageError {
    PageError::page(
        StatusCode::BAD_REQUEST,
        "Sign-in could not be completed",
        message,
    )
}

async fn callback(
    State(state): State<AppState>,
    Query(q): Query<CallbackQuery>,
    jar: CookieJar,
    parts: Parts,
) -> Result<Response, PageError> {
    let Some(flow_state) = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 512)
    else {
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
    let login_name = login_cookie_name(&state);
    let binding = jar
        .get(login_name)
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    if !constant_time_eq(
        &hex::encode(session::hash(&binding)),
        &hex::encode(&flow.browser_hash),
    ) {
        return Err(failed(
            "This sign-in was started in another browser. Please sign in again here.",
        ));
    }
    if let Some(error) = q.error.as_deref() {
        let detail = q.error_description.as_deref().unwrap_or("no reason given");
        return Err(failed(format!(
            "The sign-in service refused the sign-in ({error}: {detail})."
        )));
    }
    let Some(code) = q.code.as_deref() else {
        return Err(failed("The sign-in response has no authorization code."));
    };
    let Some(endpoints) = state.auth.provider.endpoints().await else {
        return Err(unavailable_page());
    };
    let redirect = format!("{}/auth/callback", external_base(&parts, &state));
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
    if !user.enabled || user.status != UserStatus::Active {
        return Err(PageError::page(
            StatusCode::FORBIDDEN,
            "Account disabled",
            "This account has been disabled. Ask an administrator if you think this is a mistake.",
        ));
    }

    // A new session id at every sign-in; whatever session the browser had
    // before is dead (session fixation).
    let session_name = state.config.session.cookie_name.clone();
    if let Some(old) = jar.get(&session_name) {
        session::delete(&state.db, &session::hash(old.value())).await?;
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
    let secure = cookies_secure(&parts, &state);
    let jar = jar
        .add(cookie(
            session_name,
            id,
            secure,
            time::Duration::try_from(state.config.session.absolute)
                .unwrap_or(time::Duration::hours(12)),
        ))
        .add(removal(login_name.to_string(), secure));
    Ok((jar, Redirect::to(&flow.return_to)).into_response())
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: Option<String>,
}

async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
    parts: Parts,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    let form: LogoutForm = serde_urlencoded::from_bytes(&body).unwrap_or(LogoutForm { csrf: None });
    let secure = cookies_secure(&parts, &state);
    let base = external_base(&parts, &state);
    let signed_out = format!("{base}/auth/signed-out");
    let row = session_for(&parts, &state)
        .await
        .map_err(PageError::internal)?;
    let Some(row) = row else {
        let jar = jar.add(removal(state.config.session.cookie_name.clone(), secure));
        return Ok((jar, Redirect::to("/auth/signed-out")).into_response());
    };
    let sent = form
        .csrf
        .or_else(|| {
            headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    if check_same_origin(&parts, &state).is_err() || !constant_time_eq(&sent, &row.csrf_token) {
        return Err(PageError::page(
            StatusCode::FORBIDDEN,
            "Sign-out refused",
            "This sign-out request did not come from this site. Use the sign-out button.",
        ));
    }
    session::delete(&state.db, &row.id_hash).await?;
    let jar = jar.add(removal(state.config.session.cookie_name.clone(), secure));
    let target = match state
        .auth
        .provider
        .endpoints()
        .await
        .and_then(|e| e.end_session_endpoint)
    {
        Some(end_session) => {
            let mut url = url::Url::parse(&end_session).map_err(PageError::internal)?;
            url.query_pairs_mut()
                .append_pair("id_token_hint", &row.id_token)
                .append_pair("post_logout_redirect_uri", &signed_out)
                .append_pair("client_id", &state.config.oidc.client_id);
            url.to_string()
        }
        None => "/auth/signed-out".to_string(),
    };
    Ok((jar, Redirect::to(&target)).into_response())
}

#[derive(askama::Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage {
    css: String,
}

async fn signed_out() -> Result<Response, PageError> {
    let page = SignedOutPage {
        css: crate::web::asset_url("app.css"),
    };
    let html = askama::Template::render(&page).map_err(PageError::internal)?;
    Ok(axum::response::Html(html).into_response())
}

#[derive(Deserialize)]
struct BackchannelForm {
    logout_token: Option<String>,
}

/// Keycloak's back-channel logout: ends every local session of the
/// Keycloak session named by the (verified) logout token.
async fn backchannel_logout(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let no_store = || [(header::CACHE_CONTROL, "no-store")];
    let bad = |description: String| {
        (
            StatusCode::BAD_REQUEST,
            no_store(),
            axum::Json(
                serde_json::json!({"error": "invalid_request", "error_description": description}),
            ),
        )
            .into_response()
    };
    let form: BackchannelForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(_) => return bad("the body must be a form with logout_token".into()),
    };
    let Some(token) = form.logout_token else {
        return bad("missing logout_token".into());
    };
    let claims = match state.auth.validator.validate(&token, Expect::Logout).await {
        Ok(c) => c,
        Err(e) => return bad(e.to_string()),
    };
    let jti = claims.jti.as_deref().unwrap_or_default();
    // Remembered as long as the token is accepted (past exp by the leeway),
    // plus a minute for the clocks of the database and of this instance.
    let replayable_until = claims.exp + state.auth.validator.leeway() as i64 + 60;
    match session::remember_logout_token(&state.db, &claims.iss, jti, replayable_until).await {
        Ok(true) => {}
        Ok(false) => return bad("this logout token was already used".into()),
        Err(e) => return ApiError::from(e).into_response(),
    }
    let ended = match claims.sid.as_deref() {
        Some(sid) => session::delete_by_keycloak_sid(&state.db, sid).await,
        None => session::delete_for_keycloak_subject(&state.db, &claims.sub).await,
    };
    match ended {
        Ok(n) => {
            tracing::info!(sessions = n, "back-channel logout");
            (StatusCode::OK, no_store()).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
