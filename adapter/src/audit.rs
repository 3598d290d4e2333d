//! Owns a call's audit entry: who called ([`Caller`], from the transport) and what came
//! of it, recorded once when [`crate::invoke::execute`] ends, or when its future is
//! dropped (the caller went away: `cancelled`), into an [`mcp_core::audit::Sink`]. Every
//! transport's call passes through `execute`, so this is the one hook for all of them.
//! What it must not do: wait (the sink's `record` never does), or let a secret of the
//! server's `auth` into an entry ([`redacted_args`]).

use std::time::Instant;

use mcp_core::audit::{Entry, Sink};
use mcp_core::model::{ServerConfig, ToolBinding};
use serde_json::{Map, Value};

use crate::http::Delta;

/// Which transport a call came through and who sent it.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// `hub`, `mcp`, `sse` or `rollback`.
    pub transport: &'static str,
    /// The client's address, as the gateway saw it (`X-Forwarded-For`).
    pub addr: Option<String>,
    /// The MCP session id.
    pub session: Option<String>,
}

impl Caller {
    /// The first address of an `X-Forwarded-For` value, if it has one.
    pub fn forwarded_for(value: Option<&str>) -> Option<String> {
        value
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 64)
            .map(str::to_owned)
    }
}

/// What a call needs to be audited: the sink and the caller. Set on
/// [`crate::invoke::Prepared::audit`] by the transport.
#[derive(Clone, Debug)]
pub struct Ticket {
    pub sink: Sink,
    pub caller: Caller,
}

/// The entry of one call in progress; recorded on [`Recording::finish`] or on drop.
pub(crate) struct Recording {
    sink: Sink,
    entry: Option<Entry>,
    started: Instant,
    /// Bytes of the deltas sent so far (counted by [`crate::http::Deltas`]; read when
    /// the entry is recorded, a cancelled call's included).
    pub(crate) result_bytes: std::sync::atomic::AtomicU64,
}

impl Recording {
    pub(crate) fn start(
        ticket: &Ticket,
        server_id: &str,
        server: &ServerConfig,
        tool: &ToolBinding,
        args: &Map<String, Value>,
        request_id: &str,
    ) -> Recording {
        let args_bytes = json_len(args);
        let entry = Entry {
            request_id: request_id.to_owned(),
            server: server_id.to_owned(),
            tool: tool.name.clone(),
            transport: ticket.caller.transport.to_owned(),
            caller: ticket.caller.addr.clone(),
            session: ticket.caller.session.clone(),
            status: "cancelled".to_owned(),
            error: Some("cancelled".to_owned()),
            args_bytes,
            args: server
                .audit_includes_arguments()
                .then(|| redacted_args(args, server, tool)),
            ..Entry::default()
        };
        Recording {
            sink: ticket.sink.clone(),
            entry: Some(entry),
            started: Instant::now(),
            result_bytes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The call ended: `rest_status` when the REST API answered, `error` its code.
    pub(crate) fn finish(&mut self, rest_status: Option<u16>, error: Option<&'static str>) {
        if let Some(entry) = self.entry.as_mut() {
            entry.rest_status = rest_status;
            entry.status = match error {
                None => "ok",
                Some("cancelled") => "cancelled",
                Some(_) => "error",
            }
            .to_owned();
            entry.error = error.map(str::to_owned);
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            entry.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            entry.ts = mcp_core::runtime::unix_millis();
            entry.result_bytes = *self.result_bytes.get_mut();
            self.sink.record(entry);
        }
    }
}

/// Bytes of a delta as JSON (a raw JSON body: its length; a string: its length).
pub(crate) fn delta_len(delta: &Delta) -> u64 {
    match delta {
        Delta::Json(raw) => raw.get().len() as u64,
        Delta::Value(Value::String(text)) => text.len() as u64,
        Delta::Value(value) => json_len(value),
    }
}

/// Length of `value` as compact JSON, counted without building the text.
fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Written in place of a secret.
pub const REDACTED: &str = "[redacted]";

/// The arguments as JSON with secrets taken out: every argument sent as a header that
/// carries credentials (the server's auth header, or one named as a credential:
/// [`redact_credential_headers`]) and every string holding the server's `auth.value` or a default header's
/// value become [`REDACTED`].
pub fn redacted_args(
    args: &Map<String, Value>,
    server: &ServerConfig,
    tool: &ToolBinding,
) -> String {
    let mut args = args.clone();
    redact_credential_headers(
        &mut args,
        &tool.param_mapping.headers,
        server.auth.key.as_deref(),
    );
    let mut secrets: Vec<&str> = server.auth.value.iter().map(String::as_str).collect();
    secrets.extend(server.default_headers.values().map(String::as_str));
    secrets.retain(|s| s.len() >= 4);
    let mut copy = Value::Object(args);
    redact(&mut copy, &secrets);
    serde_json::to_string(&copy).unwrap_or_default()
}

/// Arguments a tool sends as credential headers, redacted before the rest: a header
/// the admin API masks in `defaultHeaders` ([`mcp_core::model::is_credential_header`]:
/// `Authorization`, `Cookie`, `X-Api-Key`, `X-Session-Token`, ...) or the server's auth
/// header.
pub fn redact_credential_headers(
    args: &mut Map<String, Value>,
    headers: &std::collections::BTreeMap<String, String>,
    auth_key: Option<&str>,
) {
    for (header, arg) in headers {
        let credential = mcp_core::model::is_credential_header(header)
            || auth_key.is_some_and(|k| header.eq_ignore_ascii_case(k));
        if credential {
            if let Some(value) = args.get_mut(arg) {
                *value = Value::String(REDACTED.to_owned());
            }
        }
    }
}

fn redact(value: &mut Value, secrets: &[&str]) {
    match value {
        Value::String(text) if secrets.iter().any(|s| text.contains(s)) => {
            *text = REDACTED.to_owned();
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| redact(v, secrets)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_of_the_server_never_reach_the_arguments_text() {
        let server: ServerConfig = serde_json::from_value(json!({
            "name": "s", "baseUrl": "http://x",
            "auth": {"type": "bearer", "value": "tok-SECRET-1"},
            "defaultHeaders": {"x-api-key": "key-SECRET-2"}
        }))
        .expect("server");
        let args = json!({"q": "hello", "nested": [{"t": "Bearer tok-SECRET-1"}], "k": "key-SECRET-2", "n": 3});
        let Value::Object(args) = args else {
            unreachable!()
        };
        let tool: ToolBinding = serde_json::from_value(json!({
            "name": "t", "method": "GET", "pathTemplate": "/",
            "paramMapping": {"headers": {"Authorization": "n"}}
        }))
        .expect("tool");
        let text = redacted_args(&args, &server, &tool);
        assert!(text.contains("\"n\":\"[redacted]\""), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("hello") && text.contains(REDACTED), "{text}");
    }

    #[test]
    fn credential_headers_are_redacted_by_name() {
        let mut args = Map::new();
        args.insert("token".into(), json!("abc"));
        args.insert("key".into(), json!("def"));
        args.insert("plain".into(), json!("ghi"));
        args.insert("session".into(), json!("jkl"));
        args.insert("proxy".into(), json!("mno"));
        let headers = [
            ("Authorization".to_owned(), "token".to_owned()),
            ("X-Key".to_owned(), "key".to_owned()),
            ("X-Trace".to_owned(), "plain".to_owned()),
            ("X-Session-Token".to_owned(), "session".to_owned()),
            ("Proxy-Authorization".to_owned(), "proxy".to_owned()),
        ]
        .into_iter()
        .collect();
        redact_credential_headers(&mut args, &headers, None);
        assert_eq!(args["token"], REDACTED);
        assert_eq!(args["key"], REDACTED, "a name ending in key");
        assert_eq!(args["session"], REDACTED);
        assert_eq!(args["proxy"], REDACTED);
        assert_eq!(args["plain"], "ghi");
        let mut args = Map::new();
        args.insert("plain".into(), json!("ghi"));
        let headers = [("X-Trace".to_owned(), "plain".to_owned())]
            .into_iter()
            .collect();
        redact_credential_headers(&mut args, &headers, Some("x-trace"));
        assert_eq!(args["plain"], REDACTED, "the server's auth header");
    }

    #[test]
    fn sizes_are_the_json_lengths() {
        assert_eq!(json_len(&json!({"a": 1})), 7);
        assert_eq!(delta_len(&Delta::Value(json!("abc"))), 3);
        assert_eq!(delta_len(&Delta::Value(json!([1, 2]))), 5);
    }
}
