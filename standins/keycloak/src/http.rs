//! Small HTTP helpers shared by the endpoint modules: response shapes, form and cookie parsing.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

pub fn parse_form(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes).unwrap_or_default()
}

pub fn form_get(form: &[(String, String)], key: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// Non-empty parameter value.
pub fn param(form: &[(String, String)], key: &str) -> Option<String> {
    form_get(form, key).filter(|v| !v.is_empty())
}

/// First parameter name that occurs more than once.
pub fn duplicated(form: &[(String, String)]) -> bool {
    let mut seen = std::collections::HashSet::new();
    form.iter().any(|(k, _)| !seen.insert(k.as_str()))
}

/// `(client_id, secret)` from an `Authorization: Basic` header, URL-decoded as Keycloak does.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .then(|| token.trim().to_string())
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// OAuth error body with the token endpoint's no-store headers.
pub fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = json_response(
        status,
        json!({"error": error, "error_description": description}),
    );
    no_store(&mut resp);
    resp
}

pub fn no_store(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// `{"error": "..."}` – JAX-RS exceptions as KeycloakErrorHandler renders them.
pub fn admin_error(status: StatusCode, message: &str) -> Response {
    json_response(status, json!({ "error": message }))
}

/// `{"errorMessage": "..."}` – Keycloak's ErrorResponse shape for domain errors.
pub fn error_message(status: StatusCode, message: &str) -> Response {
    json_response(status, json!({ "errorMessage": message }))
}

pub fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, must-revalidate, max-age=0"),
    );
    resp
}

pub fn redirect(location: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

pub fn not_found() -> Response {
    admin_error(StatusCode::NOT_FOUND, "HTTP 404 Not Found")
}

pub fn realm_not_found() -> Response {
    admin_error(StatusCode::NOT_FOUND, "Realm does not exist")
}

/// Adds `key` to a representation when the value is set (Keycloak leaves
/// unset fields out rather than sending `null`).
pub fn insert_some<T: serde::Serialize>(
    m: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    value: &Option<T>,
) {
    if let Some(v) = value {
        m.insert(key.into(), serde_json::json!(v));
    }
}
