//! Owns what makes a registration acceptable. Returns every problem at once (the admin
//! API answers 422 with the whole list) and never touches Redis. [`parse_server`] and
//! [`parse_tool`] turn untyped JSON into a registration: every field of the wrong shape
//! is a problem, and the semantic checks still run on the fields that are usable.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::model::{
    path_placeholders, AuditConfig, Auth, AuthKind, CircuitBreakerConfig, HttpMethod, ParamMapping,
    ResponseMapping, RetryConfig, ServerConfig, ToolBinding,
};

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
    if let Some(retry) = &server.retry {
        validate_retry(retry, &mut problems);
    }
    if let Some(breaker) = &server.circuit_breaker {
        if breaker.failure_threshold == Some(0) {
            problems.push(Problem::new(
                "circuitBreaker.failureThreshold",
                "must be at least 1",
            ));
        }
        if breaker
            .cool_down_ms
            .is_some_and(|ms| !(1..=MAX_TIMEOUT_MS * 10).contains(&ms))
        {
            problems.push(Problem::new(
                "circuitBreaker.coolDownMs",
                format!("must be between 1 and {}", MAX_TIMEOUT_MS * 10),
            ));
        }
        validate_error_rate(breaker, &mut problems);
    }
    problems
}

/// Range checks of the breaker's error-rate rule; `windowMs` and `minCalls` mean
/// something only with `errorRatePercent`.
fn validate_error_rate(breaker: &CircuitBreakerConfig, problems: &mut Vec<Problem>) {
    if breaker
        .error_rate_percent
        .is_some_and(|p| !(1..=100).contains(&p))
    {
        problems.push(Problem::new(
            "circuitBreaker.errorRatePercent",
            "must be between 1 and 100",
        ));
    }
    let window = CircuitBreakerConfig::MIN_WINDOW_MS..=CircuitBreakerConfig::MAX_WINDOW_MS;
    if breaker.window_ms.is_some_and(|ms| !window.contains(&ms)) {
        problems.push(Problem::new(
            "circuitBreaker.windowMs",
            format!("must be between {} and {}", window.start(), window.end()),
        ));
    }
    if breaker
        .min_calls
        .is_some_and(|n| !(1..=CircuitBreakerConfig::MAX_MIN_CALLS).contains(&n))
    {
        problems.push(Problem::new(
            "circuitBreaker.minCalls",
            format!(
                "must be between 1 and {}",
                CircuitBreakerConfig::MAX_MIN_CALLS
            ),
        ));
    }
    if breaker.error_rate_percent.is_none() {
        for (name, set) in [
            ("circuitBreaker.windowMs", breaker.window_ms.is_some()),
            ("circuitBreaker.minCalls", breaker.min_calls.is_some()),
        ] {
            if set {
                problems.push(Problem::new(
                    name,
                    "has no effect without circuitBreaker.errorRatePercent",
                ));
            }
        }
    }
}

/// Range checks of a server's or a tool's `retry`.
fn validate_retry(retry: &RetryConfig, problems: &mut Vec<Problem>) {
    if retry
        .max_attempts
        .is_some_and(|n| !(1..=RetryConfig::MAX_ATTEMPTS).contains(&n))
    {
        problems.push(Problem::new(
            "retry.maxAttempts",
            format!("must be between 1 and {}", RetryConfig::MAX_ATTEMPTS),
        ));
    }
    for (name, value) in [
        ("retry.baseDelayMs", retry.base_delay_ms),
        ("retry.maxDelayMs", retry.max_delay_ms),
    ] {
        if value.is_some_and(|ms| ms > MAX_TIMEOUT_MS) {
            problems.push(Problem::new(
                name,
                format!("must be at most {MAX_TIMEOUT_MS}"),
            ));
        }
    }
    if retry
        .attempt_timeout_ms
        .is_some_and(|ms| !(1..=MAX_TIMEOUT_MS).contains(&ms))
    {
        problems.push(Problem::new(
            "retry.attemptTimeoutMs",
            format!("must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    if retry.budget_percent.is_some_and(|p| p > 100) {
        problems.push(Problem::new(
            "retry.budgetPercent",
            "must be between 0 and 100",
        ));
    }
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
    if let Some(retry) = &tool.retry {
        validate_retry(retry, &mut problems);
    }
    problems
}

/// Checks one field's JSON against its type. Returns the field with every unusable
/// entry of its maps removed (`None` when the field as a whole is unusable) and one
/// problem per offending entry.
type FieldCheck = fn(&str, &Value) -> (Option<Value>, Vec<Problem>);

/// A top-level field of a registration: its JSON name, its type, and for a required
/// field the stand-in that lets the semantic checks run when it is missing or unusable.
struct FieldSpec {
    name: &'static str,
    check: FieldCheck,
    stand_in: Option<fn() -> Value>,
}

/// The fields of [`ServerConfig`] as its JSON spells them (a unit test keeps the list
/// equal to the struct). Unknown fields are kept in `extra` and never a problem.
const SERVER_FIELDS: &[FieldSpec] = &[
    field::<String>("name"),
    FieldSpec {
        stand_in: Some(|| Value::String(String::new())),
        ..field::<String>("baseUrl")
    },
    object_field::<Auth>("auth"),
    field::<BTreeMap<String, String>>("defaultHeaders"),
    field::<bool>("active"),
    field::<Option<u64>>("timeoutMs"),
    field::<Option<u32>>("replicas"),
    object_field::<Option<RetryConfig>>("retry"),
    object_field::<Option<CircuitBreakerConfig>>("circuitBreaker"),
    object_field::<Option<AuditConfig>>("audit"),
];

/// The fields of [`ToolBinding`] as its JSON spells them.
const TOOL_FIELDS: &[FieldSpec] = &[
    FieldSpec {
        stand_in: Some(|| Value::String(String::new())),
        ..field::<String>("name")
    },
    field::<String>("description"),
    FieldSpec {
        stand_in: Some(|| Value::String(HttpMethod::Get.as_str().to_owned())),
        ..field::<HttpMethod>("method")
    },
    field::<String>("pathTemplate"),
    object_field::<ParamMapping>("paramMapping"),
    field::<Value>("inputSchema"),
    object_field::<Option<ResponseMapping>>("responseMapping"),
    field::<bool>("active"),
    object_field::<Option<RetryConfig>>("retry"),
];

/// A field whose type is a struct: serde would also take a JSON array (the fields in
/// order), which a registration must not be.
const fn object_field<T: DeserializeOwned>(name: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        check: check_object_field::<T>,
        stand_in: None,
    }
}

fn check_object_field<T: DeserializeOwned>(
    name: &str,
    value: &Value,
) -> (Option<Value>, Vec<Problem>) {
    if value.is_array() {
        return (None, vec![Problem::new(name, "must be a JSON object")]);
    }
    check_field::<T>(name, value)
}

const fn field<T: DeserializeOwned>(name: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        check: check_field::<T>,
        stand_in: None,
    }
}

/// Parses a server registered as `server_id`: every shape problem of every field, then
/// [`validate_server`] on what is usable (minus what a shape problem already reports).
pub fn parse_server(server_id: &str, value: Value) -> Result<ServerConfig, Vec<Problem>> {
    let (server, mut problems) = parse_object::<ServerConfig>(value, SERVER_FIELDS)?;
    let semantic = validate_server(server_id, &server);
    keep_new_problems(&mut problems, semantic);
    if problems.is_empty() {
        Ok(server)
    } else {
        Err(problems)
    }
}

/// Parses a tool. When it is `registered_as` a name (the admin API's path, an import
/// document's map key), `name` defaults to it and, when present, must equal it. Every
/// shape problem of every field is listed, then [`validate_tool`] on what is usable.
pub fn parse_tool(
    mut value: Value,
    registered_as: Option<&str>,
) -> Result<ToolBinding, Vec<Problem>> {
    if let (Some(name), Some(object)) = (registered_as, value.as_object_mut()) {
        object
            .entry("name")
            .or_insert_with(|| Value::String(name.to_owned()));
    }
    let (tool, mut problems) = parse_object::<ToolBinding>(value, TOOL_FIELDS)?;
    let mut semantic = validate_tool(&tool);
    if let Some(expected) = registered_as.filter(|expected| tool.name != *expected) {
        semantic.push(Problem::new(
            "name",
            format!("must equal the name it is registered under ({expected:?})"),
        ));
    }
    keep_new_problems(&mut problems, semantic);
    if problems.is_empty() {
        Ok(tool)
    } else {
        Err(problems)
    }
}

/// Checks each known field of an object on its own, so one bad field does not hide the
/// next. Returns the value built from the usable fields (stand-ins for unusable required
/// ones) with the shape problems; `Err` only when there is nothing to build from.
fn parse_object<T: DeserializeOwned>(
    value: Value,
    fields: &[FieldSpec],
) -> Result<(T, Vec<Problem>), Vec<Problem>> {
    let Value::Object(mut object) = value else {
        return Err(vec![Problem::new("", "must be a JSON object")]);
    };
    let mut problems = Vec::new();
    for spec in fields {
        let usable = match object.get(spec.name) {
            Some(field_value) => {
                let (usable, found) = (spec.check)(spec.name, field_value);
                problems.extend(found);
                usable
            }
            None => {
                if spec.stand_in.is_some() {
                    problems.push(Problem::new(spec.name, "is required"));
                }
                None
            }
        };
        match (usable, spec.stand_in) {
            (Some(usable), _) => {
                object.insert(spec.name.to_owned(), usable);
            }
            (None, Some(stand_in)) => {
                object.insert(spec.name.to_owned(), stand_in());
            }
            (None, None) => {
                object.remove(spec.name);
            }
        }
    }
    // Every field was checked on its own, so this only fails if the field lists above
    // fall behind the model; the model's own error is then the problem.
    match serde_path_to_error::deserialize::<_, T>(Value::Object(object)) {
        Ok(typed) => Ok((typed, problems)),
        Err(err) => {
            let path = err.path().to_string();
            let field = if path == "." { String::new() } else { path };
            problems.push(Problem::new(
                field,
                without_value(err.into_inner().to_string()),
            ));
            Err(problems)
        }
    }
}

fn check_field<T: DeserializeOwned>(name: &str, value: &Value) -> (Option<Value>, Vec<Problem>) {
    let mut value = value.clone();
    let mut problems = Vec::new();
    // Each round removes one offending map entry; the bound only guards against a loop.
    for _ in 0..64 {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(_) => return (Some(value), problems),
            Err(err) => err,
        };
        let keys: Option<Vec<String>> = err
            .path()
            .iter()
            .map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                _ => None,
            })
            .collect();
        let path = err.path().to_string();
        let message = without_value(err.into_inner().to_string());
        let field = if path == "." {
            name.to_owned()
        } else {
            format!("{name}.{path}")
        };
        problems.push(Problem::new(field, message.clone()));
        match keys.filter(|keys| !keys.is_empty()) {
            Some(keys) if !message.starts_with("missing field") && remove_at(&mut value, &keys) => {
            }
            _ => return (None, problems),
        }
    }
    (None, problems)
}

/// serde's message without the string it rejected (`invalid type: string "Bearer
/// s3cret", expected struct Auth` -> `invalid type: string, expected struct Auth`): a
/// credential put in the wrong place must not come back in an error body or a log line.
fn without_value(message: String) -> String {
    for kind in ["invalid type: ", "invalid value: "] {
        let Some(rest) = message.strip_prefix(kind) else {
            continue;
        };
        if let Some(end) = rest
            .strip_prefix("string \"")
            .and_then(|quoted| quoted.rfind("\", expected").map(|end| &quoted[end + 1..]))
        {
            return format!("{kind}string{end}");
        }
    }
    message
}

/// Removes the entry at `keys` (object keys, outermost first); false if there is none.
fn remove_at(value: &mut Value, keys: &[String]) -> bool {
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut current = value;
    for key in parents {
        match current.get_mut(key) {
            Some(next) => current = next,
            None => return false,
        }
    }
    current
        .as_object_mut()
        .is_some_and(|object| object.remove(last).is_some())
}

/// Adds the semantic problems that are not already reported by a shape problem: a field
/// that had the wrong shape was replaced by its default, so what the checks say about
/// it (or, for `pathTemplate`, about the placeholders mapped to it) would mislead.
fn keep_new_problems(problems: &mut Vec<Problem>, semantic: Vec<Problem>) {
    let shape: Vec<String> = problems.iter().map(|p| p.field.clone()).collect();
    let covered = |field: &str| {
        shape.iter().any(|s| {
            field == s
                || field.starts_with(&format!("{s}."))
                || (s == "pathTemplate" && field.starts_with("paramMapping.path."))
        })
    };
    problems.extend(semantic.into_iter().filter(|p| !covered(&p.field)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rejected_string_is_not_repeated_in_the_problem() {
        let problems = parse_server(
            "s",
            json!({"baseUrl": "http://h", "auth": "Bearer tok-SECRET-1", "timeoutMs": "tok-SECRET-2",
                "defaultHeaders": {"Authorization": ["tok-SECRET-3"]}}),
        )
        .expect_err("invalid");
        let text = format!("{problems:?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(
            problems
                .iter()
                .any(|p| p.field == "auth"
                    && p.message == "invalid type: string, expected struct Auth"),
            "{problems:?}"
        );
        assert_eq!(
            without_value("unknown variant `basic`, expected one of `none`".into()),
            "unknown variant `basic`, expected one of `none`"
        );
    }

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
    fn a_struct_field_given_as_an_array_is_a_problem() {
        let problems = parse_server("a", json!({"baseUrl": "http://x", "retry": [], "auth": []}))
            .expect_err("refused");
        assert_eq!(fields(&problems), ["auth", "retry"]);
        let problems = parse_tool(
            json!({"method": "GET", "paramMapping": [], "retry": [3]}),
            Some("t"),
        )
        .expect_err("refused");
        assert_eq!(fields(&problems), ["paramMapping", "retry"]);
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
    fn shape_problems_of_every_field_are_listed_with_the_semantic_ones() {
        let check = |json: serde_json::Value, expected: &[&str]| {
            let problems = parse_tool(json.clone(), Some("t")).expect_err("invalid");
            assert_eq!(fields(&problems), expected, "{json}: {problems:?}");
        };
        // The brief's case: a bad method must not hide the unmapped placeholder.
        check(
            json!({"method": "TRACE", "pathTemplate": "/p/{id}"}),
            &["method", "paramMapping.path.id"],
        );
        check(
            json!({"method": 5, "description": [], "active": "yes", "inputSchema": {"type": 5}}),
            &["description", "method", "active", "inputSchema"],
        );
        // Entries of a map are checked one by one; the usable ones still count.
        check(
            json!({"method": "GET", "pathTemplate": "/p/{id}/{x}",
                   "paramMapping": {"path": {"id": 1, "x": "x"}, "query": {"q": false}}}),
            &["paramMapping.path.id", "paramMapping.query.q"],
        );
        // A pathTemplate of the wrong shape does not also blame its mapped placeholders.
        check(
            json!({"method": "GET", "pathTemplate": 7, "paramMapping": {"path": {"id": "id"}}}),
            &["pathTemplate"],
        );
        check(json!({"name": "u", "method": "GET"}), &["name"]);
        check(json!({}), &["method"]);
        check(json!([1]), &[""]);
        let problems = parse_tool(json!({"method": "PUT"}), None).expect_err("no name");
        assert_eq!(problems, [Problem::new("name", "is required")]);
        let tool = parse_tool(json!({"method": "PUT", "future": 1}), Some("t")).expect("valid");
        assert_eq!(
            (tool.name.as_str(), tool.extra["future"].clone()),
            ("t", json!(1))
        );

        let check = |id: &str, json: serde_json::Value, expected: &[&str]| {
            let problems = parse_server(id, json.clone()).expect_err("invalid");
            assert_eq!(fields(&problems), expected, "{json}: {problems:?}");
        };
        check(
            "bad id",
            json!({"baseUrl": 3, "auth": {"type": "magic", "key": 1}, "replicas": -1, "timeoutMs": 0}),
            &[
                "baseUrl",
                "auth.type",
                "auth.key",
                "replicas",
                "id",
                "timeoutMs",
            ],
        );
        check(
            "ok",
            json!({"auth": {"type": "bearer"}}),
            &["baseUrl", "auth.value"],
        );
        check(
            "ok",
            json!({"baseUrl": "http://x", "defaultHeaders": {"A": 1, "Bad Name": "v"}}),
            &["defaultHeaders.A", "defaultHeaders.Bad Name"],
        );
        let server = parse_server("ok", json!({"baseUrl": "http://x", "x": [1]})).expect("valid");
        assert_eq!(server.extra["x"], json!([1]));
    }

    #[test]
    fn the_field_lists_name_every_field_of_the_model() {
        let server: ServerConfig = serde_json::from_value(json!({
            "name": "n", "baseUrl": "http://x", "auth": {"type": "bearer", "value": "v"},
            "defaultHeaders": {"A": "b"}, "active": true, "timeoutMs": 1, "replicas": 1,
            "retry": {"maxAttempts": 2}, "circuitBreaker": {"failureThreshold": 3},
            "audit": {"includeArguments": true}
        }))
        .expect("server");
        let tool: ToolBinding = serde_json::from_value(json!({
            "name": "t", "description": "d", "method": "GET", "pathTemplate": "/x",
            "paramMapping": {"query": {"q": "q"}}, "responseMapping": {"pick": "$.a"},
            "retry": {"idempotent": true}
        }))
        .expect("tool");
        let keys = |value: serde_json::Value| -> Vec<String> {
            value.as_object().expect("object").keys().cloned().collect()
        };
        let names = |specs: &[FieldSpec]| -> Vec<String> {
            specs.iter().map(|s| s.name.to_owned()).collect()
        };
        assert_eq!(
            keys(serde_json::to_value(&server).expect("json")),
            names(SERVER_FIELDS)
        );
        assert_eq!(
            keys(serde_json::to_value(&tool).expect("json")),
            names(TOOL_FIELDS)
        );
    }

    #[test]
    fn retry_and_breaker_settings_are_range_checked() {
        let problems = parse_server(
            "s",
            json!({"baseUrl": "http://x",
                "retry": {"maxAttempts": 0, "budgetPercent": 101, "attemptTimeoutMs": 0, "maxDelayMs": 700000},
                "circuitBreaker": {"failureThreshold": 0, "coolDownMs": 0}}),
        )
        .expect_err("out of range");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "retry.maxAttempts",
                "retry.maxDelayMs",
                "retry.attemptTimeoutMs",
                "retry.budgetPercent",
                "circuitBreaker.failureThreshold",
                "circuitBreaker.coolDownMs"
            ]
        );
        for (audit, field) in [
            (json!({"includeArguments": "yes"}), "audit.includeArguments"),
            (json!({"includeArgs": true}), "audit.includeArgs"),
            (json!(true), "audit"),
        ] {
            let problems = parse_server("s", json!({"baseUrl": "http://x", "audit": audit}))
                .expect_err("a bad audit setting");
            assert_eq!(problems[0].field, field, "{audit}: {problems:?}");
        }
        let server = parse_server(
            "s",
            json!({"baseUrl": "http://x", "audit": {"includeArguments": true}}),
        )
        .expect("valid");
        assert!(server.audit_includes_arguments());
        let problems = parse_server("s", json!({"baseUrl": "http://x", "retry": {"tries": 2}}))
            .expect_err("unknown retry field");
        assert_eq!(problems[0].field, "retry.tries", "{problems:?}");
        let tool = parse_tool(
            json!({"name": "t", "method": "POST", "retry": {"idempotent": true, "maxAttempts": 4}}),
            None,
        )
        .expect("valid");
        assert_eq!(
            tool.retry.map(|r| (r.idempotent, r.max_attempts)),
            Some((Some(true), Some(4)))
        );
        let problems = parse_tool(
            json!({"name": "t", "method": "GET", "retry": {"maxAttempts": 11}}),
            None,
        )
        .expect_err("too many attempts");
        assert_eq!(problems[0].field, "retry.maxAttempts");
    }

    #[test]
    fn the_breaker_error_rate_is_range_checked_and_needs_its_percent() {
        let problems = parse_server(
            "s",
            json!({"baseUrl": "http://x", "circuitBreaker":
                {"errorRatePercent": 0, "windowMs": 99, "minCalls": 0}}),
        )
        .expect_err("out of range");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "circuitBreaker.errorRatePercent",
                "circuitBreaker.windowMs",
                "circuitBreaker.minCalls"
            ],
            "{problems:?}"
        );
        let problems = parse_server(
            "s",
            json!({"baseUrl": "http://x", "circuitBreaker":
                {"errorRatePercent": 101, "windowMs": 600001, "minCalls": 100001}}),
        )
        .expect_err("out of range");
        assert_eq!(problems.len(), 3, "{problems:?}");
        let problems = parse_server(
            "s",
            json!({"baseUrl": "http://x", "circuitBreaker": {"windowMs": 5000, "minCalls": 10}}),
        )
        .expect_err("no percent");
        assert_eq!(
            problems,
            [
                Problem::new(
                    "circuitBreaker.windowMs",
                    "has no effect without circuitBreaker.errorRatePercent"
                ),
                Problem::new(
                    "circuitBreaker.minCalls",
                    "has no effect without circuitBreaker.errorRatePercent"
                )
            ]
        );
        let problems = parse_server(
            "s",
            json!({"baseUrl": "http://x", "circuitBreaker": {"errorRate": 50}}),
        )
        .expect_err("unknown field");
        assert_eq!(
            problems[0].field, "circuitBreaker.errorRate",
            "{problems:?}"
        );
        let server = parse_server(
            "s",
            json!({"baseUrl": "http://x", "circuitBreaker": {"errorRatePercent": 50}}),
        )
        .expect("valid");
        let breaker = server.circuit_breaker.expect("breaker");
        assert_eq!(
            breaker.error_rate(),
            Some(crate::model::ErrorRateRule {
                percent: 50,
                window_ms: CircuitBreakerConfig::DEFAULT_WINDOW_MS,
                min_calls: CircuitBreakerConfig::DEFAULT_MIN_CALLS
            })
        );
        assert_eq!(
            CircuitBreakerConfig::default().error_rate(),
            None,
            "off by default"
        );
        let server = parse_server(
            "s",
            json!({"baseUrl": "http://x", "circuitBreaker":
                {"errorRatePercent": 100, "windowMs": 100, "minCalls": 1}}),
        )
        .expect("the bounds are valid");
        assert_eq!(
            server
                .circuit_breaker
                .and_then(|b| b.error_rate())
                .map(|r| r.window_ms),
            Some(100)
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

/// Every violation of the schema by `args`, each with its JSON pointer. A message names
/// a rejected number, boolean or null, but never repeats a string (or an object or array,
/// which may hold one): an argument can be a credential (one a tool sends as the REST
/// API's `Authorization` header), and the error body and the logs must not carry it.
pub fn check_arguments(
    validator: &jsonschema::Validator,
    args: &serde_json::Value,
) -> Vec<ArgumentViolation> {
    use serde_json::Value;
    validator
        .iter_errors(args)
        .map(|err| ArgumentViolation {
            pointer: err.instance_path().to_string(),
            message: match err.instance().as_ref() {
                Value::Number(_) | Value::Bool(_) | Value::Null => err.to_string(),
                _ => err.masked_with("the value").to_string(),
            },
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

    #[test]
    fn a_rejected_string_is_not_repeated_in_the_message() {
        let validator = compile_schema(&json!({
            "type": "object",
            "properties": {"token": {"type": "string", "pattern": "^Bearer "}, "n": {"minimum": 0}, "o": {"type": "string"}}
        }))
        .expect("compiles");
        let violations = check_arguments(
            &validator,
            &json!({"token": "Basic tok-SECRET-1", "n": -1, "o": {"k": "tok-SECRET-2"}}),
        );
        let text = format!("{violations:?}");
        assert_eq!(violations.len(), 3, "{text}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(
            text.contains("does not match") && text.contains("-1 is less than"),
            "{text}"
        );
    }
}
