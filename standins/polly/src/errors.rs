//! Polly's error wire format.
//!
//! The SDK's restJson1 error parser takes the error code from the
//! `x-amzn-ErrorType` header (falling back to `code`/`__type` in the body),
//! strips anything after `:` and before `#`, and reads the message from the
//! body's `message`. Service errors here carry the bare code; errors raised by
//! the authentication layer carry the `:http://internal.amazon.com/...`
//! suffix AWS front ends add, so clients' suffix handling is exercised too.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error response in Polly's shape.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Whether `x-amzn-ErrorType` gets the Coral namespace suffix.
    pub coral_suffix: bool,
}

const CORAL_SUFFIX: &str = ":http://internal.amazon.com/coral/com.amazon.coral.service/";

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            coral_suffix: false,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    /// `ValidationException` listing every constraint violation, worded the
    /// way AWS words them.
    pub fn validation(violations: &[String]) -> ApiError {
        let n = violations.len();
        let message = format!(
            "{n} validation error{} detected: {}",
            if n == 1 { "" } else { "s" },
            violations.join("; ")
        );
        ApiError::bad_request("ValidationException", message)
    }

    /// An authentication failure (always 403).
    pub fn auth(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            coral_suffix: true,
            ..ApiError::new(403, code, message)
        }
    }

    pub fn service_failure(status: u16) -> ApiError {
        ApiError::new(
            status,
            "ServiceFailureException",
            "An unknown condition has caused a service failure.",
        )
    }

    pub fn throttling() -> ApiError {
        ApiError::bad_request("ThrottlingException", "Rate exceeded")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message }).to_string();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let code = if self.coral_suffix {
            format!("{}{CORAL_SUFFIX}", self.code)
        } else {
            self.code.to_string()
        };
        if let Ok(v) = HeaderValue::from_str(&code) {
            h.insert("x-amzn-ErrorType", v);
        }
        resp
    }
}
