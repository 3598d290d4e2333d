//! Owns `/api/tools/{id}` and `/api/tools/{id}/{tool}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use mcp_core::model::ToolBinding;

use crate::body::{self, JsonValue};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::routes::servers::Deleted;
use crate::AppState;

/// The tools of one server, ordered by name.
#[utoipa::path(get, path = "/api/tools/{id}", operation_id = "listTools", tag = "tools",
    params(("id" = String, Path, description = "server id")),
    responses((status = 200, body = [ToolBinding]), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<ToolBinding>>> {
    if state.registry.get_server(&id).await?.is_none() {
        return Err(ApiError::server_not_found(&id));
    }
    Ok(Json(
        state
            .registry
            .list_tools(&id)
            .await?
            .into_values()
            .collect(),
    ))
}

/// One tool.
#[utoipa::path(get, path = "/api/tools/{id}/{tool}", operation_id = "getTool", tag = "tools",
    params(("id" = String, Path, description = "server id"), ("tool" = String, Path, description = "tool name")),
    responses((status = 200, body = ToolBinding), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path((id, tool)): Path<(String, String)>,
) -> ApiResult<Json<ToolBinding>> {
    match state.registry.get_tool(&id, &tool).await? {
        Some(binding) => Ok(Json(binding)),
        None => Err(ApiError::tool_not_found(&id, &tool)),
    }
}

/// Creates (201) or replaces (200) a tool of a registered server; publishes `tool.upsert`.
/// The body's `name` may be left out; when present it must equal the path's.
#[utoipa::path(post, path = "/api/tools/{id}/{tool}", operation_id = "upsertTool", tag = "tools",
    params(("id" = String, Path, description = "server id"), ("tool" = String, Path, description = "tool name")),
    request_body = ToolBinding,
    responses((status = 201, body = ToolBinding), (status = 200, body = ToolBinding), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn upsert(
    State(state): State<AppState>,
    Path((id, tool)): Path<(String, String)>,
    JsonValue(body): JsonValue,
) -> ApiResult<(StatusCode, Json<ToolBinding>)> {
    let binding = body::tool(&tool, body)?;
    let outcome = state.registry.upsert_tool(&id, binding.clone()).await?;
    tracing::info!(event = "admin.tool.upsert", server = %id, tool = %tool, created = outcome.created, version = outcome.version);
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(binding)))
}

/// What `validate` answers for a tool that would be accepted.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Valid {
    pub valid: bool,
    /// The tool as it would be stored (defaults filled in).
    pub tool: ToolBinding,
}

/// Checks a tool as `upsert` would (every shape and value problem, the input schema
/// compiled as the gateway compiles it) without writing anything: the dashboard's
/// editor shows the problems before saving. A server id that could never be registered
/// is a 404, as for `upsert`.
#[utoipa::path(post, path = "/api/tools/{id}/{tool}/validate", operation_id = "validateTool", tag = "tools",
    params(("id" = String, Path, description = "server id"), ("tool" = String, Path, description = "tool name")),
    request_body = ToolBinding,
    responses((status = 200, body = Valid), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn validate(
    Path((id, tool)): Path<(String, String)>,
    JsonValue(body): JsonValue,
) -> ApiResult<Json<Valid>> {
    if !mcp_core::validate::is_valid_server_id(&id) {
        return Err(ApiError::server_not_found(&id));
    }
    let binding = body::tool(&tool, body)?;
    Ok(Json(Valid {
        valid: true,
        tool: binding,
    }))
}

/// Deletes a tool; publishes `tool.delete`.
#[utoipa::path(delete, path = "/api/tools/{id}/{tool}", operation_id = "deleteTool", tag = "tools",
    params(("id" = String, Path, description = "server id"), ("tool" = String, Path, description = "tool name")),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path((id, tool)): Path<(String, String)>,
) -> ApiResult<Json<Deleted>> {
    if !state.registry.delete_tool(&id, &tool).await? {
        return Err(ApiError::tool_not_found(&id, &tool));
    }
    tracing::info!(event = "admin.tool.delete", server = %id, tool = %tool);
    Ok(Json(Deleted {
        deleted: tool,
        tools_deleted: None,
    }))
}
