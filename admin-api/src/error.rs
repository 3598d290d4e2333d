//! Owns the admin API's error responses: `{"error": {"code", "message", "details"?,
//! "request_id"}}` with a stable `code` per variant. A 5xx body is generic; the real
//! error is logged once, inside the request span.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use mcp_core::validate::Problem;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or a query parameter is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: the bearer token is missing or wrong.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 403: the request is understood but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 403: the `Host` is not in MCP_ADMIN_ALLOWED_HOSTS (or there is none).
    #[error("{0}")]
    HostForbidden(String),
    /// 403: the browser's `Origin` is not in MCP_ADMIN_ALLOWED_ORIGINS nor this API's own.
    #[error("{0}")]
    OriginForbidden(String),
    /// 404: no such server, tool or route.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists with other methods.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 413: the body is larger than MCP_ADMIN_MAX_BODY_BYTES.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// 422: the registration is JSON but not valid; every problem is listed.
    #[error("the registration is invalid")]
    Invalid(Vec<Problem>),
    /// 503: Redis cannot be reached.
    #[error("the registry is unavailable")]
    Unavailable(#[source] mcp_core::registry::Error),
    /// 500: a bug or corrupt data; details only in the log.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The `error` object of every error response.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    /// Stable, machine-readable code.
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<Problem>>,
    /// Filled by the request-id middleware.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::HostForbidden(_) | ApiError::OriginForbidden(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::HostForbidden(_) => "host_forbidden",
            ApiError::OriginForbidden(_) => "origin_forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::Invalid(_) => "invalid_registration",
            ApiError::Unavailable(_) => "registry_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn server_not_found(server_id: &str) -> ApiError {
        ApiError::NotFound(format!("server {server_id:?} is not registered"))
    }

    pub fn tool_not_found(server_id: &str, tool_name: &str) -> ApiError {
        ApiError::NotFound(format!(
            "tool {tool_name:?} of server {server_id:?} is not registered"
        ))
    }
}

impl From<mcp_core::registry::Error> for ApiError {
    fn from(err: mcp_core::registry::Error) -> ApiError {
        use mcp_core::registry::Error;
        match err {
            Error::Unavailable(_) => ApiError::Unavailable(err),
            Error::ServerNotFound(id) => ApiError::server_not_found(&id),
            Error::MaskedSecret(ref field) => {
                ApiError::Invalid(vec![Problem::new(field.clone(), err.to_string())])
            }
            Error::Invalid(problems) => ApiError::Invalid(problems),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(event = "admin.request.failed", code = self.code(), error = %error_chain(&self));
        }
        let body = ErrorBody {
            error: ErrorObject {
                code: self.code(),
                message: self.to_string(),
                details: match self {
                    ApiError::Invalid(problems) => Some(problems),
                    _ => None,
                },
                request_id: None,
            },
        };
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/json")], ()).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        // The request-id middleware renders the body with the id filled in.
        response.extensions_mut().insert(body);
        response
    }
}

/// `error: cause: cause...`, for the one log line of a 5xx.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub type ApiResult<T> = Result<T, ApiError>;
