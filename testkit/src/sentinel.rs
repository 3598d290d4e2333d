//! Owns a Redis Sentinel set-up for failover tests: one master, one replica and three
//! sentinels, each a real `redis-server` (the sentinels with `--sentinel`) on a free
//! loopback port, with their files in a folder of their own; all killed and the folder
//! removed on drop. Control goes through `redis-cli`, so the test kit needs no Redis
//! client of its own.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::ChildProcess;
use crate::redis_server::{ping, redis_server_path, RedisServer};

/// The master name the sentinels monitor.
pub const MASTER_NAME: &str = "mymaster";

pub struct SentinelSetup {
    /// Data nodes: index 0 started as the master, index 1 as its replica.
    nodes: Vec<RedisServer>,
    /// (port, process) of each sentinel.
    sentinels: Vec<(u16, ChildProcess)>,
    dir: PathBuf,
}

/// Runs `redis-cli -p port args...` and returns its output, `None` when it fails.
pub fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.success() && !text.starts_with("Could not connect")).then_some(text)
}

/// The `field:value` lines of an `INFO` section.
fn info_field(port: u16, section: &str, field: &str) -> Option<String> {
    let info = redis_cli(port, &["INFO", section])?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_owned())
}

/// The longest stretch of `[from, to]` without an acknowledged write, given the times
/// the writes were acknowledged (in order).
pub fn longest_gap(
    acknowledged: impl IntoIterator<Item = Instant>,
    from: Instant,
    to: Instant,
) -> Duration {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for at in acknowledged
        .into_iter()
        .filter(|at| *at > from && *at <= to)
    {
        longest = longest.max(at - last);
        last = at;
    }
    longest.max(to.saturating_duration_since(last))
}

impl SentinelSetup {
    /// Starts the master, the replica (and waits for its first sync: a replica promoted
    /// before it has synced is empty) and three sentinels that agree on the master and
    /// see the replica. Failure detection is fast: down after 2 s (1 s made a loaded
    /// two-core machine see a master that was up as down), failover timeout 2 s.
    pub fn start() -> SentinelSetup {
        let dir =
            std::env::temp_dir().join(format!("mcp-sentinel-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("creating the sentinel folder");
        let node_args = |dir: PathBuf, replica_of: Option<u16>| {
            move |port: u16| {
                let node_dir = dir.join(format!("node-{port}"));
                let _ = std::fs::create_dir_all(&node_dir);
                let mut args = vec!["--dir".to_owned(), node_dir.display().to_string()];
                if let Some(master) = replica_of {
                    args.extend(["--replicaof".into(), "127.0.0.1".into(), master.to_string()]);
                }
                args
            }
        };
        let master = RedisServer::start_with(node_args(dir.clone(), None));
        let replica = RedisServer::start_with(node_args(dir.clone(), Some(master.port())));
        let mut setup = SentinelSetup {
            nodes: vec![master, replica],
            sentinels: Vec::new(),
            dir,
        };
        setup.wait_replica_synced(Duration::from_secs(20));
        for _ in 0..3 {
            setup.start_sentinel();
        }
        let master_port = setup.nodes[0].port();
        crate::wait_until(
            "the sentinels to see the master and its replica",
            Duration::from_secs(20),
            || {
                setup
                    .sentinels
                    .iter()
                    .all(|(port, _)| {
                        let master = redis_cli(*port, &["SENTINEL", "MASTER", MASTER_NAME])
                            .unwrap_or_default();
                        let replicas = redis_cli(*port, &["SENTINEL", "REPLICAS", MASTER_NAME])
                            .unwrap_or_default();
                        let sentinels = redis_cli(*port, &["SENTINEL", "SENTINELS", MASTER_NAME])
                            .unwrap_or_default();
                        master.contains(&master_port.to_string())
                            && replicas.lines().any(|l| l.trim() == "slave")
                            && sentinels.lines().filter(|l| l.trim() == "name").count() >= 2
                    })
                    .then_some(())
            },
        );
        setup
    }

    fn start_sentinel(&mut self) {
        let master_port = self.nodes[0].port();
        for _ in 0..5 {
            let port = crate::free_port();
            let conf = self.dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 2000\n\
                     sentinel failover-timeout {MASTER_NAME} 2000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = self.dir.display()
                ),
            )
            .expect("writing sentinel.conf");
            let mut command = Command::new(redis_server_path());
            command.arg(&conf).arg("--sentinel");
            let process = ChildProcess::spawn("redis-sentinel", command);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline && !process.has_exited() {
                if ping(port) {
                    self.sentinels.push((port, process));
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("could not start a sentinel on a free port after 5 tries");
    }

    /// `redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/mymaster/0` plus `query`
    /// (e.g. `?min_replicas=0`, or empty).
    pub fn url(&self, query: &str) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        format!(
            "redis+sentinel://{}/{MASTER_NAME}/0{query}",
            hosts.join(",")
        )
    }

    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|(port, _)| *port).collect()
    }

    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// The master's port as the first sentinel that answers names it.
    pub fn master_port(&self) -> u16 {
        self.sentinels
            .iter()
            .find_map(|(port, _)| {
                let text = redis_cli(*port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME])?;
                text.lines().nth(1)?.trim().parse().ok()
            })
            .expect("no sentinel names a master")
    }

    /// The data node that is not at `port`.
    fn other_node(&self, port: u16) -> u16 {
        self.node_ports()
            .into_iter()
            .find(|p| *p != port)
            .expect("two data nodes")
    }

    /// Waits until the node that is not the master replicates it, fully synced
    /// (`master_link_status:up`, not loading).
    pub fn wait_replica_synced(&self, timeout: Duration) {
        let master = self.nodes_master_port();
        let replica = self.other_node(master);
        crate::wait_until(
            &format!("replica {replica} to sync from {master}"),
            timeout,
            || {
                let up = info_field(replica, "replication", "master_link_status").as_deref()
                    == Some("up");
                let of_master = info_field(replica, "replication", "master_port").as_deref()
                    == Some(master.to_string().as_str());
                let loading = info_field(replica, "persistence", "loading").as_deref() == Some("1");
                (up && of_master && !loading).then_some(())
            },
        );
    }

    /// The data node that says `role:master` (sentinels or not), preferring the one the
    /// sentinels name.
    fn nodes_master_port(&self) -> u16 {
        if self.sentinels.is_empty() {
            return self.nodes[0].port();
        }
        self.master_port()
    }

    /// `SENTINEL FAILOVER` and waits until every sentinel names the other node and that
    /// node says `role:master`. Returns the new master's port.
    pub fn failover(&self) -> u16 {
        let old = self.master_port();
        let new = self.other_node(old);
        let (first, _) = &self.sentinels[0];
        // A sentinel that has not yet judged the replica fit answers NOGOODSLAVE (and one
        // busy with a failover INPROG): ask again until it starts one.
        let mut last = String::new();
        crate::wait_until(
            "SENTINEL FAILOVER to be accepted",
            Duration::from_secs(20),
            || {
                last =
                    redis_cli(*first, &["SENTINEL", "FAILOVER", MASTER_NAME]).unwrap_or_default();
                if last.trim() == "OK" {
                    return Some(());
                }
                eprintln!("SENTINEL FAILOVER answered {last:?}, asking again");
                std::thread::sleep(Duration::from_millis(200));
                None
            },
        );
        self.wait_master(new, Duration::from_secs(30));
        new
    }

    /// Waits until every live sentinel names `port` and the node there says `role:master`.
    pub fn wait_master(&self, port: u16, timeout: Duration) {
        crate::wait_until(
            &format!("the sentinels to name {port} master"),
            timeout,
            || {
                let named = self.sentinels.iter().all(|(sentinel, _)| {
                    redis_cli(
                        *sentinel,
                        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
                    )
                    .is_some_and(|t| {
                        t.lines().nth(1).map(str::trim) == Some(port.to_string().as_str())
                    })
                });
                let role = info_field(port, "replication", "role");
                (named && role.as_deref() == Some("master")).then_some(())
            },
        );
    }

    /// SIGKILLs the data node at `port` (no shutdown, no last write to its replica).
    pub fn kill_node(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .expect("a data node on that port");
        node.stop();
    }

    /// Starts the data node at `port` again (empty: no persistence), as a replica of the
    /// node it was started to replicate, or of the first master for the first node.
    pub fn restart_node(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .expect("a data node on that port");
        node.restart();
    }
}

impl Drop for SentinelSetup {
    fn drop(&mut self) {
        self.sentinels.clear();
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
