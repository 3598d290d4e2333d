//! Owns what this worker serves: its server's configuration and tools, each tool with
//! its compiled argument validator and response JSONPath ([`mcp_adapter::tool`]), swapped atomically as a whole
//! (`Arc<Served>`) so a call sees one consistent version. Tool-list changes are
//! broadcast to MCP sessions and `subscriptions/listen` streams through a watch channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use mcp_adapter::http::HttpAdapter;
use mcp_adapter::invoke::{self, Prepared, Rejection};
use mcp_adapter::tool::Tools;
use mcp_core::model::ServerConfig;
use mcp_core::RedisRegistry;
use serde_json::Value;
use tokio::sync::watch;

/// One consistent view of the server.
#[derive(Default)]
pub struct Served {
    /// `None` until loaded, or when the server is not (or no longer) registered.
    pub config: Option<Arc<ServerConfig>>,
    pub tools: Tools,
    /// Registry version this view reflects.
    pub version: u64,
}

/// Shared by every request handler and the reload task.
pub struct WorkerState {
    pub server_id: String,
    pub registry: RedisRegistry,
    pub adapter: HttpAdapter,
    /// A std `RwLock` held only to clone or swap the `Arc`, never across an await.
    served: RwLock<Arc<Served>>,
    /// Bumped when the tool list changes; MCP sessions and listen streams send
    /// `tools/list_changed`.
    tools_changed: watch::Sender<u64>,
    /// Unix ms of the last call accepted (or of start-up); the supervisor's idle TTL
    /// reads it through `/healthz`. Atomic: written on every call, never locked.
    last_call_ms: AtomicU64,
    /// Where every call's audit entry goes (`MCP_AUDIT_*`); disabled until `run` starts
    /// the writer.
    pub audit: mcp_core::audit::Sink,
    /// How long a hub call holds `tool_call.started` back to send it with the first
    /// result in one write (`MCP_WORKER_STARTED_HOLD_MS`); zero sends it at once.
    pub started_hold: std::time::Duration,
}

impl WorkerState {
    pub fn new(server_id: String, registry: RedisRegistry, adapter: HttpAdapter) -> WorkerState {
        WorkerState {
            server_id,
            registry,
            adapter,
            served: RwLock::new(Arc::new(Served::default())),
            tools_changed: watch::channel(0).0,
            last_call_ms: AtomicU64::new(mcp_core::runtime::unix_millis()),
            audit: mcp_core::audit::Sink::disabled(),
            started_hold: std::time::Duration::ZERO,
        }
    }

    /// Marks that a call arrived now.
    pub fn touch(&self) {
        self.last_call_ms
            .store(mcp_core::runtime::unix_millis(), Ordering::Relaxed);
    }

    /// Milliseconds since the last call (or since start-up).
    pub fn idle_ms(&self) -> u64 {
        mcp_core::runtime::unix_millis().saturating_sub(self.last_call_ms.load(Ordering::Relaxed))
    }

    pub fn current(&self) -> Arc<Served> {
        match self.served.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the view; notifies sessions when the tool list differs.
    pub fn replace(&self, served: Served) {
        let before = self.current();
        let tools_changed = before.tools.len() != served.tools.len()
            || before
                .tools
                .iter()
                .zip(served.tools.iter())
                .any(|((a, ta), (b, tb))| a != b || ta.binding != tb.binding)
            || before.config.as_ref().map(|c| c.active) != served.config.as_ref().map(|c| c.active);
        let new = Arc::new(served);
        match self.served.write() {
            Ok(mut guard) => *guard = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
        if tools_changed {
            self.tools_changed.send_modify(|n| *n += 1);
        }
    }

    /// Applies a change to a copy of the current view.
    pub fn update(&self, version: u64, change: impl FnOnce(&mut Served)) {
        let current = self.current();
        let mut next = Served {
            config: current.config.clone(),
            tools: current.tools.clone(),
            version,
        };
        change(&mut next);
        self.replace(next);
    }

    pub fn watch_tools(&self) -> watch::Receiver<u64> {
        self.tools_changed.subscribe()
    }

    /// [`WorkerState::prepare`], the call to be audited as coming from `caller`.
    pub fn prepare_from(
        &self,
        caller: mcp_adapter::audit::Caller,
        tool_name: &str,
        args: Value,
    ) -> Result<Prepared, Rejection> {
        let mut prepared = self.prepare(tool_name, args)?;
        if self.audit.is_enabled() {
            prepared.audit = Some(mcp_adapter::audit::Ticket {
                sink: self.audit.clone(),
                caller,
            });
        }
        Ok(prepared)
    }

    /// Checks a call to `tool_name` against the current view ([`invoke::prepare`]) and
    /// marks that a call arrived.
    pub fn prepare(&self, tool_name: &str, args: Value) -> Result<Prepared, Rejection> {
        self.touch();
        let served = self.current();
        let server = served
            .config
            .clone()
            .ok_or_else(|| Rejection::UnknownServer(self.server_id.clone()))?;
        let tool = served
            .tools
            .get(tool_name)
            .cloned()
            .ok_or_else(|| Rejection::UnknownTool(tool_name.to_owned()))?;
        invoke::prepare(&self.server_id, server, tool, args)
    }
}
