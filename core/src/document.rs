//! Owns the registry import/export document: `{servers: {id: ServerConfig}, tools: {id:
//! {name: ToolBinding}}}`, the existing hub's dump shape, plus a format marker. Import
//! also accepts a tool list instead of a tool map, and tools nested in a server under
//! `tools`. Parsing reports every problem at once; nothing here talks to Redis.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::model::{ServerConfig, ToolBinding};
use crate::validate::{self, Problem};

pub const FORMAT: &str = "mcp-hub.registry/v1";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    #[serde(default)]
    pub format: String,
    /// Registry version the export was taken at (informational on import).
    #[serde(default)]
    pub version: u64,
    pub servers: BTreeMap<String, ServerConfig>,
    #[serde(default)]
    pub tools: BTreeMap<String, BTreeMap<String, ToolBinding>>,
}

impl Document {
    /// The same document with every secret masked, fit for an API response.
    pub fn masked(&self) -> Document {
        let mut copy = self.clone();
        for server in copy.servers.values_mut() {
            *server = server.masked();
        }
        copy
    }

    /// Points every server at `origin` (scheme, host and port), keeping each base URL's
    /// path: how the demo servers are aimed at the local mock REST API.
    pub fn rebase_origin(&mut self, origin: &url::Url) {
        for server in self.servers.values_mut() {
            if let Ok(mut url) = url::Url::parse(&server.base_url) {
                let _ = url.set_scheme(origin.scheme());
                let _ = url.set_host(origin.host_str());
                let _ = url.set_port(origin.port());
                server.base_url = url.as_str().trim_end_matches('/').to_owned();
            }
        }
    }

    /// Parses and validates an import document; every problem is listed with its path.
    pub fn parse(mut value: Value) -> Result<Document, Vec<Problem>> {
        let mut problems = Vec::new();
        let Some(root) = value.as_object_mut() else {
            return Err(vec![Problem::new("", "must be a JSON object")]);
        };
        let mut tools_by_server: BTreeMap<String, Value> = BTreeMap::new();
        match root.remove("tools") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => tools_by_server.extend(map),
            Some(_) => problems.push(Problem::new("tools", "must be a map of server id to tools")),
        }
        let servers_value = root.remove("servers").unwrap_or(Value::Null);
        let Value::Object(servers_map) = servers_value else {
            problems.push(Problem::new(
                "servers",
                "must be a map of server id to server",
            ));
            return Err(problems);
        };
        let mut doc = Document {
            format: FORMAT.to_owned(),
            version: root.get("version").and_then(Value::as_u64).unwrap_or(0),
            ..Document::default()
        };
        let listed: BTreeSet<String> = servers_map.keys().cloned().collect();
        for (server_id, mut server_value) in servers_map {
            // Tools nested in the server are moved to the top-level map.
            if let Some(nested) = server_value.as_object_mut().and_then(|s| s.remove("tools")) {
                tools_by_server.entry(server_id.clone()).or_insert(nested);
            }
            match validate::parse_server(&server_id, server_value) {
                Ok(mut server) => {
                    if server.name.is_empty() {
                        server.name = server_id.clone();
                    }
                    doc.servers.insert(server_id, server);
                }
                Err(found) => prefixed(&mut problems, &format!("servers.{server_id}"), found),
            }
        }
        for (server_id, tools_value) in tools_by_server {
            if !listed.contains(&server_id) {
                problems.push(Problem::new(
                    format!("tools.{server_id}"),
                    "names a server that is not in servers",
                ));
                continue;
            }
            let entries: Vec<(Option<String>, Value)> = match tools_value {
                Value::Object(map) => map.into_iter().map(|(k, v)| (Some(k), v)).collect(),
                Value::Array(list) => list.into_iter().map(|v| (None, v)).collect(),
                _ => {
                    problems.push(Problem::new(
                        format!("tools.{server_id}"),
                        "must be a map or a list of tools",
                    ));
                    continue;
                }
            };
            let tools = doc.tools.entry(server_id.clone()).or_default();
            for (idx, (key, tool_value)) in entries.into_iter().enumerate() {
                let label = format!(
                    "tools.{server_id}.{}",
                    key.clone().unwrap_or_else(|| idx.to_string())
                );
                match validate::parse_tool(tool_value, key.as_deref()) {
                    Ok(tool) => {
                        if tools.insert(tool.name.clone(), tool).is_some() {
                            problems.push(Problem::new(label, "duplicate tool name"));
                        }
                    }
                    Err(found) => prefixed(&mut problems, &label, found),
                }
            }
        }
        if problems.is_empty() {
            Ok(doc)
        } else {
            Err(problems)
        }
    }
}

/// Adds `found` to `problems` with each field under `prefix`.
fn prefixed(problems: &mut Vec<Problem>, prefix: &str, found: Vec<Problem>) {
    problems.extend(found.into_iter().map(|p| {
        let field = if p.field.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", p.field)
        };
        Problem::new(field, p.message)
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_the_existing_hub_shapes() {
        let doc = Document::parse(json!({
            "servers": {
                "a": {"baseUrl": "http://a", "tools": [{"name": "t1", "method": "GET"}]},
                "b": {"name": "B", "baseUrl": "http://b"}
            },
            "tools": {"b": {"t2": {"method": "POST", "pathTemplate": "/x"}}}
        }))
        .expect("valid");
        assert_eq!(doc.servers["a"].name, "a");
        assert_eq!(doc.servers["b"].name, "B");
        assert!(doc.servers["a"].extra.is_empty());
        assert_eq!(doc.tools["a"]["t1"].name, "t1");
        assert_eq!(doc.tools["b"]["t2"].name, "t2");
    }

    #[test]
    fn shape_problems_do_not_hide_the_others() {
        let problems = Document::parse(json!({
            "servers": {"a": {"baseUrl": 3, "replicas": "2"}},
            "tools": {"a": {"t": {"name": "u", "method": "TRACE", "pathTemplate": "/p/{id}"}}}
        }))
        .expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "servers.a.baseUrl",
                "servers.a.replicas",
                "tools.a.t.method",
                "tools.a.t.paramMapping.path.id",
                "tools.a.t.name"
            ]
        );
    }

    #[test]
    fn rebase_keeps_paths() {
        let mut doc = Document::parse(json!({"servers": {
            "a": {"baseUrl": "https://fruits.example.com/api"},
            "b": {"baseUrl": "https://fakestoreapi.com"}
        }}))
        .expect("valid");
        doc.rebase_origin(&url::Url::parse("http://127.0.0.1:8090").expect("url"));
        assert_eq!(doc.servers["a"].base_url, "http://127.0.0.1:8090/api");
        assert_eq!(doc.servers["b"].base_url, "http://127.0.0.1:8090");
    }

    #[test]
    fn lists_every_problem_with_its_path() {
        let problems = Document::parse(json!({
            "servers": {"bad id": {"baseUrl": "nope"}},
            "tools": {"ghost": [], "bad id": {"t": {"method": "GET", "pathTemplate": "/{x}"}}}
        }))
        .expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "servers.bad id.id",
                "servers.bad id.baseUrl",
                "tools.bad id.t.paramMapping.path.x",
                "tools.ghost"
            ]
        );
    }
}
