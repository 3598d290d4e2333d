//! Owns `/api/export` and `/api/import`: the whole registry as one JSON document (the
//! PRD's migration step). Export masks secrets unless asked otherwise by a caller that
//! proved itself with the admin token.

use axum::extract::State;
use axum::Json;
use mcp_core::document::Document;
use mcp_core::registry::{ImportMode, ImportSummary};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::body::{JsonValue, Query};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ExportParams {
    /// Include `auth.value` in clear. Allowed only when MCP_ADMIN_TOKEN is configured.
    #[serde(default)]
    pub include_secrets: bool,
}

#[derive(Deserialize, IntoParams)]
pub struct ImportParams {
    /// `merge` (default) upserts; `replace` also deletes what the document lacks.
    #[serde(default)]
    pub mode: ImportMode,
}

/// The whole registry: `{format, version, servers: {id: server}, tools: {id: {name: tool}}}`.
#[utoipa::path(get, path = "/api/export", operation_id = "exportRegistry", tag = "registry", params(ExportParams),
    responses((status = 200, body = Document), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    Query(params): Query<ExportParams>,
) -> ApiResult<Json<Document>> {
    if params.include_secrets && state.admin_token.is_none() {
        return Err(ApiError::Forbidden(
            "includeSecrets needs MCP_ADMIN_TOKEN to be configured".into(),
        ));
    }
    let doc = state.registry.export().await?;
    Ok(Json(if params.include_secrets {
        doc
    } else {
        doc.masked()
    }))
}

/// Imports a document (this hub's export, or the existing hub's map of servers and map
/// of tools per server). The whole document is validated before anything is written.
#[utoipa::path(post, path = "/api/import", operation_id = "importRegistry", tag = "registry", params(ImportParams), request_body = Document,
    responses((status = 200, body = ImportSummary), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn import(
    State(state): State<AppState>,
    Query(params): Query<ImportParams>,
    JsonValue(body): JsonValue,
) -> ApiResult<Json<ImportSummary>> {
    let doc = Document::parse(body).map_err(ApiError::Invalid)?;
    let summary = state.registry.import(&doc, params.mode).await?;
    tracing::info!(
        event = "admin.import",
        servers = summary.servers,
        tools = summary.tools,
        removed_servers = summary.removed_servers,
        removed_tools = summary.removed_tools
    );
    Ok(Json(summary))
}
