//! Input extractors whose rejections are our own [`ApiError`], so malformed
//! JSON, query strings and path segments get the same problem+json format
//! with a specific message instead of axum's plain-text defaults.
//!
//! They also refuse text that Postgres cannot store: a NUL character
//! (`\u0000` in JSON, `%00` in a URL) is valid JSON and valid UTF-8, but
//! Postgres refuses it in `text` columns, so it is a 422 naming the field
//! here rather than a 500 at the first write.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// JSON body in, JSON body out.
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::bad_request(
                "Expected a JSON body with `Content-Type: application/json`.",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(
                        "The request body is larger than this server accepts.".into(),
                    )
                } else {
                    ApiError::bad_request("The request body could not be read.")
                }
            })?;
        // Cheap on the common path: only a body that spells `\u0000` is
        // parsed a second time to name the field.
        if has_nul_escape(&bytes)
            && let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(field) = nul_field(&value, "")
        {
            return Err(nul_error(&field));
        }
        // Every body this API takes is an object; serde would otherwise
        // read a struct from an array of its fields in order.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{')
            && serde_json::from_slice::<serde_json::Value>(&bytes).is_ok()
        {
            return Err(ApiError::Validation {
                detail: "The JSON body must be an object.".into(),
                errors: Vec::new(),
            });
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(AppJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `application/json` or any `+json` type, as axum's own extractor accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Ok(mime) = value.parse::<mime::Mime>() else {
        return false;
    };
    mime.type_() == "application"
        && (mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
}

fn has_nul_escape(bytes: &[u8]) -> bool {
    bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
}

/// The path (`message`, `password.value`, `roles[1]`) of the first string
/// holding a NUL character, keys included.
fn nul_field(value: &serde_json::Value, at: &str) -> Option<String> {
    let join = |key: &str| {
        if at.is_empty() {
            key.to_string()
        } else {
            format!("{at}.{key}")
        }
    };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(if at.is_empty() {
            "body".into()
        } else {
            at.into()
        }),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_field(v, &format!("{at}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(join(&k.replace('\0', "")))
            } else {
                nul_field(v, &join(k))
            }
        }),
        _ => None,
    }
}

fn nul_error(field: &str) -> ApiError {
    ApiError::validation(
        field,
        "contains a NUL character (U+0000), which cannot be stored; remove it and send again",
    )
}

/// A body already read that is not the JSON this endpoint expects (the
/// content type and size were checked while reading it).
fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request(format!("The body is not valid JSON: {}", inner(&e)))
        }
        JsonRejection::JsonDataError(e) => ApiError::Validation {
            detail: format!(
                "The JSON body does not match what this endpoint expects: {}",
                inner(&e)
            ),
            errors: Vec::new(),
        },
        other => ApiError::bad_request(other.body_text()),
    }
}

/// serde's message without axum's prefix ("Failed to deserialize…").
fn inner(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        // Most bodies fit in 1 KiB: one allocation instead of the
        // doublings from axum's 128-byte start.
        let mut body = Vec::with_capacity(1024);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => (
                [(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(e) => ApiError::Internal(e.into()).into_response(),
        }
    }
}

/// Query string parsed into `T`.
pub struct AppQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(query) = parts.uri.query()
            && let Some((field, _)) = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(nul_error(&field.replace('\0', "")));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(AppQuery(q.0)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::bad_request(
                format!("Invalid query string: {}", inner(&e)),
            )),
            Err(other) => Err(ApiError::bad_request(other.body_text())),
        }
    }
}

/// Path parameters parsed into `T`.
pub struct AppPath<T>(pub T);

impl<T, S> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.path().to_ascii_lowercase().contains("%00") {
            return Err(nul_error("path"));
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(AppPath(p.0)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiError::NotFound(format!(
                    "No such resource: {}",
                    e.body_text()
                        .trim_start_matches("Invalid URL: ")
                        .trim_start_matches("Cannot parse ")
                )))
            }
            Err(other) => Err(ApiError::Internal(anyhow::anyhow!(other.body_text()))),
        }
    }
}

/// Whitespace as the API description's patterns mean it: `\s` in the
/// validators that read the document (Unicode white space plus the
/// separators U+001C–U+001F), so a value the document calls blank is blank
/// here too.
pub fn is_blank_char(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `s` without leading and trailing [`is_blank_char`] characters.
pub fn trim_blank(s: &str) -> &str {
    s.trim_matches(is_blank_char)
}

#[cfg(test)]
mod blank_tests {
    use super::*;

    #[test]
    fn blank_is_what_a_schema_validator_calls_whitespace() {
        assert_eq!(trim_blank(" \t\u{1c}a b\u{3000}\n"), "a b");
        assert_eq!(trim_blank("\u{1f}\u{a0}"), "");
        assert_eq!(
            trim_blank("\u{1}x"),
            "\u{1}x",
            "control characters are not blank"
        );
    }
}
