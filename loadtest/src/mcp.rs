//! Owns the MCP side of the generator: opening Streamable HTTP sessions
//! (`initialize` + `notifications/initialized`), the `tools/call` request, and reading
//! a JSON-RPC answer whether it comes as JSON or as an SSE `message` event.

use anyhow::{bail, Context};
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::Url;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::report::Failure;
use mcp_adapter::sse;

pub const PROTOCOL_VERSION: &str = "2025-11-25";
pub const SESSION_HEADER: &str = "mcp-session-id";
pub const VERSION_HEADER: &str = "mcp-protocol-version";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// Session set-up and tear-down are not measured; they only must not hang.
const SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An initialized session on one server's MCP endpoint.
#[derive(Clone, Debug)]
pub struct Session {
    pub url: Url,
    /// `Mcp-Session-Id` as the server issued it, ready to send.
    pub id: HeaderValue,
    pub protocol: HeaderValue,
}

impl Session {
    /// `initialize`, then `notifications/initialized`.
    pub async fn open(client: &reqwest::Client, url: Url) -> anyhow::Result<Session> {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "mcp-loadtest", "version": env!("CARGO_PKG_VERSION")},
        }});
        let response = client
            .post(url.clone())
            .header(ACCEPT, ACCEPT_BOTH)
            .timeout(SETUP_TIMEOUT)
            .json(&init)
            .send()
            .await
            .with_context(|| format!("initialize at {url}"))?;
        let status = response.status();
        let id = response
            .headers()
            .get(SESSION_HEADER)
            .cloned()
            .with_context(|| format!("initialize at {url}: no Mcp-Session-Id (status {status})"))?;
        let (answer, _) = read_answer(response, 0)
            .await
            .map_err(|f| anyhow::anyhow!("initialize at {url}: {}", f.label()))?;
        let Some(version) = answer["result"]["protocolVersion"].as_str() else {
            bail!("initialize at {url}: no protocolVersion in {answer}");
        };
        let protocol = HeaderValue::from_str(version).context("protocol version header")?;
        let session = Session { url, id, protocol };
        let response = client
            .post(session.url.clone())
            .header(ACCEPT, ACCEPT_BOTH)
            .header(SESSION_HEADER, session.id.clone())
            .header(VERSION_HEADER, session.protocol.clone())
            .timeout(SETUP_TIMEOUT)
            .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await
            .context("notifications/initialized")?;
        if !response.status().is_success() {
            bail!(
                "notifications/initialized at {}: status {}",
                session.url,
                response.status()
            );
        }
        Ok(session)
    }

    /// Ends the session (`DELETE`); errors are ignored, the server expires it anyway.
    pub async fn close(&self, client: &reqwest::Client) {
        let _ = client
            .delete(self.url.clone())
            .timeout(SETUP_TIMEOUT)
            .header(SESSION_HEADER, self.id.clone())
            .header(VERSION_HEADER, self.protocol.clone())
            .send()
            .await;
    }

    /// A `tools/call` request ready to send.
    pub fn tools_call(
        &self,
        client: &reqwest::Client,
        id: u64,
        tool: &str,
        args: &Value,
    ) -> reqwest::RequestBuilder {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": args}});
        client
            .post(self.url.clone())
            .header(ACCEPT, ACCEPT_BOTH)
            .header(CONTENT_TYPE, "application/json")
            .header(SESSION_HEADER, self.id.clone())
            .header(VERSION_HEADER, self.protocol.clone())
            .body(body.to_string())
    }
}

/// Whether a JSON-RPC answer to `tools/call` is a success.
pub fn judge(answer: &Value) -> Result<(), Failure> {
    if answer.get("error").is_some() {
        return Err(Failure::RpcError);
    }
    match answer.get("result") {
        Some(result) if result["isError"] == true => Err(Failure::ToolError),
        Some(_) => Ok(()),
        None => Err(Failure::Protocol),
    }
}

/// Reads the JSON-RPC answer with `id` from a response (JSON body or SSE stream), and
/// when it arrived. The rest of the body is read too (briefly), so the connection can
/// be reused.
pub async fn read_answer(
    mut response: reqwest::Response,
    id: u64,
) -> Result<(Value, Instant), Failure> {
    let status = response.status();
    if !status.is_success() {
        let _ = response.bytes().await;
        return Err(Failure::Http(status.as_u16()));
    }
    if !is_event_stream(&response) {
        let bytes = response.bytes().await.map_err(crate::driver::classify)?;
        let answer = serde_json::from_slice(&bytes).map_err(|_| Failure::Protocol)?;
        return Ok((answer, Instant::now()));
    }
    let mut scanner = sse::Parser::new();
    let mut answer = None;
    while let Some(chunk) = response.chunk().await.map_err(crate::driver::classify)? {
        scanner
            .feed(&chunk, |event| {
                if answer.is_none() && event.name == "message" {
                    answer = matching(&event.data, id);
                }
            })
            .map_err(|_| Failure::Protocol)?;
        if let Some(answer) = answer.take() {
            let at = Instant::now();
            crate::driver::drain(&mut response).await;
            return Ok((answer, at));
        }
    }
    Err(Failure::Protocol)
}

/// The JSON-RPC response in `data` when it answers `id`.
pub fn matching(data: &str, id: u64) -> Option<Value> {
    let value: Value = serde_json::from_str(data).ok()?;
    (value["id"] == id).then_some(value)
}

pub fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_by_error_and_is_error() {
        let ok = json!({"jsonrpc": "2.0", "id": 3, "result": {"content": [], "isError": false}});
        assert_eq!(judge(&ok), Ok(()));
        let tool = json!({"jsonrpc": "2.0", "id": 3, "result": {"content": [], "isError": true}});
        assert_eq!(judge(&tool), Err(Failure::ToolError));
        let rpc = json!({"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "bad"}});
        assert_eq!(judge(&rpc), Err(Failure::RpcError));
        assert_eq!(judge(&json!({"id": 3})), Err(Failure::Protocol));
        assert!(matching(&ok.to_string(), 3).is_some());
        assert!(matching(&ok.to_string(), 4).is_none());
        assert!(matching("{not json", 3).is_none());
    }
}
