//! Owns what makes a registration acceptable. Returns every problem at once (the admin
//! API answers 422 with the whole list) and never touches Redis.

use serde::Serialize;
use utoipa::ToSchema;

use crate::model::{path_placeholders, AuthKind, ServerConfig, ToolBinding};

/// One thing wrong with a registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    /// Dotted path of the offending field, e.g. `paramMapping.path.id`.
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// `[A-Za-z0-9_-]{1,64}`: also safe inside a Redis key and a URL path segment.
pub fn is_valid_server_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `[A-Za-z0-9_.-]{1,128}`, the MCP tool-name alphabet.
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn is_valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_valid_header_value(value: &str) -> bool {
    !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

pub fn validate_server(server_id: &str, server: &ServerConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !is_valid_server_id(server_id) {
        problems.push(Problem::new(
            "id",
            "server id must match [A-Za-z0-9_-]{1,64}",
        ));
    }
    match url::Url::parse(&server.base_url) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            problems.push(Problem::new("baseUrl", "must be an http or https URL"))
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => {
            problems.push(Problem::new("baseUrl", "must name a host"))
        }
        Ok(url) if url.query().is_some() || url.fragment().is_some() => problems.push(
            Problem::new("baseUrl", "must not carry a query or a fragment"),
        ),
        Ok(_) => {}
        Err(err) => problems.push(Problem::new(
            "baseUrl",
            format!("must be an absolute URL: {err}"),
        )),
    }
    let auth = &server.auth;
    let key_needed = matches!(auth.kind, AuthKind::Header | AuthKind::Query);
    if key_needed && auth.key.as_deref().is_none_or(str::is_empty) {
        problems.push(Problem::new("auth.key", "is required for this auth type"));
    }
    if auth.kind == AuthKind::Header {
        if let Some(key) = auth.key.as_deref().filter(|k| !k.is_empty()) {
            if !is_valid_header_name(key) {
                problems.push(Problem::new("auth.key", "is not a valid header name"));
            }
        }
    }
    if auth.kind != AuthKind::None && auth.value.as_deref().is_none_or(str::is_empty) {
        problems.push(Problem::new("auth.value", "is required for this auth type"));
    }
    if auth
        .value
        .as_deref()
        .is_some_and(|v| !is_valid_header_value(v))
    {
        problems.push(Problem::new("auth.value", "must not contain CR, LF or NUL"));
    }
    for (name, value) in &server.default_headers {
        if !is_valid_header_name(name) {
            problems.push(Problem::new(
                format!("defaultHeaders.{name}"),
                "is not a valid header name",
            ));
        }
        if !is_valid_header_value(value) {
            problems.push(Problem::new(
                format!("defaultHeaders.{name}"),
                "must not contain CR, LF or NUL",
            ));
        }
    }
    if let Some(timeout_ms) = server.timeout_ms {
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            problems.push(Problem::new(
                "timeoutMs",
                format!("must be between 1 and {MAX_TIMEOUT_MS}"),
            ));
        }
    }
    if let Some(replicas) = server.replicas {
        if !(1..=ServerConfig::MAX_REPLICAS).contains(&replicas) {
            problems.push(Problem::new(
                "replicas",
                format!("must be between 1 and {}", ServerConfig::MAX_REPLICAS),
            ));
        }
    }
    problems
}

pub fn validate_tool(tool: &ToolBinding) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !is_valid_tool_name(&tool.name) {
        problems.push(Problem::new(
            "name",
            "tool name must match [A-Za-z0-9_.-]{1,128}",
        ));
    }
    let template = &tool.path_template;
    if !template.is_empty() && !template.starts_with('/') {
        problems.push(Problem::new(
            "pathTemplate",
            "must be empty or start with /",
        ));
    }
    if template.contains(['?', '#']) || template.bytes().any(|b| b.is_ascii_control() || b == b' ')
    {
        problems.push(Problem::new(
            "pathTemplate",
            "must be a plain path (no ?, #, spaces or control characters)",
        ));
    }
    if template.matches('{').count() != template.matches('}').count() {
        problems.push(Problem::new("pathTemplate", "has an unbalanced { or }"));
    }
    let placeholders = path_placeholders(template);
    for name in &placeholders {
        if name.is_empty() {
            problems.push(Problem::new("pathTemplate", "has an empty {} placeholder"));
        } else if !tool.param_mapping.path.contains_key(*name) {
            problems.push(Problem::new(
                format!("paramMapping.path.{name}"),
                format!("placeholder {{{name}}} of pathTemplate is not mapped to an argument"),
            ));
        }
    }
    for name in tool.param_mapping.path.keys() {
        if !placeholders.contains(&name.as_str()) {
            problems.push(Problem::new(
                format!("paramMapping.path.{name}"),
                format!("pathTemplate has no {{{name}}} placeholder"),
            ));
        }
    }
    for name in tool.param_mapping.headers.keys() {
        if !is_valid_header_name(name) {
            problems.push(Problem::new(
                format!("paramMapping.headers.{name}"),
                "is not a valid header name",
            ));
        }
    }
    if tool.param_mapping.raw_body.is_some() && !tool.param_mapping.body.is_empty() {
        problems.push(Problem::new(
            "paramMapping.rawBody",
            "cannot be combined with paramMapping.body",
        ));
    }
    if !tool.input_schema.is_object() {
        problems.push(Problem::new("inputSchema", "must be a JSON Schema object"));
    } else if let Err(err) = jsonschema::validator_for(&tool.input_schema) {
        problems.push(Problem::new(
            "inputSchema",
            format!("does not compile: {err}"),
        ));
    }
    if let Some(pick) = tool
        .response_mapping
        .as_ref()
        .and_then(|m| m.pick.as_deref())
    {
        if let Err(err) = serde_json_path::JsonPath::parse(pick) {
            problems.push(Problem::new(
                "responseMapping.pick",
                format!("is not a valid JSONPath: {err}"),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn server(json: serde_json::Value) -> ServerConfig {
        serde_json::from_value(json).expect("server parses")
    }

    fn tool(json: serde_json::Value) -> ToolBinding {
        serde_json::from_value(json).expect("tool parses")
    }

    fn fields(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn server_ids() {
        for ok in ["a", "fakestore_api", "A-1_b", &"x".repeat(64)] {
            assert!(is_valid_server_id(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "a:b", "é", &"x".repeat(65), "a*"] {
            assert!(!is_valid_server_id(bad), "{bad}");
        }
    }

    #[test]
    fn server_problems_are_all_listed() {
        let check = |id: &str, json: serde_json::Value, expected: &[&str]| {
            assert_eq!(fields(&validate_server(id, &server(json))), expected);
        };
        check("ok", json!({"baseUrl": "https://api.example.com/v1"}), &[]);
        check("bad id", json!({"baseUrl": "ftp://x"}), &["id", "baseUrl"]);
        check("ok", json!({"baseUrl": "/relative"}), &["baseUrl"]);
        check("ok", json!({"baseUrl": "http://x/?q=1"}), &["baseUrl"]);
        check(
            "ok",
            json!({"baseUrl": "http://x", "auth": {"type": "header"}}),
            &["auth.key", "auth.value"],
        );
        check(
            "ok",
            json!({"baseUrl": "http://x", "auth": {"type": "bearer", "value": "a\r\nb"}}),
            &["auth.value"],
        );
        check(
            "ok",
            json!({"baseUrl": "http://x", "replicas": 0, "timeoutMs": 0}),
            &["timeoutMs", "replicas"],
        );
        check(
            "ok",
            json!({"baseUrl": "http://x", "defaultHeaders": {"Bad Name": "v"}}),
            &["defaultHeaders.Bad Name"],
        );
    }

    #[test]
    fn tool_problems_are_all_listed() {
        let check = |json: serde_json::Value, expected: &[&str]| {
            assert_eq!(fields(&validate_tool(&tool(json))), expected);
        };
        check(
            json!({"name": "t", "method": "GET", "pathTemplate": "/p/{id}", "paramMapping": {"path": {"id": "id"}}}),
            &[],
        );
        check(
            json!({"name": "t", "method": "GET", "pathTemplate": "/p/{id}"}),
            &["paramMapping.path.id"],
        );
        check(
            json!({"name": "t", "method": "GET", "pathTemplate": "/p", "paramMapping": {"path": {"id": "id"}}}),
            &["paramMapping.path.id"],
        );
        check(
            json!({"name": "t", "method": "GET", "pathTemplate": "p?x=1"}),
            &["pathTemplate", "pathTemplate"],
        );
        check(
            json!({"name": "t", "method": "GET", "inputSchema": {"type": 12}}),
            &["inputSchema"],
        );
        check(
            json!({"name": "t", "method": "GET", "inputSchema": "nope"}),
            &["inputSchema"],
        );
        check(
            json!({"name": "t t", "method": "GET", "responseMapping": {"pick": "$[?"}}),
            &["name", "responseMapping.pick"],
        );
    }

    #[test]
    fn unknown_method_is_refused_by_the_model() {
        let err = serde_json::from_value::<ToolBinding>(json!({"name": "t", "method": "TRACE"}));
        assert!(err.is_err());
    }
}

/// One way the arguments of a call break the tool's `inputSchema`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ArgumentViolation {
    /// JSON pointer into the arguments (`""` is the whole object).
    pub pointer: String,
    pub message: String,
}

/// Compiles a tool's `inputSchema` once; callers cache the result.
pub fn compile_schema(schema: &serde_json::Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|err| err.to_string())
}

/// Every violation of the schema by `args`, each with its JSON pointer.
pub fn check_arguments(
    validator: &jsonschema::Validator,
    args: &serde_json::Value,
) -> Vec<ArgumentViolation> {
    validator
        .iter_errors(args)
        .map(|err| ArgumentViolation {
            pointer: err.instance_path().to_string(),
            message: err.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod argument_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn violations_carry_json_pointers() {
        let validator = compile_schema(&json!({
            "type": "object",
            "properties": {"id": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["id"]
        }))
        .expect("compiles");
        assert!(check_arguments(&validator, &json!({"id": 1})).is_empty());
        let violations = check_arguments(&validator, &json!({"tags": ["a", 2]}));
        let mut pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
        pointers.sort_unstable();
        assert_eq!(pointers, ["", "/tags/1"]);
    }
}
