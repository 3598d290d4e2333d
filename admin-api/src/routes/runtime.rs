//! Owns the read side of worker runtime records (written by the supervisor only).

use axum::extract::{Path, State};
use axum::Json;
use mcp_core::runtime::ServerRuntime;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::AppState;

/// Runtime records of every server that has any.
#[utoipa::path(get, path = "/api/runtime", operation_id = "listRuntime", tag = "runtime",
    responses((status = 200, body = [ServerRuntime]), (status = 503, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<ServerRuntime>>> {
    Ok(Json(state.registry.list_runtime().await?))
}

/// Runtime records of one server's workers (empty list until the supervisor runs it).
#[utoipa::path(get, path = "/api/servers/{id}/runtime", operation_id = "getServerRuntime", tag = "runtime",
    params(("id" = String, Path, description = "server id")),
    responses((status = 200, body = ServerRuntime), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ServerRuntime>> {
    let runtime = state.registry.get_runtime(&id).await?;
    if runtime.workers.is_empty() && state.registry.get_server(&id).await?.is_none() {
        return Err(ApiError::server_not_found(&id));
    }
    Ok(Json(runtime))
}
