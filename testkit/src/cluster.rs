//! Owns a local Redis Cluster for tests: three `redis-server --cluster-enabled yes`
//! masters on free loopback ports (cluster bus ports chosen free too), joined by
//! `redis-cli --cluster create`, their files in a folder of their own; all killed and
//! the folder removed on drop.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::redis_server::RedisServer;
use crate::sentinel::redis_cli;

pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts three masters, assigns the 16384 slots across them and waits until every
    /// node says `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let dir =
            std::env::temp_dir().join(format!("mcp-cluster-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("creating the cluster folder");
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let dir = dir.clone();
                RedisServer::start_with(move |port| {
                    let node_dir = dir.join(format!("node-{port}"));
                    let _ = std::fs::create_dir_all(&node_dir);
                    vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        // The default bus port (port + 10000) may be taken or past 65535.
                        "--cluster-port".into(),
                        crate::free_port().to_string(),
                        "--cluster-config-file".into(),
                        node_dir.join("nodes.conf").display().to_string(),
                        "--cluster-node-timeout".into(),
                        "2000".into(),
                        "--dir".into(),
                        node_dir.display().to_string(),
                    ]
                })
            })
            .collect();
        let cluster = RedisCluster { nodes, dir };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("running redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        crate::wait_until(
            "the cluster to be ok on every node",
            Duration::from_secs(20),
            || {
                cluster
                    .nodes
                    .iter()
                    .all(|n| {
                        redis_cli(n.port(), &["CLUSTER", "INFO"])
                            .is_some_and(|info| info.contains("cluster_state:ok"))
                    })
                    .then_some(())
            },
        );
        cluster
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
