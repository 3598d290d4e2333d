//! The registry on a real 3-node Redis Cluster: every registry case of `registry.rs`
//! (and the subscription's), each on its own key prefix, which `redis+cluster://` turns
//! into a hash tag. A script that touched an undeclared key in another slot, or a
//! `SCAN`, would fail here.

use std::time::Instant;

use mcp_core::keys::Keys;
use mcp_core::registry::Timeouts;
use mcp_core::RedisRegistry;
use mcp_testkit::RedisCluster;

fn registry(cluster: &RedisCluster) -> RedisRegistry {
    RedisRegistry::new(
        &cluster.url(),
        Keys::new(&mcp_testkit::unique_prefix()),
        Timeouts::default(),
    )
    .expect("registry")
}

#[tokio::test]
async fn registry_cases_pass_on_a_redis_cluster() {
    let started = Instant::now();
    let cluster = RedisCluster::start();
    eprintln!(
        "cluster of {:?} up in {:?}",
        cluster.ports(),
        started.elapsed()
    );
    let probe = registry(&cluster);
    assert!(
        probe.keys().servers().starts_with("{test-"),
        "the prefix is a hash tag on a cluster: {}",
        probe.keys().servers()
    );
    let mut cases = crate::registry::cases();
    cases.push(("every_write_reaches_a_subscriber", |registry| {
        Box::pin(crate::subscription::every_write_reaches_a_subscriber(
            registry,
        ))
    }));
    for (name, case) in cases {
        let started = Instant::now();
        case(registry(&cluster)).await;
        eprintln!("cluster: {name} ok in {:?}", started.elapsed());
    }
}

/// Several prefixes land in different slots, and so on different nodes: each hub (or
/// tenant) is one slot, and a cluster spreads hubs, not one hub's keys.
#[tokio::test]
async fn prefixes_spread_over_the_nodes() {
    let cluster = RedisCluster::start();
    let mut nodes = std::collections::BTreeSet::new();
    for i in 0..12 {
        let registry = RedisRegistry::new(
            &cluster.url(),
            Keys::new(&format!("tenant-{i}")),
            Timeouts::default(),
        )
        .expect("registry");
        registry
            .upsert_server(
                "s",
                serde_json::from_value(serde_json::json!({"baseUrl": "http://x"})).expect("server"),
            )
            .await
            .expect("upsert");
        assert_eq!(
            registry.snapshot().await.expect("snapshot").servers.len(),
            1
        );
        for port in cluster.ports() {
            let keys = mcp_testkit::sentinel::redis_cli(port, &["KEYS", "*"]).unwrap_or_default();
            if keys.contains(&format!("{{tenant-{i}}}:servers")) {
                nodes.insert(port);
            }
        }
    }
    assert!(nodes.len() >= 2, "12 prefixes all on one node: {nodes:?}");
}
