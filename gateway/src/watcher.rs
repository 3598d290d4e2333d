//! Owns keeping the routing table equal to Redis: a full load at start, after every
//! `Reload` (reconnect, version gap) and on a timer; incremental changes from
//! `mcp:events` in between. Runs as a Pingora `BackgroundService` and honours its
//! shutdown. While Redis is down the last table keeps serving.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mcp_adapter::tool::ServedTool;
use mcp_core::events::EventKind;
use mcp_core::subscription::Update;
use mcp_core::RedisRegistry;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::table::{Routes, Table};

pub struct Watcher {
    pub registry: RedisRegistry,
    pub routes: Arc<Routes>,
    pub reconcile_interval: Duration,
}

impl Watcher {
    pub async fn reload(&self) -> Result<(), mcp_core::registry::Error> {
        let snapshot = self.registry.snapshot().await?;
        let runtime = self.registry.list_runtime().await?;
        let version = snapshot.version;
        let table = Table::from_registry(snapshot, runtime, &self.routes.load());
        let n_servers = table.servers.len();
        self.routes.store(table);
        tracing::debug!(event = "gateway.table.loaded", version, servers = n_servers);
        Ok(())
    }

    fn apply(&self, version: u64, kind: EventKind) {
        self.routes.update(|table| {
            table.version = table.version.max(version);
            match kind {
                EventKind::ServerUpsert { server_id, server } => {
                    table.servers.entry(server_id).or_default().config = Some(Arc::new(server));
                }
                EventKind::ServerDelete { server_id } => {
                    if let Some(route) = table.servers.get_mut(&server_id) {
                        route.config = None;
                        route.tools.clear();
                    }
                }
                EventKind::ToolUpsert {
                    server_id,
                    tool_name,
                    tool,
                } => {
                    let route = table.servers.entry(server_id.clone()).or_default();
                    match ServedTool::compile(&server_id, tool) {
                        Some(compiled) => {
                            route.tools.insert(tool_name, Arc::new(compiled));
                        }
                        None => {
                            route.tools.remove(&tool_name);
                        }
                    }
                }
                EventKind::ToolDelete {
                    server_id,
                    tool_name,
                } => {
                    if let Some(route) = table.servers.get_mut(&server_id) {
                        route.tools.remove(&tool_name);
                    }
                }
                EventKind::WorkerStatus { server_id, worker } => table
                    .servers
                    .entry(server_id)
                    .or_default()
                    .set_record(worker),
                EventKind::WorkerRemoved {
                    server_id,
                    replica_idx,
                } => {
                    if let Some(route) = table.servers.get_mut(&server_id) {
                        route.remove_record(replica_idx);
                    }
                }
                EventKind::ServerRestart { .. } | EventKind::ServerWake { .. } => {}
            }
            table
                .servers
                .retain(|_, route| route.config.is_some() || !route.records.is_empty());
        });
    }

    async fn reload_logged(&self) {
        if let Err(err) = self.reload().await {
            tracing::warn!(event = "gateway.table.reload_failed", error = %err, "serving from the last table");
        }
    }
}

#[async_trait]
impl BackgroundService for Watcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut subscription = self.registry.subscribe();
        let mut timer = tokio::time::interval(self.reconcile_interval);
        timer.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                update = subscription.next() => match update {
                    Some(Update::Reload(reason)) => {
                        tracing::info!(event = "gateway.table.reload", reason = ?reason);
                        self.reload_logged().await;
                    }
                    Some(Update::Event(event)) => {
                        if event.version > self.routes.load().version {
                            self.apply(event.version, event.kind);
                        }
                    }
                    None => return,
                },
                _ = timer.tick() => self.reload_logged().await,
            }
        }
    }
}
