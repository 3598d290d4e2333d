use std::time::Duration;

use mcp_core::events::EventKind;
use mcp_core::model::{ServerConfig, ToolBinding};
use mcp_core::subscription::{ReloadReason, Subscription, Update};
use serde_json::json;

use crate::setup;

async fn next(sub: &mut Subscription) -> Update {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("an update within 10 s")
        .expect("open")
}

async fn next_event(sub: &mut Subscription) -> (u64, EventKind) {
    match next(sub).await {
        Update::Event(event) => (event.version, event.kind),
        other => panic!("expected an event, got {other:?}"),
    }
}

fn server() -> ServerConfig {
    serde_json::from_value(json!({"baseUrl": "http://x"})).expect("server")
}

fn tool(name: &str) -> ToolBinding {
    serde_json::from_value(json!({"name": name, "method": "GET"})).expect("tool")
}

#[tokio::test]
async fn every_write_reaches_a_subscriber_with_type_ids_and_version() {
    let (_redis, registry) = setup();
    every_write_reaches_a_subscriber(registry).await;
}

/// Also run on a Redis Cluster (`cluster.rs`).
pub async fn every_write_reaches_a_subscriber(registry: mcp_core::RedisRegistry) {
    let mut sub = registry.subscribe();
    assert_eq!(
        next(&mut sub).await,
        Update::Reload(ReloadReason::Subscribed)
    );

    registry
        .upsert_server("s1", server())
        .await
        .expect("upsert");
    let (v, kind) = next_event(&mut sub).await;
    assert_eq!(v, 1);
    assert!(
        matches!(kind, EventKind::ServerUpsert { ref server_id, ref server } if server_id == "s1" && server.name == "s1")
    );

    registry.upsert_tool("s1", tool("a")).await.expect("tool");
    assert!(
        matches!(next_event(&mut sub).await, (2, EventKind::ToolUpsert { server_id, tool_name, tool }) if server_id == "s1" && tool_name == "a" && tool.name == "a")
    );

    registry.upsert_tool("s1", tool("b")).await.expect("tool");
    assert!(matches!(
        next_event(&mut sub).await,
        (3, EventKind::ToolUpsert { .. })
    ));

    registry.delete_tool("s1", "a").await.expect("delete tool");
    assert_eq!(
        next_event(&mut sub).await,
        (
            4,
            EventKind::ToolDelete {
                server_id: "s1".into(),
                tool_name: "a".into()
            }
        )
    );

    registry.request_restart("s1").await.expect("restart");
    assert_eq!(
        next_event(&mut sub).await,
        (
            5,
            EventKind::ServerRestart {
                server_id: "s1".into()
            }
        )
    );

    // Deleting a server deletes its tools, with an event for each and then the server's.
    registry.upsert_tool("s1", tool("c")).await.expect("tool");
    assert!(matches!(
        next_event(&mut sub).await,
        (6, EventKind::ToolUpsert { .. })
    ));
    assert_eq!(registry.delete_server("s1").await.expect("delete"), Some(2));
    assert_eq!(
        next_event(&mut sub).await,
        (
            7,
            EventKind::ToolDelete {
                server_id: "s1".into(),
                tool_name: "b".into()
            }
        )
    );
    assert_eq!(
        next_event(&mut sub).await,
        (
            8,
            EventKind::ToolDelete {
                server_id: "s1".into(),
                tool_name: "c".into()
            }
        )
    );
    assert_eq!(
        next_event(&mut sub).await,
        (
            9,
            EventKind::ServerDelete {
                server_id: "s1".into()
            }
        )
    );
    assert!(registry.list_tools("s1").await.expect("tools").is_empty());
    assert_eq!(registry.get_server("s1").await.expect("server"), None);
}

#[tokio::test]
async fn a_version_gap_asks_for_a_reload() {
    let (_redis, registry) = setup();
    let mut sub = registry.subscribe();
    assert_eq!(
        next(&mut sub).await,
        Update::Reload(ReloadReason::Subscribed)
    );
    // Bump the version behind the subscriber's back, as a lost message would look.
    let other =
        mcp_core::RedisRegistry::new(&_redis.url(), registry.keys().clone(), Default::default())
            .expect("registry");
    let client = redis::Client::open(_redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let _: u64 = redis::cmd("INCRBY")
        .arg(registry.keys().version())
        .arg(3)
        .query_async(&mut conn)
        .await
        .expect("incr");
    other.upsert_server("s", server()).await.expect("upsert");
    assert_eq!(
        next(&mut sub).await,
        Update::Reload(ReloadReason::Gap {
            expected: 1,
            got: 4
        })
    );
    assert!(matches!(
        next_event(&mut sub).await,
        (4, EventKind::ServerUpsert { .. })
    ));
}

#[tokio::test]
async fn a_reconnect_asks_for_a_reload() {
    let (mut redis, registry) = setup();
    let mut sub = registry.subscribe();
    assert_eq!(
        next(&mut sub).await,
        Update::Reload(ReloadReason::Subscribed)
    );
    redis.stop();
    redis.restart();
    assert_eq!(
        next(&mut sub).await,
        Update::Reload(ReloadReason::Reconnected)
    );
    registry
        .upsert_server("s", server())
        .await
        .expect("upsert after reconnect");
    assert!(matches!(
        next_event(&mut sub).await,
        (1, EventKind::ServerUpsert { .. })
    ));
}
