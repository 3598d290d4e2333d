use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mcp_core::model::{ServerConfig, ToolBinding, MASKED_SECRET};
use mcp_core::registry::{Error, Stats};
use mcp_core::runtime::{WorkerRecord, WorkerStatus};
use rand::{Rng, SeedableRng};
use serde_json::json;

use mcp_core::RedisRegistry;

use crate::{demo_document, setup};

/// Each case of this file runs as its own test on a fresh Redis here, and all of them
/// on one Redis Cluster in `cluster.rs` (each on its own key prefix).
macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        mod single {
            $(
                #[tokio::test]
                async fn $name() {
                    let (_redis, registry) = crate::setup();
                    super::$name(registry).await;
                }
            )*
        }

        /// Every case, by name.
        pub fn cases() -> Vec<(&'static str, crate::Case)> {
            vec![$((stringify!($name), |registry| Box::pin($name(registry)))),*]
        }
    };
}

cases!(
    demo_data_round_trips_through_redis,
    a_tool_needs_its_server,
    a_masked_secret_keeps_the_stored_one,
    a_masked_default_header_keeps_the_stored_one,
    stats_equal_a_recount_after_random_writes,
    version_strictly_increases_under_concurrent_writers,
    runtime_records_are_listed_per_server_and_replica,
    a_kept_secret_survives_any_characters_and_reaches_the_event,
    an_import_with_a_masked_secret_to_nothing_writes_nothing,
    an_import_writes_each_server_with_its_tools_in_one_step,
);

fn server(base_url: &str, active: bool) -> ServerConfig {
    serde_json::from_value(json!({"baseUrl": base_url, "active": active})).expect("server")
}

fn tool(name: &str, active: bool) -> ToolBinding {
    serde_json::from_value(
        json!({"name": name, "method": "GET", "pathTemplate": "/x", "active": active}),
    )
    .expect("tool")
}

async fn demo_data_round_trips_through_redis(registry: RedisRegistry) {
    let doc = demo_document();
    for (id, config) in &doc.servers {
        assert!(
            registry
                .upsert_server(id, config.clone())
                .await
                .expect("upsert")
                .created
        );
        for tool in doc.tools[id].values() {
            assert!(
                registry
                    .upsert_tool(id, tool.clone())
                    .await
                    .expect("upsert tool")
                    .created
            );
        }
    }
    let snapshot = registry.snapshot().await.expect("snapshot");
    assert_eq!(
        snapshot.version, 12,
        "2 servers + 10 tools, one version each"
    );
    for (id, config) in &doc.servers {
        assert_eq!(&snapshot.servers[id].config, config);
        assert_eq!(&snapshot.servers[id].tools, &doc.tools[id]);
        assert_eq!(
            registry.get_server(id).await.expect("get").as_ref(),
            Some(config)
        );
        assert_eq!(registry.list_tools(id).await.expect("list"), doc.tools[id]);
    }
    let names: Vec<String> = registry
        .list_servers()
        .await
        .expect("list")
        .into_keys()
        .collect();
    assert_eq!(names, ["fakestore_api", "fruits_api"]);
    let tool = registry
        .get_tool("fruits_api", "get_fruit_by_id")
        .await
        .expect("get tool")
        .expect("exists");
    assert_eq!(tool.path_template, "/fruits/{id}");

    // Update is not a create; delete answers whether something existed.
    let mut changed = doc.servers["fruits_api"].clone();
    changed.active = false;
    assert!(
        !registry
            .upsert_server("fruits_api", changed.clone())
            .await
            .expect("update")
            .created
    );
    assert_eq!(
        registry.get_server("fruits_api").await.expect("get"),
        Some(changed)
    );
    assert!(registry
        .delete_tool("fruits_api", "get_fruits")
        .await
        .expect("delete"));
    assert!(!registry
        .delete_tool("fruits_api", "get_fruits")
        .await
        .expect("delete again"));
    assert_eq!(
        registry
            .get_tool("fruits_api", "get_fruits")
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        registry.stats().await.expect("stats"),
        Stats {
            servers: 2,
            active_servers: 1,
            tools: 9,
            active_tools: 9
        }
    );
}

async fn a_tool_needs_its_server(registry: RedisRegistry) {
    let err = registry
        .upsert_tool("ghost", tool("t", true))
        .await
        .expect_err("no server");
    assert!(matches!(err, Error::ServerNotFound(id) if id == "ghost"));
    assert!(matches!(
        registry.request_restart("ghost").await,
        Err(Error::ServerNotFound(_))
    ));
    assert_eq!(registry.delete_server("ghost").await.expect("delete"), None);
}

async fn a_masked_secret_keeps_the_stored_one(registry: RedisRegistry) {
    let mut config: ServerConfig = serde_json::from_value(
        json!({"baseUrl": "http://x", "auth": {"type": "bearer", "value": "s3cret"}}),
    )
    .expect("server");
    registry
        .upsert_server("s", config.clone())
        .await
        .expect("upsert");
    config.auth.value = Some(MASKED_SECRET.into());
    config.default_headers.insert("X-A".into(), "1".into());
    registry
        .upsert_server("s", config)
        .await
        .expect("upsert masked");
    let stored = registry
        .get_server("s")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored.auth.value.as_deref(), Some("s3cret"));
    assert_eq!(stored.default_headers["X-A"], "1");

    let masked_new: ServerConfig = serde_json::from_value(
        json!({"baseUrl": "http://x", "auth": {"type": "bearer", "value": MASKED_SECRET}}),
    )
    .expect("server");
    let version = registry.version().await.expect("version");
    assert!(matches!(
        registry.upsert_server("new", masked_new).await,
        Err(Error::MaskedSecret(field)) if field == "auth.value"
    ));
    assert_eq!(registry.get_server("new").await.expect("get"), None);
    assert_eq!(
        registry.version().await.expect("version"),
        version,
        "nothing written, nothing published"
    );
}

/// A default header posted back as the mask keeps the value stored under its name (its
/// case ignored); a mask for a header with nothing stored writes nothing and names it.
async fn a_masked_default_header_keeps_the_stored_one(registry: RedisRegistry) {
    let config: ServerConfig = serde_json::from_value(json!({
        "baseUrl": "http://x",
        "defaultHeaders": {"Authorization": "Bearer h3ader", "X-Api-Key": "k3y", "Accept": "text/plain"}
    }))
    .expect("server");
    registry.upsert_server("s", config).await.expect("upsert");
    let stored = registry
        .get_server("s")
        .await
        .expect("get")
        .expect("exists");
    let mut posted = stored.masked();
    assert_eq!(posted.default_headers["Authorization"], MASKED_SECRET);
    assert_eq!(posted.default_headers["Accept"], "text/plain");
    let key = posted.default_headers.remove("X-Api-Key").expect("key");
    posted.default_headers.insert("x-api-key".into(), key);
    posted
        .default_headers
        .insert("Accept".into(), "application/json".into());
    registry
        .upsert_server("s", posted.clone())
        .await
        .expect("upsert masked");
    let kept = registry
        .get_server("s")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(kept.default_headers["Authorization"], "Bearer h3ader");
    assert_eq!(
        kept.default_headers["x-api-key"], "k3y",
        "found by name, case ignored"
    );
    assert_eq!(
        kept.default_headers["Accept"], "application/json",
        "the rest as sent"
    );

    posted
        .default_headers
        .insert("X-Other-Token".into(), MASKED_SECRET.into());
    let version = registry.version().await.expect("version");
    assert!(matches!(
        registry.upsert_server("s", posted).await,
        Err(Error::MaskedSecret(field)) if field == "defaultHeaders.X-Other-Token"
    ));
    assert_eq!(
        registry.get_server("s").await.expect("get"),
        Some(kept),
        "nothing written"
    );
    assert_eq!(registry.version().await.expect("version"), version);
}

/// The stored secret is swapped in by the write script itself: whatever characters it
/// holds come back byte for byte, in the stored config and in the published event.
async fn a_kept_secret_survives_any_characters_and_reaches_the_event(registry: RedisRegistry) {
    use mcp_core::events::EventKind;
    use mcp_core::subscription::Update;
    let secret = "s3\"c\\r/é%t ünï\u{1F512} ********";
    let mut config: ServerConfig = serde_json::from_value(json!({
        "baseUrl": "http://x",
        "auth": {"type": "header", "key": "X-Key", "value": secret},
        "defaultHeaders": {"X-Header-Secret": secret, "X-Plain": "1"},
        "futureField": {"empty": [], "n": 1.5}
    }))
    .expect("server");
    registry
        .upsert_server("s", config.clone())
        .await
        .expect("upsert");
    let mut events = registry.subscribe();
    assert!(matches!(events.next().await, Some(Update::Reload(_))));

    config.auth.value = Some(MASKED_SECRET.into());
    config
        .default_headers
        .insert("X-Header-Secret".into(), MASKED_SECRET.into());
    config.active = false;
    let outcome = registry
        .upsert_server("s", config.clone())
        .await
        .expect("upsert masked");
    assert!(!outcome.created);
    let mut expected = config.clone();
    expected.auth.value = Some(secret.into());
    expected
        .default_headers
        .insert("X-Header-Secret".into(), secret.into());
    expected.name = "s".into();
    assert_eq!(
        registry.get_server("s").await.expect("get"),
        Some(expected.clone()),
        "the secrets are kept and everything else is as sent"
    );
    let update = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("event in time")
        .expect("open");
    match update {
        Update::Event(event) => {
            assert_eq!(event.version, outcome.version);
            assert_eq!(
                event.kind,
                EventKind::ServerUpsert {
                    server_id: "s".into(),
                    server: expected
                }
            );
        }
        other => panic!("expected server.upsert, got {other:?}"),
    }
}

/// Everything that depends on the stored registry is checked before the first write, so
/// a failing import changes nothing, in either mode.
async fn an_import_with_a_masked_secret_to_nothing_writes_nothing(registry: RedisRegistry) {
    use mcp_core::document::Document;
    use mcp_core::registry::ImportMode;
    let kept: ServerConfig = serde_json::from_value(
        json!({"baseUrl": "http://x", "auth": {"type": "bearer", "value": "kept"}}),
    )
    .expect("server");
    registry.upsert_server("kept", kept).await.expect("upsert");
    registry
        .upsert_tool("kept", tool("t", true))
        .await
        .expect("tool");
    let before = registry.snapshot().await.expect("snapshot");
    let doc = Document::parse(json!({
        "servers": {
            "aaa_new": {"baseUrl": "http://a"},
            "kept": {"baseUrl": "http://b", "auth": {"type": "bearer", "value": MASKED_SECRET}},
            "zzz_new": {"baseUrl": "http://z", "auth": {"type": "bearer", "value": MASKED_SECRET}}
        },
        "tools": {"aaa_new": [{"name": "t", "method": "GET"}]}
    }))
    .expect("valid document");
    for mode in [ImportMode::Merge, ImportMode::Replace] {
        match registry.import(&doc, mode).await {
            Err(Error::Invalid(problems)) => {
                let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
                assert_eq!(fields, ["servers.zzz_new.auth.value"], "{mode:?}");
            }
            other => panic!("{mode:?}: expected Error::Invalid, got {other:?}"),
        }
        assert_eq!(
            registry.snapshot().await.expect("snapshot"),
            before,
            "{mode:?}: nothing written, nothing published"
        );
    }
    let mut fixed = doc.clone();
    fixed.servers.remove("zzz_new");
    let summary = registry
        .import(&fixed, ImportMode::Replace)
        .await
        .expect("import");
    assert_eq!((summary.servers, summary.removed_tools), (2, 1));
    let kept = registry
        .get_server("kept")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        (kept.base_url.as_str(), kept.auth.value.as_deref()),
        ("http://b", Some("kept"))
    );
}

async fn stats_equal_a_recount_after_random_writes(registry: RedisRegistry) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for _ in 0..1000 {
        let server_id = format!("s{}", rng.random_range(0..12));
        match rng.random_range(0..10) {
            0..=2 => {
                registry
                    .upsert_server(&server_id, server("http://x", rng.random_bool(0.7)))
                    .await
                    .expect("upsert");
            }
            3..=6 => {
                let t = tool(
                    &format!("t{}", rng.random_range(0..8)),
                    rng.random_bool(0.6),
                );
                match registry.upsert_tool(&server_id, t).await {
                    Ok(_) | Err(Error::ServerNotFound(_)) => {}
                    Err(err) => panic!("{err}"),
                }
            }
            7..=8 => {
                registry
                    .delete_tool(&server_id, &format!("t{}", rng.random_range(0..8)))
                    .await
                    .expect("delete tool");
            }
            _ => {
                registry
                    .delete_server(&server_id)
                    .await
                    .expect("delete server");
            }
        }
    }
    let snapshot = registry.snapshot().await.expect("snapshot");
    let recount = Stats {
        servers: snapshot.servers.len() as u64,
        active_servers: snapshot
            .servers
            .values()
            .filter(|s| s.config.active)
            .count() as u64,
        tools: snapshot
            .servers
            .values()
            .map(|s| s.tools.len() as u64)
            .sum(),
        active_tools: snapshot
            .servers
            .values()
            .flat_map(|s| s.tools.values())
            .filter(|t| t.active)
            .count() as u64,
    };
    let stats = registry.stats().await.expect("stats");
    assert_eq!(stats, recount);
    assert!(
        stats.tools > 0 && stats.servers > 0,
        "the random walk should leave something: {stats:?}"
    );
    assert_eq!(
        registry.stats().await.expect("stats again"),
        stats,
        "stats() is idempotent"
    );
}

async fn version_strictly_increases_under_concurrent_writers(registry: RedisRegistry) {
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for i in 0..50 {
                let outcome = registry
                    .upsert_server(&format!("w{writer}-{i}"), server("http://x", true))
                    .await
                    .expect("upsert");
                versions.push(outcome.version);
            }
            versions
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let versions = task.await.expect("task");
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "each writer sees increasing versions"
        );
        all.extend(versions);
    }
    all.sort_unstable();
    let expected: Vec<u64> = (1..=400).collect();
    assert_eq!(
        all, expected,
        "every write got its own version, none skipped or repeated"
    );
    assert_eq!(registry.version().await.expect("version"), 400);
}

async fn runtime_records_are_listed_per_server_and_replica(registry: RedisRegistry) {
    let record = |idx, status| WorkerRecord {
        pid: Some(100 + idx),
        host: Some("127.0.0.1".into()),
        port: Some(9100 + idx as u16),
        updated_at: 0,
        ..WorkerRecord::new(idx, status, "sup-1")
    };
    assert!(registry.list_runtime().await.expect("list").is_empty());
    registry
        .put_worker_record("b", &record(1, WorkerStatus::Starting))
        .await
        .expect("put");
    registry
        .put_worker_record("b", &record(0, WorkerStatus::Running))
        .await
        .expect("put");
    registry
        .put_worker_record("a", &record(0, WorkerStatus::Pending))
        .await
        .expect("put");
    let all = registry.list_runtime().await.expect("list");
    let shape: Vec<(String, Vec<u32>)> = all
        .iter()
        .map(|r| {
            (
                r.server_id.clone(),
                r.workers.iter().map(|w| w.replica_idx).collect(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [("a".to_owned(), vec![0]), ("b".to_owned(), vec![0, 1])]
    );
    assert_eq!(
        all[1].workers[0].endpoint().as_deref(),
        Some("127.0.0.1:9100")
    );
    assert!(registry.remove_worker_record("b", 1).await.expect("remove"));
    assert!(!registry
        .remove_worker_record("b", 1)
        .await
        .expect("remove again"));
    assert_eq!(
        registry.get_runtime("b").await.expect("get").workers.len(),
        1
    );
}

#[tokio::test]
async fn calls_fail_fast_while_redis_is_down_and_recover_after() {
    let (mut redis, registry) = setup();
    registry
        .upsert_server("s", server("http://x", true))
        .await
        .expect("upsert");
    redis.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let err = registry.list_servers().await.expect_err("redis is down");
        assert!(matches!(err, Error::Unavailable(_)), "got {err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "failed fast, not hung: {:?}",
            started.elapsed()
        );
    }
    redis.restart();
    // The restarted Redis is empty (no persistence in tests): what matters is that the
    // same registry handle works again.
    let servers =
        mcp_testkit::wait_until_async("registry to reconnect", Duration::from_secs(10), || async {
            registry.list_servers().await.ok()
        })
        .await;
    assert_eq!(servers, BTreeMap::new());
    registry
        .upsert_server("s", server("http://x", true))
        .await
        .expect("writes work again");
}

/// An import writes each server and its tools in one script (the admin API killed
/// midway leaves whole servers, never one without its tools: the chaos suite's
/// "admin API SIGKILL during a burst of registrations"): the events come in a row,
/// the server's first, one version each, and a masked secret is still kept.
async fn an_import_writes_each_server_with_its_tools_in_one_step(registry: RedisRegistry) {
    use mcp_core::document::Document;
    use mcp_core::events::EventKind;
    use mcp_core::registry::ImportMode;
    use mcp_core::subscription::Update;
    let stored: ServerConfig = serde_json::from_value(
        json!({"baseUrl": "http://x", "auth": {"type": "bearer", "value": "kept"}}),
    )
    .expect("server");
    registry.upsert_server("s", stored).await.expect("upsert");
    let mut events = registry.subscribe();
    assert!(matches!(events.next().await, Some(Update::Reload(_))));
    let doc = Document::parse(json!({
        "servers": {"s": {"baseUrl": "http://y", "auth": {"type": "bearer", "value": MASKED_SECRET}}},
        "tools": {"s": [
            {"name": "a", "method": "GET", "pathTemplate": "/a"},
            {"name": "b", "method": "GET", "pathTemplate": "/b"}
        ]}
    }))
    .expect("valid document");
    let summary = registry
        .import(&doc, ImportMode::Merge)
        .await
        .expect("import");
    assert_eq!((summary.servers, summary.tools), (1, 2));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let update = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("event in time")
            .expect("open");
        match update {
            Update::Event(event) => seen.push((event.version, event.kind)),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    let first = seen[0].0;
    assert_eq!(
        seen.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        [first, first + 1, first + 2]
    );
    match &seen[0].1 {
        EventKind::ServerUpsert { server_id, server } => {
            assert_eq!(server_id, "s");
            assert_eq!(server.auth.value.as_deref(), Some("kept"));
        }
        other => panic!("expected server.upsert first, got {other:?}"),
    }
    let names: Vec<&str> = seen[1..]
        .iter()
        .map(|(_, kind)| match kind {
            EventKind::ToolUpsert { tool_name, .. } => tool_name.as_str(),
            other => panic!("expected tool.upsert, got {other:?}"),
        })
        .collect();
    assert_eq!(names, ["a", "b"]);
    let snapshot = registry.snapshot().await.expect("snapshot");
    assert_eq!(snapshot.version, first + 2);
    let entry = &snapshot.servers["s"];
    assert_eq!(entry.config.base_url, "http://y");
    assert_eq!(entry.config.auth.value.as_deref(), Some("kept"));
    assert_eq!(entry.tools.keys().collect::<Vec<_>>(), ["a", "b"]);
}
