//! Owns the OpenAPI 3 document of the admin API, served at `/api/openapi.json`: generated
//! from the handlers' annotations and the model types (the paths from the router's own
//! list, `routes::api_routes` and `routes::public_routes`), then completed from the code's own
//! rules ([`document_json`]): the id and name patterns, the ranges of
//! `mcp_core::validate`, the error answers each route can give, the input shapes (a
//! tool's `name` may be left out) and the bearer token where this instance asks for it.

use axum::extract::State;
use axum::Json;
use mcp_core::model::{CircuitBreakerConfig, RetryConfig, ServerConfig};
use mcp_core::validate::MAX_TIMEOUT_MS;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use crate::routes;
use crate::AppState;

/// `mcp_core::validate::is_valid_server_id` as a pattern (a unit test keeps them equal).
pub const SERVER_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";
/// `mcp_core::validate::is_valid_tool_name` as a pattern.
pub const TOOL_NAME_PATTERN: &str = "^[A-Za-z0-9_.-]{1,128}$";
/// An HTTP header name (RFC 9110 token), as `mcp_core::validate` checks it.
pub const HEADER_NAME_PATTERN: &str = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$";
/// A header value or secret: no CR, LF or NUL.
pub const HEADER_VALUE_PATTERN: &str = "^[^\\r\\n\\x00]*$";
/// A tool's `pathTemplate`: empty, or `/` then no `?`, `#`, space or control character
/// (balanced braces and mapped placeholders are checked too, answered 422).
pub const PATH_TEMPLATE_PATTERN: &str = "^(/[^?# \\x00-\\x1f\\x7f]*)?$";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "MCP Hub admin API",
        description = "Registry CRUD, restart, runtime status and import/export of MCP Hub. \
Errors are `{\"error\": {code, message, details?, request_id}}`. A body that is JSON of the documented shape can still \
be answered 422 for a rule the schema cannot express (a tool's `name` differing from its path, an unmapped `{placeholder}`, \
an input schema that does not compile, an import document's tool naming a server it does not list, an OpenAPI document \
that cannot be imported or fetched)."
    ),
    components(schemas(
        mcp_core::validate::Problem,
        mcp_core::runtime::WorkerRecord,
        mcp_core::audit::Entry,
        mcp_core::audit::Page
    ))
)]
pub struct ApiDoc;

/// This document: what this instance accepts and answers (the bearer token is declared
/// only when MCP_ADMIN_TOKEN is configured).
#[utoipa::path(get, path = "/api/openapi.json", operation_id = "getOpenApiDocument", tag = "meta",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")))]
pub async fn document(State(state): State<AppState>) -> Json<Value> {
    Json(document_json(state.admin_token.is_some()))
}

/// The generated document completed from the code's rules. `token_required`: whether
/// MCP_ADMIN_TOKEN is configured, so every `/api` route asks for the bearer token.
pub fn document_json(token_required: bool) -> Value {
    let mut generated = ApiDoc::openapi();
    generated.merge(routes::api_routes().into_openapi());
    generated.merge(routes::public_routes().into_openapi());
    let mut doc = serde_json::to_value(generated).unwrap_or_else(|_| json!({}));
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for schema in schemas.values_mut() {
            unsigned_bounds(schema);
        }
        constrain_models(schemas);
    }
    let scheme_description = if token_required {
        "MCP_ADMIN_TOKEN is configured: every /api route needs `Authorization: Bearer <token>` (401 without it)."
    } else {
        "Not asked by this instance: MCP_ADMIN_TOKEN is not configured, so the API listens on loopback only \
         and no route needs a token. With MCP_ADMIN_TOKEN set, every /api route needs it."
    };
    if let Some(components) = doc.get_mut("components").and_then(Value::as_object_mut) {
        components.insert(
            "securitySchemes".into(),
            json!({"bearer": {"type": "http", "scheme": "bearer", "description": scheme_description}}),
        );
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for operation in item.values_mut().filter_map(Value::as_object_mut) {
                complete_operation(path, operation, token_required);
            }
        }
    }
    doc
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    })
}

/// Security, error answers and path parameter patterns of one operation.
fn complete_operation(path: &str, operation: &mut Map<String, Value>, token_required: bool) {
    let api = path.starts_with("/api/");
    let security = if api && token_required {
        json!([{"bearer": []}])
    } else {
        json!([])
    };
    operation.insert("security".into(), security);
    // A u64 query parameter (the audit log's `since`, `until`) takes 0..=u64::MAX, as a
    // model's field does.
    if let Some(params) = operation.get_mut("parameters") {
        unsigned_bounds(params);
    }
    let has_body = operation.contains_key("requestBody");
    let has_query = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|params| params.iter().any(|p| p["in"] == "query"));
    if let Some(params) = operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
    {
        for param in params.iter_mut().filter(|p| p["in"] == "path") {
            let pattern = match param["name"].as_str() {
                Some("id") => SERVER_ID_PATTERN,
                Some("tool") => TOOL_NAME_PATTERN,
                _ => continue,
            };
            param["schema"] = json!({"type": "string", "pattern": pattern});
        }
        // The audit log's cursor: two numbers that fit a u64 (else 400).
        for param in params
            .iter_mut()
            .filter(|p| p["in"] == "query" && p["name"] == "before")
        {
            param["schema"]["pattern"] = json!(routes::audit::cursor_pattern());
        }
    }
    if has_body {
        if let Some(body) = operation.get_mut("requestBody") {
            input_shapes(body);
        }
    }
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let mut add = |status: &str, description: &str| {
        let entry = responses
            .entry(status)
            .or_insert_with(|| error_response(description));
        if entry["description"] == "" {
            entry["description"] = Value::String(description.to_owned());
        }
    };
    if has_body || has_query {
        add(
            "400",
            "the body is not JSON (or is empty), or a query parameter is malformed",
        );
    }
    if api && token_required {
        add("401", "the bearer token is missing or wrong");
    }
    if has_body {
        add("413", "the body is larger than the limit (MCP_ADMIN_MAX_BODY_BYTES; 32 MiB for an OpenAPI import)");
        add(
            "422",
            "JSON, but not a valid registration: every problem is listed in `details`",
        );
    }
    if api {
        add(
            "403",
            "the Host or the browser's Origin is not allowed (MCP_ADMIN_ALLOWED_HOSTS, MCP_ADMIN_ALLOWED_ORIGINS)",
        );
    }
}

/// The request bodies that take a tool: `name` may be left out (it defaults to the
/// path's, or to its key in an import document), and an import's `format` and
/// `version` are informational, so any value is taken.
fn input_shapes(body: &mut Value) {
    let Some(schema) = body.pointer_mut("/content/application~1json/schema") else {
        return;
    };
    match schema.get("$ref").and_then(Value::as_str) {
        Some("#/components/schemas/ToolBinding") => {
            *schema = json!({"$ref": "#/components/schemas/ToolBindingInput"});
        }
        Some("#/components/schemas/Document") => {
            *schema = json!({"$ref": "#/components/schemas/DocumentInput"});
        }
        _ => {}
    }
}

/// utoipa gives a `u32` `format: int32, minimum: 0` and a `u64` `format: int64,
/// minimum: 0`: both say more (and less) than Rust takes, so each gets its real range.
/// Applied to the components' schemas and to every operation's parameters.
fn unsigned_bounds(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            let unsigned = object
                .get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|min| min == 0.0);
            match object.get("format").and_then(Value::as_str) {
                Some("int32") if unsigned => {
                    object.insert("format".into(), json!("uint32"));
                    object.insert("maximum".into(), json!(u32::MAX));
                }
                Some("int64") if unsigned => {
                    object.insert("format".into(), json!("uint64"));
                    object.insert("maximum".into(), json!(u64::MAX));
                }
                _ => {}
            }
            for value in object.values_mut() {
                unsigned_bounds(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_bounds),
        _ => {}
    }
}

/// Sets `key` of the object at `pointer` (ignored when the pointer names nothing; the
/// unit tests check that every constraint lands).
fn set(schemas: &mut Map<String, Value>, pointer: &str, key: &str, value: Value) {
    let (name, rest) = pointer.split_once('/').unwrap_or((pointer, ""));
    let target = match schemas.get_mut(name) {
        Some(schema) if rest.is_empty() => Some(schema),
        Some(schema) => schema.pointer_mut(&format!("/{rest}")),
        None => None,
    };
    if let Some(object) = target.and_then(Value::as_object_mut) {
        object.insert(key.to_owned(), value);
    }
}

/// The ranges and patterns of `mcp_core::validate`, on the model's schemas.
fn constrain_models(schemas: &mut Map<String, Value>) {
    let range = |min: u64, max: u64| (json!(min), json!(max));
    let ranges = [
        (
            "ServerConfig/properties/timeoutMs",
            range(1, MAX_TIMEOUT_MS),
        ),
        (
            "ServerConfig/properties/replicas",
            range(1, u64::from(ServerConfig::MAX_REPLICAS)),
        ),
        (
            "RetryConfig/properties/maxAttempts",
            range(1, u64::from(RetryConfig::MAX_ATTEMPTS)),
        ),
        (
            "RetryConfig/properties/baseDelayMs",
            range(0, MAX_TIMEOUT_MS),
        ),
        (
            "RetryConfig/properties/maxDelayMs",
            range(0, MAX_TIMEOUT_MS),
        ),
        (
            "RetryConfig/properties/attemptTimeoutMs",
            range(1, MAX_TIMEOUT_MS),
        ),
        ("RetryConfig/properties/budgetPercent", range(0, 100)),
        (
            "CircuitBreakerConfig/properties/failureThreshold",
            range(1, u64::from(u32::MAX)),
        ),
        (
            "CircuitBreakerConfig/properties/coolDownMs",
            range(1, MAX_TIMEOUT_MS * 10),
        ),
        (
            "CircuitBreakerConfig/properties/errorRatePercent",
            range(1, 100),
        ),
        (
            "CircuitBreakerConfig/properties/windowMs",
            range(
                CircuitBreakerConfig::MIN_WINDOW_MS,
                CircuitBreakerConfig::MAX_WINDOW_MS,
            ),
        ),
        (
            "CircuitBreakerConfig/properties/minCalls",
            range(1, u64::from(CircuitBreakerConfig::MAX_MIN_CALLS)),
        ),
    ];
    for (pointer, (min, max)) in ranges {
        set(schemas, pointer, "minimum", min);
        set(schemas, pointer, "maximum", max);
    }
    let header_map = json!({"type": "object",
        "propertyNames": {"pattern": HEADER_NAME_PATTERN},
        "additionalProperties": {"type": "string", "pattern": HEADER_VALUE_PATTERN}});
    set(
        schemas,
        "ServerConfig/properties",
        "defaultHeaders",
        header_map,
    );
    set(
        schemas,
        "ParamMapping/properties/headers",
        "propertyNames",
        json!({"pattern": HEADER_NAME_PATTERN}),
    );
    set(
        schemas,
        "Auth/properties/value",
        "pattern",
        json!(HEADER_VALUE_PATTERN),
    );
    set(
        schemas,
        "ToolBinding/properties/name",
        "pattern",
        json!(TOOL_NAME_PATTERN),
    );
    set(
        schemas,
        "ToolBinding/properties/pathTemplate",
        "pattern",
        json!(PATH_TEMPLATE_PATTERN),
    );
    set(
        schemas,
        "ToolBinding/properties/inputSchema",
        "description",
        json!("JSON Schema of the tool's arguments (it must compile)."),
    );

    // Inputs: a tool's name may be left out; an import document's keys are ids and
    // names, `format` and `version` are not checked, `tools` may be null.
    if let Some(mut input) = schemas.get("ToolBinding").cloned() {
        input["required"] = json!(["method"]);
        input["properties"]["name"]["description"] = json!(
            "Defaults to the name the tool is registered under; when present it must equal it (else 422)."
        );
        schemas.insert("ToolBindingInput".into(), input);
    }
    schemas.insert(
        "DocumentInput".into(),
        json!({
            "type": "object",
            "description": "This hub's export, or the existing hub's map of servers and map of tools per server.",
            "required": ["servers"],
            "properties": {
                "format": {"description": "informational, not checked"},
                "version": {"description": "informational, not checked"},
                "servers": {
                    "type": "object",
                    "propertyNames": {"pattern": SERVER_ID_PATTERN},
                    "additionalProperties": {"$ref": "#/components/schemas/ServerConfig"},
                },
                "tools": {
                    "type": ["object", "null"],
                    "propertyNames": {"pattern": SERVER_ID_PATTERN},
                    "additionalProperties": {
                        "type": "object",
                        "propertyNames": {"pattern": TOOL_NAME_PATTERN},
                        "additionalProperties": {"$ref": "#/components/schemas/ToolBindingInput"},
                    },
                },
            },
        }),
    );
    // An OpenAPI import takes exactly one of `document` (an object, or its JSON or YAML
    // text) and `url`; null is the same as absent.
    set(
        schemas,
        "ImportRequest/properties/document",
        "type",
        json!(["object", "string", "null"]),
    );
    set(
        schemas,
        "ImportRequest",
        "oneOf",
        json!([
            {"required": ["document"], "properties": {"document": {"type": ["object", "string"]}}},
            {"required": ["url"], "properties": {"url": {"type": "string"}}},
        ]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, value: &str) -> bool {
        mcp_core::validate::compile_schema(&json!({"type": "string", "pattern": pattern}))
            .expect("pattern compiles")
            .is_valid(&json!(value))
    }

    #[test]
    fn patterns_agree_with_the_validators() {
        let samples = [
            "",
            "a",
            "fakestore_api",
            "A-1_b",
            "a.b",
            "a b",
            "a/b",
            "é",
            "a\n",
            "x:y",
            &"x".repeat(64),
            &"x".repeat(65),
            &"y".repeat(128),
            &"y".repeat(129),
        ];
        for sample in samples {
            assert_eq!(
                matches(SERVER_ID_PATTERN, sample),
                mcp_core::validate::is_valid_server_id(sample),
                "server id {sample:?}"
            );
            assert_eq!(
                matches(TOOL_NAME_PATTERN, sample),
                mcp_core::validate::is_valid_tool_name(sample),
                "tool name {sample:?}"
            );
        }
        assert!(matches(HEADER_VALUE_PATTERN, "Bearer x"));
        assert!(!matches(HEADER_VALUE_PATTERN, "a\r\nb"));
        assert!(matches(PATH_TEMPLATE_PATTERN, ""));
        assert!(matches(PATH_TEMPLATE_PATTERN, "/items/{id}"));
        assert!(!matches(PATH_TEMPLATE_PATTERN, "items"));
        assert!(!matches(PATH_TEMPLATE_PATTERN, "/a?b"));
    }

    /// Every operation has its own operationId (schemathesis, code generators and the
    /// stateful phase's links name operations by it).
    #[test]
    fn operation_ids_are_unique() {
        let doc = document_json(true);
        let mut seen = std::collections::BTreeMap::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("operations") {
                let id = operation["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                if let Some(other) = seen.insert(id.to_owned(), format!("{method} {path}")) {
                    panic!("operationId {id} of {method} {path} is {other}'s too");
                }
            }
        }
        // One per operation: the 21 /api operations and /healthz.
        assert_eq!(seen.len(), 22, "{seen:?}");
    }

    #[test]
    fn constraints_and_security_come_from_the_code() {
        let doc = document_json(true);
        let server = &doc["components"]["schemas"]["ServerConfig"]["properties"];
        assert_eq!(server["replicas"]["minimum"], 1);
        assert_eq!(server["replicas"]["maximum"], ServerConfig::MAX_REPLICAS);
        assert_eq!(server["timeoutMs"]["maximum"], MAX_TIMEOUT_MS);
        assert_eq!(
            server["defaultHeaders"]["propertyNames"]["pattern"],
            HEADER_NAME_PATTERN
        );
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["RetryConfig"]["properties"]["maxAttempts"]["maximum"],
            RetryConfig::MAX_ATTEMPTS
        );
        assert_eq!(schemas["RetryConfig"]["additionalProperties"], false);
        assert_eq!(schemas["ImportRequest"]["additionalProperties"], false);
        assert_eq!(
            schemas["CircuitBreakerConfig"]["properties"]["coolDownMs"]["maximum"],
            MAX_TIMEOUT_MS * 10
        );
        let breaker = &schemas["CircuitBreakerConfig"]["properties"];
        assert_eq!(
            (
                &breaker["errorRatePercent"]["minimum"],
                &breaker["errorRatePercent"]["maximum"]
            ),
            (&json!(1), &json!(100))
        );
        assert_eq!(
            breaker["windowMs"]["maximum"],
            CircuitBreakerConfig::MAX_WINDOW_MS
        );
        assert_eq!(
            breaker["minCalls"]["maximum"],
            CircuitBreakerConfig::MAX_MIN_CALLS
        );
        assert_eq!(schemas["ToolBindingInput"]["required"], json!(["method"]));
        assert_eq!(
            schemas["ToolBinding"]["properties"]["pathTemplate"]["pattern"],
            PATH_TEMPLATE_PATTERN
        );

        let upsert = &doc["paths"]["/api/servers/{id}"]["post"];
        assert_eq!(upsert["security"], json!([{"bearer": []}]));
        assert_eq!(
            upsert["parameters"][0]["schema"]["pattern"],
            SERVER_ID_PATTERN
        );
        for status in ["400", "401", "403", "413", "422", "503"] {
            assert!(upsert["responses"][status].is_object(), "{status}");
        }
        assert_eq!(
            doc["paths"]["/api/tools/{id}/{tool}"]["post"]["requestBody"]["content"]
                ["application/json"]["schema"]["$ref"],
            "#/components/schemas/ToolBindingInput"
        );
        assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
        assert!(doc["paths"]["/healthz"]["get"]["responses"]["401"].is_null());

        // Unsigned query parameters are bounded like the models' fields.
        for name in ["since", "until"] {
            let params = doc["paths"]["/api/audit"]["get"]["parameters"]
                .as_array()
                .expect("parameters");
            let schema = &params
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("/api/audit documents {name}"))["schema"];
            assert_eq!(schema["format"], "uint64", "{name}: {schema}");
            assert_eq!(schema["minimum"], 0, "{name}: {schema}");
            assert_eq!(schema["maximum"], u64::MAX, "{name}: {schema}");
        }

        let open = document_json(false);
        assert_eq!(open["paths"]["/api/servers"]["get"]["security"], json!([]));
        assert!(open["paths"]["/api/servers"]["get"]["responses"]["401"].is_null());
    }
}
