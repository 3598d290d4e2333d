//! Owns compiling registered tools into callable ones: each binding with its argument
//! validator and its response JSONPath, compiled once per version of the binding. The one
//! function that turns a server's bindings into its [`Tools`], keeping what did not
//! change, is [`compile_tools`]; the worker and the gateway both call it on every reload.

use std::collections::BTreeMap;
use std::sync::Arc;

use mcp_core::model::ToolBinding;
use serde_json::{json, Value};

/// A tool ready to call.
pub struct ServedTool {
    pub binding: ToolBinding,
    /// Compiled once per registry version of the tool, never per call.
    pub validator: jsonschema::Validator,
    pub pick: Option<serde_json_path::JsonPath>,
}

/// A server's tools by name. A `BTreeMap`: a lookup in a handful of names is a few
/// comparisons (cheaper than hashing the name), and lists come out sorted.
pub type Tools = BTreeMap<String, Arc<ServedTool>>;

impl ServedTool {
    /// Compiles a binding; `None` (with a warning) when its schema or pick is broken,
    /// which registration validation normally prevents.
    pub fn compile(server_id: &str, binding: ToolBinding) -> Option<ServedTool> {
        let validator = match mcp_core::validate::compile_schema(&binding.input_schema) {
            Ok(v) => v,
            Err(err) => {
                tracing::warn!(event = "tool.compile.failed", server = %server_id, tool = %binding.name, error = %err);
                return None;
            }
        };
        let pick = match binding
            .response_mapping
            .as_ref()
            .and_then(|m| m.pick.as_deref())
        {
            Some(path) => match serde_json_path::JsonPath::parse(path) {
                Ok(p) => Some(p),
                Err(err) => {
                    tracing::warn!(event = "tool.compile.failed", server = %server_id, tool = %binding.name, error = %err);
                    return None;
                }
            },
            None => None,
        };
        Some(ServedTool {
            binding,
            validator,
            pick,
        })
    }

    /// `{name, description, inputSchema}`: the tool as the hub's `tools/list` shows it.
    pub fn listing(&self) -> Value {
        json!({"name": self.binding.name, "description": self.binding.description, "inputSchema": self.binding.input_schema})
    }
}

/// The tools of one server from its registered bindings. A binding equal to the one in
/// `previous` keeps its compiled tool (consumers reload on a timer, and compiling every
/// schema each time cost milliseconds of CPU per reload with 20 servers); a broken one is
/// left out with a warning.
pub fn compile_tools(
    server_id: &str,
    bindings: impl IntoIterator<Item = ToolBinding>,
    previous: Option<&Tools>,
) -> Tools {
    bindings
        .into_iter()
        .filter_map(|binding| {
            let same = previous
                .and_then(|tools| tools.get(&binding.name))
                .filter(|tool| tool.binding == binding);
            match same {
                Some(tool) => Some(tool.clone()),
                None => ServedTool::compile(server_id, binding).map(Arc::new),
            }
        })
        .map(|tool| (tool.binding.name.clone(), tool))
        .collect()
}

/// The active tools of `tools` as `{name, description, inputSchema}`, by name.
pub fn active_listing(tools: &Tools) -> Vec<Value> {
    tools
        .values()
        .filter(|t| t.binding.active)
        .map(|t| t.listing())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, schema: Value) -> ToolBinding {
        serde_json::from_value(json!({"name": name, "method": "GET", "inputSchema": schema}))
            .expect("binding")
    }

    #[test]
    fn unchanged_tools_are_kept_changed_ones_compiled_broken_ones_left_out() {
        let first = compile_tools(
            "s",
            [
                binding("a", json!({"type": "object"})),
                binding("b", json!({"type": "object"})),
            ],
            None,
        );
        assert_eq!(first.keys().collect::<Vec<_>>(), ["a", "b"]);
        let second = compile_tools(
            "s",
            [
                binding("a", json!({"type": "object"})),
                binding("b", json!({"type": "object", "required": ["x"]})),
                binding("c", json!({"type": 12})),
            ],
            Some(&first),
        );
        assert!(Arc::ptr_eq(&first["a"], &second["a"]), "a is the same tool");
        assert!(
            !Arc::ptr_eq(&first["b"], &second["b"]),
            "b was compiled again"
        );
        assert!(!second.contains_key("c"), "a broken schema is left out");
    }

    #[test]
    fn the_listing_holds_active_tools_only() {
        let mut inactive = binding("z", json!({}));
        inactive.active = false;
        let tools = compile_tools("s", [binding("a", json!({})), inactive], None);
        let listing = active_listing(&tools);
        assert_eq!(listing.len(), 1);
        assert_eq!(listing[0]["name"], "a");
        assert_eq!(listing[0]["inputSchema"], json!({}));
    }
}
