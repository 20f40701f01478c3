//! The browser login flow (`/auth/*`) and `/api/me`.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::MeView;
use super::flow;
use super::origin::external_base;
use super::session::LOGIN_FLOW_LIFETIME_MINUTES;
use crate::error::PageError;
use crate::extract::AppJson;
use crate::identity::CurrentUser;
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
    let name = login_cookie_name(&state);
    let binding = jar.get(name).map(|c| c.value());
    let started = flow::start(&state, &parts, q.return_to.as_deref(), binding).await?;
    let jar = jar.add(cookie(
        name.to_string(),
        started.binding,
        cookies_secure(&parts, &state),
        time::Duration::minutes(LOGIN_FLOW_LIFETIME_MINUTES),
    ));
    Ok((jar, Redirect::to(started.url.as_str())).into_response())
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(state): State<AppState>,
    Query(q): Query<CallbackQuery>,
    jar: CookieJar,
    parts: Parts,
) -> Result<Response, PageError> {
    let login_name = login_cookie_name(&state);
    let session_name = state.config.session.cookie_name.clone();
    let answer = flow::Answer {
        state: q.state.as_deref(),
        code: q.code.as_deref(),
        error: q.error.as_deref(),
        error_description: q.error_description.as_deref(),
        binding: jar.get(login_name).map(|c| c.value()).unwrap_or_default(),
        previous_session: jar.get(&session_name).map(|c| c.value()),
    };
    let signed_in = flow::finish(&state, &parts, answer).await?;
    let secure = cookies_secure(&parts, &state);
    let jar = jar
        .add(cookie(
            session_name,
            signed_in.session,
            secure,
            time::Duration::try_from(state.config.session.absolute)
                .unwrap_or(time::Duration::hours(12)),
        ))
        .add(removal(login_name.to_string(), secure));
    Ok((jar, Redirect::to(&signed_in.return_to)).into_response())
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
    let sent = form
        .csrf
        .or_else(|| {
            headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let target = flow::sign_out(&state, &parts, &sent).await?;
    let secure = cookies_secure(&parts, &state);
    let jar = jar.add(removal(state.config.session.cookie_name.clone(), secure));
    Ok((jar, Redirect::to(&target)).into_response())
}

#[derive(askama::Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage {
    css: String,
    theme: String,
}

async fn signed_out() -> Result<Response, PageError> {
    let page = SignedOutPage {
        css: crate::web::asset_url("app.css"),
        theme: crate::web::asset_url("theme.js"),
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
    match flow::backchannel_logout(&state, &token).await {
        Ok(()) => (StatusCode::OK, no_store()).into_response(),
        Err(flow::Refused::Invalid(description)) => bad(description),
        Err(flow::Refused::Internal(e)) => e.into_response(),
    }
}
