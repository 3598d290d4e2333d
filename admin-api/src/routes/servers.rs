//! Owns `/api/servers`, `/api/servers/{id}`, restart requests and `/api/stats`.
//! Every response masks `auth.value`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use mcp_core::model::ServerConfig;
use mcp_core::registry::Stats;
use serde::Serialize;
use utoipa::ToSchema;

use crate::body::{self, JsonValue};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::AppState;

/// A server as the API shows it: its id, its tool count and its configuration (masked).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerView {
    pub id: String,
    pub tool_count: usize,
    #[serde(flatten)]
    pub config: ServerConfig,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    pub deleted: String,
    /// Tools deleted with the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools_deleted: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartAccepted {
    pub server_id: String,
    /// Registry version of the published `server.restart` event.
    pub version: u64,
}

/// Every registered server, ordered by id.
#[utoipa::path(get, path = "/api/servers", operation_id = "listServers", tag = "servers",
    responses((status = 200, body = [ServerView]), (status = 503, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<ServerView>>> {
    let snapshot = state.registry.snapshot().await?;
    let views = snapshot
        .servers
        .into_iter()
        .map(|(id, entry)| ServerView {
            id,
            tool_count: entry.tools.len(),
            config: entry.config.masked(),
        })
        .collect();
    Ok(Json(views))
}

/// One server.
#[utoipa::path(get, path = "/api/servers/{id}", operation_id = "getServer", tag = "servers",
    params(("id" = String, Path, description = "server id")),
    responses((status = 200, body = ServerView), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ServerView>> {
    let config = state
        .registry
        .get_server(&id)
        .await?
        .ok_or_else(|| ApiError::server_not_found(&id))?;
    let tool_count = state.registry.list_tools(&id).await?.len();
    Ok(Json(ServerView {
        id,
        tool_count,
        config: config.masked(),
    }))
}

/// Creates (201) or replaces (200) a server and publishes `server.upsert`. A masked
/// `auth.value` keeps the stored secret.
#[utoipa::path(post, path = "/api/servers/{id}", operation_id = "upsertServer", tag = "servers",
    params(("id" = String, Path, description = "server id, [A-Za-z0-9_-]{1,64}")),
    request_body = ServerConfig,
    responses((status = 201, body = ServerView), (status = 200, body = ServerView),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn upsert(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonValue(body): JsonValue,
) -> ApiResult<(StatusCode, Json<ServerView>)> {
    let config = body::server(&id, body)?;
    let outcome = state.registry.upsert_server(&id, config).await?;
    let stored = state
        .registry
        .get_server(&id)
        .await?
        .ok_or_else(|| ApiError::server_not_found(&id))?;
    let tool_count = state.registry.list_tools(&id).await?.len();
    tracing::info!(event = "admin.server.upsert", server = %id, created = outcome.created, version = outcome.version);
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(ServerView {
            id,
            tool_count,
            config: stored.masked(),
        }),
    ))
}

/// Deletes a server and its tools (`tool.delete` events, then `server.delete`).
#[utoipa::path(delete, path = "/api/servers/{id}", operation_id = "deleteServer", tag = "servers",
    params(("id" = String, Path, description = "server id")),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    let tools_deleted = state
        .registry
        .delete_server(&id)
        .await?
        .ok_or_else(|| ApiError::server_not_found(&id))?;
    tracing::info!(event = "admin.server.delete", server = %id, tools_deleted);
    Ok(Json(Deleted {
        deleted: id,
        tools_deleted: Some(tools_deleted),
    }))
}

/// Asks the supervisor to restart the server's workers (publishes `server.restart`).
#[utoipa::path(post, path = "/api/servers/{id}/restart", operation_id = "restartServer", tag = "servers",
    params(("id" = String, Path, description = "server id")),
    responses((status = 202, body = RestartAccepted), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn restart(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<RestartAccepted>)> {
    let version = state.registry.request_restart(&id).await?;
    tracing::info!(event = "admin.server.restart", server = %id, version);
    Ok((
        StatusCode::ACCEPTED,
        Json(RestartAccepted {
            server_id: id,
            version,
        }),
    ))
}

/// Counts of servers and tools, computed from Redis in one script.
#[utoipa::path(get, path = "/api/stats", operation_id = "getStats", tag = "servers",
    responses((status = 200, body = Stats), (status = 503, body = ErrorBody)))]
pub async fn stats(State(state): State<AppState>) -> ApiResult<Json<Stats>> {
    Ok(Json(state.registry.stats().await?))
}
