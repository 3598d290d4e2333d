//! Owns the gateway's routing table: servers, their tools with compiled validators, and
//! the endpoints of their routable workers. Read on every request without a lock (an
//! `ArcSwap` of an immutable table); replaced as a whole by the watcher, never by a
//! request. A change counter lets requests wait for a worker to (re)appear. Workers
//! advertised by host name are resolved by the watcher ([`resolve_names`], on Tokio's
//! resolver, off the runtime's threads) before they enter a table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use mcp_adapter::tool::{compile_tools, Tools};
use mcp_core::model::ServerConfig;
use mcp_core::runtime::{ServerRuntime, WorkerRecord, WorkerStatus};
use tokio::sync::watch;

/// A worker the gateway may send calls to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub replica_idx: u32,
    pub addr: SocketAddr,
    /// `addr` as text (`127.0.0.1:9100`), formatted once here for the `Host` header and
    /// the logs' `target_url` of every call.
    pub host: Arc<str>,
    /// The worker process: a restarted worker on the same port is a new endpoint.
    pub pid: Option<u32>,
}

/// Everything the gateway knows of one server.
#[derive(Clone, Default)]
pub struct ServerRoute {
    /// `None` when only runtime records exist (the server was deleted).
    pub config: Option<Arc<ServerConfig>>,
    pub tools: Tools,
    /// Routable workers, ordered by replica.
    pub workers: Vec<Endpoint>,
    /// Every runtime record, by replica (status decides routability).
    pub records: HashMap<u32, WorkerRecord>,
}

impl ServerRoute {
    /// True when the server's workers were stopped as idle (a call should wake it): some
    /// record says `idle` and every other one `pending` (a replica held for room under
    /// `MCP_WORKER_MAX`, which only a wake starts again).
    pub fn is_idle(&self) -> bool {
        let statuses = || self.records.values().map(|r| r.status);
        statuses().any(|s| s == WorkerStatus::Idle)
            && statuses().all(|s| matches!(s, WorkerStatus::Idle | WorkerStatus::Pending))
    }

    pub fn set_record(&mut self, record: WorkerRecord, names: &Names) {
        self.records.insert(record.replica_idx, record);
        self.refresh_workers(names);
    }

    pub fn remove_record(&mut self, replica_idx: u32, names: &Names) {
        self.records.remove(&replica_idx);
        self.refresh_workers(names);
    }

    fn refresh_workers(&mut self, names: &Names) {
        let mut workers: Vec<Endpoint> = self
            .records
            .values()
            .filter(|r| r.status.is_routable())
            .filter_map(|r| {
                let addr = address(r, names)?;
                Some(Endpoint {
                    replica_idx: r.replica_idx,
                    addr,
                    host: addr.to_string().into(),
                    pid: r.pid,
                })
            })
            .collect();
        workers.sort_by_key(|e| e.replica_idx);
        self.workers = workers;
    }
}

/// Addresses of workers advertised by name (`host:port` -> its first address).
pub type Names = HashMap<String, SocketAddr>;

/// A record's worker address: its endpoint when that is an address, else the name's
/// resolved address (`None`, not routable, when it did not resolve).
fn address(record: &WorkerRecord, names: &Names) -> Option<SocketAddr> {
    let endpoint = record.endpoint()?;
    match endpoint.parse() {
        Ok(addr) => Some(addr),
        Err(_) => names.get(&endpoint).copied(),
    }
}

/// Resolves the endpoints of `records` that are host names and not in `known`, with
/// Tokio's resolver (it runs the blocking lookup on the blocking pool, so a slow DNS
/// never stalls a runtime thread), and returns `known` with them added. A name that
/// does not resolve stays out (its worker is not routable) and is logged.
pub async fn resolve_names(records: &[&WorkerRecord], known: &Names) -> Names {
    let endpoints: Vec<String> = records.iter().filter_map(|r| r.endpoint()).collect();
    let mut names = known.clone();
    for endpoint in endpoints {
        if names.contains_key(&endpoint) || endpoint.parse::<SocketAddr>().is_ok() {
            continue;
        }
        let resolved = tokio::net::lookup_host(endpoint.as_str())
            .await
            .map(|mut addrs| addrs.next());
        match resolved {
            Ok(Some(addr)) => {
                names.insert(endpoint, addr);
            }
            Ok(None) => {
                tracing::warn!(event = "gateway.worker.unresolved", endpoint = %endpoint, error = "no address")
            }
            Err(err) => {
                tracing::warn!(event = "gateway.worker.unresolved", endpoint = %endpoint, error = %err)
            }
        }
    }
    names
}

/// The whole table at one registry version.
#[derive(Clone, Default)]
pub struct Table {
    pub version: u64,
    pub servers: HashMap<String, ServerRoute>,
    /// The workers' host names resolved so far (see [`resolve_names`]).
    pub names: Arc<Names>,
}

impl Table {
    /// The table of a registry snapshot. A tool whose binding is the same as in
    /// `previous` keeps its compiled schema ([`compile_tools`]): the watcher reloads
    /// every `MCP_GATEWAY_RECONCILE_INTERVAL`.
    pub fn from_registry(
        snapshot: mcp_core::registry::Snapshot,
        runtime: Vec<ServerRuntime>,
        previous: &Table,
        names: Names,
    ) -> Table {
        let mut servers: HashMap<String, ServerRoute> =
            HashMap::with_capacity(snapshot.servers.len());
        for (server_id, entry) in snapshot.servers {
            let known = previous.servers.get(&server_id).map(|s| &s.tools);
            let tools = compile_tools(&server_id, entry.tools.into_values(), known);
            servers.insert(
                server_id,
                ServerRoute {
                    config: Some(Arc::new(entry.config)),
                    tools,
                    ..Default::default()
                },
            );
        }
        for runtime in runtime {
            let route = servers.entry(runtime.server_id).or_default();
            for record in runtime.workers {
                route.records.insert(record.replica_idx, record);
            }
            route.refresh_workers(&names);
        }
        Table {
            version: snapshot.version,
            servers,
            names: Arc::new(names),
        }
    }
}

/// The shared handle: lock-free reads, whole-table swaps, change notifications.
pub struct Routes {
    /// Swapped atomically by the watcher; requests load a snapshot per use.
    table: ArcSwap<Table>,
    changed: watch::Sender<u64>,
    /// True once a first load succeeded (the gateway answers 503 before that).
    loaded: std::sync::atomic::AtomicBool,
}

impl Default for Routes {
    fn default() -> Routes {
        Routes {
            table: ArcSwap::from_pointee(Table::default()),
            changed: watch::channel(0).0,
            loaded: Default::default(),
        }
    }
}

impl Routes {
    pub fn load(&self) -> Arc<Table> {
        self.table.load_full()
    }

    pub fn store(&self, table: Table) {
        self.table.store(Arc::new(table));
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Applies a change to a copy of the current table and swaps it in.
    pub fn update(&self, change: impl FnOnce(&mut Table)) {
        let mut next = Table::clone(&self.table.load());
        change(&mut next);
        self.store(next);
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkerStatus::*;

    fn route(statuses: &[WorkerStatus]) -> ServerRoute {
        let mut route = ServerRoute::default();
        for (replica_idx, status) in (0..).zip(statuses) {
            route.set_record(
                WorkerRecord::new(replica_idx, *status, "sup-a"),
                &Names::new(),
            );
        }
        route
    }

    #[test]
    fn a_server_is_idle_when_a_record_is_idle_and_the_others_wait() {
        for (statuses, idle) in [
            (&[][..], false),
            (&[Idle][..], true),
            (&[Idle, Idle][..], true),
            // A replica held for room when its server went idle must not keep it asleep.
            (&[Idle, Pending][..], true),
            (&[Pending, Idle, Pending][..], true),
            // Over the cap and owner-less, or woken and waiting for room: not idle.
            (&[Pending][..], false),
            (&[Pending, Pending][..], false),
            // A replica on its way up or still serving: nothing to wake.
            (&[Idle, Starting][..], false),
            (&[Idle, Running][..], false),
            (&[Idle, Restarting][..], false),
            (&[Idle, Stopped][..], false),
        ] {
            assert_eq!(route(statuses).is_idle(), idle, "{statuses:?}");
        }
    }

    fn snapshot(description: &str) -> mcp_core::registry::Snapshot {
        let config: ServerConfig =
            serde_json::from_value(serde_json::json!({"baseUrl": "http://127.0.0.1:9"}))
                .expect("server");
        let tool: mcp_core::model::ToolBinding = serde_json::from_value(serde_json::json!({
            "name": "get", "method": "GET", "pathTemplate": "/x", "description": description,
            "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}}
        }))
        .expect("tool");
        let entry = mcp_core::registry::ServerEntry {
            config,
            tools: [("get".to_owned(), tool)].into(),
        };
        mcp_core::registry::Snapshot {
            version: 1,
            servers: [("api".to_owned(), entry)].into(),
        }
    }

    #[test]
    fn a_reload_keeps_the_compiled_schema_of_an_unchanged_tool_and_recompiles_a_changed_one() {
        let first =
            Table::from_registry(snapshot("v1"), Vec::new(), &Table::default(), Names::new());
        let compiled = |table: &Table| table.servers["api"].tools["get"].clone();
        let same = Table::from_registry(snapshot("v1"), Vec::new(), &first, Names::new());
        assert!(Arc::ptr_eq(&compiled(&first), &compiled(&same)));
        let changed = Table::from_registry(snapshot("v2"), Vec::new(), &same, Names::new());
        assert!(!Arc::ptr_eq(&compiled(&same), &compiled(&changed)));
        assert_eq!(compiled(&changed).binding.description, "v2");
    }

    #[tokio::test]
    async fn workers_advertised_by_name_are_routable_once_resolved() {
        let record = |host: &str, replica_idx| WorkerRecord {
            host: Some(host.into()),
            port: Some(9100),
            ..WorkerRecord::new(replica_idx, Running, "sup-a")
        };
        let records = [
            record("127.0.0.1", 0),
            record("localhost", 1),
            record("no-such-host.invalid", 2),
        ];
        let names = resolve_names(&records.iter().collect::<Vec<_>>(), &Names::new()).await;
        assert_eq!(names.len(), 1, "only the name that resolves: {names:?}");
        assert!(names["localhost:9100"].ip().is_loopback());

        let mut route = ServerRoute::default();
        for r in records.clone() {
            route.set_record(r, &names);
        }
        let routable: Vec<u32> = route.workers.iter().map(|e| e.replica_idx).collect();
        assert_eq!(routable, vec![0, 1]);
        // Without the resolved names, only the address is routable: nothing is
        // resolved on the table's own path.
        let mut route = ServerRoute::default();
        for r in records {
            route.set_record(r, &Names::new());
        }
        assert_eq!(route.workers.len(), 1);
    }
}
