//! Owns the admin API's web-security check, run on every request but `/healthz` before
//! any route sees it: the `Host` allow-list (`MCP_ADMIN_ALLOWED_HOSTS`, against DNS
//! rebinding) and the `Origin` policy (`MCP_ADMIN_ALLOWED_ORIGINS`, against cross-site
//! requests from a page the operator has open: a `text/plain` or form POST needs no CORS
//! preflight, so without it any page could change the registry). The rules are
//! `mcp_core::web_guard`'s, the gateway's too; the answers are [`ApiError`]s.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mcp_core::web_guard::{origin_allowed, HostList};

use crate::error::ApiError;

/// The parsed allow-lists, shared by every request (`Arc`: read-only after start-up).
#[derive(Clone, Debug)]
pub struct WebGuard {
    hosts: HostList,
    origins: Vec<String>,
}

impl WebGuard {
    /// From the settings' entries; `Err` names the bad host entry.
    pub fn new(hosts: &[String], origins: &[String]) -> Result<WebGuard, String> {
        Ok(WebGuard {
            hosts: HostList::parse(hosts)?,
            origins: origins
                .iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
        })
    }

    /// Host first, then Origin. A request without an `Origin` (curl, the CLI, a
    /// same-origin GET) passes the second; the API's own origin (the one its `Host`
    /// names: the dashboard it serves) always does.
    pub fn check(&self, request: &Request) -> Result<(), ApiError> {
        if request.uri().path() == "/healthz" {
            return Ok(());
        }
        let headers = request.headers();
        let host = headers.get(HOST).map(|v| v.as_bytes());
        if !host.is_some_and(|h| self.hosts.allows(h)) {
            return Err(ApiError::HostForbidden(match host {
                Some(h) => format!(
                    "Host {:?} is not allowed (MCP_ADMIN_ALLOWED_HOSTS)",
                    String::from_utf8_lossy(h)
                ),
                None => "a Host header is required".to_owned(),
            }));
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let allowed = origin
                .to_str()
                .is_ok_and(|o| origin_allowed(o, host, &self.origins));
            if !allowed {
                return Err(ApiError::OriginForbidden(format!(
                    "origin {:?} is not allowed (MCP_ADMIN_ALLOWED_ORIGINS)",
                    String::from_utf8_lossy(origin.as_bytes())
                )));
            }
        }
        Ok(())
    }
}

/// The middleware: refuses with 403 (`host_forbidden`, `origin_forbidden`) or passes on.
pub async fn check(State(guard): State<Arc<WebGuard>>, request: Request, next: Next) -> Response {
    match guard.check(&request) {
        Ok(()) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> WebGuard {
        let list = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        WebGuard::new(
            &list(mcp_core::web_guard::DEFAULT_ALLOWED_HOSTS),
            &list(mcp_core::web_guard::DEFAULT_ALLOWED_ORIGINS),
        )
        .expect("defaults parse")
    }

    fn code(method: &str, path: &str, headers: &[(&str, &str)]) -> Option<&'static str> {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(axum::body::Body::empty()).expect("request");
        guard().check(&request).err().map(|e| e.code())
    }

    #[test]
    fn host_then_origin() {
        let local = ("host", "127.0.0.1:8081");
        assert_eq!(code("GET", "/api/servers", &[local]), None);
        assert_eq!(code("GET", "/api/servers", &[("host", "LOCALHOST")]), None);
        assert_eq!(code("GET", "/api/servers", &[("host", "[::1]:8081")]), None);
        assert_eq!(
            code("GET", "/api/servers", &[("host", "evil.example.com")]),
            Some("host_forbidden")
        );
        assert_eq!(code("GET", "/api/servers", &[]), Some("host_forbidden"));
        assert_eq!(
            code("GET", "/dashboard/", &[("host", "rebound.example:8081")]),
            Some("host_forbidden")
        );
        // Probes call /healthz by any name.
        assert_eq!(code("GET", "/healthz", &[("host", "10.1.2.3:8081")]), None);
        assert_eq!(
            code(
                "POST",
                "/api/import",
                &[local, ("origin", "http://evil.example.com")]
            ),
            Some("origin_forbidden")
        );
        assert_eq!(
            code("DELETE", "/api/servers/x", &[local, ("origin", "null")]),
            Some("origin_forbidden")
        );
        // Its own origin, a loopback page (any port) and no Origin at all pass.
        for origin in [
            "http://127.0.0.1:8081",
            "http://localhost:5173",
            "http://127.0.0.1",
        ] {
            assert_eq!(
                code("POST", "/api/import", &[local, ("origin", origin)]),
                None,
                "{origin}"
            );
        }
        assert_eq!(
            code(
                "POST",
                "/api/import",
                &[
                    ("host", "localhost:8081"),
                    ("origin", "http://localhost:8081")
                ]
            ),
            None
        );
    }
}
