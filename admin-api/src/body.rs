//! Owns how request bodies become typed values: malformed JSON is a 400, JSON of the
//! wrong shape is a 422 naming the field, an oversized body is a 413. Nothing else
//! parses request bodies.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use mcp_core::validate::Problem;
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

/// Deserializes a JSON value into a model type; a mismatch is a 422 naming the field.
pub fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { String::new() } else { path };
        ApiError::Invalid(vec![Problem::new(field, err.into_inner().to_string())])
    })
}
