//! Owns the gateway's URL space: which path and method is which kind of request. Pure
//! parsing, unit-tested; nothing here looks at the routing table.

use http::Method;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Health,
    /// `/api/*` and the dashboard: proxied to the admin API.
    Admin,
    /// `POST /mcp/initialize`: the hub itself.
    HubInitialize,
    /// `GET|HEAD /mcp/{id}`.
    ServerInfo {
        server_id: String,
    },
    /// `POST /mcp/{id}`: `{"method": "initialize"|"tools.list"}` or `{name, args}`.
    ServerCompat {
        server_id: String,
    },
    /// `POST /mcp/{id}/initialize`.
    ServerInitialize {
        server_id: String,
    },
    /// `GET|POST /mcp/{id}/tools/list`.
    ToolsList {
        server_id: String,
    },
    /// `POST /mcp/{id}/tools/call` with `{name, args}`.
    NamedCall {
        server_id: String,
    },
    /// `POST /mcp/{id}/{tool}` with `{"args": {...}}`.
    ToolCall {
        server_id: String,
        tool: String,
    },
    /// `/mcp-servers/{id}/mcp`: MCP Streamable HTTP.
    McpStreamable {
        server_id: String,
    },
    /// `GET /mcp-servers/{id}` or `/mcp-servers/{id}/sse`: the old HTTP+SSE transport.
    LegacySse {
        server_id: String,
    },
    /// `POST /mcp-servers/{id}[/r{replica}]/messages?session_id=...`.
    LegacyMessages {
        server_id: String,
        replica: Option<u32>,
    },
    MethodNotAllowed,
    NotFound,
}

impl Route {
    pub fn parse(method: &Method, path: &str) -> Route {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let get = method == Method::GET || method == Method::HEAD;
        let post = method == Method::POST;
        let only = |ok: bool, route: Route| if ok { route } else { Route::MethodNotAllowed };
        match segments.as_slice() {
            ["healthz"] => only(get, Route::Health),
            ["api", ..]
            | [""]
            | ["dashboard", ..]
            | ["assets", ..]
            | ["static", ..]
            | ["favicon.ico"] => Route::Admin,
            ["mcp", "initialize"] => only(post, Route::HubInitialize),
            ["mcp", id] if !id.is_empty() => {
                let server_id = (*id).to_owned();
                if get {
                    Route::ServerInfo { server_id }
                } else {
                    only(post, Route::ServerCompat { server_id })
                }
            }
            ["mcp", id, "initialize"] => only(
                post,
                Route::ServerInitialize {
                    server_id: (*id).to_owned(),
                },
            ),
            ["mcp", id, "tools", "list"] => only(
                get || post,
                Route::ToolsList {
                    server_id: (*id).to_owned(),
                },
            ),
            ["mcp", id, "tools", "call"] => only(
                post,
                Route::NamedCall {
                    server_id: (*id).to_owned(),
                },
            ),
            ["mcp", id, tool] if !tool.is_empty() => only(
                post,
                Route::ToolCall {
                    server_id: (*id).to_owned(),
                    tool: (*tool).to_owned(),
                },
            ),
            ["mcp-servers", id, "mcp"] => Route::McpStreamable {
                server_id: (*id).to_owned(),
            },
            ["mcp-servers", id] | ["mcp-servers", id, "sse"] if !id.is_empty() => only(
                get,
                Route::LegacySse {
                    server_id: (*id).to_owned(),
                },
            ),
            ["mcp-servers", id, "messages"] => only(
                post,
                Route::LegacyMessages {
                    server_id: (*id).to_owned(),
                    replica: None,
                },
            ),
            ["mcp-servers", id, replica, "messages"] => {
                match replica.strip_prefix('r').and_then(|r| r.parse().ok()) {
                    Some(replica) => only(
                        post,
                        Route::LegacyMessages {
                            server_id: (*id).to_owned(),
                            replica: Some(replica),
                        },
                    ),
                    None => Route::NotFound,
                }
            }
            _ => Route::NotFound,
        }
    }

    /// The server a route names.
    pub fn server_id(&self) -> Option<&str> {
        match self {
            Route::ServerInfo { server_id }
            | Route::ServerCompat { server_id }
            | Route::ServerInitialize { server_id }
            | Route::ToolsList { server_id }
            | Route::NamedCall { server_id }
            | Route::ToolCall { server_id, .. }
            | Route::McpStreamable { server_id }
            | Route::LegacySse { server_id }
            | Route::LegacyMessages { server_id, .. } => Some(server_id),
            _ => None,
        }
    }

    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Admin => "admin",
            Route::HubInitialize | Route::ServerInitialize { .. } => "initialize",
            Route::ServerInfo { .. } => "server_info",
            Route::ServerCompat { .. } => "compat",
            Route::ToolsList { .. } => "tools_list",
            Route::NamedCall { .. } | Route::ToolCall { .. } => "call",
            Route::McpStreamable { .. } => "mcp",
            Route::LegacySse { .. } | Route::LegacyMessages { .. } => "mcp_sse",
            Route::MethodNotAllowed => "method_not_allowed",
            Route::NotFound => "not_found",
        }
    }

    /// Routes that run a tool through the hub call protocol.
    pub fn is_call(&self) -> bool {
        matches!(
            self,
            Route::ToolCall { .. } | Route::NamedCall { .. } | Route::ServerCompat { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, path: &str, expected: Route) {
        assert_eq!(Route::parse(&method, path), expected, "{method} {path}");
    }

    fn id() -> String {
        "fruits_api".into()
    }

    #[test]
    fn every_route_of_the_surface() {
        check(Method::GET, "/healthz", Route::Health);
        check(Method::GET, "/api/servers", Route::Admin);
        check(Method::DELETE, "/api/tools/a/b", Route::Admin);
        check(Method::GET, "/", Route::Admin);
        check(Method::GET, "/dashboard/servers/x", Route::Admin);
        check(Method::POST, "/mcp/initialize", Route::HubInitialize);
        check(
            Method::GET,
            "/mcp/fruits_api",
            Route::ServerInfo { server_id: id() },
        );
        check(
            Method::HEAD,
            "/mcp/fruits_api",
            Route::ServerInfo { server_id: id() },
        );
        check(
            Method::POST,
            "/mcp/fruits_api",
            Route::ServerCompat { server_id: id() },
        );
        check(
            Method::POST,
            "/mcp/fruits_api/initialize",
            Route::ServerInitialize { server_id: id() },
        );
        check(
            Method::GET,
            "/mcp/fruits_api/tools/list",
            Route::ToolsList { server_id: id() },
        );
        check(
            Method::POST,
            "/mcp/fruits_api/tools/list",
            Route::ToolsList { server_id: id() },
        );
        check(
            Method::POST,
            "/mcp/fruits_api/tools/call",
            Route::NamedCall { server_id: id() },
        );
        check(
            Method::POST,
            "/mcp/fruits_api/get_fruits",
            Route::ToolCall {
                server_id: id(),
                tool: "get_fruits".into(),
            },
        );
        check(
            Method::POST,
            "/mcp-servers/fruits_api/mcp",
            Route::McpStreamable { server_id: id() },
        );
        check(
            Method::DELETE,
            "/mcp-servers/fruits_api/mcp",
            Route::McpStreamable { server_id: id() },
        );
        check(
            Method::GET,
            "/mcp-servers/fruits_api",
            Route::LegacySse { server_id: id() },
        );
        check(
            Method::GET,
            "/mcp-servers/fruits_api/sse",
            Route::LegacySse { server_id: id() },
        );
        check(
            Method::POST,
            "/mcp-servers/fruits_api/messages",
            Route::LegacyMessages {
                server_id: id(),
                replica: None,
            },
        );
        check(
            Method::POST,
            "/mcp-servers/fruits_api/r1/messages",
            Route::LegacyMessages {
                server_id: id(),
                replica: Some(1),
            },
        );
    }

    #[test]
    fn wrong_methods_and_unknown_paths() {
        check(
            Method::GET,
            "/mcp/fruits_api/get_fruits",
            Route::MethodNotAllowed,
        );
        check(Method::PUT, "/mcp/fruits_api", Route::MethodNotAllowed);
        check(Method::POST, "/healthz", Route::MethodNotAllowed);
        check(Method::GET, "/nope", Route::NotFound);
        check(Method::POST, "/mcp/a/b/c/d", Route::NotFound);
        check(Method::POST, "/mcp-servers/x/rx/messages", Route::NotFound);
    }
}
