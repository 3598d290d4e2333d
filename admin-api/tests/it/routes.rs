use std::time::Duration;

use mcp_core::runtime::{
    AuditCounters, BreakerOpenReason, BreakerState, Resilience, RetriesByReason, WorkerRecord,
    WorkerStatus,
};
use mcp_core::subscription::Update;
use reqwest::Method;
use serde_json::json;

use crate::{Admin, Options};

#[tokio::test]
async fn servers_crud_and_stats() {
    let admin = Admin::start(Options::default());
    let (status, servers) = admin.call(Method::GET, "/api/servers", None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = servers
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["fakestore_api", "fruits_api"]);
    assert_eq!(
        servers[1]["baseUrl"], "http://127.0.0.1:8090/api",
        "seed origin rewrites the base URL"
    );
    assert_eq!(servers[1]["toolCount"], 5);

    let (status, stats) = admin.call(Method::GET, "/api/stats", None).await;
    assert_eq!(
        (status, stats),
        (
            200,
            json!({"servers": 2, "activeServers": 2, "tools": 10, "activeTools": 10})
        )
    );

    let body = json!({"baseUrl": "http://127.0.0.1:9/v1", "defaultHeaders": {"X-Team": "a"}});
    let (status, created) = admin
        .call(Method::POST, "/api/servers/new_api", Some(body.clone()))
        .await;
    assert_eq!(status, 201);
    assert_eq!(created["id"], "new_api");
    assert_eq!(created["name"], "new_api", "name defaults to the id");
    assert_eq!(created["toolCount"], 0);
    let (status, _) = admin
        .call(
            Method::POST,
            "/api/servers/new_api",
            Some(json!({"baseUrl": "http://127.0.0.1:9/v2", "active": false})),
        )
        .await;
    assert_eq!(status, 200, "an update is not a create");
    let (status, got) = admin.call(Method::GET, "/api/servers/new_api", None).await;
    assert_eq!(status, 200);
    assert_eq!(got["baseUrl"], "http://127.0.0.1:9/v2");
    assert_eq!(got["active"], false);

    let (_, stats) = admin.call(Method::GET, "/api/stats", None).await;
    assert_eq!(
        stats,
        json!({"servers": 3, "activeServers": 2, "tools": 10, "activeTools": 10})
    );

    let (status, deleted) = admin
        .call(Method::DELETE, "/api/servers/fruits_api", None)
        .await;
    assert_eq!(
        (status, deleted),
        (200, json!({"deleted": "fruits_api", "toolsDeleted": 5}))
    );
    let (status, _) = admin.call(Method::GET, "/api/tools/fruits_api", None).await;
    assert_eq!(status, 404, "its tools went with it");
    let (_, stats) = admin.call(Method::GET, "/api/stats", None).await;
    assert_eq!(
        stats,
        json!({"servers": 2, "activeServers": 1, "tools": 5, "activeTools": 5})
    );
}

#[tokio::test]
async fn tools_crud() {
    let admin = Admin::start(Options::default());
    let (status, tools) = admin
        .call(Method::GET, "/api/tools/fakestore_api", None)
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = tools
        .as_array()
        .expect("list")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "add_product",
            "delete_product",
            "get_all_products",
            "get_product_by_id",
            "update_product"
        ]
    );

    let (status, tool) = admin
        .call(
            Method::GET,
            "/api/tools/fakestore_api/get_product_by_id",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(tool["pathTemplate"], "/products/{id}");
    assert_eq!(tool["inputSchema"]["required"], json!(["id"]));

    let new_tool = json!({
        "description": "Products in one category.",
        "method": "GET",
        "pathTemplate": "/products/category/{category}",
        "paramMapping": {"path": {"category": "category"}},
        "inputSchema": {"type": "object", "properties": {"category": {"type": "string"}}, "required": ["category"]}
    });
    let (status, created) = admin
        .call(
            Method::POST,
            "/api/tools/fakestore_api/by_category",
            Some(new_tool.clone()),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        created["name"], "by_category",
        "the name comes from the path"
    );
    let (status, _) = admin
        .call(
            Method::POST,
            "/api/tools/fakestore_api/by_category",
            Some(new_tool),
        )
        .await;
    assert_eq!(status, 200);

    let (status, deleted) = admin
        .call(Method::DELETE, "/api/tools/fakestore_api/by_category", None)
        .await;
    assert_eq!((status, deleted), (200, json!({"deleted": "by_category"})));
    let (status, _) = admin
        .call(Method::GET, "/api/tools/fakestore_api/by_category", None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn restart_publishes_an_event_and_runtime_records_are_readable() {
    let admin = Admin::start(Options::default());
    let registry = admin.registry();
    let mut events = registry.subscribe();
    assert!(matches!(events.next().await, Some(Update::Reload(_))));

    let (status, accepted) = admin
        .call(Method::POST, "/api/servers/fruits_api/restart", None)
        .await;
    assert_eq!(status, 202);
    assert_eq!(accepted["serverId"], "fruits_api");
    let update = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("event in time")
        .expect("open");
    match update {
        Update::Event(event) => {
            assert_eq!(
                event.kind,
                mcp_core::events::EventKind::ServerRestart {
                    server_id: "fruits_api".into()
                }
            );
            assert_eq!(accepted["version"], event.version);
        }
        other => panic!("expected server.restart, got {other:?}"),
    }

    let (status, runtime) = admin.call(Method::GET, "/api/runtime", None).await;
    assert_eq!(
        (status, runtime),
        (200, json!([])),
        "empty until a supervisor writes records"
    );
    let (status, runtime) = admin
        .call(Method::GET, "/api/servers/fruits_api/runtime", None)
        .await;
    assert_eq!(
        (status, runtime),
        (200, json!({"serverId": "fruits_api", "workers": []}))
    );

    let record = WorkerRecord {
        replica_idx: 0,
        status: WorkerStatus::Running,
        pid: Some(4242),
        host: Some("127.0.0.1".into()),
        port: Some(9100),
        last_heartbeat: Some(1),
        supervisor_id: Some("sup".into()),
        restarts: 2,
        reason: None,
        last_failure: Some("exit status 9".into()),
        last_failure_at: Some(1),
        started_at: Some(1),
        updated_at: 1,
        resilience: Some(Resilience {
            state: BreakerState::Open,
            consecutive_failures: 5,
            retries: 7,
            retries_by_reason: RetriesByReason {
                status_503: 7,
                ..RetriesByReason::default()
            },
            retries_refused_by_budget: 1,
            rejected: 3,
            opened: 1,
            opened_by: Some(BreakerOpenReason::ErrorRate {
                failed: 6,
                calls: 10,
            }),
        }),
        audit: Some(AuditCounters {
            written: 10,
            dropped: 2,
        }),
    };
    registry
        .put_worker_record("fruits_api", &record)
        .await
        .expect("put record");
    let (_, runtime) = admin
        .call(Method::GET, "/api/servers/fruits_api/runtime", None)
        .await;
    assert_eq!(runtime["workers"][0]["status"], "running");
    assert_eq!(runtime["workers"][0]["port"], 9100);
    assert_eq!(runtime["workers"][0]["restarts"], 2);
    assert_eq!(
        runtime["workers"][0]["resilience"],
        json!({"state": "open", "consecutiveFailures": 5, "retries": 7,
            "retriesByReason": {"connect": 0, "timeout": 0, "status_502": 0,
                "status_503": 7, "status_504": 0},
            "retriesRefusedByBudget": 1, "rejected": 3, "opened": 1,
            "openedBy": {"kind": "error_rate", "failed": 6, "calls": 10}})
    );
    assert_eq!(
        runtime["workers"][0]["audit"],
        json!({"written": 10, "dropped": 2})
    );
    let (_, all) = admin.call(Method::GET, "/api/runtime", None).await;
    assert_eq!(all[0]["serverId"], "fruits_api");
}

#[tokio::test]
async fn health_openapi_and_event_stream() {
    let admin = Admin::start(Options::default());
    let (status, health) = admin.call(Method::GET, "/healthz", None).await;
    assert_eq!(
        (status, health),
        (200, json!({"status": "ok", "redis": "ok"}))
    );

    let (status, doc) = admin.call(Method::GET, "/api/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().expect("openapi").starts_with("3."));
    for path in [
        "/api/servers",
        "/api/servers/{id}",
        "/api/servers/{id}/restart",
        "/api/servers/{id}/runtime",
        "/api/runtime",
        "/api/tools/{id}",
        "/api/tools/{id}/{tool}",
        "/api/stats",
        "/api/export",
        "/api/import",
        "/api/events",
        "/api/metrics",
        "/api/tools/{id}/{tool}/validate",
        "/healthz",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["ServerConfig"].is_object());
    // The breaker's state in the runtime record.
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["WorkerRecord"]["properties"]["resilience"].is_object(),
        "{}",
        schemas["WorkerRecord"]
    );
    assert_eq!(
        schemas["BreakerState"]["enum"],
        json!(["closed", "open", "half_open"]),
        "{}",
        schemas["BreakerState"]
    );
    assert!(schemas["Resilience"]["properties"]["consecutiveFailures"].is_object());
    assert!(
        schemas["Resilience"]["properties"]["openedBy"].is_object(),
        "{}",
        schemas["Resilience"]
    );
    assert!(
        schemas["BreakerOpenReason"].is_object(),
        "{}",
        schemas["BreakerOpenReason"]
    );
    assert_eq!(
        schemas["AuditConfig"]["properties"]["includeArguments"]["type"], "boolean",
        "{}",
        schemas["AuditConfig"]
    );
    assert!(schemas["ServerConfig"]["properties"]["audit"].is_object());

    // The dashboard's event stream: a reload, then events as they happen, secrets masked.
    let mut response = admin.send(Method::GET, "/api/events", None).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let mut wrote = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains("event: server.upsert") {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("events in time")
            .expect("chunk")
            .expect("open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.contains("event: reload") && !wrote {
            wrote = true;
            let body =
                json!({"baseUrl": "http://x", "auth": {"type": "bearer", "value": "top-secret"}});
            let (status, _) = admin
                .call(Method::POST, "/api/servers/streamed", Some(body))
                .await;
            assert_eq!(status, 201);
        }
    }
    assert!(text.contains("\"serverId\":\"streamed\""), "{text}");
    assert!(
        !text.contains("top-secret"),
        "secret leaked into the event stream: {text}"
    );
}
