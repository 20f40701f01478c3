//! RP-initiated logout (browser, with confirmation page), non-browser refresh-token logout,
//! and the admin-triggered session logout, all ending sessions with back-channel notices.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::http::{form_get, html, oauth_error, param, parse_form, redirect};
use crate::pages;
use crate::sessions::{self, Notification};
use crate::state::{PendingLogout, Shared, random_id};
use crate::token_endpoint::authenticate_client;
use crate::tokens::{TokenKind, validate};

fn error_page(realm: &str, message: &str) -> Response {
    html(StatusCode::BAD_REQUEST, pages::error(realm, message))
}

fn clear_cookies(mut resp: Response, realm: &str) -> Response {
    for c in sessions::clear_cookies(realm) {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

fn logged_out(realm: &str, redirect_to: Option<&str>, state: Option<&str>) -> Response {
    let resp = match redirect_to {
        Some(uri) => {
            let params: Vec<(&str, String)> = state
                .map(|s| vec![("state", s.to_string())])
                .unwrap_or_default();
            redirect(&crate::urls::append_params(uri, &params, false))
        }
        None => html(
            StatusCode::OK,
            pages::info(realm, "You are logged out", "You are logged out", None),
        ),
    };
    clear_cookies(resp, realm)
}

pub async fn logout(
    State(shared): State<Arc<Shared>>,
    Path(realm_name): Path<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut params = parse_form(query.unwrap_or_default().as_bytes());
    if method == Method::POST {
        let form = parse_form(&body);
        if form.iter().any(|(k, _)| k == "refresh_token") {
            return token_logout(&shared, &realm_name, &headers, &form).await;
        }
        params.extend(form);
    }
    let outcome = browser_logout(&shared, &realm_name, &headers, &params);
    match outcome {
        Ok((notes, resp)) => {
            sessions::deliver(&shared.http, notes).await;
            resp
        }
        Err(resp) => resp,
    }
}

fn browser_logout(
    shared: &Shared,
    realm_name: &str,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<(Vec<Notification>, Response), Response> {
    let mut world = shared.world();
    let Some(realm) = world.realm(realm_name) else {
        return Err(html(
            StatusCode::NOT_FOUND,
            pages::error(realm_name, "Realm does not exist"),
        ));
    };
    if form_get(params, "redirect_uri").is_some() {
        return Err(error_page(realm_name, "Invalid parameter: redirect_uri"));
    }
    let hint = match param(params, "id_token_hint") {
        Some(h) => match validate(
            &world,
            &shared.frontend_base,
            realm_name,
            &h,
            TokenKind::Id,
            false,
        ) {
            Ok(c) => Some(c),
            Err(_) => return Err(error_page(realm_name, "Invalid parameter: id_token_hint")),
        },
        None => None,
    };
    let client_param = param(params, "client_id");
    let redirect_param = param(params, "post_logout_redirect_uri");
    let state = param(params, "state");
    let hint_client = hint
        .as_ref()
        .and_then(|c| c.get("azp"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let (Some(h), Some(c)) = (&hint_client, &client_param) {
        if h != c {
            return Err(error_page(
                realm_name,
                "Parameter client_id different than the client of id_token_hint",
            ));
        }
    }
    if redirect_param.is_some() && hint.is_none() && client_param.is_none() {
        return Err(error_page(realm_name, "Missing parameters: id_token_hint"));
    }
    let client_id = hint_client.or(client_param);
    if let Some(cid) = &client_id {
        let Some(client) = realm.client(cid) else {
            return Err(error_page(realm_name, "Invalid parameter: client_id"));
        };
        if let Some(uri) = &redirect_param {
            if !client.post_logout_redirect_allowed(uri) {
                return Err(error_page(realm_name, "Invalid redirect uri"));
            }
        }
    }
    let browser = sessions::browser_session(&world, headers, realm_name);
    if let Some(claims) = &hint {
        let hinted = claims
            .get("sid")
            .and_then(Value::as_str)
            .filter(|sid| world.sessions.contains_key(*sid))
            .map(str::to_string);
        let targets: Vec<String> = hinted.or(browser).into_iter().collect();
        let notes = sessions::end_sessions(&mut world, &shared.frontend_base, &targets);
        return Ok((
            notes,
            logged_out(realm_name, redirect_param.as_deref(), state.as_deref()),
        ));
    }
    if browser.is_none() {
        return Ok((
            Vec::new(),
            logged_out(realm_name, redirect_param.as_deref(), state.as_deref()),
        ));
    }
    let code = random_id();
    world.logouts.insert(
        code.clone(),
        PendingLogout {
            realm: realm_name.to_string(),
            client_id,
            redirect: redirect_param,
            state,
        },
    );
    let action = format!(
        "{}/protocol/openid-connect/logout/logout-confirm",
        shared.issuer(realm_name)
    );
    Ok((
        Vec::new(),
        html(
            StatusCode::OK,
            pages::logout_confirm(realm_name, &action, &code),
        ),
    ))
}

pub async fn logout_confirm(
    State(shared): State<Arc<Shared>>,
    Path(realm_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let (notes, resp) = {
        let mut world = shared.world();
        let pending = form_get(&form, "session_code")
            .and_then(|c| world.logouts.remove(&c))
            .filter(|p| p.realm == realm_name);
        let Some(pending) = pending else {
            return error_page(&realm_name, "Logout failed");
        };
        let _ = &pending.client_id;
        let targets: Vec<String> = sessions::browser_session(&world, &headers, &realm_name)
            .into_iter()
            .collect();
        let notes = sessions::end_sessions(&mut world, &shared.frontend_base, &targets);
        (
            notes,
            logged_out(
                &realm_name,
                pending.redirect.as_deref(),
                pending.state.as_deref(),
            ),
        )
    };
    sessions::deliver(&shared.http, notes).await;
    resp
}

async fn token_logout(
    shared: &Shared,
    realm_name: &str,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Response {
    let origin = crate::cors::origin(headers);
    let result: Result<(Vec<Notification>, bool), Response> = (|| {
        let mut world = shared.world();
        let Some(realm) = world.realm(realm_name) else {
            return Err(crate::http::realm_not_found());
        };
        let client_id = authenticate_client(realm, form, headers)?;
        let allowed = origin.as_deref().is_some_and(|o| {
            realm
                .client(&client_id)
                .is_some_and(|c| c.origin_allowed(o))
        });
        let Some(token) = param(form, "refresh_token") else {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "No refresh token",
            ));
        };
        let Some(verified) = realm.keys.verify(&token) else {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Invalid refresh token",
            ));
        };
        if verified.claims.get("azp").and_then(Value::as_str) != Some(client_id.as_str()) {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Invalid refresh token. Token client and authorized client don't match",
            ));
        }
        let sid = verified
            .claims
            .get("sid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !world.session_active(&sid, realm_name) {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Session not active",
            ));
        }
        Ok((
            sessions::end_sessions(&mut world, &shared.frontend_base, &[sid]),
            allowed,
        ))
    })();
    match result {
        Ok((notes, allowed)) => {
            sessions::deliver(&shared.http, notes).await;
            crate::cors::apply(
                StatusCode::NO_CONTENT.into_response(),
                origin.as_deref().filter(|_| allowed),
            )
        }
        Err(resp) => resp,
    }
}
