//! Owns how request bodies and query strings become typed values: malformed JSON is a
//! 400, a registration of the wrong shape or with invalid values is a 422 listing every
//! problem (the rules are `mcp_core::validate`'s), an oversized body is a 413, a
//! malformed query string is a 400. Nothing else parses requests.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use mcp_core::model::{ServerConfig, ToolBinding};
use mcp_core::validate;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The raw JSON value of a body (400 when it is not JSON).
pub struct JsonValue(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonValue {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest(format!("could not read the body: {rejection}"))
                }
            })?;
        if bytes.is_empty() {
            return Err(ApiError::BadRequest(
                "the body is empty; a JSON object is expected".into(),
            ));
        }
        serde_json::from_slice(&bytes)
            .map(JsonValue)
            .map_err(|err| ApiError::BadRequest(format!("the body is not valid JSON: {err}")))
    }
}

/// A server registered as `server_id`; every shape and validation problem is a 422.
pub fn server(server_id: &str, value: serde_json::Value) -> Result<ServerConfig, ApiError> {
    validate::parse_server(server_id, value).map_err(ApiError::Invalid)
}

/// A tool registered as `tool_name` (its `name` defaults to it and must equal it); every
/// shape and validation problem is a 422.
pub fn tool(tool_name: &str, value: serde_json::Value) -> Result<ToolBinding, ApiError> {
    validate::parse_tool(value, Some(tool_name)).map_err(ApiError::Invalid)
}

/// The query string as `T`; a malformed one is a 400 in the JSON error contract (axum's
/// own `Query` would answer plain text).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}
