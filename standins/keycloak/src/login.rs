//! Browser login: the authorization endpoint, the HTML username/password form, SSO reuse,
//! the update-password required action, and execute-actions email links.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use crate::http::{form_get, html, param, parse_form, redirect};
use crate::model::now_secs;
use crate::pages;
use crate::passwords::PasswordHash;
use crate::sessions;
use crate::state::{
    AuthCode, AuthRequest, FlowKind, LoginFlow, ResponseMode, Shared, World, random_id,
};

fn error_page(status: StatusCode, realm: &str, message: &str) -> Response {
    html(status, pages::error(realm, message))
}

fn with_cookies(mut resp: Response, cookies: Vec<String>) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// Sends response parameters back to the client in the requested response mode.
fn respond_to_client(req: &AuthRequest, params: &[(&str, String)]) -> Response {
    match req.response_mode {
        ResponseMode::FormPost => html(StatusCode::OK, pages::form_post(&req.redirect_uri, params)),
        ResponseMode::Fragment => {
            redirect(&crate::urls::append_params(&req.redirect_uri, params, true))
        }
        ResponseMode::Query => redirect(&crate::urls::append_params(
            &req.redirect_uri,
            params,
            false,
        )),
    }
}

fn redirect_error(
    req: &AuthRequest,
    issuer: &str,
    error: &str,
    description: Option<&str>,
) -> Response {
    let mut params: Vec<(&str, String)> = vec![("error", error.to_string())];
    if let Some(d) = description {
        params.push(("error_description", d.to_string()));
    }
    if let Some(s) = &req.state {
        params.push(("state", s.clone()));
    }
    params.push(("iss", issuer.to_string()));
    respond_to_client(req, &params)
}

fn valid_pkce_value(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn form_action(shared: &Shared, realm: &str, path: &str, client_id: &str, tab: &str) -> String {
    format!(
        "{}/realms/{realm}/login-actions/{path}?{}",
        shared.base_url,
        crate::urls::query_string(&[
            ("client_id", client_id.to_string()),
            ("tab_id", tab.to_string())
        ])
    )
}

pub async fn authorize(
    State(shared): State<Arc<Shared>>,
    Path(realm_name): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut params = parse_form(query.unwrap_or_default().as_bytes());
    if method == Method::POST {
        params.extend(parse_form(&body));
    }
    let mut world = shared.world();
    world.purge_expired();
    let Some(realm) = world.realm(&realm_name) else {
        return error_page(StatusCode::NOT_FOUND, &realm_name, "Realm does not exist");
    };
    if !realm.enabled {
        return error_page(StatusCode::BAD_REQUEST, &realm_name, "Realm not enabled");
    }
    if sessions::https_required(&realm.ssl_required, &addr, &headers) {
        return error_page(StatusCode::FORBIDDEN, &realm_name, "HTTPS required");
    }
    let issuer = shared.issuer(&realm_name);
    let Some(client_id) = param(&params, "client_id") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            &realm_name,
            "Missing parameter: client_id",
        );
    };
    let Some(client) = realm.client(&client_id) else {
        return error_page(StatusCode::BAD_REQUEST, &realm_name, "Client not found.");
    };
    if !client.enabled {
        return error_page(StatusCode::BAD_REQUEST, &realm_name, "Client disabled.");
    }
    if client.bearer_only {
        return error_page(
            StatusCode::BAD_REQUEST,
            &realm_name,
            "Bearer-only clients are not allowed to initiate browser login.",
        );
    }
    let redirect_param = param(&params, "redirect_uri");
    let redirect_uri = match &redirect_param {
        Some(uri) if client.redirect_uri_allowed(uri) => uri.clone(),
        Some(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &realm_name,
                "Invalid parameter: redirect_uri",
            );
        }
        None => {
            let uris = client.resolved_redirect_uris();
            match uris.as_slice() {
                [only] if !only.contains('*') => only.clone(),
                _ => {
                    return error_page(
                        StatusCode::BAD_REQUEST,
                        &realm_name,
                        "Invalid parameter: redirect_uri",
                    );
                }
            }
        }
    };
    let response_mode_param = param(&params, "response_mode");
    let mut req = AuthRequest {
        client_id: client_id.clone(),
        redirect_uri,
        redirect_param,
        response_mode: ResponseMode::Query,
        state: param(&params, "state"),
        nonce: param(&params, "nonce"),
        scope: String::new(),
        code_challenge: param(&params, "code_challenge"),
        code_challenge_method: param(&params, "code_challenge_method"),
    };
    match response_mode_param.as_deref() {
        None | Some("query") => {}
        Some("fragment") => req.response_mode = ResponseMode::Fragment,
        Some("form_post") => req.response_mode = ResponseMode::FormPost,
        Some(_) => {
            return redirect_error(
                &req,
                &issuer,
                "invalid_request",
                Some("Invalid parameter: response_mode"),
            );
        }
    }
    match param(&params, "response_type").as_deref() {
        None => {
            return redirect_error(
                &req,
                &issuer,
                "invalid_request",
                Some("Missing parameter: response_type"),
            );
        }
        Some("code") => {}
        Some(
            "none"
            | "id_token"
            | "token"
            | "id_token token"
            | "code id_token"
            | "code token"
            | "code id_token token",
        ) => {
            return redirect_error(
                &req,
                &issuer,
                "unauthorized_client",
                Some(
                    "Client is not allowed to initiate browser login with given response_type. Implicit flow is disabled for the client.",
                ),
            );
        }
        Some(_) => {
            return redirect_error(
                &req,
                &issuer,
                "unsupported_response_type",
                Some("Unsupported response_type"),
            );
        }
    }
    if !client.standard_flow {
        return redirect_error(
            &req,
            &issuer,
            "unauthorized_client",
            Some(
                "Client is not allowed to initiate browser login with given response_type. Standard flow is disabled for the client.",
            ),
        );
    }
    if let Some(enforced) = client.pkce_method() {
        if req.code_challenge.is_none() {
            return redirect_error(
                &req,
                &issuer,
                "invalid_request",
                Some("Missing parameter: code_challenge"),
            );
        }
        if req.code_challenge_method.as_deref() != Some(enforced) {
            return redirect_error(
                &req,
                &issuer,
                "invalid_request",
                Some("Invalid parameter: code_challenge_method"),
            );
        }
    }
    match (&req.code_challenge, &req.code_challenge_method) {
        (None, Some(_)) => {
            return redirect_error(
                &req,
                &issuer,
                "invalid_request",
                Some("Missing parameter: code_challenge"),
            );
        }
        (Some(challenge), method) => {
            let method = method.clone().unwrap_or_else(|| "plain".into());
            if method != "plain" && method != "S256" {
                return redirect_error(
                    &req,
                    &issuer,
                    "invalid_request",
                    Some("Invalid parameter: code_challenge_method"),
                );
            }
            if !valid_pkce_value(challenge) {
                return redirect_error(
                    &req,
                    &issuer,
                    "invalid_request",
                    Some("Invalid parameter: code_challenge"),
                );
            }
            req.code_challenge_method = Some(method);
        }
        (None, None) => {}
    }
    req.scope =
        match crate::tokens::granted_scope(realm, &param(&params, "scope").unwrap_or_default()) {
            Ok(s) => s,
            Err(desc) => return redirect_error(&req, &issuer, "invalid_scope", Some(&desc)),
        };
    let prompt = param(&params, "prompt").unwrap_or_default();
    let prompts: Vec<&str> = prompt.split_whitespace().collect();
    let existing = sessions::browser_session(&world, &headers, &realm_name);
    if let Some(sid) = existing.filter(|_| !prompts.contains(&"login")) {
        let user_id = world
            .sessions
            .get(&sid)
            .map(|s| s.user_id.clone())
            .unwrap_or_default();
        let pending = world
            .realm(&realm_name)
            .and_then(|r| r.user(&user_id))
            .is_some_and(|u| !u.required_actions.is_empty());
        if !pending {
            return finish(
                &shared,
                &mut world,
                &realm_name,
                &req,
                &user_id,
                Some(sid),
                &addr,
                "0",
            );
        }
    }
    if prompts.contains(&"none") {
        return redirect_error(&req, &issuer, "login_required", None);
    }
    let email_allowed = realm.login_with_email_allowed;
    let lifespan = realm.access_code_lifespan_login;
    let tab = sessions::new_flow_id();
    let action = form_action(&shared, &realm_name, "authenticate", &client_id, &tab);
    let login_hint = param(&params, "login_hint").unwrap_or_default();
    world.flows.insert(
        tab,
        LoginFlow {
            realm: realm_name.clone(),
            kind: FlowKind::Authorize(req),
            user_id: None,
            expires: now_secs() + lifespan,
        },
    );
    html(
        StatusCode::OK,
        pages::login(&realm_name, &action, &login_hint, None, email_allowed),
    )
}

/// Completes a login: creates or reuses the SSO session, issues a code, redirects.
#[allow(clippy::too_many_arguments)]
fn finish(
    shared: &Shared,
    world: &mut World,
    realm_name: &str,
    req: &AuthRequest,
    user_id: &str,
    existing: Option<String>,
    addr: &SocketAddr,
    acr: &str,
) -> Response {
    let sid = match existing.filter(|sid| {
        world
            .sessions
            .get(sid)
            .is_some_and(|s| s.user_id == user_id)
    }) {
        Some(sid) => sid,
        None => sessions::create_session(world, realm_name, user_id, &addr.ip().to_string(), true),
    };
    sessions::attach_client(world, &sid, &req.client_id, req.nonce.clone());
    let lifespan = world
        .realm(realm_name)
        .map(|r| r.access_code_lifespan)
        .unwrap_or(60);
    let code = format!("{}.{}.{}", random_id(), sid, uuid::Uuid::new_v4());
    world.codes.insert(
        code.clone(),
        AuthCode {
            realm: realm_name.to_string(),
            client_id: req.client_id.clone(),
            redirect_param: req.redirect_param.clone(),
            session_id: sid.clone(),
            nonce: req.nonce.clone(),
            scope: req.scope.clone(),
            code_challenge: req.code_challenge.clone(),
            code_challenge_method: req.code_challenge_method.clone(),
            expires: now_secs() + lifespan,
            acr: acr.to_string(),
        },
    );
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(s) = &req.state {
        params.push(("state", s.clone()));
    }
    params.push(("session_state", sid.clone()));
    params.push(("iss", shared.issuer(realm_name)));
    params.push(("code", code));
    with_cookies(
        respond_to_client(req, &params),
        sessions::session_cookies(realm_name, &sid),
    )
}

fn flow_expired(realm: &str) -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        realm,
        "Your login attempt timed out. Login will start from the beginning.",
    )
}

pub async fn authenticate(
    State(shared): State<Arc<Shared>>,
    Path(realm_name): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let query = parse_form(query.unwrap_or_default().as_bytes());
    let form = parse_form(&body);
    let tab = form_get(&query, "tab_id").unwrap_or_default();
    let mut world = shared.world();
    world.purge_expired();
    let Some(flow) = world
        .flows
        .get(&tab)
        .filter(|f| f.realm == realm_name)
        .cloned()
    else {
        return flow_expired(&realm_name);
    };
    let FlowKind::Authorize(req) = &flow.kind else {
        return flow_expired(&realm_name);
    };
    let Some(realm) = world.realm(&realm_name) else {
        return flow_expired(&realm_name);
    };
    let username = form_get(&form, "username").unwrap_or_default();
    let password = form_get(&form, "password").unwrap_or_default();
    let action = form_action(&shared, &realm_name, "authenticate", &req.client_id, &tab);
    let email_allowed = realm.login_with_email_allowed;
    let user = realm.find_login_user(username.trim());
    // A locked account reads as a wrong password, and the attempt is not
    // counted (Keycloak's brute-force detector).
    let locked = user.is_some_and(|u| realm.login_locked(&u.id));
    let verified =
        !locked && user.is_some_and(|u| u.password.as_ref().is_some_and(|p| p.verify(&password)));
    let Some(user) = user.filter(|_| verified) else {
        if let Some(id) = user.filter(|_| !locked).map(|u| u.id.clone())
            && let Some(realm) = world.realm_mut(&realm_name)
        {
            realm.record_login_failure(&id, &addr.ip().to_string());
        }
        return html(
            StatusCode::OK,
            pages::login(
                &realm_name,
                &action,
                &username,
                Some("Invalid username or password."),
                email_allowed,
            ),
        );
    };
    if !user.enabled {
        return html(
            StatusCode::OK,
            pages::login(
                &realm_name,
                &action,
                &username,
                Some("Account is disabled, contact your administrator."),
                email_allowed,
            ),
        );
    }
    let user_id = user.id.clone();
    let pending = user.required_actions.clone();
    if let Some(realm) = world.realm_mut(&realm_name) {
        realm.clear_login_failures(&user_id);
    }
    if let Some(f) = world.flows.get_mut(&tab) {
        f.user_id = Some(user_id.clone());
    }
    if let Some(resp) = required_action_page(&shared, &realm_name, &req.client_id, &tab, &pending) {
        return resp;
    }
    world.flows.remove(&tab);
    finish(
        &shared,
        &mut world,
        &realm_name,
        req,
        &user_id,
        None,
        &addr,
        "1",
    )
}

/// The page for the first pending required action, or `None` when nothing is pending.
fn required_action_page(
    shared: &Shared,
    realm: &str,
    client_id: &str,
    tab: &str,
    pending: &[String],
) -> Option<Response> {
    let first = pending.first()?;
    if first == "UPDATE_PASSWORD" {
        let action = format!(
            "{}&execution=UPDATE_PASSWORD",
            form_action(shared, realm, "required-action", client_id, tab)
        );
        return Some(html(
            StatusCode::OK,
            pages::update_password(realm, &action, None),
        ));
    }
    let message = match first.as_str() {
        "VERIFY_EMAIL" => {
            "You need to verify your email address to activate your account.".to_string()
        }
        other => format!("Required action {other} is not supported by this server."),
    };
    Some(html(
        StatusCode::OK,
        pages::info(realm, "Action required", &message, None),
    ))
}

pub async fn required_action(
    State(shared): State<Arc<Shared>>,
    Path(realm_name): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let query = parse_form(query.unwrap_or_default().as_bytes());
    let form = parse_form(&body);
    let tab = form_get(&query, "tab_id").unwrap_or_default();
    let client_id = form_get(&query, "client_id").unwrap_or_default();
    let mut world = shared.world();
    world.purge_expired();
    let Some(flow) = world
        .flows
        .get(&tab)
        .filter(|f| f.realm == realm_name)
        .cloned()
    else {
        return flow_expired(&realm_name);
    };
    let Some(user_id) = flow.user_id.clone() else {
        return flow_expired(&realm_name);
    };
    let new = form_get(&form, "password-new").unwrap_or_default();
    let confirm = form_get(&form, "password-confirm").unwrap_or_default();
    let action = format!(
        "{}&execution=UPDATE_PASSWORD",
        form_action(&shared, &realm_name, "required-action", &client_id, &tab)
    );
    if new.is_empty() {
        return html(
            StatusCode::OK,
            pages::update_password(&realm_name, &action, Some("Please specify password.")),
        );
    }
    if new != confirm {
        return html(
            StatusCode::OK,
            pages::update_password(&realm_name, &action, Some("Passwords don't match.")),
        );
    }
    let Some(user) = world
        .realm_mut(&realm_name)
        .and_then(|r| r.user_mut(&user_id))
    else {
        return flow_expired(&realm_name);
    };
    user.password = Some(PasswordHash::create(&new));
    user.remove_required_action("UPDATE_PASSWORD");
    let pending = user.required_actions.clone();
    match flow.kind {
        FlowKind::Authorize(req) => {
            if let Some(resp) =
                required_action_page(&shared, &realm_name, &req.client_id, &tab, &pending)
            {
                return resp;
            }
            world.flows.remove(&tab);
            finish(
                &shared,
                &mut world,
                &realm_name,
                &req,
                &user_id,
                None,
                &addr,
                "1",
            )
        }
        FlowKind::ActionToken {
            actions,
            redirect_uri,
        } => {
            let remaining: Vec<String> = actions
                .into_iter()
                .filter(|a| a != "UPDATE_PASSWORD")
                .collect();
            world.flows.remove(&tab);
            complete_actions(
                &mut world,
                &realm_name,
                &user_id,
                &remaining,
                redirect_uri.as_deref(),
            )
        }
    }
}

/// Applies the non-interactive actions of an email link and shows the final page.
fn complete_actions(
    world: &mut World,
    realm: &str,
    user_id: &str,
    actions: &[String],
    redirect: Option<&str>,
) -> Response {
    if let Some(user) = world.realm_mut(realm).and_then(|r| r.user_mut(user_id)) {
        for a in actions {
            if a == "VERIFY_EMAIL" {
                user.email_verified = true;
            }
            user.remove_required_action(a);
        }
    }
    html(
        StatusCode::OK,
        pages::info(
            realm,
            "Account updated",
            "Your account has been updated.",
            redirect,
        ),
    )
}

pub async fn action_token(
    State(shared): State<Arc<Shared>>,
    Path(realm_name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = parse_form(query.unwrap_or_default().as_bytes());
    let key = form_get(&query, "key").unwrap_or_default();
    let mut world = shared.world();
    let Some(realm) = world.realm(&realm_name) else {
        return error_page(StatusCode::NOT_FOUND, &realm_name, "Realm does not exist");
    };
    let claims = realm
        .keys
        .verify(&key)
        .filter(|v| v.alg == "HS512")
        .map(|v| v.claims)
        .filter(|c| c.get("typ").and_then(Value::as_str) == Some("execute-actions"));
    let Some(claims) = claims else {
        return error_page(StatusCode::BAD_REQUEST, &realm_name, "Invalid link.");
    };
    if claims.get("exp").and_then(Value::as_i64).unwrap_or(0) <= now_secs() {
        return error_page(
            StatusCode::BAD_REQUEST,
            &realm_name,
            "Action expired. Please continue with login now.",
        );
    }
    let user_id = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !realm.user(&user_id).is_some_and(|u| u.enabled) {
        return error_page(StatusCode::BAD_REQUEST, &realm_name, "Invalid link.");
    }
    let actions: Vec<String> = claims
        .get("rqac")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let redirect_uri = claims
        .get("reduri")
        .and_then(Value::as_str)
        .map(str::to_string);
    let client_id = claims
        .get("azp")
        .and_then(Value::as_str)
        .unwrap_or("account")
        .to_string();
    let lifespan = realm.access_code_lifespan_login;
    if actions.iter().any(|a| a == "UPDATE_PASSWORD") {
        let tab = sessions::new_flow_id();
        world.flows.insert(
            tab.clone(),
            LoginFlow {
                realm: realm_name.clone(),
                kind: FlowKind::ActionToken {
                    actions,
                    redirect_uri,
                },
                user_id: Some(user_id),
                expires: now_secs() + lifespan,
            },
        );
        let action = format!(
            "{}&execution=UPDATE_PASSWORD",
            form_action(&shared, &realm_name, "required-action", &client_id, &tab)
        );
        return html(
            StatusCode::OK,
            pages::update_password(&realm_name, &action, None),
        );
    }
    complete_actions(
        &mut world,
        &realm_name,
        &user_id,
        &actions,
        redirect_uri.as_deref(),
    )
}
