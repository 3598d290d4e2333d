//! No secret in any output (issue 25): one hub with `MCP_ADMIN_TOKEN` set to a marker and
//! every process logging at debug level to a file, servers registered with a distinct
//! marker secret for every way a registration carries a credential (bearer, API key
//! header, API key query parameter, basic as an `Authorization` header, an
//! `Authorization` default header, a tool argument sent as `Authorization`), audit
//! arguments on; then every error path the suite knows is driven (registration and
//! import errors, wrong admin tokens, oversized bodies, unknown servers and tools,
//! schema violations, REST 4xx and 5xx, a REST API that echoes the credentials back in
//! its error, REST down, REST timeouts, an open circuit breaker, MCP Streamable HTTP and
//! old SSE errors, the rollback gateway, a worker killed mid-call), and every output is
//! searched for every marker: each log file (stderr too, so panics), each response the
//! hub made (status line, headers, body; the admin API's servers, tools, runtime,
//! stats, metrics, audit and export without secrets; the gateway's and the workers'
//! health and metrics), the dashboard's event stream and the audit stream, the Redis
//! pub/sub and the value of every Redis key.
//!
//! In scope: what the hub writes. Out of scope, by decision, and held apart:
//! - What the REST API answered, relayed to the caller as the tool's result or error
//!   (`output.delta`'s `output`, `tool_call.error`'s `error.body`, an MCP result's
//!   content and the lines after the first of an MCP error result): the mock's echo
//!   repeats the credentials it received, which proves each marker was sent (checked);
//!   that a REST API answers with them is that API's choice.
//! - The registration store (`{prefix}servers`) and the `server.upsert` events on Redis
//!   pub/sub hold `auth.value` and `defaultHeaders` in clear for the workers; their other
//!   fields are searched. The export with `includeSecrets=true` holds them too (checked).
//!
//! The caller's own credentials (an `Authorization` header on every call, a wrong admin
//! token) must appear nowhere, relayed output included: the hub must not forward them.
//!
//! Credential-named default headers (`Authorization`, `X-Api-Key`, ...) are masked by
//! the admin API like `auth.value` (a server's view, the export, `/api/events`), and a
//! masked one posted back (the dashboard's edit) keeps the stored value: checked below.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_core::keys::Keys;
use mcp_core::RedisRegistry;
use mcp_testkit::hub::{Hub, HubOptions};
use mcp_testkit::ChildProcess;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::Stack;

/// The secrets of one run: (name, value), each value unique to the run.
#[derive(Clone)]
struct Markers {
    nonce: String,
    /// Credentials the hub must send to the REST API but never write anywhere.
    rest: Vec<(&'static str, String)>,
    /// Credentials of the callers: never written, never forwarded.
    caller: Vec<(&'static str, String)>,
}

impl Markers {
    fn new() -> Markers {
        let nonce = mcp_testkit::unique_prefix()
            .trim_start_matches("test-")
            .chars()
            .take(12)
            .collect();
        let mut markers = Markers {
            nonce,
            rest: Vec::new(),
            caller: Vec::new(),
        };
        for name in [
            "bearer", "header", "query", "basic", "default", "argument", "down", "rollback",
        ] {
            let value = markers.value(name);
            markers.rest.push((name, value));
        }
        let basic = format!("svc:{}", markers.get("basic"));
        markers
            .rest
            .push(("basic-base64", base64(basic.as_bytes())));
        for name in ["admin-token", "wrong-token", "caller-auth"] {
            let value = markers.value(name);
            markers.caller.push((name, value));
        }
        markers
    }

    fn value(&self, name: &str) -> String {
        format!("S3CR3T{}{}", name.replace('-', ""), self.nonce)
    }

    fn get(&self, name: &str) -> String {
        self.rest
            .iter()
            .chain(&self.caller)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no marker {name}"))
    }

    fn all(&self) -> Vec<(&'static str, String)> {
        self.rest.iter().chain(&self.caller).cloned().collect()
    }
}

/// Standard base64 with padding (the `Authorization: Basic` encoding).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// (where, text).
type Output = (String, String);

/// Every output, by where it came from.
#[derive(Default)]
struct Outputs {
    /// What the hub wrote: searched for every marker.
    hub: Vec<(String, String)>,
    /// What a REST API answered, relayed as a result: searched for the callers' markers.
    relayed: Vec<(String, String)>,
    /// Where secrets are held on purpose (the registration store, the export with
    /// secrets): must hold the REST markers, proving they were registered.
    vault: Vec<(String, String)>,
}

impl Outputs {
    fn hub(&mut self, place: impl Into<String>, text: impl Into<String>) {
        self.hub.push((place.into(), text.into()));
    }

    fn relayed(&mut self, place: impl Into<String>, text: impl Into<String>) {
        self.relayed.push((place.into(), text.into()));
    }

    /// A response: its status line and headers and its body, split into what the hub
    /// wrote and what it relayed from the REST API.
    async fn response(&mut self, place: &str, response: reqwest::Response) -> (u16, String) {
        let status = response.status().as_u16();
        let mut head = format!("HTTP {status}\n");
        for (name, value) in response.headers() {
            head.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        let (text, _) = crate::body_text(response).await;
        let (hub, relayed) = split_relayed(&text);
        self.hub(place, format!("{head}\n{hub}"));
        if !relayed.is_empty() {
            self.relayed(place, relayed);
        }
        (status, text)
    }
}

/// `text` (a JSON body, or SSE whose data lines are JSON) split into what the hub wrote
/// and what it relayed from the REST API (see the module's doc).
fn split_relayed(text: &str) -> (String, String) {
    let mut relayed = String::new();
    if let Ok(mut message) = serde_json::from_str::<Value>(text) {
        strip_relayed(&mut message, &mut relayed);
        return (message.to_string(), relayed);
    }
    let mut hub = String::new();
    for line in text.lines() {
        match line
            .strip_prefix("data:")
            .map(|data| serde_json::from_str::<Value>(data.trim()))
        {
            Some(Ok(mut message)) => {
                strip_relayed(&mut message, &mut relayed);
                hub.push_str(&format!("data: {message}"));
            }
            _ => hub.push_str(line),
        }
        hub.push('\n');
    }
    (hub, relayed)
}

fn strip_relayed(message: &mut Value, relayed: &mut String) {
    let mut keep = |value: Value| {
        relayed.push_str(&value.to_string());
        relayed.push('\n');
    };
    let Some(object) = message.as_object_mut() else {
        return;
    };
    // The hub's call protocol.
    if let Some(output) = object.remove("output") {
        keep(output);
    }
    if let Some(body) = object
        .get_mut("error")
        .and_then(Value::as_object_mut)
        .and_then(|error| error.remove("body"))
    {
        keep(body);
    }
    // A JSON-RPC tool result: the content is the REST API's, but for the first line of
    // an error result (`code: message`, the hub's).
    if let Some(result) = object.get_mut("result").and_then(Value::as_object_mut) {
        if let Some(structured) = result.remove("structuredContent") {
            keep(structured);
        }
        let is_error = result.get("isError") == Some(&Value::Bool(true));
        if let Some(Value::Array(content)) = result.get_mut("content") {
            for block in content {
                if let Some(Value::String(text)) = block.get_mut("text") {
                    let (own, rest) = match (is_error, text.split_once('\n')) {
                        (true, Some((first, rest))) => (first.to_owned(), rest.to_owned()),
                        (true, None) => (text.clone(), String::new()),
                        (false, _) => (String::new(), text.clone()),
                    };
                    keep(Value::String(rest));
                    *text = own;
                }
            }
        }
    }
}

/// A response body read as it arrives by a task of its own (an SSE stream), kept until
/// the test takes it.
struct Stream {
    text: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Stream {
    fn follow(mut response: reqwest::Response) -> Stream {
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(chunk)) = response.chunk().await {
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&String::from_utf8_lossy(&chunk));
                }
            }
        });
        Stream { text, task }
    }

    fn text(&self) -> String {
        self.text.lock().map(|t| t.clone()).unwrap_or_default()
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        mcp_testkit::wait_until_async(what, Duration::from_secs(15), || async {
            let text = self.text();
            done(&text).then_some(text)
        })
        .await
    }

    /// The JSON-RPC message with `id` among the stream's data lines.
    async fn message(&self, id: i64) -> Value {
        let text = self
            .wait_for(&format!("message {id} on the stream"), |text| {
                message_with_id(text, id).is_some()
            })
            .await;
        message_with_id(&text, id).unwrap_or(Value::Null)
    }

    fn stop(self) -> String {
        self.task.abort();
        self.text()
    }
}

fn message_with_id(text: &str, id: i64) -> Option<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .chain(serde_json::from_str(text).ok())
        .find(|v| v["id"] == id)
}

/// The test's view of the hub: the stack, the outputs so far, the markers.
struct Probe {
    stack: Stack,
    out: Outputs,
    markers: Markers,
    n_requests: usize,
}

impl Probe {
    fn admin(&self, method: reqwest::Method, path: &str, direct: bool) -> reqwest::RequestBuilder {
        let base = if direct {
            &self.stack.admin_url
        } else {
            &self.stack.base
        };
        self.stack
            .client
            .request(method, format!("{base}{path}"))
            .bearer_auth(self.markers.get("admin-token"))
    }

    /// An admin API request with the token, through the gateway and directly.
    async fn admin_both(&mut self, method: reqwest::Method, path: &str, body: Option<&Value>) {
        for direct in [false, true] {
            let mut request = self.admin(method.clone(), path, direct);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.expect("admin request");
            let place = format!("{method} {path} (direct: {direct})");
            self.out.response(&place, response).await;
        }
    }

    async fn admin_ok(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = self.admin(method.clone(), path, false);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.expect("admin request");
        let (status, text) = self
            .out
            .response(&format!("{method} {path}"), response)
            .await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// POSTs `body` (JSON, possibly malformed) to `url` with `bearer`, records the
    /// answer as `place`, and asserts it was refused with a 4xx.
    async fn post_refused(&mut self, place: &str, url: String, bearer: &str, body: String) {
        let response = self
            .stack
            .client
            .post(url)
            .bearer_auth(bearer)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("sent");
        let (status, text) = self.out.response(place, response).await;
        assert!((400..500).contains(&status), "{place}: {status} {text}");
    }

    fn request_id(&mut self) -> String {
        self.n_requests += 1;
        format!("sec-{}", self.n_requests)
    }

    /// A hub-protocol call (`POST {path}` on `base`), the caller's own `Authorization`
    /// header sent with it: (status, body).
    async fn call_at(&mut self, base: &str, path: &str, body: Value) -> (u16, String) {
        let request_id = self.request_id();
        let response = self
            .stack
            .client
            .post(format!("{base}{path}"))
            .bearer_auth(self.markers.get("caller-auth"))
            .header("x-request-id", &request_id)
            .json(&body)
            .send()
            .await
            .expect("call");
        self.out
            .response(&format!("POST {path} ({request_id} on {base})"), response)
            .await
    }

    async fn call(&mut self, server: &str, tool: &str, args: Value) -> (u16, String) {
        let base = self.stack.base.clone();
        self.call_at(
            &base,
            &format!("/mcp/{server}/{tool}"),
            json!({ "args": args }),
        )
        .await
    }

    async fn register(&mut self, server_id: &str, server: Value, tools: &[Value]) {
        self.admin_ok(
            reqwest::Method::POST,
            &format!("/api/servers/{server_id}"),
            Some(server),
        )
        .await;
        for tool in tools {
            let name = tool["name"].as_str().expect("tool name").to_owned();
            self.admin_ok(
                reqwest::Method::POST,
                &format!("/api/tools/{server_id}/{name}"),
                Some(tool.clone()),
            )
            .await;
        }
    }
}

/// The tools every marker server has: the echo (credentials relayed back in a success
/// and in an error), a 5xx, a 4xx.
fn echo_tools() -> Vec<Value> {
    let blob =
        json!({"type": "object", "properties": {"blob": {"type": "string", "maxLength": 64}}});
    vec![
        json!({"name": "echo", "method": "POST", "pathTemplate": "/test/echo", "paramMapping": {"body": {"blob": "blob"}}, "inputSchema": blob}),
        json!({"name": "echo_401", "method": "GET", "pathTemplate": "/test/echo-status/401"}),
        json!({"name": "status_500", "method": "GET", "pathTemplate": "/test/status/500"}),
        json!({"name": "status_404", "method": "GET", "pathTemplate": "/test/status/404"}),
    ]
}

async fn start_hub(markers: &Markers, log_dir: &std::path::Path) -> Stack {
    let mut options = HubOptions::for_tests();
    options.log_dir = Some(log_dir.to_owned());
    options.env = vec![
        ("MCP_ADMIN_TOKEN".into(), markers.get("admin-token")),
        ("MCP_LOG_LEVEL".into(), "debug".into()),
    ];
    // Small enough to reach with a test body.
    options
        .admin_flags
        .insert("--max-body-bytes".into(), "65536".into());
    let hub = Hub::start(options).await.expect("the hub");
    let registry = RedisRegistry::new(&hub.redis.url(), Keys::new(&hub.prefix), Default::default())
        .expect("registry");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    Stack {
        base: hub.gateway_url.clone(),
        metrics: hub.metrics_url.clone(),
        hub,
        registry,
        client,
    }
}

/// Every key of the Redis and its value as text (by type), and what the registration
/// store holds with its secrets taken out.
fn redis_dump(port: u16, prefix: &str) -> (Vec<Output>, Vec<Output>) {
    let cli = |args: &[&str]| -> String {
        let output = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "--raw"])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let servers_key = Keys::new(prefix).servers();
    let mut keys: Vec<String> = cli(&["--scan"]).lines().map(str::to_owned).collect();
    keys.sort();
    assert!(keys.contains(&servers_key), "{keys:?}");
    let (mut searched, mut vault) = (Vec::new(), Vec::new());
    for key in keys {
        let kind = cli(&["TYPE", &key]);
        let value = match kind.trim() {
            "string" => cli(&["GET", &key]),
            "hash" if key == servers_key => {
                let mut text = String::new();
                for field in cli(&["HKEYS", &key]).lines() {
                    let raw = cli(&["HGET", &key, field]);
                    vault.push((format!("redis {key} {field}"), raw.clone()));
                    let mut server: Value = serde_json::from_str(raw.trim()).expect("a server");
                    strip_secrets(&mut server);
                    text.push_str(&format!("{field} {server}\n"));
                }
                text
            }
            "hash" => cli(&["HGETALL", &key]),
            "set" => cli(&["SMEMBERS", &key]),
            "zset" => cli(&["ZRANGE", &key, "0", "-1", "WITHSCORES"]),
            "list" => cli(&["LRANGE", &key, "0", "-1"]),
            "stream" => cli(&["XRANGE", &key, "-", "+"]),
            other => panic!("redis key {key} of type {other}"),
        };
        searched.push((format!("redis {key} ({})", kind.trim()), value));
    }
    (searched, vault)
}

/// Takes `auth.value` and `defaultHeaders` out of every server config in `value`.
fn strip_secrets(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if object.contains_key("baseUrl") {
                object.remove("defaultHeaders");
                if let Some(auth) = object.get_mut("auth").and_then(Value::as_object_mut) {
                    auth.remove("value");
                }
            }
            object.values_mut().for_each(strip_secrets);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_secrets),
        _ => {}
    }
}

/// Where each marker appears in `outputs`: one line per (marker, place), with the text
/// around the first occurrence.
fn find(markers: &[(&'static str, String)], outputs: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (place, text) in outputs {
        for (name, marker) in markers {
            if let Some(at) = text.find(marker.as_str()) {
                let mut start = at.saturating_sub(120);
                while !text.is_char_boundary(start) {
                    start -= 1;
                }
                let mut end = (at + marker.len() + 60).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                found.push(format!(
                    "`{name}` in {place}: ...{}...",
                    &text[start..end].replace('\n', "\\n")
                ));
            }
        }
    }
    found
}

#[tokio::test]
async fn no_secret_reaches_a_log_a_metric_an_error_an_event_or_the_export() {
    let markers = Markers::new();
    let log_dir = tempfile::Builder::new()
        .prefix("secrets-logs-")
        .tempdir()
        .expect("log dir");
    let stack = start_hub(&markers, log_dir.path()).await;
    let redis_port = stack.redis.port();
    let pubsub = {
        let mut command = std::process::Command::new("redis-cli");
        command
            .args(["-p", &redis_port.to_string(), "--raw", "PSUBSCRIBE"])
            .arg(format!("{}*", stack.prefix));
        ChildProcess::spawn("redis-cli psubscribe", command)
    };
    let mut probe = Probe {
        stack,
        out: Outputs::default(),
        markers,
        n_requests: 0,
    };
    let events = Stream::follow(
        probe
            .admin(reqwest::Method::GET, "/api/events", false)
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("events"),
    );
    let audit_stream = Stream::follow(
        probe
            .admin(reqwest::Method::GET, "/api/audit/stream", true)
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("audit stream"),
    );
    events
        .wait_for("the event stream's reload", |t| t.contains("event: reload"))
        .await;
    mcp_testkit::wait_until("redis-cli to subscribe", Duration::from_secs(10), || {
        (!pubsub.stdout_lines().is_empty()).then_some(())
    });

    // ---- registrations: one server per kind of credential ----
    let mock = probe.stack.mock_url.clone();
    let markers = probe.markers.clone();
    let m = |name: &str| markers.get(name);
    let audit = json!({"includeArguments": true});
    let servers = [
        (
            "sec_bearer",
            json!({"baseUrl": mock, "timeoutMs": 20000, "audit": audit,
            "auth": {"type": "bearer", "value": m("bearer")}}),
        ),
        (
            "sec_header",
            json!({"baseUrl": mock, "timeoutMs": 700, "audit": audit,
            "auth": {"type": "header", "key": "X-Api-Key", "value": m("header")},
            "defaultHeaders": {"X-Tenant": "plain"}}),
        ),
        (
            "sec_query",
            json!({"baseUrl": mock, "timeoutMs": 20000, "audit": audit,
            "auth": {"type": "query", "key": "api_key", "value": m("query")}}),
        ),
        (
            "sec_basic",
            json!({"baseUrl": mock, "timeoutMs": 20000, "audit": audit,
            "auth": {"type": "header", "key": "Authorization", "value": format!("Basic {}", m("basic-base64"))}}),
        ),
        (
            "sec_default",
            json!({"baseUrl": mock, "timeoutMs": 20000, "audit": audit,
            "defaultHeaders": {"Authorization": format!("Bearer {}", m("default"))}}),
        ),
        // A REST API that is down, behind retries and a breaker.
        (
            "sec_down",
            json!({"baseUrl": format!("http://127.0.0.1:{}/api", mcp_testkit::free_port()),
            "timeoutMs": 2000, "audit": audit,
            "auth": {"type": "query", "key": "token", "value": m("down")},
            "retry": {"maxAttempts": 2, "baseDelayMs": 1},
            "circuitBreaker": {"failureThreshold": 2, "coolDownMs": 60000}}),
        ),
        // Called through the rollback gateway (calls run in the gateway).
        (
            "sec_rollback",
            json!({"baseUrl": mock, "timeoutMs": 20000, "audit": audit,
            "auth": {"type": "bearer", "value": m("rollback")}}),
        ),
        // The caller's argument is the REST API's `Authorization` header.
        (
            "sec_argument",
            json!({"baseUrl": mock, "timeoutMs": 20000, "audit": audit}),
        ),
    ];
    let mut tools = echo_tools();
    tools.push(json!({"name": "delay", "method": "GET", "pathTemplate": "/test/delay/{ms}", "paramMapping": {"path": {"ms": "ms"}},
        "inputSchema": {"type": "object", "properties": {"ms": {"type": "integer", "minimum": 0}}, "required": ["ms"]}}));
    tools.push(json!({"name": "not_json", "method": "GET", "pathTemplate": "/test/not-json"}));
    tools
        .push(json!({"name": "close_early", "method": "GET", "pathTemplate": "/test/close-early"}));
    tools.push(
        json!({"name": "inactive", "method": "GET", "pathTemplate": "/test/echo", "active": false}),
    );
    let argument_tools = [
        json!({"name": "echo_token", "method": "POST", "pathTemplate": "/test/echo",
            "paramMapping": {"headers": {"Authorization": "token"}, "body": {"blob": "blob"}},
            "inputSchema": {"type": "object", "properties": {"token": {"type": "string", "pattern": "^Bearer "}, "blob": {"type": "string"}}, "required": ["token"]}}),
        json!({"name": "echo_token_401", "method": "GET", "pathTemplate": "/test/echo-status/401",
            "paramMapping": {"headers": {"Authorization": "token"}},
            "inputSchema": {"type": "object", "properties": {"token": {"type": "string"}}}}),
    ];
    for (server_id, server) in &servers {
        let tools = if *server_id == "sec_argument" {
            &argument_tools[..]
        } else {
            &tools[..]
        };
        probe.register(server_id, server.clone(), tools).await;
    }
    for (server_id, _) in &servers {
        probe.stack.wait_routable(server_id, 1).await;
    }

    // ---- the admin API's refusals ----
    let base = probe.stack.base.clone();
    let admin_url = probe.stack.admin_url.clone();
    let wrong = m("wrong-token");
    for target in [&base, &admin_url] {
        let no_token = probe.stack.client.get(format!("{target}/api/servers"));
        let wrong_bearer = probe
            .stack
            .client
            .get(format!("{target}/api/servers"))
            .bearer_auth(&wrong);
        let wrong_raw = probe
            .stack
            .client
            .get(format!("{target}/api/export?includeSecrets=true"))
            .header("authorization", &wrong);
        let wrong_basic = probe
            .stack
            .client
            .post(format!("{target}/api/servers/sec_bearer/restart"))
            .header("authorization", format!("Basic {wrong}"));
        let wrong_events = probe
            .stack
            .client
            .get(format!("{target}/api/events"))
            .bearer_auth(&wrong);
        for (what, request) in [
            ("no token", no_token),
            ("wrong bearer", wrong_bearer),
            ("wrong raw", wrong_raw),
            ("wrong basic", wrong_basic),
            ("wrong events", wrong_events),
        ] {
            let response = request.send().await.expect("sent");
            let (status, text) = probe
                .out
                .response(&format!("admin {what} at {target}"), response)
                .await;
            assert_eq!(status, 401, "{what}: {text}");
        }
    }
    let bad_registrations = [
        // auth as a string
        json!({"baseUrl": mock, "auth": format!("Bearer {}", m("bearer"))}),
        // a kind the hub does not have
        json!({"baseUrl": mock, "auth": {"type": "basic", "value": m("basic-base64")}}),
        // a header credential without its header name
        json!({"baseUrl": mock, "auth": {"type": "header", "value": m("header")}}),
        // a bad base URL next to a good secret
        json!({"baseUrl": "not a url", "auth": {"type": "query", "key": "k", "value": m("query")}}),
        // a secret where a number goes
        json!({"baseUrl": mock, "timeoutMs": m("bearer"), "auth": {"type": "bearer", "value": m("bearer")}}),
        // a default header that is not a string
        json!({"baseUrl": mock, "defaultHeaders": {"Authorization": [m("default")]}}),
        json!({"baseUrl": mock, "auth": {"type": "bearer", "value": m("bearer")}, "replicas": 1000}),
    ];
    for (i, body) in bad_registrations.iter().enumerate() {
        probe
            .admin_both(
                reqwest::Method::POST,
                &format!("/api/servers/sec_bad_{i}"),
                Some(body),
            )
            .await;
    }
    probe
        .admin_both(
            reqwest::Method::POST,
            "/api/servers/bad%20id!",
            Some(&json!({"baseUrl": mock, "auth": {"type": "bearer", "value": m("bearer")}})),
        )
        .await;
    probe
        .admin_both(
            reqwest::Method::POST,
            "/api/import",
            Some(&json!({"servers": {"sec_imported": {"baseUrl": "nope", "auth": {"type": "query", "key": "k", "value": m("query")}}},
                "tools": {"sec_imported": {"t": {"name": "t", "method": "FETCH"}}}})),
        )
        .await;
    for (what, body) in [
        (
            "malformed",
            format!(
                "{{\"baseUrl\": \"{mock}\", \"auth\": {{\"type\": \"bearer\", \"value\": \"{}\"",
                m("bearer")
            ),
        ),
        (
            "oversized",
            format!(
                "{{\"baseUrl\": \"{mock}\", \"auth\": {{\"type\": \"bearer\", \"value\": \"{}\"}}, \"name\": \"{}\"}}",
                m("bearer"),
                "x".repeat(100_000)
            ),
        ),
    ] {
        for target in [&base, &admin_url] {
            probe
                .post_refused(
                    &format!("admin {what} registration at {target}"),
                    format!("{target}/api/servers/sec_raw"),
                    &m("admin-token"),
                    body.clone(),
                )
                .await;
        }
    }
    probe
        .admin_both(reqwest::Method::GET, "/api/servers/sec_nope", None)
        .await;
    probe
        .admin_both(reqwest::Method::DELETE, "/api/tools/sec_bearer/nope", None)
        .await;
    // The dashboard's round trip: the masked config posted back keeps the secret (and a
    // credential default header's value; the calls below show both are still sent).
    for server in ["sec_bearer", "sec_default"] {
        let path = format!("/api/servers/{server}");
        let mut config = probe.admin_ok(reqwest::Method::GET, &path, None).await;
        if server == "sec_default" {
            assert_eq!(
                config["defaultHeaders"]["Authorization"], "********",
                "a credential default header is masked"
            );
        }
        if let Some(object) = config.as_object_mut() {
            object.remove("id");
            object.remove("toolCount");
        }
        probe
            .admin_ok(reqwest::Method::POST, &path, Some(config))
            .await;
    }

    // ---- tool calls: successes (the echo relays each credential) and every error ----
    let callers = [
        ("sec_bearer", "bearer"),
        ("sec_header", "header"),
        ("sec_query", "query"),
        ("sec_basic", "basic-base64"),
        ("sec_default", "default"),
    ];
    for (server, marker) in callers {
        let (status, _) = probe.call(server, "echo", json!({"blob": "hello"})).await;
        assert_eq!(status, 200, "{server}");
        let marker = m(marker);
        assert!(
            probe
                .out
                .relayed
                .last()
                .is_some_and(|(_, text)| text.contains(&marker)),
            "the echo of {server} shows its credential was sent: {:?}",
            probe.out.relayed.last()
        );
        for tool in [
            "echo_401",
            "status_500",
            "status_404",
            "not_json",
            "close_early",
        ] {
            probe.call(server, tool, json!({})).await;
        }
        probe
            .call(server, "echo", json!({"blob": "x".repeat(100)}))
            .await;
        probe.call(server, "inactive", json!({})).await;
        probe.call(server, "nope", json!({})).await;
        // The old hub's routes.
        let base = probe.stack.base.clone();
        probe
            .call_at(
                &base,
                &format!("/mcp/{server}/tools/call"),
                json!({"name": "echo_401", "args": {}}),
            )
            .await;
        probe
            .call_at(
                &base,
                &format!("/mcp/{server}"),
                json!({"method": "tools.list"}),
            )
            .await;
        probe
            .call_at(
                &base,
                &format!("/mcp/{server}"),
                json!({"name": "status_500", "args": {}}),
            )
            .await;
    }
    // A REST timeout (sec_header allows 700 ms).
    let (status, text) = probe.call("sec_header", "delay", json!({"ms": 3000})).await;
    assert!(text.contains("upstream_timeout"), "{status} {text}");
    // REST down: retried, then the breaker opens.
    for _ in 0..4 {
        probe.call("sec_down", "echo_401", json!({})).await;
    }
    let (_, text) = probe.call("sec_down", "echo_401", json!({})).await;
    assert!(text.contains("circuit_open"), "{text}");
    // The caller's argument as the `Authorization` header: relayed on success, refused
    // by the schema, relayed back in the REST API's error.
    let argument = format!("Bearer {}", m("argument"));
    let (status, _) = probe
        .call("sec_argument", "echo_token", json!({"token": argument}))
        .await;
    assert_eq!(status, 200);
    assert!(
        probe
            .out
            .relayed
            .last()
            .is_some_and(|(_, text)| text.contains(&m("argument"))),
        "the echo shows the argument was sent as a header"
    );
    probe
        .call(
            "sec_argument",
            "echo_token",
            json!({"token": format!("Basic {}", m("argument"))}),
        )
        .await;
    probe
        .call(
            "sec_argument",
            "echo_token",
            json!({"token": argument, "blob": 5}),
        )
        .await;
    probe
        .call("sec_argument", "echo_token_401", json!({"token": argument}))
        .await;
    // Gateway refusals: unknown server, malformed and oversized bodies, a bad route.
    probe.call("sec_nope", "echo", json!({})).await;
    for (what, body) in [
        (
            "malformed",
            format!("{{\"args\": {{\"token\": \"{argument}\""),
        ),
        (
            "oversized",
            format!(
                "{{\"args\": {{\"token\": \"{argument}\", \"blob\": \"{}\"}}}}",
                "x".repeat(2 * 1024 * 1024)
            ),
        ),
    ] {
        probe
            .post_refused(
                &format!("gateway {what}"),
                format!("{base}/mcp/sec_argument/echo_token"),
                &m("caller-auth"),
                body,
            )
            .await;
    }
    for (method, path) in [
        (reqwest::Method::GET, "/nope"),
        (reqwest::Method::PUT, "/mcp/sec_bearer/echo"),
        (reqwest::Method::GET, "/mcp-servers/sec_nope/mcp"),
    ] {
        let response = probe
            .stack
            .client
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(m("caller-auth"))
            .send()
            .await
            .expect("sent");
        probe
            .out
            .response(&format!("gateway {method} {path}"), response)
            .await;
    }

    // ---- MCP Streamable HTTP ----
    mcp_errors(&mut probe).await;
    // ---- the old HTTP+SSE transport ----
    legacy_sse_errors(&mut probe).await;

    // ---- the rollback gateway: calls run in the gateway itself ----
    let rollback_flags: BTreeMap<String, String> =
        [("--supervisor-enabled".to_owned(), "false".to_owned())].into();
    let (rollback, rollback_base, rollback_metrics) = probe
        .stack
        .start_gateway(&rollback_flags)
        .await
        .expect("the rollback gateway");
    for (server, marker) in [("sec_rollback", "rollback"), ("sec_query", "query")] {
        let (status, _) = probe
            .call_at(
                &rollback_base,
                &format!("/mcp/{server}/echo"),
                json!({"args": {"blob": "hi"}}),
            )
            .await;
        assert_eq!(status, 200);
        assert!(
            probe
                .out
                .relayed
                .last()
                .is_some_and(|(_, text)| text.contains(&m(marker))),
            "the rollback gateway sent the credential of {server}"
        );
        for tool in ["echo_401", "status_500", "not_json", "nope"] {
            probe
                .call_at(
                    &rollback_base,
                    &format!("/mcp/{server}/{tool}"),
                    json!({"args": {}}),
                )
                .await;
        }
    }
    probe
        .call_at(
            &rollback_base,
            "/mcp/sec_down/echo_401",
            json!({"args": {}}),
        )
        .await;
    let response = probe
        .stack
        .client
        .get(&rollback_metrics)
        .send()
        .await
        .expect("metrics");
    probe
        .out
        .response("rollback gateway metrics", response)
        .await;

    // ---- a worker killed mid-call, and a restart asked for ----
    kill_worker_mid_call(&mut probe).await;
    probe
        .admin_ok(
            reqwest::Method::POST,
            "/api/servers/sec_basic/restart",
            None,
        )
        .await;
    probe.stack.wait_routable("sec_basic", 1).await;
    probe
        .admin_ok(reqwest::Method::DELETE, "/api/servers/sec_default", None)
        .await;

    // ---- everything the hub shows ----
    let (_, last) = probe
        .call("sec_header", "echo", json!({"blob": "last"}))
        .await;
    assert!(last.contains("tool_call.completed"), "{last}");
    let last_id = format!("sec-{}", probe.n_requests);
    mcp_testkit::wait_until_async("the last audit entry", Duration::from_secs(10), || {
        let request = probe
            .admin(
                reqwest::Method::GET,
                &format!("/api/audit?requestId={last_id}"),
                true,
            )
            .send();
        async move {
            let page: Value = request.await.ok()?.json().await.ok()?;
            (!page["entries"].as_array()?.is_empty()).then_some(())
        }
    })
    .await;
    let mut reads = vec![
        "/api/servers".to_owned(),
        "/api/runtime".to_owned(),
        "/api/stats".to_owned(),
        "/api/metrics".to_owned(),
        "/api/audit?limit=1000".to_owned(),
        "/api/export".to_owned(),
        "/api/openapi.json".to_owned(),
    ];
    for (server_id, _) in &servers {
        reads.push(format!("/api/servers/{server_id}"));
        reads.push(format!("/api/servers/{server_id}/runtime"));
        reads.push(format!("/api/tools/{server_id}"));
        reads.push(format!("/api/tools/{server_id}/echo"));
    }
    for path in &reads {
        probe.admin_both(reqwest::Method::GET, path, None).await;
    }
    let with_secrets = probe
        .admin(
            reqwest::Method::GET,
            "/api/export?includeSecrets=true",
            false,
        )
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("export body");
    probe
        .out
        .vault
        .push(("export with secrets".into(), with_secrets));
    let metrics = probe.stack.metrics_text().await;
    probe.out.hub("gateway metrics", metrics);
    for (server_id, _) in &servers {
        for path in [
            format!("/mcp/{server_id}"),
            format!("/mcp/{server_id}/tools/list"),
        ] {
            let response = probe
                .stack
                .client
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect("sent");
            probe.out.response(&format!("GET {path}"), response).await;
        }
        let Ok(runtime) = probe.stack.registry.get_runtime(server_id).await else {
            continue;
        };
        for worker in runtime.workers {
            if let (Some(host), Some(port)) = (worker.host, worker.port) {
                if let Ok(response) = probe
                    .stack
                    .client
                    .get(format!("http://{host}:{port}/healthz"))
                    .send()
                    .await
                {
                    probe
                        .out
                        .response(&format!("worker {server_id} :{port} /healthz"), response)
                        .await;
                }
            }
        }
    }
    for path in ["/healthz"] {
        for target in [&base, &admin_url] {
            let response = probe
                .stack
                .client
                .get(format!("{target}{path}"))
                .send()
                .await
                .expect("sent");
            probe
                .out
                .response(&format!("GET {target}{path}"), response)
                .await;
        }
    }
    events
        .wait_for("server.delete on the event stream", |t| {
            t.contains("event: server.delete")
        })
        .await;
    probe
        .out
        .hub("dashboard event stream /api/events", events.stop());
    audit_stream
        .wait_for("the last call on the audit stream", |t| {
            t.contains(&last_id)
        })
        .await;
    probe
        .out
        .hub("audit stream /api/audit/stream", audit_stream.stop());

    // ---- Redis: every key, and what went over pub/sub ----
    let prefix = probe.stack.prefix.clone();
    let (keys, vault) = redis_dump(redis_port, &prefix);
    assert!(
        keys.iter()
            .any(|(place, text)| place.contains(":audit") && text.contains("[redacted]")),
        "the audit stream holds the redacted argument"
    );
    probe.out.hub.extend(keys);
    probe.out.vault.extend(vault);
    pubsub_lines_into(&mut probe.out, pubsub);

    // ---- stop every process so that each log is complete, then read them all ----
    let mut parts = vec![
        (&rollback, "the rollback gateway"),
        (&probe.stack.hub.gateway, "the gateway"),
        (&probe.stack.hub.admin, "the admin API"),
    ];
    if let Some(supervisor) = &probe.stack.hub.supervisor {
        parts.push((supervisor, "the supervisor"));
    }
    stop(&parts);
    let mut n_log_lines = 0;
    for entry in std::fs::read_dir(log_dir.path())
        .expect("log dir")
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).expect("log file");
        for (i, line) in text.lines().enumerate() {
            n_log_lines += 1;
            probe.out.hub(
                format!("{} line {}", entry.file_name().to_string_lossy(), i + 1),
                line,
            );
        }
    }
    for service in ["mcp-gateway", "mcp-admin", "mcp-supervisor", "mcp-worker"] {
        let debug = format!("\"level\":\"DEBUG\",\"service\":\"{service}\"");
        assert!(
            probe.out.hub.iter().any(|(_, line)| line.contains(&debug)),
            "{service} logged at debug level ({n_log_lines} log lines)"
        );
    }

    // ---- the search ----
    let mut findings = find(&probe.markers.all(), &probe.out.hub);
    findings.extend(find(&probe.markers.caller, &probe.out.relayed));
    let searched_bytes: usize = probe.out.hub.iter().map(|(_, t)| t.len()).sum();
    eprintln!(
        "secrets: searched {} outputs ({searched_bytes} bytes, {n_log_lines} log lines) and {} relayed results for {} markers",
        probe.out.hub.len(),
        probe.out.relayed.len(),
        probe.markers.all().len(),
    );
    if !findings.is_empty() {
        let kept = log_dir.keep();
        panic!(
            "{} secret(s) found (logs kept in {}):\n{}",
            findings.len(),
            kept.display(),
            findings.join("\n")
        );
    }
    // (`default`'s server was deleted.)
    let registered = [
        "bearer",
        "header",
        "query",
        "basic-base64",
        "down",
        "rollback",
    ];
    for name in registered {
        let marker = probe.markers.get(name);
        assert!(
            probe
                .out
                .vault
                .iter()
                .filter(|(place, _)| place.starts_with("redis"))
                .any(|(_, text)| text.contains(&marker)),
            "the registration store holds `{name}`"
        );
        assert!(
            probe
                .out
                .vault
                .iter()
                .filter(|(place, _)| place == "export with secrets")
                .any(|(_, text)| text.contains(&marker)),
            "the export with secrets holds `{name}`"
        );
    }
}

/// SIGTERM to each, then each one's exit within 10 s (each process writes its queued
/// log lines first). Not reaped, so that the hub's own clean-up still sees them exited.
fn stop(parts: &[(&ChildProcess, &str)]) {
    for (process, _) in parts {
        process.signal(Signal::SIGTERM);
    }
    for (process, what) in parts {
        mcp_testkit::wait_until(&format!("{what} to exit"), Duration::from_secs(10), || {
            process.has_exited().then_some(())
        });
    }
}

/// The pub/sub messages redis-cli printed, `server.upsert` configs with their secrets
/// taken out.
fn pubsub_lines_into(out: &mut Outputs, pubsub: ChildProcess) {
    let lines = pubsub.stdout_lines();
    drop(pubsub);
    let mut n = 0;
    for (i, line) in lines.iter().enumerate() {
        let text = match serde_json::from_str::<Value>(line) {
            Ok(mut message) => {
                strip_secrets(&mut message);
                message.to_string()
            }
            Err(_) => line.clone(),
        };
        out.hub(format!("redis pub/sub message line {}", i + 1), text);
        n += 1;
    }
    assert!(n > 10, "pub/sub messages were seen: {lines:?}");
}

/// MCP Streamable HTTP errors on `sec_header`: every message carries the caller's own
/// `Authorization` header.
async fn mcp_errors(probe: &mut Probe) {
    let url = format!("{}/mcp-servers/sec_header/mcp", probe.stack.base);
    let caller = probe.markers.get("caller-auth");
    let post = |body: String, session: Option<String>| {
        let mut request = probe
            .stack
            .client
            .post(&url)
            .bearer_auth(&caller)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body);
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        request.send()
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "secrets", "version": "1"}}});
    let response = post(init.to_string(), None).await.expect("initialize");
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("a session");
    probe.out.response("mcp initialize", response).await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = post(initialized.to_string(), Some(session.clone()))
        .await
        .expect("initialized");
    probe.out.response("mcp initialized", response).await;
    let header = probe.markers.get("header");
    let calls = [
        json!({"name": "echo", "arguments": {"blob": "mcp"}}),
        json!({"name": "echo", "arguments": {"blob": 7}}),
        json!({"name": "echo_401", "arguments": {}}),
        json!({"name": "status_500", "arguments": {}}),
        json!({"name": "delay", "arguments": {"ms": 3000}}),
        json!({"name": "close_early", "arguments": {}}),
        json!({"name": "inactive", "arguments": {}}),
        json!({"name": "nope", "arguments": {}}),
    ];
    for (i, params) in calls.into_iter().enumerate() {
        let id = 10 + i as i64;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
        let response = post(body.to_string(), Some(session.clone()))
            .await
            .expect("tools/call");
        let (status, text) = probe
            .out
            .response(&format!("mcp tools/call {params}"), response)
            .await;
        assert_eq!(status, 200, "{text}");
        if i == 0 {
            assert!(
                probe
                    .out
                    .relayed
                    .last()
                    .is_some_and(|(_, text)| text.contains(&header)),
                "the MCP echo shows the credential: {text}"
            );
        }
    }
    for (what, body, session) in [
        (
            "unknown method",
            json!({"jsonrpc": "2.0", "id": 30, "method": "nope/nope"}).to_string(),
            Some(session.clone()),
        ),
        (
            "malformed",
            "{\"jsonrpc\": \"2.0\", \"id\": 31, \"method\": ".to_owned(),
            Some(session.clone()),
        ),
        (
            "unknown session",
            json!({"jsonrpc": "2.0", "id": 32, "method": "tools/list"}).to_string(),
            Some("r0.not-a-session".to_owned()),
        ),
        (
            "no session",
            json!({"jsonrpc": "2.0", "id": 33, "method": "tools/list"}).to_string(),
            None,
        ),
    ] {
        let response = post(body, session).await.expect("sent");
        probe.out.response(&format!("mcp {what}"), response).await;
    }
    let response = probe
        .stack
        .client
        .delete(&url)
        .bearer_auth(&caller)
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("delete session");
    probe.out.response("mcp delete session", response).await;
}

/// The old HTTP+SSE transport on `sec_query`: replies arrive on the session's stream.
async fn legacy_sse_errors(probe: &mut Probe) {
    let caller = probe.markers.get("caller-auth");
    let response = probe
        .stack
        .client
        .get(format!("{}/mcp-servers/sec_query/sse", probe.stack.base))
        .bearer_auth(&caller)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("sse");
    assert_eq!(response.status().as_u16(), 200);
    let stream = Stream::follow(response);
    let text = stream
        .wait_for("the endpoint event", |t| {
            t.contains("event: endpoint") && t.contains("\n\n")
        })
        .await;
    let endpoint = text
        .split("data: ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .expect("endpoint")
        .trim()
        .to_owned();
    let messages = format!("{}{endpoint}", probe.stack.base);
    let query = probe.markers.get("query");
    let bodies = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "secrets", "version": "1"}}}).to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"blob": "sse"}}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo_401", "arguments": {}}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "status_404", "arguments": {}}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "nope", "arguments": {}}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "echo", "arguments": {"blob": false}}}).to_string(),
        "{\"jsonrpc\": \"2.0\", \"id\": 7,".to_owned(),
    ];
    for body in bodies {
        let response = probe
            .stack
            .client
            .post(&messages)
            .bearer_auth(&caller)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("message");
        probe
            .out
            .response(&format!("sse message {body}"), response)
            .await;
    }
    for id in 1..=6 {
        stream.message(id).await;
    }
    let response = probe
        .stack
        .client
        .post(format!(
            "{}/mcp-servers/sec_query/messages?session_id=nope",
            probe.stack.base
        ))
        .bearer_auth(&caller)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("message");
    probe.out.response("sse unknown session", response).await;
    let text = stream.stop();
    let (hub, relayed) = split_relayed(&text);
    assert!(
        relayed.contains(&query),
        "the SSE echo shows the credential: {text}"
    );
    probe.out.hub("old SSE session stream", hub);
    probe.out.relayed("old SSE session stream", relayed);
}

/// A slow call to `sec_bearer` whose worker is killed once the call has started; the
/// supervisor starts another.
async fn kill_worker_mid_call(probe: &mut Probe) {
    let runtime = probe
        .stack
        .registry
        .get_runtime("sec_bearer")
        .await
        .expect("runtime");
    let pid = runtime
        .workers
        .iter()
        .find_map(|w| w.pid)
        .expect("a worker pid");
    let request_id = probe.request_id();
    let response = probe
        .stack
        .client
        .post(format!("{}/mcp/sec_bearer/delay", probe.stack.base))
        .bearer_auth(probe.markers.get("caller-auth"))
        .header("x-request-id", &request_id)
        .json(&json!({"args": {"ms": 10000}}))
        .send()
        .await
        .expect("slow call");
    let stream = Stream::follow(response);
    stream
        .wait_for("the slow call to start", |t| {
            t.contains("tool_call.started")
        })
        .await;
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
    mcp_testkit::wait_until_async("the stream to end", Duration::from_secs(15), || async {
        stream.task.is_finished().then_some(())
    })
    .await;
    let text = stream.stop();
    let (hub, relayed) = split_relayed(&text);
    probe.out.hub(
        format!("slow call {request_id} whose worker was killed"),
        hub,
    );
    probe.out.relayed("slow call", relayed);
    mcp_testkit::wait_until_async(
        "a new worker of sec_bearer",
        Duration::from_secs(15),
        || async {
            let runtime = probe.stack.registry.get_runtime("sec_bearer").await.ok()?;
            runtime
                .workers
                .iter()
                .any(|w| {
                    w.pid.is_some_and(|p| p != pid)
                        && w.status == mcp_core::runtime::WorkerStatus::Running
                })
                .then_some(())
        },
    )
    .await;
    probe.stack.wait_routable("sec_bearer", 1).await;
    let (status, _) = probe.call("sec_bearer", "status_500", json!({})).await;
    assert_eq!(status, 200, "the new worker answers");
}
