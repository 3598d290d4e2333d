//! Owns the Host and Origin checks of the old HTTP+SSE transport, which rmcp does not
//! guard (its Streamable HTTP service checks both itself): the same rules, from the same
//! settings (`MCP_WORKER_ALLOWED_HOSTS`, `MCP_WORKER_ALLOWED_ORIGINS`), so a browser
//! page cannot reach a worker through DNS rebinding on either transport. Host values
//! are matched by `mcp_core::web_guard::HostList`, the gateway's and the admin API's
//! rule, which is also rmcp's (an entry without a port allows every port); Origins
//! exactly, as rmcp's `with_allowed_origins` list does here.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mcp_core::web_guard::HostList;
use serde_json::json;

/// Allowed `Host` values (`None` = any) and `Origin` values (empty = any).
#[derive(Clone, Debug, Default)]
pub struct Allowed {
    hosts: Option<HostList>,
    origins: Vec<String>,
}

impl Allowed {
    /// From the settings: `hosts` as `MCP_WORKER_ALLOWED_HOSTS` lists them (each entry
    /// checked at start-up by [`crate::config`]; empty = any), `origins` likewise.
    pub fn new(hosts: &[String], origins: &[String]) -> Allowed {
        Allowed {
            hosts: HostList::parse(hosts).ok(),
            origins: origins.to_vec(),
        }
    }
}

/// Axum middleware: 403 with a JSON error for a Host or Origin that is not allowed.
pub async fn guard(State(allowed): State<Arc<Allowed>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let Some(hosts) = &allowed.hosts {
        let host = headers.get(header::HOST).map(|v| v.as_bytes());
        if !host.is_some_and(|h| hosts.allows(h)) {
            return forbidden("Host is not allowed");
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| origin_allowed(o, &allowed.origins));
        if !ok {
            return forbidden("Origin is not allowed");
        }
    }
    next.run(request).await
}

fn forbidden(message: &str) -> Response {
    let body = json!({"error": {"code": "forbidden", "message": message}});
    (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
}

/// Exact match of scheme, host and port, case-insensitive; an empty list allows any.
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    allowed.is_empty()
        || allowed.iter().any(|a| {
            a.trim()
                .trim_end_matches('/')
                .eq_ignore_ascii_case(origin.trim())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hosts() {
        let allowed = Allowed::new(
            &list(&["localhost", "127.0.0.1", "::1", "hub.example:8443"]),
            &[],
        );
        let hosts = allowed.hosts.expect("a host list");
        for (host, ok) in [
            ("localhost", true),
            ("LOCALHOST:9100", true),
            ("127.0.0.1:9100", true),
            ("[::1]:9100", true),
            ("hub.example:8443", true),
            ("hub.example:80", false),
            ("hub.example", false),
            ("evil.example", false),
            ("localhost.evil.example", false),
            ("", false),
            ("a b", false),
        ] {
            assert_eq!(hosts.allows(host.as_bytes()), ok, "{host}");
        }
        assert!(Allowed::new(&[], &[]).hosts.is_none(), "empty = any");
    }

    #[test]
    fn origins() {
        let allowed = list(&["http://localhost:3000", "https://app.example/"]);
        assert!(origin_allowed("http://localhost:3000", &allowed));
        assert!(origin_allowed("HTTPS://APP.EXAMPLE", &allowed));
        assert!(!origin_allowed("http://localhost:3001", &allowed));
        assert!(!origin_allowed("null", &allowed));
        assert!(origin_allowed("http://anything", &[]));
    }
}
