//! Bearer-token consumers on the protocol side: userinfo, token introspection and revocation.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::http::{bearer_token, insert_some, json_response, oauth_error, param, parse_form};
use crate::state::Shared;
use crate::token_endpoint::authenticate_client;
use crate::tokens::{TokenKind, validate};

fn invalid_token(realm: &str, description: &str) -> Response {
    let mut resp = oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", description);
    let challenge = format!(
        "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{description}\""
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

pub async fn userinfo(
    State(shared): State<Arc<Shared>>,
    Path(realm_name): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = if method == Method::POST {
        parse_form(&body)
    } else {
        Vec::new()
    };
    let token = bearer_token(&headers).or_else(|| param(&form, "access_token"));
    let origin = crate::cors::origin(&headers);
    let world = shared.world();
    let Some(realm) = world.realm(&realm_name) else {
        return crate::http::realm_not_found();
    };
    let Some(token) = token else {
        // Keycloak answers an empty text/plain 401 with only the realm in
        // the challenge.
        let mut resp = (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain;charset=utf-8")],
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"{realm_name}\"")) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        return resp;
    };
    let claims = match validate(
        &world,
        &shared.frontend_base,
        &realm_name,
        &token,
        TokenKind::Access,
        true,
    ) {
        Ok(c) => c,
        Err(crate::tokens::Rejection::SessionNotActive) => {
            return invalid_token(
                &realm_name,
                "User session not found or doesn't have client attached on it",
            );
        }
        Err(_) => return invalid_token(&realm_name, "Token verification failed"),
    };
    let user_id = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    let Some(user) = realm.user(user_id) else {
        return invalid_token(&realm_name, "User not found");
    };
    let mut m = Map::new();
    m.insert("sub".into(), json!(user.id));
    m.insert("email_verified".into(), json!(user.email_verified));
    if let Some(n) = user.full_name() {
        m.insert("name".into(), json!(n));
    }
    m.insert("preferred_username".into(), json!(user.username));
    insert_some(&mut m, "given_name", &user.first_name);
    insert_some(&mut m, "family_name", &user.last_name);
    insert_some(&mut m, "email", &user.email);
    let allowed = origin.as_deref().is_some_and(|o| {
        claims
            .get("allowed-origins")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter()
                    .any(|v| v.as_str() == Some(o) || v.as_str() == Some("*"))
            })
    });
    crate::cors::apply(
        json_response(StatusCode::OK, Value::Object(m)),
        origin.as_deref().filter(|_| allowed),
    )
}

pub async fn introspect(
    State(shared): State<Arc<Shared>>,
    Path(realm_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let world = shared.world();
    let Some(realm) = world.realm(&realm_name) else {
        return crate::http::realm_not_found();
    };
    let client_id = match authenticate_client(realm, &form, &headers) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    if realm.client(&client_id).is_some_and(|c| c.public_client) {
        return oauth_error(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "Client not allowed.",
        );
    }
    let Some(token) = param(&form, "token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Token not provided.",
        );
    };
    let hint = param(&form, "token_type_hint");
    let kinds = match hint.as_deref() {
        Some("refresh_token") => [TokenKind::Refresh, TokenKind::Access],
        _ => [TokenKind::Access, TokenKind::Refresh],
    };
    let claims = kinds
        .iter()
        .find_map(|k| validate(&world, &shared.frontend_base, &realm_name, &token, *k, true).ok());
    let Some(Value::Object(mut m)) = claims else {
        return json_response(StatusCode::OK, json!({"active": false}));
    };
    // Keycloak 26 answers inactive unless the introspecting client is in
    // the token's audience ("Client '…' is not in the token audience");
    // being its azp is not enough.
    let in_audience = match m.get("aud") {
        Some(Value::String(a)) => a == &client_id,
        Some(Value::Array(a)) => a.iter().any(|a| a.as_str() == Some(client_id.as_str())),
        _ => false,
    };
    if !in_audience {
        return json_response(StatusCode::OK, json!({"active": false}));
    }
    let azp = m.get("azp").cloned().unwrap_or(Value::Null);
    let username = m
        .get("sub")
        .and_then(Value::as_str)
        .and_then(|s| realm.user(s))
        .map(|u| json!(u.username));
    m.insert("client_id".into(), azp);
    if let Some(u) = username {
        m.insert("username".into(), u);
    }
    m.insert("token_type".into(), json!("Bearer"));
    m.insert("active".into(), json!(true));
    json_response(StatusCode::OK, Value::Object(m))
}

pub async fn revoke(
    State(shared): State<Arc<Shared>>,
    Path(realm_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let origin = crate::cors::origin(&headers);
    let notifications = {
        let mut world = shared.world();
        let Some(realm) = world.realm(&realm_name) else {
            return crate::http::realm_not_found();
        };
        let client_id = match authenticate_client(realm, &form, &headers) {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        let allowed = origin.as_deref().is_some_and(|o| {
            realm
                .client(&client_id)
                .is_some_and(|c| c.origin_allowed(o))
        });
        let Some(token) = param(&form, "token") else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Token not provided",
            );
        };
        let Some(verified) = realm.keys.verify(&token) else {
            // RFC 7009: invalid tokens do not cause an error response.
            return crate::cors::apply(
                StatusCode::OK.into_response(),
                origin.as_deref().filter(|_| allowed),
            );
        };
        let claims = verified.claims;
        if claims.get("azp").and_then(Value::as_str) != Some(client_id.as_str()) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "Unmatching clients",
            );
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        world.ledger.revoked.insert(jti);
        let typ = claims.get("typ").and_then(Value::as_str).unwrap_or("");
        let mut notes = Vec::new();
        if typ == "Refresh" || typ == "Offline" {
            if let Some(sid) = claims.get("sid").and_then(Value::as_str) {
                // Revoking a refresh token ends the client's part of the session.
                let empty = match world.sessions.get_mut(sid) {
                    Some(s) => {
                        s.clients.retain(|c| c != &client_id);
                        s.clients.is_empty()
                    }
                    None => false,
                };
                if empty {
                    notes = crate::sessions::end_sessions(
                        &mut world,
                        &shared.frontend_base,
                        &[sid.to_string()],
                    );
                }
            }
        }
        (notes, allowed)
    };
    let (notes, allowed) = notifications;
    crate::sessions::deliver(&shared.http, notes).await;
    crate::cors::apply(
        StatusCode::OK.into_response(),
        origin.as_deref().filter(|_| allowed),
    )
}
