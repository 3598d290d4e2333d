//! Owns the gateway's error contract: `{"error": {"code", "message", "request_id",
//! "details"?}}` with a stable code per kind, the HTTP status, and `Retry-After` on 503.
//! Requests that fail after the upstream was chosen carry their `GatewayError` in the
//! request context until `fail_to_proxy` writes it.

use serde_json::{json, Value};

#[derive(Clone, Debug, PartialEq)]
pub struct GatewayError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Boxed: errors travel in `Result`s on the hot path; keep them small.
    pub details: Option<Box<Value>>,
    pub retry_after_secs: Option<u32>,
    /// When set, the answer is a JSON-RPC error for this request id, with
    /// [`GatewayError::jsonrpc_code`].
    pub jsonrpc_id: Option<Box<Value>>,
    pub jsonrpc_code: i32,
}

impl GatewayError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> GatewayError {
        GatewayError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after_secs: None,
            jsonrpc_id: None,
            jsonrpc_code: -32602,
        }
    }

    pub fn with_details(mut self, details: Value) -> GatewayError {
        self.details = Some(Box::new(details));
        self
    }

    pub fn not_found(what: String) -> GatewayError {
        GatewayError::new(404, "not_found", what)
    }

    pub fn no_worker(server_id: &str) -> GatewayError {
        let mut err = GatewayError::new(
            503,
            "no_worker",
            format!("no running worker for server {server_id:?}"),
        );
        err.retry_after_secs = Some(1);
        err
    }

    /// The body, with the request id filled in.
    pub fn body(&self, request_id: &str) -> Value {
        if let Some(id) = &self.jsonrpc_id {
            let mut error = json!({"code": self.jsonrpc_code, "message": self.message,
                "data": {"code": self.code, "request_id": request_id}});
            if let Some(details) = &self.details {
                error["data"]["violations"] = (**details).clone();
            }
            return json!({"jsonrpc": "2.0", "id": id, "error": error});
        }
        let mut error =
            json!({"code": self.code, "message": self.message, "request_id": request_id});
        if let Some(details) = &self.details {
            error["details"] = (**details).clone();
        }
        json!({"error": error})
    }
}
