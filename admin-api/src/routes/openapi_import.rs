//! Owns `POST /api/servers/{id}/openapi`: tools imported from an OpenAPI 3.0/3.1
//! document given in the body (as an object, or as JSON or YAML text) or by URL, with
//! the options of [`crate::openapi_import`]. The body is JSON like every admin write
//! (the gateway requires a JSON content type), so a YAML document travels as a string.

use axum::extract::{Path, State};
use axum::Json;
use mcp_core::registry::ImportMode;
use mcp_core::validate::Problem;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::body::JsonValue;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::openapi_import::{self, Options, Report, Target};
use crate::AppState;

/// The largest document taken, inline or fetched (the GitHub API's is about 12 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportRequest {
    /// The document: an object, or its JSON or YAML text.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub document: Option<Value>,
    /// Or where to fetch it (http or https).
    #[serde(default)]
    pub url: Option<String>,
    /// For a server not registered yet (else the document's first server URL).
    #[serde(default)]
    pub base_url: Option<String>,
    /// `merge` (default) keeps the server's other tools; `replace` removes them.
    #[serde(default)]
    pub mode: ImportMode,
    /// Say what would be created, changed and removed, and write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Only operations with one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only these operations (operationId, or the generated name).
    #[serde(default)]
    pub operations: Vec<String>,
    /// Put before every tool name.
    #[serde(default)]
    pub prefix: String,
}

/// Imports one tool per operation of an OpenAPI document into server `id` (registered
/// first when new). Every tool is validated before anything is written.
#[utoipa::path(post, path = "/api/servers/{id}/openapi", operation_id = "importOpenApiTools", tag = "tools", request_body = ImportRequest,
    params(("id" = String, Path, description = "server id")),
    responses((status = 200, body = Report), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn import(
    State(state): State<AppState>,
    Path(server_id): Path<String>,
    JsonValue(body): JsonValue,
) -> ApiResult<Json<Report>> {
    // serde would take an array as the fields in order.
    if !body.is_object() {
        return Err(ApiError::BadRequest(
            "the import request must be a JSON object".into(),
        ));
    }
    let request: ImportRequest = serde_json::from_value(body)
        .map_err(|err| ApiError::BadRequest(format!("the import request is not valid: {err}")))?;
    let doc = match (request.document, &request.url) {
        (Some(Value::String(text)), None) => openapi_import::parse_document(text.as_bytes())
            .map_err(|err| invalid("document", err))?,
        (Some(doc), None) => doc,
        (None, Some(url)) => fetch(url).await?,
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of document and url".into(),
            ))
        }
    };
    let options = Options {
        tags: request.tags,
        operations: request.operations,
        prefix: request.prefix,
    };
    let target = Target {
        server_id,
        base_url: request.base_url,
        mode: request.mode,
        dry_run: request.dry_run,
    };
    Ok(Json(
        openapi_import::import(&state.registry, &doc, &options, &target).await?,
    ))
}

/// A 422 naming `field`: the request has the documented shape, but its document cannot
/// be read or fetched.
fn invalid(field: &str, message: String) -> ApiError {
    ApiError::Invalid(vec![Problem::new(field, message)])
}

/// The document at `url` (http or https, 30 s, at most [`MAX_DOCUMENT_BYTES`]).
async fn fetch(url: &str) -> Result<Value, ApiError> {
    let parsed = url::Url::parse(url).map_err(|err| invalid("url", format!("{url:?}: {err}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("url", format!("{url:?}: only http and https")));
    }
    let failed = |err: String| invalid("url", format!("fetching {url}: {err}"));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let mut response = client
        .get(parsed)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(failed(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
        }
    }
    openapi_import::parse_document(&bytes).map_err(failed)
}
