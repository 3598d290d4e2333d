use reqwest::Method;
use serde_json::json;

use crate::{Admin, Options};

#[tokio::test]
async fn export_wipe_import_gives_an_identical_registry() {
    let admin = Admin::start(Options {
        token: Some("test-token-0123456789abcdef"),
        ..Options::default()
    });
    let secret = json!({"baseUrl": "https://api.example.com", "auth": {"type": "bearer", "value": "tok"}, "timeoutMs": 5000, "replicas": 2, "futureField": [1]});
    assert_eq!(
        admin
            .call(Method::POST, "/api/servers/extra", Some(secret))
            .await
            .0,
        201
    );
    let registry = admin.registry();
    let before = registry.snapshot().await.expect("snapshot");

    let (status, exported) = admin
        .call(Method::GET, "/api/export?includeSecrets=true", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(exported["format"], "mcp-hub.registry/v1");

    // Wipe: replace with an empty registry.
    let (status, summary) = admin
        .call(
            Method::POST,
            "/api/import?mode=replace",
            Some(json!({"servers": {}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(summary["removedServers"], 3);
    assert_eq!(summary["removedTools"], 10);
    assert!(registry
        .snapshot()
        .await
        .expect("snapshot")
        .servers
        .is_empty());

    let (status, summary) = admin
        .call(Method::POST, "/api/import", Some(exported))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        summary,
        json!({"servers": 3, "tools": 10, "removedServers": 0, "removedTools": 0})
    );
    let after = registry.snapshot().await.expect("snapshot");
    assert_eq!(
        after.servers, before.servers,
        "identical registry, secrets and unknown fields included"
    );
}

#[tokio::test]
async fn import_accepts_the_existing_hub_shapes_and_validates_everything_first() {
    let admin = Admin::start(Options {
        seed: false,
        ..Options::default()
    });
    let legacy = json!({
        "servers": {"legacy_api": {"name": "legacy_api", "baseUrl": "http://127.0.0.1:8090", "active": true}},
        "tools": {"legacy_api": {
            "get_fruits": {"description": "d", "method": "GET", "pathTemplate": "/api/fruits"},
            "get_fruit_by_id": {"method": "GET", "pathTemplate": "/api/fruits/{id}", "paramMapping": {"path": {"id": "id"}}}
        }}
    });
    let (status, summary) = admin.call(Method::POST, "/api/import", Some(legacy)).await;
    assert_eq!((status, summary["tools"].clone()), (200, json!(2)));
    let (_, tool) = admin
        .call(Method::GET, "/api/tools/legacy_api/get_fruits", None)
        .await;
    assert_eq!(tool["name"], "get_fruits");

    // One bad tool: nothing of the document is written.
    let mixed = json!({
        "servers": {"other": {"baseUrl": "http://x"}},
        "tools": {"other": [{"name": "ok", "method": "GET"}, {"name": "bad", "method": "GET", "pathTemplate": "/{x}"}]}
    });
    let (status, body) = admin.call(Method::POST, "/api/import", Some(mixed)).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["error"]["details"][0]["field"],
        "tools.other.1.paramMapping.path.x"
    );
    assert_eq!(
        admin.call(Method::GET, "/api/servers/other", None).await.0,
        404
    );
}

#[tokio::test]
async fn the_cli_imports_and_exports_with_secrets() {
    let admin = Admin::start(Options {
        seed: false,
        ..Options::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-admin"))
            .env("MCP_ENV_FILE", "/nonexistent/.env")
            // Aims the start-up seed only: an import must not be rewritten by it.
            .env("MCP_DEMO_API_URL", "http://127.0.0.1:9")
            .args([
                "--redis-url",
                &admin.redis.url(),
                "--key-prefix",
                &admin.prefix,
            ])
            .args(args)
            .output()
            .expect("ran");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    run(&["import", crate::DEMO, "--mode", "merge"]);
    assert_eq!(admin.registry().stats().await.expect("stats").tools, 10);
    let out = dir.path().join("export.json");
    run(&["export", "--output", out.to_str().expect("utf8")]);
    let exported: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("read")).expect("json");
    assert_eq!(
        exported["servers"]["fruits_api"]["baseUrl"],
        "https://fruits.example.com/api"
    );
    assert_eq!(
        exported["tools"]["fruits_api"]
            .as_object()
            .expect("tools")
            .len(),
        5
    );
    run(&[
        "import",
        crate::DEMO,
        "--rebase-origin",
        "http://127.0.0.1:8090",
    ]);
    let fruits = admin
        .registry()
        .get_server("fruits_api")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(fruits.base_url, "http://127.0.0.1:8090/api");
}

#[tokio::test]
async fn an_import_that_fails_on_a_masked_secret_leaves_the_registry_unchanged() {
    let admin = Admin::start(Options::default());
    let with_secret = json!({"baseUrl": "http://127.0.0.1:9", "auth": {"type": "bearer", "value": "kept-secret"}});
    assert_eq!(
        admin
            .call(Method::POST, "/api/servers/kept", Some(with_secret))
            .await
            .0,
        201
    );
    let registry = admin.registry();
    let before = registry.snapshot().await.expect("snapshot");
    // Servers are written in id order: "aaa_new" would land before "zzz_new" failed.
    let doc = json!({
        "servers": {
            "aaa_new": {"baseUrl": "http://127.0.0.1:9"},
            "kept": {"baseUrl": "http://127.0.0.1:9", "auth": {"type": "bearer", "value": "********"}},
            "zzz_new": {"baseUrl": "http://127.0.0.1:9", "auth": {"type": "bearer", "value": "********"}}
        },
        "tools": {"aaa_new": [{"name": "t", "method": "GET"}]}
    });
    for mode in ["merge", "replace"] {
        let (status, body) = admin
            .call(
                Method::POST,
                &format!("/api/import?mode={mode}"),
                Some(doc.clone()),
            )
            .await;
        crate::assert_error(status, &body, 422, "invalid_registration");
        assert_eq!(
            body["error"]["details"],
            json!([{"field": "servers.zzz_new.auth.value",
                    "message": "is the mask the API hands out and no secret is stored for this server; send the real secret"}]),
            "{mode}"
        );
        assert_eq!(
            registry.snapshot().await.expect("snapshot"),
            before,
            "{mode}: nothing written, nothing published"
        );
    }
}
