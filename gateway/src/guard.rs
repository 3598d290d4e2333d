//! Owns the gateway's web-security rules, checked from a request's head before anything
//! else looks at it: the `Host` allow-list (`MCP_GATEWAY_ALLOWED_HOSTS`, against DNS
//! rebinding), the `Origin` policy (`MCP_GATEWAY_ALLOWED_ORIGINS`, against cross-site
//! requests from a page the operator has open) and the JSON content type that a route
//! which runs a tool or writes the registry requires (a `text/plain` or form POST needs
//! no CORS preflight, so without it any page could send one). Pure functions over
//! header bytes, no allocation; the answers are [`GatewayError`]s. The rules themselves
//! (host list, origin match, JSON type) are `mcp_core::web_guard`'s, shared with the
//! admin API; this file decides which route needs which.

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, TRANSFER_ENCODING};
use http::{HeaderMap, Method};
pub use mcp_core::web_guard::{is_json, origin_allowed, HostList};

use crate::errors::GatewayError;
use crate::routes::Route;

/// Whether a request on `route` must carry a JSON body type: every POST that runs a
/// tool (the hub's call routes, MCP messages on both transports), and an admin request
/// that writes with a body.
fn needs_json(route: &Route, method: &Method, headers: &HeaderMap) -> bool {
    match route {
        Route::ToolCall { .. }
        | Route::NamedCall { .. }
        | Route::ServerCompat { .. }
        | Route::LegacyMessages { .. } => true,
        Route::McpStreamable { .. } => method == Method::POST,
        Route::Admin => {
            !mcp_core::web_guard::is_safe_method(method.as_str())
                && (headers.contains_key(TRANSFER_ENCODING)
                    || headers
                        .get(CONTENT_LENGTH)
                        .is_some_and(|len| len.as_bytes() != b"0"))
        }
        _ => false,
    }
}

/// The head's checks, in order: Host, Origin, content type. `/healthz` is exempt
/// (probes call it by any name, and it runs nothing).
pub fn check(
    route: &Route,
    method: &Method,
    headers: &HeaderMap,
    hosts: &HostList,
    origins: &[String],
) -> Result<(), GatewayError> {
    if *route == Route::Health {
        return Ok(());
    }
    let host = headers.get(HOST).map(|v| v.as_bytes());
    if !host.is_some_and(|h| hosts.allows(h)) {
        let msg = match host {
            Some(h) => format!(
                "Host {:?} is not allowed (MCP_GATEWAY_ALLOWED_HOSTS)",
                String::from_utf8_lossy(h)
            ),
            None => "a Host header is required".to_owned(),
        };
        return Err(GatewayError::new(403, "host_forbidden", msg));
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| origin_allowed(o, host, origins));
        if !allowed {
            let msg = format!(
                "origin {:?} is not allowed (MCP_GATEWAY_ALLOWED_ORIGINS)",
                String::from_utf8_lossy(origin.as_bytes())
            );
            return Err(GatewayError::new(403, "origin_forbidden", msg));
        }
    }
    if needs_json(route, method, headers)
        && !headers
            .get(CONTENT_TYPE)
            .is_some_and(|t| is_json(t.as_bytes()))
    {
        return Err(GatewayError::new(
            415,
            "unsupported_media_type",
            "the body must be JSON: send Content-Type: application/json",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("value"));
        }
        map
    }

    #[test]
    fn the_checks_in_order() {
        let hosts = HostList::parse(&list(&["localhost", "127.0.0.1"])).expect("hosts");
        let origins = list(&["http://localhost"]);
        let call = Route::ToolCall {
            server_id: "s".into(),
            tool: "t".into(),
        };
        let code = |route: &Route, method: Method, pairs: &[(&'static str, &str)]| {
            check(route, &method, &headers(pairs), &hosts, &origins)
                .err()
                .map(|e| (e.status, e.code))
        };
        let json = ("content-type", "application/json");
        assert_eq!(
            code(&call, Method::POST, &[("host", "localhost:8080"), json]),
            None
        );
        assert_eq!(
            code(&call, Method::POST, &[("host", "evil.example.com"), json]),
            Some((403, "host_forbidden"))
        );
        assert_eq!(
            code(&call, Method::POST, &[json]),
            Some((403, "host_forbidden"))
        );
        assert_eq!(
            code(
                &call,
                Method::POST,
                &[
                    ("host", "localhost"),
                    ("origin", "http://evil.example.com"),
                    json
                ]
            ),
            Some((403, "origin_forbidden"))
        );
        assert_eq!(
            code(
                &call,
                Method::POST,
                &[("host", "localhost"), ("content-type", "text/plain")]
            ),
            Some((415, "unsupported_media_type"))
        );
        assert_eq!(
            code(&call, Method::POST, &[("host", "localhost")]),
            Some((415, "unsupported_media_type"))
        );
        // Health is exempt; reads need no body type; admin writes with a body do.
        assert_eq!(code(&Route::Health, Method::GET, &[("host", "x")]), None);
        assert_eq!(
            code(&Route::Admin, Method::GET, &[("host", "localhost")]),
            None
        );
        assert_eq!(
            code(
                &Route::Admin,
                Method::POST,
                &[("host", "localhost"), ("content-length", "0")]
            ),
            None
        );
        assert_eq!(
            code(
                &Route::Admin,
                Method::POST,
                &[
                    ("host", "localhost"),
                    ("content-length", "12"),
                    ("content-type", "text/plain")
                ]
            ),
            Some((415, "unsupported_media_type"))
        );
        assert_eq!(
            code(
                &Route::Admin,
                Method::DELETE,
                &[("host", "localhost"), ("origin", "http://evil.example.com")]
            ),
            Some((403, "origin_forbidden"))
        );
        let mcp = Route::McpStreamable {
            server_id: "s".into(),
        };
        assert_eq!(code(&mcp, Method::GET, &[("host", "localhost")]), None);
        assert_eq!(
            code(
                &mcp,
                Method::POST,
                &[("host", "localhost"), ("content-type", "text/plain")]
            ),
            Some((415, "unsupported_media_type"))
        );
    }
}
