//! Owns the Host and Origin checks of the old HTTP+SSE transport, which rmcp does not
//! guard (its Streamable HTTP service checks both itself): the same rules, from the same
//! settings (`MCP_WORKER_ALLOWED_HOSTS`, `MCP_WORKER_ALLOWED_ORIGINS`), so a browser
//! page cannot reach a worker through DNS rebinding on either transport.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Allowed `Host` values (`host` or `host:port`; empty = any) and `Origin` values
/// (empty = any).
#[derive(Clone, Debug, Default)]
pub struct Allowed {
    pub hosts: Vec<String>,
    pub origins: Vec<String>,
}

/// Axum middleware: 403 with a JSON error for a Host or Origin that is not allowed.
pub async fn guard(State(allowed): State<Arc<Allowed>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !allowed.hosts.is_empty() && !host.is_some_and(|h| host_allowed(h, &allowed.hosts)) {
        return forbidden("Host is not allowed");
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

/// `host[:port]` split, lowercase, IPv6 brackets removed.
fn split_authority(value: &str) -> Option<(String, Option<u16>)> {
    let value = value.trim();
    // A bare IPv6 address (`::1`, as the settings list it) is a host without a port.
    if let Ok(ip) = value.parse::<std::net::Ipv6Addr>() {
        return Some((ip.to_string(), None));
    }
    let authority: http::uri::Authority = value.parse().ok()?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    Some((host, authority.port_u16()))
}

/// An entry without a port allows every port of that host.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let Some((host, port)) = split_authority(host) else {
        return false;
    };
    allowed
        .iter()
        .filter_map(|a| split_authority(a))
        .any(|(h, p)| {
            h == host
                && match p {
                    Some(p) => port == Some(p),
                    None => true,
                }
        })
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
        let allowed = list(&["localhost", "127.0.0.1", "::1", "hub.example:8443"]);
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
            assert_eq!(host_allowed(host, &allowed), ok, "{host}");
        }
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
