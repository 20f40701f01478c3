//! The two error surfaces: [`ApiError`] for JSON clients (RFC 9457
//! `application/problem+json`) and [`PageError`] for browser pages.
//!
//! Handlers return these and never build error responses by hand. A 5xx logs
//! its cause chain once, with the request id, and the client only sees a
//! generic message plus that id: internal text (SQL, upstream bodies) must
//! never reach a response.

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Serialize;

use crate::telemetry::current_request_id;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Input that could not be understood (malformed JSON, bad query…).
    #[error("{0}")]
    BadRequest(String),
    /// Input understood but not acceptable; `field` names the offending one.
    #[error("{detail}")]
    Validation {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("{detail}")]
    Unauthorized {
        detail: String,
        /// `WWW-Authenticate` challenge, e.g. `Bearer error="invalid_token"…`.
        challenge: Option<String>,
    },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{detail}")]
    Conflict {
        detail: String,
        field: Option<String>,
    },
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A body in a format this endpoint does not take; the detail names
    /// the ones it does.
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    HeaderTooLarge(String),
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    /// An upstream (Keycloak, Polly) answered something we cannot use.
    #[error("{detail}")]
    BadGateway {
        detail: String,
        #[source]
        source: Option<anyhow::Error>,
    },
    #[error("{detail}")]
    Unavailable {
        detail: String,
        retry_after: Option<u64>,
    },
    /// A bug or an unexpected failure; the source is logged, never sent.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The problem document (RFC 9457) plus our extensions.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest(detail.into())
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        ApiError::Validation {
            detail: format!("{field}: {message}"),
            errors: vec![FieldError { field, message }],
        }
    }

    pub fn conflict(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Conflict {
            detail: detail.into(),
            field: Some(field.into()),
        }
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError::Unavailable {
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::HeaderTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Validation { .. } => "validation",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed(_) => "method-not-allowed",
            ApiError::Conflict { .. } => "conflict",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::HeaderTooLarge(_) => "header-too-large",
            ApiError::TooManyRequests { .. } => "rate-limited",
            ApiError::BadGateway { .. } => "bad-gateway",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn public_detail(&self) -> String {
        match self {
            ApiError::Internal(_) => {
                "Something went wrong on our side. Quote the request id when reporting it.".into()
            }
            other => other.to_string(),
        }
    }

    /// Logs server-side failures once, with their whole cause chain.
    fn log(&self) {
        match self {
            ApiError::Internal(e) => {
                tracing::error!(error = %chain(e.as_ref()), "request failed");
            }
            ApiError::BadGateway {
                detail,
                source: Some(e),
            } => {
                tracing::error!(%detail, error = %chain(e.as_ref()), "upstream failed");
            }
            ApiError::Unavailable { detail, .. } | ApiError::BadGateway { detail, .. } => {
                tracing::warn!(%detail, "dependency unavailable");
            }
            _ => {}
        }
    }
}

/// `a: b: c` from an error and its sources.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let status = self.status();
        let (errors, field) = match &self {
            ApiError::Validation { errors, .. } => (errors.clone(), None),
            ApiError::Conflict { field, .. } => (Vec::new(), field.clone()),
            _ => (Vec::new(), None),
        };
        let problem = Problem {
            kind: format!("https://voxgate.dev/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.public_detail(),
            instance: None,
            request_id: current_request_id(),
            errors,
            field,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match &self {
            ApiError::Unauthorized {
                challenge: Some(c), ..
            } => {
                if let Ok(v) = HeaderValue::from_str(c) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::TooManyRequests { retry_after, .. }
            | ApiError::Unavailable {
                retry_after: Some(retry_after),
                ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

/// Maps unique-constraint violations to a 409 naming the field.
pub trait ResultExt<T> {
    /// If the error is a unique violation of `constraint`, answer 409 with
    /// `field` and `detail`; anything else passes through.
    fn on_constraint(self, constraint: &str, field: &str, detail: &str) -> Result<T, ApiError>;

    /// The same for several constraints: `(constraint, field, detail)`.
    fn on_constraints(self, map: &[(&str, &str, &str)]) -> Result<T, ApiError>;
}

impl<T, E: Into<ApiError>> ResultExt<T> for Result<T, E>
where
    E: AsConstraint,
{
    fn on_constraint(self, constraint: &str, field: &str, detail: &str) -> Result<T, ApiError> {
        self.on_constraints(&[(constraint, field, detail)])
    }

    fn on_constraints(self, map: &[(&str, &str, &str)]) -> Result<T, ApiError> {
        self.map_err(|e| {
            let hit = e
                .constraint()
                .and_then(|c| map.iter().find(|(name, _, _)| *name == c));
            match hit {
                Some((_, field, detail)) => ApiError::conflict(*field, *detail),
                None => e.into(),
            }
        })
    }
}

pub trait AsConstraint {
    fn constraint(&self) -> Option<&str>;
}

impl AsConstraint for sqlx::Error {
    fn constraint(&self) -> Option<&str> {
        match self {
            sqlx::Error::Database(db) if db.is_unique_violation() => db.constraint(),
            _ => None,
        }
    }
}

/// An error on an HTML route: either send the user to sign in, or show a
/// readable page with the request id.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in: go through the login flow and come back to `return_to`.
    LoginRequired { return_to: String },
    /// A readable error page.
    Page {
        status: StatusCode,
        title: String,
        message: String,
    },
    /// A readable 429 page with `Retry-After`.
    Busy { message: String, retry_after: u64 },
}

impl PageError {
    pub fn page(status: StatusCode, title: impl Into<String>, message: impl Into<String>) -> Self {
        PageError::Page {
            status,
            title: title.into(),
            message: message.into(),
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        let e: anyhow::Error = e.into();
        tracing::error!(error = %chain(e.as_ref()), "page failed");
        PageError::page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "An unexpected error happened on our side. Please try again; if it keeps happening, quote the request id below.",
        )
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        PageError::internal(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::LoginRequired { return_to } => {
                let target = format!(
                    "/auth/login?return_to={}",
                    percent_encoding::utf8_percent_encode(
                        &return_to,
                        percent_encoding::NON_ALPHANUMERIC
                    )
                );
                Redirect::to(&target).into_response()
            }
            PageError::Busy {
                message,
                retry_after,
            } => {
                let mut response = PageError::page(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Please wait a moment",
                    message,
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, retry_after.into());
                response
            }
            PageError::Page {
                status,
                title,
                message,
            } => {
                let page = crate::web::ErrorPage {
                    status: status.as_u16(),
                    title: &title,
                    message: &message,
                    request_id: current_request_id().unwrap_or_default(),
                };
                let html = askama::Template::render(&page).unwrap_or_else(|_| {
                    format!(
                        "<!doctype html><title>{}</title><p>Error {}</p>",
                        status.as_u16(),
                        status.as_u16()
                    )
                });
                (status, Html(html)).into_response()
            }
        }
    }
}
