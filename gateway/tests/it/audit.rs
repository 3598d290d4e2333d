//! The audit log end to end: calls through the gateway (hub call API and MCP Streamable
//! HTTP) each leave exactly one entry in `{prefix}audit`, read back through the admin
//! API's `GET /api/audit` (filters, paging) and `/api/audit/stream` (live); the server's
//! secrets never appear; arguments only where the registration asks; a paused Redis
//! slows no call and the drops are counted.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::{Options, Stack};

const MARKER: &str = "AUDITMARK";

/// `audited`: the mock's echo, a bearer token and a default header holding the marker,
/// arguments kept in the audit log.
async fn register_audited(stack: &Stack) {
    let server = serde_json::from_value(json!({
        "baseUrl": stack.mock_url, "timeoutMs": 20000,
        "auth": {"type": "bearer", "value": format!("tok-{MARKER}-1")},
        "defaultHeaders": {"x-trace": format!("hdr-{MARKER}-2")},
        "audit": {"includeArguments": true}
    }))
    .expect("server");
    stack
        .registry
        .upsert_server("audited", server)
        .await
        .expect("server");
    let tool = json!({"name": "echo", "method": "POST", "pathTemplate": "/test/echo",
        "paramMapping": {"body": {"blob": "blob"}, "headers": {"Authorization": "token"}},
        "inputSchema": {"type": "object", "properties": {"blob": {"type": "string"}, "token": {"type": "string"}}}});
    stack
        .registry
        .upsert_tool("audited", serde_json::from_value(tool).expect("tool"))
        .await
        .expect("tool");
    stack.wait_routable("audited", 1).await;
}

async fn audit_page(stack: &Stack, query: &str) -> Value {
    let response = stack
        .client
        .get(format!("{}/api/audit?{query}", stack.admin_url))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.expect("json")
}

/// The entries of `request_id`, once at least one is there.
async fn entries_of(stack: &Stack, request_id: &str) -> Vec<Value> {
    mcp_testkit::wait_until_async(
        &format!("the audit entry of {request_id}"),
        Duration::from_secs(10),
        || async {
            let page = audit_page(stack, &format!("requestId={request_id}")).await;
            let entries = page["entries"].as_array()?.clone();
            (!entries.is_empty()).then_some(entries)
        },
    )
    .await
}

async fn hub_call(stack: &Stack, path: &str, request_id: &str, args: Value) -> u16 {
    let response = stack
        .client
        .post(format!("{}{path}", stack.base))
        .header("x-request-id", request_id)
        .json(&json!({ "args": args }))
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let _ = response.text().await;
    status
}

#[tokio::test]
async fn every_call_leaves_one_entry_without_secrets_and_a_paused_redis_slows_nothing() {
    let stack = Stack::start(Options {
        supervisor_env: vec![
            ("MCP_AUDIT_BUFFER".into(), "8".into()),
            ("MCP_AUDIT_REPORT_MS".into(), "200".into()),
        ],
        ..Options::default()
    })
    .await;
    register_audited(&stack).await;

    // Hub call API, arguments kept (the token argument redacted, the server's secrets
    // never written).
    let status = hub_call(
        &stack,
        "/mcp/audited/echo",
        "aud-hub-1",
        json!({"blob": "hello", "token": "Bearer user-token"}),
    )
    .await;
    assert_eq!(status, 200);
    let entries = entries_of(&stack, "aud-hub-1").await;
    assert_eq!(entries.len(), 1, "exactly one entry: {entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["server"], "audited");
    assert_eq!(entry["tool"], "echo");
    assert_eq!(entry["transport"], "hub");
    assert_eq!(entry["status"], "ok");
    assert_eq!(entry["restStatus"], 200);
    assert_eq!(entry["caller"], "127.0.0.1");
    assert!(entry["latencyMs"].as_f64().expect("latency") > 0.0);
    assert!(entry["argsBytes"].as_u64().expect("args size") > 10);
    assert!(entry["resultBytes"].as_u64().expect("result size") > 0);
    let args: Value =
        serde_json::from_str(entry["args"].as_str().expect("args kept")).expect("json");
    assert_eq!(args["blob"], "hello");
    assert_eq!(args["token"], "[redacted]", "a credential header argument");

    // A server without `audit.includeArguments`: sizes only. An error: its kind.
    let status = hub_call(
        &stack,
        "/mcp/test_api/echo_blob",
        "aud-hub-2",
        json!({"blob": "x"}),
    )
    .await;
    assert_eq!(status, 200);
    let entry = &entries_of(&stack, "aud-hub-2").await[0];
    assert!(entry.get("args").is_none(), "{entry}");
    assert_eq!(entry["argsBytes"], 12);
    let status = hub_call(
        &stack,
        "/mcp/fruits_api/get_fruit_by_id",
        "aud-hub-3",
        json!({"id": 999_999}),
    )
    .await;
    assert_eq!(status, 200);
    let entry = &entries_of(&stack, "aud-hub-3").await[0];
    assert_eq!(entry["status"], "error", "{entry}");
    assert_eq!(entry["error"], "upstream_status");
    assert_eq!(entry["restStatus"], 404);

    // MCP Streamable HTTP: the session is recorded.
    let mcp = format!("{}/mcp-servers/audited/mcp", stack.base);
    let post = |body: Value, session: Option<String>, request_id: &'static str| {
        let mut request = stack
            .client
            .post(&mcp)
            .header("accept", "application/json, text/event-stream")
            .header("x-request-id", request_id)
            .json(&body);
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        request.send()
    };
    let init = post(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}), None, "aud-init")
        .await
        .expect("initialize");
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .expect("session")
        .to_owned();
    let _ = init.text().await;
    let _ = post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(session.clone()),
        "aud-n",
    )
    .await
    .expect("initialized");
    let answer = post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"blob": "via mcp"}}}), Some(session.clone()), "aud-mcp-1")
        .await
        .expect("call");
    assert_eq!(answer.status(), 200);
    let _ = answer.text().await;
    let entries = entries_of(&stack, "aud-mcp-1").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["transport"], "mcp");
    assert_eq!(entries[0]["status"], "ok");
    let worker_session = entries[0]["session"].as_str().expect("session");
    assert!(
        session.ends_with(worker_session),
        "{session} / {worker_session}"
    );

    // The old HTTP+SSE transport: its session is recorded.
    let mut legacy = crate::legacy_sse::Session::open(&stack, "audited", "2024-11-05").await;
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {"blob": "via sse"}}});
    assert_eq!(legacy.post(&stack, &call.to_string()).await.0, 202);
    let reply = legacy.reply(7).await;
    assert!(reply["result"].is_object(), "{reply}");
    let legacy_session = legacy
        .messages_url
        .split("session_id=")
        .nth(1)
        .expect("session id")
        .to_owned();
    let entry = mcp_testkit::wait_until_async(
        "the old transport's entry",
        Duration::from_secs(10),
        || async {
            let page = audit_page(&stack, "server=audited").await;
            page["entries"]
                .as_array()?
                .iter()
                .find(|e| e["transport"] == "sse")
                .cloned()
        },
    )
    .await;
    assert_eq!(entry["session"], legacy_session.as_str(), "{entry}");
    assert_eq!(entry["status"], "ok");
    assert_eq!(entry["caller"], "127.0.0.1");
    drop(legacy);

    // No secret anywhere in the stream, in any field.
    let key = mcp_core::keys::Keys::new(&stack.prefix).audit();
    let raw = mcp_testkit::sentinel::redis_cli(stack.redis.port(), &["XRANGE", &key, "-", "+"])
        .expect("redis-cli");
    assert!(raw.contains("aud-hub-1"), "{raw}");
    assert!(
        !raw.contains(MARKER),
        "a secret reached the audit stream: {raw}"
    );

    // Filters and paging.
    for i in 0..3 {
        let id = format!("aud-page-{i}");
        assert_eq!(
            hub_call(&stack, "/mcp/test_api/echo_blob", &id, json!({"blob": "p"})).await,
            200
        );
        entries_of(&stack, &id).await;
    }
    let first = audit_page(&stack, "server=test_api&tool=echo_blob&limit=2").await;
    let ids: Vec<&str> = first["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["requestId"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["aud-page-2", "aud-page-1"], "newest first");
    let next = first["next"].as_str().expect("a cursor");
    let second = audit_page(
        &stack,
        &format!("server=test_api&tool=echo_blob&limit=2&before={next}"),
    )
    .await;
    let ids: Vec<&str> = second["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["requestId"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["aud-page-0", "aud-hub-2"]);
    let errors = audit_page(&stack, "status=error").await;
    assert!(errors["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .all(|e| e["status"] == "error"));
    assert_eq!(errors["entries"].as_array().expect("entries").len(), 1);
    let future = audit_page(
        &stack,
        &format!("since={}", mcp_core::runtime::unix_millis() + 60_000),
    )
    .await;
    assert_eq!(future["entries"], json!([]));
    let bad = stack
        .client
        .get(format!("{}/api/audit?status=maybe", stack.admin_url))
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status(), 400);
    // The first possible id: nothing is older (Redis itself refuses that range).
    let oldest = audit_page(&stack, "before=0-0").await;
    assert_eq!(oldest["entries"], json!([]), "{oldest}");
    let too_big = stack
        .client
        .get(format!(
            "{}/api/audit?before=18446744073709551616-0",
            stack.admin_url
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(too_big.status(), 400);

    // The live stream delivers a new entry.
    let mut follow = stack
        .client
        .get(format!(
            "{}/api/audit/stream?server=test_api",
            stack.admin_url
        ))
        .send()
        .await
        .expect("stream");
    assert_eq!(follow.status(), 200);
    assert_eq!(
        hub_call(
            &stack,
            "/mcp/test_api/echo_blob",
            "aud-live-1",
            json!({"blob": "live"})
        )
        .await,
        200
    );
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen.contains("aud-live-1") {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no live entry: {seen}");
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, follow.chunk()).await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(seen.contains("event: audit"), "{seen}");
    drop(follow);

    // Redis paused: calls still answer at once; the entries are dropped and counted.
    let redis_pid = stack.redis.pid().expect("redis pid");
    kill(Pid::from_raw(redis_pid as i32), Signal::SIGSTOP).expect("SIGSTOP");
    let started = Instant::now();
    for i in 0..40 {
        let id = format!("aud-paused-{i}");
        let call = tokio::time::timeout(
            Duration::from_secs(2),
            hub_call(&stack, "/mcp/audited/echo", &id, json!({"blob": "paused"})),
        )
        .await;
        assert_eq!(call.ok(), Some(200), "call {i} while Redis is paused");
    }
    let elapsed = started.elapsed();
    kill(Pid::from_raw(redis_pid as i32), Signal::SIGCONT).expect("SIGCONT");
    assert!(
        elapsed < Duration::from_secs(10),
        "40 calls took {elapsed:?}"
    );
    // The worker's buffer is small in tests (MCP_AUDIT_BUFFER=8): most were dropped.
    let health =
        mcp_testkit::wait_until_async("the drops counted", Duration::from_secs(15), || async {
            let runtime = stack.registry.get_runtime("audited").await.ok()?;
            let worker = runtime.workers.first()?;
            let url = format!(
                "http://{}:{}/healthz",
                worker.host.as_deref().unwrap_or("127.0.0.1"),
                worker.port?
            );
            let health: Value = stack.client.get(url).send().await.ok()?.json().await.ok()?;
            (health["audit"]["dropped"].as_u64()? > 0).then_some(health)
        })
        .await;
    assert!(health["audit"]["enabled"] == true, "{health}");
    // The gateway's /metrics shows the count too, from the worker's runtime record (the
    // supervisor copies /healthz at each probe; the gateway's table takes it at a reload).
    let dropped: u64 = mcp_testkit::wait_until_async(
        "mcp_audit_dropped_total on the gateway's /metrics",
        Duration::from_secs(20),
        || async {
            let text = stack.client.get(&stack.metrics).send().await.ok()?;
            let text = text.text().await.ok()?;
            let value = text.lines().find_map(|l| {
                l.strip_prefix(r#"mcp_audit_dropped_total{replica="0",server="audited"} "#)
            })?;
            value.trim().parse::<u64>().ok().filter(|n| *n > 0)
        },
    )
    .await;
    assert!(dropped <= 40, "{dropped} dropped of 40 calls");
    // And the worker says so in its log (workers write to the supervisor's output).
    let supervisor = stack.supervisor.as_ref().expect("a supervisor");
    let line =
        mcp_testkit::wait_until("the audit.dropped warning", Duration::from_secs(10), || {
            supervisor
                .stdout_lines()
                .into_iter()
                .find(|l| l.contains("audit.dropped"))
        });
    let event: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(event["event"], "audit.dropped", "{line}");
    assert!(
        event["dropped_total"].as_u64().expect("dropped_total") > 0,
        "{line}"
    );
}

#[tokio::test]
async fn rollback_mode_audits_the_calls_it_runs() {
    let stack = Stack::start(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    let status = hub_call(
        &stack,
        "/mcp/fruits_api/get_fruit_by_id",
        "aud-rb-1",
        json!({"id": 2}),
    )
    .await;
    assert_eq!(status, 200);
    let entries = entries_of(&stack, "aud-rb-1").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["transport"], "rollback");
    assert_eq!(entries[0]["status"], "ok");
    assert_eq!(entries[0]["restStatus"], 200);
    assert_eq!(entries[0]["caller"], "127.0.0.1");
    assert!(entries[0].get("args").is_none());
}
