//! The one mapping from failures to HTTP responses, shared by the command and
//! query functions. The client learns what it may know; infrastructure
//! details are logged, never returned.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use salestrack_core::command::{FieldError, ValidationErrors};
use salestrack_core::ports::BackendError;
use serde::Serialize;

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `validation_failed`.
    pub error: String,
    pub message: String,
    /// Present for `validation_failed`: every bad field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: one or more fields are invalid.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// 400: the body is not JSON at all.
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// 400: a query parameter or header is invalid.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: no valid bearer token (authentication is on).
    #[error(transparent)]
    Unauthorized(#[from] crate::auth::AuthError),
    /// 403: authenticated, but not allowed this.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 413.
    #[error("the body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 415.
    #[error("the content type must be application/json")]
    UnsupportedMediaType,
    /// 408: the request's body did not arrive within the server's limit.
    #[error("the request body did not arrive within {} ms", after.as_millis())]
    RequestTimeout { after: std::time::Duration },
    /// 503: a backend failed; retryable.
    #[error("a backend is unavailable")]
    Unavailable(#[from] BackendError),
    /// 503: producing a command failed without the bus's answer, so it may
    /// or may not have been recorded (a broker can take a record and die
    /// before it acknowledges). Sending the same request again is safe: the
    /// command's id is derived from it, and a repeat is applied once.
    #[error(
        "the bus did not confirm command {command_id}: it may or may not have been recorded; \
         send the same request again (same order id, same Idempotency-Key), a repeat is applied once"
    )]
    Unconfirmed {
        command_id: salestrack_core::ids::CommandId,
        source: BackendError,
    },
    /// 503: the process already serves as many requests as it may hold;
    /// retryable.
    #[error("the server is at its limit of requests in flight; retry shortly")]
    Overloaded,
    /// 503: the process already holds as many live streams as it may;
    /// retry after [`STREAMS_RETRY_AFTER_S`].
    #[error("the server holds as many live streams as it may; retry later")]
    TooManyStreams,
}

/// `Retry-After` of [`ApiError::TooManyStreams`]: streams last long, so a
/// slot frees less often than a request's.
pub const STREAMS_RETRY_AFTER_S: u64 = 5;

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::MalformedJson(_) | ApiError::BadRequest { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_)
            | ApiError::Unconfirmed { .. }
            | ApiError::Overloaded
            | ApiError::TooManyStreams => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "validation_failed",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Unconfirmed { .. } => "unconfirmed",
            ApiError::Overloaded => "overloaded",
            ApiError::TooManyStreams => "too_many_streams",
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Unavailable(e) => tracing::error!(error = %e, "request failed on a backend"),
            ApiError::Unconfirmed { command_id, source } => {
                tracing::error!(%command_id, error = %source, "the bus did not confirm a command")
            }
            _ => {}
        }
        let body = ErrorBody {
            error: self.code().into(),
            message: self.to_string(),
            fields: match &self {
                ApiError::Validation(errors) => errors.0.clone(),
                _ => Vec::new(),
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::Unauthorized(e) = &self {
            // RFC 6750: the scheme, and why, without echoing the token.
            let error = match e {
                crate::auth::AuthError::Missing => "Bearer".to_owned(),
                crate::auth::AuthError::Invalid(why) => format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    why.replace(['"', '\\'], "'")
                ),
            };
            if let Ok(value) = HeaderValue::from_str(&error) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            let seconds = match self {
                ApiError::TooManyStreams => STREAMS_RETRY_AFTER_S,
                _ => 1,
            };
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
