//! Owns keeping [`WorkerState`] equal to the registry: a full load of this server on
//! every `Reload` (first subscription, reconnect, version gap) and on a timer, and
//! incremental changes from `mcp:events` for this server in between. While Redis is
//! away the last loaded view keeps serving.

use std::sync::Arc;
use std::time::Duration;

use mcp_core::events::EventKind;
use mcp_core::subscription::Update;
use tokio_util::sync::CancellationToken;

use mcp_adapter::tool::{compile_tools, ServedTool};

use crate::state::{Served, WorkerState};

/// Loads this server and its tools from Redis into the state.
pub async fn load(state: &WorkerState) -> Result<(), mcp_core::registry::Error> {
    let version = state.registry.version().await?;
    let config = state.registry.get_server(&state.server_id).await?;
    let tools = state.registry.list_tools(&state.server_id).await?;
    state
        .registry
        .refuse_if_lost(version, usize::from(config.is_some()) + tools.len())?;
    let before = state.current();
    let tools = compile_tools(&state.server_id, tools.into_values(), Some(&before.tools));
    let n_tools = before.tools.len();
    state.replace(Served {
        config: config.map(Arc::new),
        tools,
        version,
    });
    let served = state.current();
    if served.tools.len() != n_tools || served.config.is_none() {
        tracing::info!(event = "worker.reloaded", server = %state.server_id, version, tools = served.tools.len(), registered = served.config.is_some());
    }
    Ok(())
}

/// Follows the registry until `shutdown`. The first load happens before this returns
/// control to the event loop, so a worker that answers `/healthz` has its tools.
pub async fn follow(
    state: Arc<WorkerState>,
    reconcile_every: Duration,
    shutdown: CancellationToken,
) {
    let mut subscription = state.registry.subscribe();
    let mut timer = tokio::time::interval(reconcile_every);
    timer.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            update = subscription.next() => match update {
                Some(Update::Reload(reason)) => {
                    tracing::debug!(event = "worker.reload", server = %state.server_id, reason = ?reason);
                    reload_logged(&state).await;
                }
                Some(Update::Event(event)) => apply(&state, event.version, event.kind),
                None => return,
            },
            _ = timer.tick() => reload_logged(&state).await,
        }
    }
}

async fn reload_logged(state: &WorkerState) {
    if let Err(err) = load(state).await {
        tracing::warn!(event = "worker.reload.failed", server = %state.server_id, error = %err, "keeping the last loaded tools");
    }
}

fn apply(state: &WorkerState, version: u64, kind: EventKind) {
    if kind.server_id() != state.server_id || version <= state.current().version {
        return;
    }
    let server_id = state.server_id.clone();
    state.update(version, |served| match kind {
        EventKind::ServerUpsert { server, .. } => served.config = Some(Arc::new(server)),
        EventKind::ServerDelete { .. } => {
            served.config = None;
            served.tools.clear();
        }
        EventKind::ToolUpsert {
            tool, tool_name, ..
        } => match ServedTool::compile(&server_id, tool) {
            Some(compiled) => {
                served.tools.insert(tool_name, Arc::new(compiled));
            }
            None => {
                served.tools.remove(&tool_name);
            }
        },
        EventKind::ToolDelete { tool_name, .. } => {
            served.tools.remove(&tool_name);
        }
        EventKind::ServerRestart { .. }
        | EventKind::ServerWake { .. }
        | EventKind::WorkerStatus { .. }
        | EventKind::WorkerRemoved { .. } => {}
    });
}
