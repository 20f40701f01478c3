//! The token endpoint: client authentication and the authorization_code, refresh_token,
//! password and client_credentials grants, with Keycloak's exact error statuses and bodies.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::http::{
    basic_credentials, duplicated, form_get, json_response, no_store, oauth_error, param,
    parse_form,
};
use crate::keys::{b64url, sha256};
use crate::model::{Realm, now_secs};
use crate::sessions;
use crate::state::{Shared, World};
use crate::tokens::{Grant, Rejection, TokenKind, token_response};

const BAD_CLIENT: &str = "Invalid client or Invalid client credentials";

fn bad_request(error: &str, description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, error, description)
}

/// Authenticates the calling client (`client_secret_basic` or `client_secret_post`).
pub fn authenticate_client(
    realm: &Realm,
    form: &[(String, String)],
    headers: &HeaderMap,
) -> Result<String, Response> {
    let basic = basic_credentials(headers);
    let has_auth_header = headers.contains_key(header::AUTHORIZATION);
    let client_id =
        form_get(form, "client_id").or_else(|| basic.as_ref().map(|(id, _)| id.clone()));
    let secret = form_get(form, "client_secret").or_else(|| basic.as_ref().map(|(_, s)| s.clone()));
    let Some(client_id) = client_id.filter(|c| !c.is_empty()) else {
        if has_auth_header && basic.is_none() {
            let mut resp = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", BAD_CLIENT);
            if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{}\"", realm.name)) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            return Err(resp);
        }
        return Err(bad_request("invalid_client", "Missing client_id parameter"));
    };
    let Some(client) = realm.client(&client_id).filter(|c| c.enabled) else {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            BAD_CLIENT,
        ));
    };
    if client.public_client {
        return Ok(client_id);
    }
    let expected = client.secret.clone().unwrap_or_default();
    match secret {
        Some(s)
            if !expected.is_empty()
                && aws_lc_rs::constant_time::verify_slices_are_equal(
                    s.as_bytes(),
                    expected.as_bytes(),
                )
                .is_ok() =>
        {
            Ok(client_id)
        }
        _ => Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            BAD_CLIENT,
        )),
    }
}

pub async fn token(
    State(shared): State<Arc<Shared>>,
    Path(realm_name): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let origin = crate::cors::origin(&headers);
    let mut world = shared.world();
    world.purge_expired();
    let (resp, client_id) = process(&shared, &mut world, &realm_name, &form, &headers, &addr);
    let allowed = match (&origin, client_id) {
        (Some(o), Some(cid)) => world
            .realm(&realm_name)
            .and_then(|r| r.client(&cid))
            .is_some_and(|c| c.origin_allowed(o)),
        _ => false,
    };
    crate::cors::apply(resp, origin.as_deref().filter(|_| allowed))
}

fn process(
    shared: &Shared,
    world: &mut World,
    realm_name: &str,
    form: &[(String, String)],
    headers: &HeaderMap,
    addr: &SocketAddr,
) -> (Response, Option<String>) {
    let Some(realm) = world.realm(realm_name) else {
        return (crate::http::realm_not_found(), None);
    };
    if !realm.enabled {
        return (
            oauth_error(StatusCode::FORBIDDEN, "access_denied", "Realm not enabled"),
            None,
        );
    }
    if sessions::https_required(&realm.ssl_required, addr, headers) {
        return (
            oauth_error(StatusCode::FORBIDDEN, "invalid_request", "HTTPS required"),
            None,
        );
    }
    let Some(grant_type) = param(form, "grant_type") else {
        return (
            bad_request("invalid_request", "Missing form parameter: grant_type"),
            None,
        );
    };
    if ![
        "authorization_code",
        "refresh_token",
        "password",
        "client_credentials",
    ]
    .contains(&grant_type.as_str())
    {
        return (
            bad_request("unsupported_grant_type", "Unsupported grant_type"),
            None,
        );
    }
    if duplicated(form) {
        return (bad_request("invalid_request", "duplicated parameter"), None);
    }
    let client_id = match authenticate_client(realm, form, headers) {
        Ok(c) => c,
        Err(resp) => return (resp, None),
    };
    if realm.client(&client_id).is_some_and(|c| c.bearer_only) {
        return (
            bad_request("invalid_client", "Bearer-only not allowed"),
            Some(client_id),
        );
    }
    let resp = match grant_type.as_str() {
        "authorization_code" => code_grant(shared, world, realm_name, &client_id, form),
        "refresh_token" => refresh_grant(shared, world, realm_name, &client_id, form),
        "password" => password_grant(shared, world, realm_name, &client_id, form, addr),
        _ => client_credentials_grant(shared, world, realm_name, &client_id, form, addr),
    };
    (resp, Some(client_id))
}

struct IssueArgs<'a> {
    client_id: &'a str,
    user_id: &'a str,
    session_id: Option<&'a str>,
    scope: String,
    nonce: Option<String>,
    jti_prefix: &'a str,
    acr: &'a str,
    remote: String,
}

fn issue(shared: &Shared, world: &mut World, realm_name: &str, args: IssueArgs) -> Response {
    let World {
        realms,
        sessions,
        ledger,
        ..
    } = world;
    let Some(realm) = realms.iter().find(|r| r.name == realm_name) else {
        return crate::http::realm_not_found();
    };
    let (Some(client), Some(user)) = (realm.client(args.client_id), realm.user(args.user_id))
    else {
        return bad_request("invalid_grant", "Invalid user credentials");
    };
    let session = args.session_id.and_then(|s| sessions.get(s));
    let grant = Grant {
        realm,
        client,
        user,
        session,
        issuer: realm.issuer(&shared.frontend_base),
        scope: args.scope,
        nonce: args.nonce,
        jti_prefix: args.jti_prefix.to_string(),
        acr: args.acr.to_string(),
        remote_addr: args.remote,
    };
    let body = token_response(&grant, ledger, session.is_some());
    let mut resp = json_response(StatusCode::OK, body);
    no_store(&mut resp);
    resp
}

fn code_grant(
    shared: &Shared,
    world: &mut World,
    realm_name: &str,
    client_id: &str,
    form: &[(String, String)],
) -> Response {
    let Some(code) = param(form, "code") else {
        return bad_request("invalid_request", "Missing parameter: code");
    };
    let Some(ac) = world.codes.remove(&code).filter(|c| c.realm == realm_name) else {
        return bad_request("invalid_grant", "Code not valid");
    };
    if ac.expires < now_secs() {
        return bad_request("invalid_grant", "Code is expired");
    }
    if !world.session_active(&ac.session_id, realm_name) {
        return bad_request("invalid_grant", "Session not active");
    }
    if ac.client_id != client_id {
        return bad_request(
            "invalid_grant",
            "Auth error: Found different client_id in clientSession",
        );
    }
    let standard_flow = world
        .realm(realm_name)
        .and_then(|r| r.client(client_id))
        .is_some_and(|c| c.standard_flow);
    if !standard_flow {
        return bad_request("invalid_grant", "Client not allowed to exchange code");
    }
    if let Some(expected) = &ac.redirect_param {
        if form_get(form, "redirect_uri").as_deref() != Some(expected.as_str()) {
            return bad_request("invalid_grant", "Incorrect redirect_uri");
        }
    }
    let verifier = param(form, "code_verifier");
    match (&ac.code_challenge, verifier) {
        (Some(_), None) => return bad_request("invalid_grant", "PKCE code verifier not specified"),
        (None, Some(_)) => {
            return bad_request(
                "invalid_grant",
                "PKCE code verifier specified but challenge not present in authorization",
            );
        }
        (Some(challenge), Some(verifier)) => {
            let well_formed = (43..=128).contains(&verifier.len())
                && verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !well_formed {
                return bad_request(
                    "invalid_grant",
                    "PKCE verification failed: Invalid code verifier",
                );
            }
            let computed = match ac.code_challenge_method.as_deref() {
                Some("S256") => b64url(&sha256(verifier.as_bytes())),
                _ => verifier.clone(),
            };
            if &computed != challenge {
                return bad_request("invalid_grant", "PKCE verification failed: Code mismatch");
            }
        }
        (None, None) => {}
    }
    let user_id = world
        .sessions
        .get(&ac.session_id)
        .map(|s| s.user_id.clone())
        .unwrap_or_default();
    sessions::attach_client(world, &ac.session_id, client_id, ac.nonce.clone());
    let remote = world
        .sessions
        .get(&ac.session_id)
        .map(|s| s.remote_addr.clone())
        .unwrap_or_default();
    issue(
        shared,
        world,
        realm_name,
        IssueArgs {
            client_id,
            user_id: &user_id,
            session_id: Some(&ac.session_id),
            scope: ac.scope.clone(),
            nonce: ac.nonce.clone(),
            jti_prefix: "onrtac",
            acr: &ac.acr,
            remote,
        },
    )
}

fn refresh_grant(
    shared: &Shared,
    world: &mut World,
    realm_name: &str,
    client_id: &str,
    form: &[(String, String)],
) -> Response {
    let Some(token) = param(form, "refresh_token") else {
        return bad_request("invalid_request", "No refresh token");
    };
    let Some(realm) = world.realm(realm_name) else {
        return crate::http::realm_not_found();
    };
    let Some(unverified) = realm.keys.verify(&token) else {
        return bad_request("invalid_grant", "Invalid refresh token");
    };
    if unverified.claims.get("azp").and_then(Value::as_str) != Some(client_id) {
        return bad_request(
            "invalid_grant",
            "Invalid refresh token. Token client and authorized client don't match",
        );
    }
    let claims = match crate::tokens::validate(
        world,
        &shared.frontend_base,
        realm_name,
        &token,
        TokenKind::Refresh,
        true,
    ) {
        Ok(c) => c,
        Err(r) => {
            let desc = match r {
                Rejection::Invalid => "Invalid refresh token",
                Rejection::Expired => "Token is not active",
                Rejection::Stale => "Stale token",
                Rejection::SessionNotActive => "Session not active",
                Rejection::UserGone => "User disabled",
            };
            return bad_request("invalid_grant", desc);
        }
    };
    let sid = claims
        .get("sid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let user_id = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let scope = crate::tokens::access_scope_from_refresh(
        claims.get("scope").and_then(Value::as_str).unwrap_or(""),
    );
    let (nonce, remote) = match world.sessions.get_mut(&sid) {
        Some(s) => {
            s.last_refresh = now_secs();
            (s.nonces.get(client_id).cloned(), s.remote_addr.clone())
        }
        None => (None, String::new()),
    };
    issue(
        shared,
        world,
        realm_name,
        IssueArgs {
            client_id,
            user_id: &user_id,
            session_id: Some(&sid),
            scope,
            nonce,
            jti_prefix: "onrtrt",
            acr: "1",
            remote,
        },
    )
}

fn password_grant(
    shared: &Shared,
    world: &mut World,
    realm_name: &str,
    client_id: &str,
    form: &[(String, String)],
    addr: &SocketAddr,
) -> Response {
    let Some(realm) = world.realm(realm_name) else {
        return crate::http::realm_not_found();
    };
    let Some(client) = realm.client(client_id) else {
        return bad_request("invalid_client", BAD_CLIENT);
    };
    if !client.direct_access_grants {
        return bad_request(
            "unauthorized_client",
            "Client not allowed for direct access grants",
        );
    }
    if client.consent_required {
        return bad_request("invalid_client", "Client requires user consent");
    }
    let scope = match crate::tokens::granted_scope(realm, &param(form, "scope").unwrap_or_default())
    {
        Ok(s) => s,
        Err(desc) => return bad_request("invalid_scope", &desc),
    };
    let Some(username) = param(form, "username") else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "Missing parameter: username",
        );
    };
    let Some(user) = realm.find_login_user(&username) else {
        return bad_request("invalid_grant", "Invalid user credentials");
    };
    if !user.enabled {
        return bad_request("invalid_grant", "Account disabled");
    }
    // A locked account answers as a wrong password would, and the attempt
    // is not counted (Keycloak's brute-force detector).
    if realm.login_locked(&user.id) {
        return bad_request("invalid_grant", "Invalid user credentials");
    }
    let password = form_get(form, "password").unwrap_or_default();
    if !user.password.as_ref().is_some_and(|p| p.verify(&password)) {
        let user_id = user.id.clone();
        if let Some(realm) = world.realm_mut(realm_name) {
            realm.record_login_failure(&user_id, &addr.ip().to_string());
        }
        return bad_request("invalid_grant", "Invalid user credentials");
    }
    if !user.required_actions.is_empty() {
        return bad_request("invalid_grant", "Account is not fully set up");
    }
    let user_id = user.id.clone();
    let remote = addr.ip().to_string();
    if let Some(realm) = world.realm_mut(realm_name) {
        realm.clear_login_failures(&user_id);
    }
    let sid = sessions::create_session(world, realm_name, &user_id, &remote, false);
    sessions::attach_client(world, &sid, client_id, None);
    issue(
        shared,
        world,
        realm_name,
        IssueArgs {
            client_id,
            user_id: &user_id,
            session_id: Some(&sid),
            scope,
            nonce: None,
            jti_prefix: "onrtro",
            acr: "1",
            remote,
        },
    )
}

fn client_credentials_grant(
    shared: &Shared,
    world: &mut World,
    realm_name: &str,
    client_id: &str,
    form: &[(String, String)],
    addr: &SocketAddr,
) -> Response {
    let Some(realm) = world.realm(realm_name) else {
        return crate::http::realm_not_found();
    };
    let Some(client) = realm.client(client_id) else {
        return bad_request("invalid_client", BAD_CLIENT);
    };
    let unauthorized =
        |desc: &str| oauth_error(StatusCode::UNAUTHORIZED, "unauthorized_client", desc);
    if client.public_client {
        return unauthorized("Public client not allowed to retrieve service account");
    }
    if client.bearer_only {
        return unauthorized("Bearer-only client not allowed to retrieve service account");
    }
    if !client.service_accounts {
        return unauthorized("Client not enabled to retrieve service account");
    }
    let Some(user) = realm.service_account_user(client_id) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "The associated service account for the client does not exist",
        );
    };
    if !user.enabled {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            &format!("User '{}' disabled", user.username),
        );
    }
    let scope = match crate::tokens::granted_scope(realm, &param(form, "scope").unwrap_or_default())
    {
        Ok(s) => s,
        Err(desc) => return bad_request("invalid_scope", &desc),
    };
    let user_id = user.id.clone();
    issue(
        shared,
        world,
        realm_name,
        IssueArgs {
            client_id,
            user_id: &user_id,
            session_id: None,
            scope,
            nonce: None,
            jti_prefix: "trrtcc",
            acr: "1",
            remote: addr.ip().to_string(),
        },
    )
}

/// Unused-method fallback for the token endpoint (Keycloak answers GET with 405).
pub async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({"error": "HTTP 405 Method Not Allowed"})),
    )
        .into_response()
}
