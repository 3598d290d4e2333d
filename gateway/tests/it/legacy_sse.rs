//! The old HTTP+SSE transport through the gateway: every reply to a request arrives on
//! the session's stream, refusals included, and every message's POST answers 202 (old
//! clients read replies only from the stream, so one in the POST's answer is lost).

use std::time::Duration;

use serde_json::{json, Value};

use crate::{Options, Stack};

/// One old-transport session through the gateway: its stream and its message URL.
pub(crate) struct Session {
    stream: reqwest::Response,
    text: String,
    pub(crate) messages_url: String,
}

impl Session {
    pub(crate) async fn open(stack: &Stack, server_id: &str, version: &str) -> Session {
        let stream = stack
            .client
            .get(format!("{}/mcp-servers/{server_id}/sse", stack.base))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("sse");
        assert_eq!(stream.status().as_u16(), 200);
        let mut session = Session {
            stream,
            text: String::new(),
            messages_url: String::new(),
        };
        session
            .read_until(|t| t.contains("event: endpoint\ndata: ") && t.contains("\n\n"))
            .await;
        let endpoint = session
            .text
            .split("data: ")
            .nth(1)
            .and_then(|r| r.lines().next())
            .expect("endpoint")
            .to_owned();
        session.messages_url = format!("{}{endpoint}", stack.base);
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
        assert_eq!(session.post(stack, &init.to_string()).await.0, 202);
        let answer = session.reply(1).await;
        assert_eq!(answer["result"]["protocolVersion"], version, "{answer}");
        let initialized = r#"{"jsonrpc": "2.0", "method": "notifications/initialized"}"#;
        assert_eq!(session.post(stack, initialized).await.0, 202);
        session
    }

    pub(crate) async fn post(&self, stack: &Stack, body: &str) -> (u16, String) {
        let response = stack
            .client
            .post(&self.messages_url)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("sent");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn read_until(&mut self, done: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done(&self.text) {
            let chunk = tokio::time::timeout_at(deadline, self.stream.chunk())
                .await
                .unwrap_or_else(|_| panic!("in time; the stream so far: {}", self.text))
                .expect("chunk")
                .expect("open stream");
            self.text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The `message` event on the stream that answers request `id`.
    pub(crate) async fn reply(&mut self, id: i64) -> Value {
        let find = |text: &str| {
            text.lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .find(|v| v["id"] == id)
        };
        self.read_until(|t| find(t).is_some()).await;
        find(&self.text).unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn refusals_arrive_on_the_stream_and_every_post_is_accepted() {
    let stack = Stack::start(Options::default()).await;
    let mut old = Session::open(&stack, "fakestore_api", "2024-11-05").await;

    // Arguments that fail the schema: 202, then -32602 with every violation on the
    // stream (2024-11-05 predates tool results for input errors).
    let bad = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add_product", "arguments": {"title": "", "price": "free"}}});
    let (status, text) = old.post(&stack, &bad.to_string()).await;
    assert_eq!(status, 202, "{text}");
    let reply = old.reply(2).await;
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    let mut pointers: Vec<&str> = reply["error"]["data"]["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .filter_map(|v| v["pointer"].as_str())
        .collect();
    pointers.sort_unstable();
    assert_eq!(pointers, ["/price", "/title"], "{reply}");

    // No params, and no name: 202 and -32602 on the stream, not -32601.
    for (id, body) in [
        (
            3,
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call"}),
        ),
        (
            4,
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"arguments": {}}}),
        ),
    ] {
        let (status, text) = old.post(&stack, &body.to_string()).await;
        assert_eq!(status, 202, "{text}");
        let reply = old.reply(id).await;
        assert_eq!(reply["error"]["code"], -32602, "{reply}");
    }
    // Not one JSON-RPC message: refused in the POST's answer, 400 with its code.
    for (body, code) in [
        (r#"{"jsonrpc": "2.0", "id": 5,"#, -32700),
        (r#"[{"jsonrpc": "2.0", "id": 5, "method": "ping"}]"#, -32600),
        (r#"{"id": 5, "method": "ping"}"#, -32600),
    ] {
        let (status, text) = old.post(&stack, body).await;
        assert_eq!(status, 400, "{body}: {text}");
        let answer: Value = serde_json::from_str(&text).expect("a JSON-RPC error");
        assert_eq!(answer["error"]["code"], code, "{body}: {text}");
    }
    // The session still works.
    let good = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "get_product_by_id", "arguments": {"id": 1}}});
    assert_eq!(old.post(&stack, &good.to_string()).await.0, 202);
    let reply = old.reply(6).await;
    assert!(
        reply["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Backpack")),
        "{reply}"
    );

    // A 2025-11-25 session on the same transport: a tool result with isError.
    let mut new = Session::open(&stack, "fakestore_api", "2025-11-25").await;
    assert_eq!(new.post(&stack, &bad.to_string()).await.0, 202);
    let reply = new.reply(2).await;
    assert_eq!(reply["result"]["isError"], true, "{reply}");

    assert_eq!(
        stack.product_count().await,
        5,
        "no refused call reached the REST API"
    );
}
