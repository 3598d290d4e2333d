//! Owns keeping the routing table equal to Redis: a full load at start, after every
//! `Reload` (reconnect, version gap) and on a timer; incremental changes from
//! `mcp:events` in between. Runs as a Pingora `BackgroundService` and honours its
//! shutdown. While Redis is down the last table keeps serving.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mcp_adapter::tool::ServedTool;
use mcp_core::events::EventKind;
use mcp_core::runtime::WorkerRecord;
use mcp_core::subscription::Update;
use mcp_core::RedisRegistry;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::table::{resolve_names, Names, Routes, Table};

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
        // Resolved afresh at every full load, so a name that moves is followed.
        let records: Vec<&WorkerRecord> = runtime.iter().flat_map(|r| &r.workers).collect();
        let names = resolve_names(&records, &Names::new()).await;
        let table = Table::from_registry(snapshot, runtime, &self.routes.load(), names);
        let n_servers = table.servers.len();
        self.routes.store(table);
        tracing::debug!(event = "gateway.table.loaded", version, servers = n_servers);
        Ok(())
    }

    /// The table's names with that of a worker record in `kind` added, when it is a
    /// host name not resolved yet (`None`: nothing new to resolve).
    async fn names_for(&self, kind: &EventKind) -> Option<Names> {
        let EventKind::WorkerStatus { worker, .. } = kind else {
            return None;
        };
        let known = self.routes.load().names.clone();
        let names = resolve_names(&[worker], &known).await;
        (names.len() != known.len()).then_some(names)
    }

    fn apply(&self, version: u64, kind: EventKind, names: Option<Names>) {
        self.routes.update(|table| {
            table.version = table.version.max(version);
            if let Some(names) = names {
                table.names = Arc::new(names);
            }
            let names = Arc::clone(&table.names);
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
                    .set_record(worker, &names),
                EventKind::WorkerRemoved {
                    server_id,
                    replica_idx,
                } => {
                    if let Some(route) = table.servers.get_mut(&server_id) {
                        route.remove_record(replica_idx, &names);
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
                            let names = self.names_for(&event.kind).await;
                            self.apply(event.version, event.kind, names);
                        }
                    }
                    None => return,
                },
                _ = timer.tick() => self.reload_logged().await,
            }
        }
    }
}
