//! How the real server treats a request before any resource sees it, and
//! the content type it gives admin answers: Quarkus refuses paths that
//! escape unreserved characters, RESTEasy matches admin resources with or
//! without a trailing slash, and admin JSON is sent with its charset.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

pub async fn layer(mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if escapes_unreserved(&path) {
        return crate::http::json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "missingNormalization", "error_description": "Request path not normalized"}),
        );
    }
    let admin = path.starts_with("/admin/");
    if admin && path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let rebuilt = match request.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = rebuilt.parse::<Uri>() {
            *request.uri_mut() = uri;
        }
    }
    let mut response = next.run(request).await;
    let plain_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/json");
    if admin && response.status().is_success() && plain_json {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=utf-8"),
        );
    }
    response
}

/// `%2D` for `-` and the like: an escape that decoding would turn into an
/// unreserved character (RFC 3986 §2.3).
fn escapes_unreserved(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.windows(3).any(|w| {
        w[0] == b'%'
            && std::str::from_utf8(&w[1..])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .is_some_and(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c))
    })
}

#[cfg(test)]
mod tests {
    use super::escapes_unreserved;

    #[test]
    fn only_escaped_unreserved_characters_count() {
        assert!(escapes_unreserved("/admin/realms/vg%2Dx/users"));
        assert!(escapes_unreserved("/realms/%61"));
        assert!(!escapes_unreserved("/admin/realms/a%2Fb/users"));
        assert!(!escapes_unreserved("/admin/realms/vg-x/users"));
    }
}
