//! Owns the checks of an incoming MCP message that rmcp answers with the wrong code or
//! shape, made before rmcp sees it, for both transports: the body is JSON (-32700), it
//! is one JSON-RPC 2.0 message (-32600: not an object, a batch, no `jsonrpc`, a null or
//! malformed id), and the params of the methods whose absence rmcp would misname
//! (`tools/call` without `params.name`: -32602, not -32601; `initialize` without
//! `protocolVersion`: -32602, not "Session ID is required"). The envelope is checked
//! first ([`envelope`]); params only after the transport's session check
//! ([`params`]), so an unknown session is told so first. Arguments against a tool's
//! schema are `mcp.rs`'s (`call_tool`), inside the session, in the negotiated
//! version's shape.

use serde_json::{json, Map, Value};

pub const PARSE_ERROR: i32 = -32700;
pub const INVALID_REQUEST: i32 = -32600;
pub const INVALID_PARAMS: i32 = -32602;

/// A message refused with a JSON-RPC error.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: i32,
    pub message: String,
    /// The request's id when it has a usable one, else `null`.
    pub id: Value,
}

impl Refusal {
    fn new(code: i32, message: impl Into<String>, id: Value) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            id,
        }
    }

    /// The JSON-RPC error response.
    pub fn body(&self) -> Value {
        json!({"jsonrpc": "2.0", "id": self.id, "error": {"code": self.code, "message": self.message}})
    }
}

/// A message whose envelope passed: its id (requests only) and what [`params`] needs.
#[derive(Debug)]
pub struct Message {
    pub value: Map<String, Value>,
}

impl Message {
    pub fn method(&self) -> Option<&str> {
        self.value.get("method").and_then(Value::as_str)
    }
    pub fn is_request(&self) -> bool {
        self.method().is_some() && self.value.contains_key("id")
    }
    fn id(&self) -> Value {
        self.value.get("id").cloned().unwrap_or(Value::Null)
    }
}

/// The body is one JSON-RPC 2.0 request, notification or response.
pub fn envelope(body: &[u8]) -> Result<Message, Refusal> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| Refusal::new(PARSE_ERROR, format!("Parse error: {err}"), Value::Null))?;
    let object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err(Refusal::new(
                INVALID_REQUEST,
                "Invalid Request: batches are not supported (one JSON-RPC message per request)",
                Value::Null,
            ))
        }
        _ => {
            return Err(Refusal::new(
                INVALID_REQUEST,
                "Invalid Request: a JSON-RPC message is an object",
                Value::Null,
            ))
        }
    };
    let id = object.get("id");
    let usable_id = match id {
        Some(id @ Value::String(_)) => id.clone(),
        Some(id @ Value::Number(n)) if n.is_i64() || n.is_u64() => id.clone(),
        _ => Value::Null,
    };
    let invalid = |message: &str| Err(Refusal::new(INVALID_REQUEST, message, usable_id.clone()));
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid("Invalid Request: \"jsonrpc\" must be \"2.0\"");
    }
    match id {
        None | Some(Value::String(_)) => {}
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {}
        Some(Value::Null) => return invalid("Invalid Request: the id must not be null"),
        Some(_) => return invalid("Invalid Request: the id must be a string or an integer"),
    }
    match object.get("method") {
        Some(Value::String(_)) => {}
        Some(_) => return invalid("Invalid Request: \"method\" must be a string"),
        None => {
            // A response or an error to a request of ours.
            let result = object.contains_key("result");
            let error = object.contains_key("error");
            if id.is_none() || result == error {
                return invalid(
                    "Invalid Request: neither a request (\"method\") nor a response (\"id\" and \"result\" or \"error\")",
                );
            }
        }
    }
    Ok(Message { value: object })
}

/// The params of the methods rmcp would misname when they are missing or malformed.
pub fn params(message: &Message) -> Result<(), Refusal> {
    let params = message.value.get("params").and_then(Value::as_object);
    let invalid = |what: &str| {
        Err(Refusal::new(
            INVALID_PARAMS,
            format!("Invalid params: {what}"),
            message.id(),
        ))
    };
    if message
        .value
        .get("params")
        .is_some_and(|p| !p.is_object() && !p.is_null())
    {
        return invalid("\"params\" must be an object");
    }
    match message.method() {
        Some("tools/call") if message.is_request() => {
            let Some(params) = params else {
                return invalid("tools/call needs \"params\" with the tool's \"name\"");
            };
            match params.get("name") {
                Some(Value::String(_)) => {}
                None => return invalid("tools/call needs \"params.name\", the tool to call"),
                Some(_) => return invalid("\"params.name\" must be a string"),
            }
            if params
                .get("arguments")
                .is_some_and(|a| !a.is_object() && !a.is_null())
            {
                return invalid("\"params.arguments\" must be an object");
            }
        }
        Some("initialize") if message.is_request() => {
            let Some(params) = params else {
                return invalid("initialize needs \"params\" with \"protocolVersion\", \"capabilities\" and \"clientInfo\"");
            };
            if !params.get("protocolVersion").is_some_and(Value::is_string) {
                return invalid(
                    "initialize needs \"params.protocolVersion\" (a string such as \"2025-11-25\")",
                );
            }
            if !params.get("capabilities").is_some_and(Value::is_object) {
                return invalid("initialize needs \"params.capabilities\" (an object)");
            }
            let client_info = params.get("clientInfo").and_then(Value::as_object);
            if !client_info.is_some_and(|c| {
                c.get("name").is_some_and(Value::is_string)
                    && c.get("version").is_some_and(Value::is_string)
            }) {
                return invalid(
                    "initialize needs \"params.clientInfo\" with a \"name\" and a \"version\"",
                );
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str) -> Option<(i32, Value)> {
        envelope(body.as_bytes())
            .and_then(|m| params(&m))
            .err()
            .map(|r| (r.code, r.id))
    }

    #[test]
    fn envelopes_and_params() {
        let null = Value::Null;
        for (body, expected) in [
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, None),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                None,
            ),
            (r#"{"jsonrpc":"2.0","id":"a","result":{}}"#, None),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"#,
                Some((PARSE_ERROR, null.clone())),
            ),
            ("", Some((PARSE_ERROR, null.clone()))),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
                Some((INVALID_REQUEST, null.clone())),
            ),
            ("42", Some((INVALID_REQUEST, null.clone()))),
            (
                r#"{"id":1,"method":"ping"}"#,
                Some((INVALID_REQUEST, json!(1))),
            ),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
                Some((INVALID_REQUEST, json!(1))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                Some((INVALID_REQUEST, null.clone())),
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
                Some((INVALID_REQUEST, null.clone())),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
                Some((INVALID_REQUEST, null.clone())),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
                Some((INVALID_REQUEST, json!(1))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1}"#,
                Some((INVALID_REQUEST, json!(1))),
            ),
            (
                r#"{"jsonrpc":"2.0","result":{}}"#,
                Some((INVALID_REQUEST, null.clone())),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#,
                Some((INVALID_PARAMS, json!(1))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"tools/call"}"#,
                Some((INVALID_PARAMS, json!(3))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{}}"#,
                Some((INVALID_PARAMS, json!(3))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":1}}"#,
                Some((INVALID_PARAMS, json!(3))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t","arguments":[]}}"#,
                Some((INVALID_PARAMS, json!(3))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t"}}"#,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"i","method":"initialize","params":{"capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#,
                Some((INVALID_PARAMS, json!("i"))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"i","method":"initialize"}"#,
                Some((INVALID_PARAMS, json!("i"))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"i","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c"}}}"#,
                Some((INVALID_PARAMS, json!("i"))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"i","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#,
                None,
            ),
        ] {
            assert_eq!(check(body), expected, "{body}");
        }
        let refusal = envelope(b"{").expect_err("refused");
        assert_eq!(refusal.body()["error"]["code"], PARSE_ERROR);
        assert_eq!(refusal.body()["id"], Value::Null);
        assert_eq!(refusal.body()["jsonrpc"], "2.0");
    }
}
