//! Owns importing tools from an OpenAPI 3.0 or 3.1 document (JSON or YAML): one tool
//! per operation, its name from `operationId` (or method and path), made valid and
//! unique; its description from the summary and description; its input JSON Schema
//! from the path, query and header parameters and the JSON request body, with local
//! `$ref`s resolved (a cycle is refused, naming it); and the mapping of every argument
//! to where it goes. [`convert`] is pure; [`import`] compares with what the server has
//! and writes (or, dry, only says) what is created, changed and removed. Used by
//! `POST /api/servers/{id}/openapi` and `mcp-admin openapi-import`.

use std::collections::{BTreeMap, BTreeSet};

use mcp_core::model::{HttpMethod, ParamMapping, ServerConfig, ToolBinding};
use mcp_core::registry::{ImportMode, RedisRegistry};
use mcp_core::validate::Problem;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::error::ApiError;

/// Which operations become tools, and how they are named.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only operations with one of these tags (all when empty).
    pub tags: Vec<String>,
    /// Only these operations, by `operationId` or by the tool name they would get
    /// without a prefix (all when empty).
    pub operations: Vec<String>,
    /// Put before every tool name.
    pub prefix: String,
}

/// What a document turns into.
#[derive(Debug)]
pub struct Converted {
    pub tools: Vec<ToolBinding>,
    /// The first server URL of the document (its variables at their defaults).
    pub base_url: Option<String>,
    /// Operations left out, and why.
    pub skipped: Vec<Skipped>,
    /// What was imported with a loss (a cookie parameter left out, say).
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Skipped {
    /// `METHOD /path`.
    pub operation: String,
    pub reason: String,
}

/// The import's outcome: what was (or, dry, would be) written.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub server: String,
    pub dry_run: bool,
    /// The server did not exist and was (or would be) registered with `baseUrl`.
    pub server_created: bool,
    pub base_url: String,
    pub created: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Tools of the server the document lacks: removed in `replace` mode only.
    pub removed: Vec<String>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
}

/// Parses a document given as JSON or YAML.
pub fn parse_document(bytes: &[u8]) -> Result<Value, String> {
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        return Ok(value);
    }
    serde_norway::from_slice::<Value>(bytes)
        .map_err(|err| format!("the document is neither JSON nor YAML: {err}"))
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// Turns an OpenAPI document into tools. Fails on what is not OpenAPI 3, on a `$ref`
/// that does not resolve or points outside the document, and on a cycle of `$ref`s in
/// an operation's inputs; every such problem is listed.
pub fn convert(doc: &Value, options: &Options) -> Result<Converted, Vec<Problem>> {
    let version = doc.get("openapi").and_then(Value::as_str).unwrap_or("");
    if !(version.starts_with("3.0") || version.starts_with("3.1")) {
        let found = doc
            .get("swagger")
            .and_then(Value::as_str)
            .map(|v| format!("Swagger {v}"))
            .unwrap_or_else(|| format!("openapi {version:?}"));
        return Err(vec![Problem::new(
            "openapi",
            format!("only OpenAPI 3.0 and 3.1 documents can be imported, this is {found}"),
        )]);
    }
    let mut converted = Converted {
        tools: Vec::new(),
        base_url: base_url(doc),
        skipped: Vec::new(),
        warnings: Vec::new(),
    };
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    let empty = Map::new();
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (path, item) in paths {
        // A path item given by `$ref` is looked up, not resolved whole: each operation
        // resolves only what it uses, so a cycle elsewhere does not stop it.
        let item = match item.get("$ref").and_then(Value::as_str) {
            Some(reference) => match reference
                .strip_prefix('#')
                .and_then(|p| doc.pointer(&percent_decode(p)))
            {
                Some(target) => target.clone(),
                None => {
                    problems.push(Problem::new(
                        format!("paths.{path}"),
                        format!("$ref {reference:?} points at nothing in this document"),
                    ));
                    continue;
                }
            },
            None => item.clone(),
        };
        let shared = item.get("parameters").cloned().unwrap_or(Value::Null);
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let label = format!("{} {path}", method.to_uppercase());
            let Some(http_method) = http_method(method) else {
                converted.skipped.push(Skipped {
                    operation: label,
                    reason: format!("{} has no tool method", method.to_uppercase()),
                });
                continue;
            };
            let plain_name = tool_name(operation, method, path);
            if !selected(operation, &plain_name, options) {
                continue;
            }
            match operation_tool(doc, path, http_method, operation, &shared) {
                Ok((mut tool, warnings)) => {
                    tool.name = unique(&mut names, &options.prefix, &plain_name);
                    converted
                        .warnings
                        .extend(warnings.into_iter().map(|w| format!("{label}: {w}")));
                    converted.tools.push(tool);
                }
                Err(message) => problems.push(Problem::new(label, message)),
            }
        }
    }
    if problems.is_empty() {
        Ok(converted)
    } else {
        Err(problems)
    }
}

fn http_method(method: &str) -> Option<HttpMethod> {
    Some(match method {
        "get" => HttpMethod::Get,
        "post" => HttpMethod::Post,
        "put" => HttpMethod::Put,
        "patch" => HttpMethod::Patch,
        "delete" => HttpMethod::Delete,
        _ => return None,
    })
}

/// The first server's URL with its variables at their defaults.
fn base_url(doc: &Value) -> Option<String> {
    let server = doc.get("servers")?.as_array()?.first()?;
    let mut url = server.get("url")?.as_str()?.to_owned();
    if let Some(variables) = server.get("variables").and_then(Value::as_object) {
        for (name, variable) in variables {
            if let Some(default) = variable.get("default").and_then(Value::as_str) {
                url = url.replace(&format!("{{{name}}}"), default);
            }
        }
    }
    Some(url.trim_end_matches('/').to_owned())
}

fn selected(operation: &Value, plain_name: &str, options: &Options) -> bool {
    let tagged = options.tags.is_empty()
        || operation
            .get("tags")
            .and_then(Value::as_array)
            .is_some_and(|tags| {
                tags.iter()
                    .filter_map(Value::as_str)
                    .any(|t| options.tags.iter().any(|want| want == t))
            });
    let id = operation.get("operationId").and_then(Value::as_str);
    let named = options.operations.is_empty()
        || options
            .operations
            .iter()
            .any(|want| Some(want.as_str()) == id || want == plain_name);
    tagged && named
}

/// `operationId` made a valid tool name, or `method_path_segments`.
fn tool_name(operation: &Value, method: &str, path: &str) -> String {
    let raw = match operation.get("operationId").and_then(Value::as_str) {
        Some(id) if !id.trim().is_empty() => id.to_owned(),
        _ => {
            let segments: Vec<&str> = path
                .split('/')
                .map(|s| s.trim_matches(|c| c == '{' || c == '}'))
                .filter(|s| !s.is_empty())
                .collect();
            format!("{method}_{}", segments.join("_"))
        }
    };
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    name = name.trim_matches('_').to_owned();
    if name.is_empty() {
        name = method.to_owned();
    }
    name
}

/// `prefix + name`, within 128 characters, with `_2`, `_3`... until no tool has it.
fn unique(names: &mut BTreeSet<String>, prefix: &str, name: &str) -> String {
    let fit = |s: String, room: usize| -> String { s.chars().take(room).collect() };
    let base = fit(format!("{prefix}{name}"), 128);
    let mut candidate = base.clone();
    let mut n = 2;
    while names.contains(&candidate) {
        let suffix = format!("_{n}");
        candidate = format!("{}{suffix}", fit(base.clone(), 128 - suffix.len()));
        n += 1;
    }
    names.insert(candidate.clone());
    candidate
}

/// The tool of one operation (named later), with what it could not carry over.
fn operation_tool(
    doc: &Value,
    path: &str,
    method: HttpMethod,
    operation: &Value,
    shared: &Value,
) -> Result<(ToolBinding, Vec<String>), String> {
    let mut warnings = Vec::new();
    // Operation parameters override the path item's with the same name and place.
    let mut parameters: Vec<Value> = Vec::new();
    for list in [shared, operation.get("parameters").unwrap_or(&Value::Null)] {
        for parameter in list.as_array().into_iter().flatten() {
            let parameter = resolve(parameter, doc, &mut Vec::new())?;
            let key = |p: &Value| (p.get("name").cloned(), p.get("in").cloned());
            parameters.retain(|p| key(p) != key(&parameter));
            parameters.push(parameter);
        }
    }
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut mapping = ParamMapping::default();
    for parameter in &parameters {
        let (Some(name), Some(place)) = (
            parameter.get("name").and_then(Value::as_str),
            parameter.get("in").and_then(Value::as_str),
        ) else {
            warnings.push("a parameter without name or in was left out".into());
            continue;
        };
        if place == "cookie" {
            warnings.push(format!("cookie parameter {name:?} was left out"));
            continue;
        }
        if place == "header"
            && ["accept", "content-type", "authorization"]
                .contains(&name.to_ascii_lowercase().as_str())
        {
            // OpenAPI ignores these as parameters; the hub sets them (auth from the server).
            continue;
        }
        let arg = free_name(&properties, name, place);
        let mut schema = parameter
            .get("schema")
            .or_else(|| {
                parameter
                    .get("content")
                    .and_then(Value::as_object)
                    .and_then(|c| c.values().next())
                    .and_then(|media| media.get("schema"))
            })
            .map(|s| resolve(s, doc, &mut Vec::new()))
            .transpose()?
            .unwrap_or_else(|| json!({"type": "string"}));
        to_json_schema(&mut schema);
        describe(&mut schema, parameter);
        properties.insert(arg.clone(), schema);
        if place == "path" || parameter.get("required").and_then(Value::as_bool) == Some(true) {
            required.push(arg.clone());
        }
        let target = match place {
            "path" => &mut mapping.path,
            "query" => &mut mapping.query,
            "header" => &mut mapping.headers,
            other => {
                warnings.push(format!("parameter {name:?} in {other:?} was left out"));
                properties.remove(&arg);
                required.retain(|r| r != &arg);
                continue;
            }
        };
        target.insert(name.to_owned(), arg);
    }
    if let Some(body) = operation.get("requestBody") {
        let body = resolve(body, doc, &mut Vec::new())?;
        let body_required = body.get("required").and_then(Value::as_bool) == Some(true);
        let content = body.get("content").and_then(Value::as_object);
        let json_media = content.and_then(|c| {
            c.iter()
                .find(|(media, _)| {
                    let media = media.split(';').next().unwrap_or("").trim();
                    media == "application/json" || media.ends_with("+json")
                })
                .map(|(_, m)| m)
        });
        match json_media {
            Some(media) => {
                let mut schema = media
                    .get("schema")
                    .map(|s| resolve(s, doc, &mut Vec::new()))
                    .transpose()?
                    .unwrap_or_else(|| json!({}));
                to_json_schema(&mut schema);
                let fields = schema.get("properties").and_then(Value::as_object).cloned();
                let flat = fields.as_ref().is_some_and(|fields| {
                    !fields.is_empty() && fields.keys().all(|k| !properties.contains_key(k))
                });
                match fields {
                    Some(fields) if flat => {
                        let field_required: Vec<String> = schema
                            .get("required")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect();
                        for (field, field_schema) in fields {
                            if field_schema.get("readOnly").and_then(Value::as_bool) == Some(true) {
                                continue;
                            }
                            if body_required && field_required.contains(&field) {
                                required.push(field.clone());
                            }
                            mapping.body.insert(field.clone(), field.clone());
                            properties.insert(field, field_schema);
                        }
                    }
                    _ => {
                        let arg = free_name(&properties, "body", "body");
                        describe(&mut schema, &body);
                        properties.insert(arg.clone(), schema);
                        if body_required {
                            required.push(arg.clone());
                        }
                        mapping.raw_body = Some(arg);
                    }
                }
            }
            None => {
                let media: Vec<&String> = content.map(|c| c.keys().collect()).unwrap_or_default();
                warnings.push(format!(
                    "its request body ({media:?}) is not JSON; the tool sends no body"
                ));
            }
        }
    }
    let mut input_schema =
        json!({"type": "object", "properties": properties, "additionalProperties": false});
    if !required.is_empty() {
        input_schema["required"] = json!(required);
    }
    let text = |key: &str| {
        operation
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let description = match (text("summary"), text("description")) {
        (Some(summary), Some(description)) if summary != description => {
            format!("{summary}\n\n{description}")
        }
        (Some(one), _) | (None, Some(one)) => one.to_owned(),
        (None, None) => String::new(),
    };
    let tool = ToolBinding {
        name: String::new(),
        description,
        method,
        path_template: path.to_owned(),
        param_mapping: mapping,
        input_schema,
        response_mapping: None,
        active: true,
        retry: None,
        extra: Map::new(),
    };
    Ok((tool, warnings))
}

/// `name`, or `name_{place}` (then `_2`...) when an argument already has it.
fn free_name(properties: &Map<String, Value>, name: &str, place: &str) -> String {
    if !properties.contains_key(name) {
        return name.to_owned();
    }
    let mut candidate = format!("{name}_{place}");
    let mut n = 2;
    while properties.contains_key(&candidate) {
        candidate = format!("{name}_{place}_{n}");
        n += 1;
    }
    candidate
}

/// Gives `schema` the description of what holds it, unless it has its own.
fn describe(schema: &mut Value, holder: &Value) {
    if let (Some(object), Some(description)) = (
        schema.as_object_mut(),
        holder.get("description").and_then(Value::as_str),
    ) {
        object
            .entry("description")
            .or_insert_with(|| Value::String(description.to_owned()));
    }
}

/// OpenAPI 3.0's schema dialect made JSON Schema: `nullable` becomes a `null` type,
/// `example` becomes `examples`, and keywords only OpenAPI reads are dropped.
fn to_json_schema(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            if object.remove("nullable") == Some(Value::Bool(true)) {
                match object.get("type").cloned() {
                    Some(Value::String(t)) => {
                        object.insert("type".into(), json!([t, "null"]));
                    }
                    Some(_) => {}
                    None if object.contains_key("enum") => {}
                    None => {}
                }
            }
            if let Some(example) = object.remove("example") {
                object
                    .entry("examples")
                    .or_insert_with(|| Value::Array(vec![example]));
            }
            for keyword in ["discriminator", "xml", "externalDocs"] {
                object.remove(keyword);
            }
            for value in object.values_mut() {
                to_json_schema(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(to_json_schema),
        _ => {}
    }
}

/// `value` with every local `$ref` replaced by what it points at (keys beside a `$ref`
/// override the target's, as 3.1 allows). `stack` holds the references being resolved:
/// meeting one again is a cycle, which no inlined schema can hold.
fn resolve(value: &Value, doc: &Value, stack: &mut Vec<String>) -> Result<Value, String> {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get("$ref") {
                let Some(pointer) = reference.strip_prefix('#') else {
                    return Err(format!(
                        "external $ref {reference:?} is not supported: bundle the document into one file first"
                    ));
                };
                if stack.contains(reference) {
                    stack.push(reference.clone());
                    return Err(format!(
                        "cyclic $ref: {} (a tool's input schema must be finite; leave this operation out with `operations` or `tags`)",
                        stack.join(" -> ")
                    ));
                }
                let decoded = percent_decode(pointer);
                let target = doc
                    .pointer(&decoded)
                    .ok_or_else(|| format!("$ref {reference:?} points at nothing"))?;
                stack.push(reference.clone());
                let mut resolved = resolve(target, doc, stack)?;
                stack.pop();
                if let Value::Object(resolved_object) = &mut resolved {
                    for (key, sibling) in object {
                        if key != "$ref" {
                            resolved_object.insert(key.clone(), resolve(sibling, doc, stack)?);
                        }
                    }
                }
                return Ok(resolved);
            }
            let mut out = Map::with_capacity(object.len());
            for (key, inner) in object {
                out.insert(key.clone(), resolve(inner, doc, stack)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| resolve(item, doc, stack))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the import goes and how it writes.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub server_id: String,
    /// Used when the server is new (else the document's first server URL).
    pub base_url: Option<String>,
    pub mode: ImportMode,
    pub dry_run: bool,
}

/// Converts `doc` and brings the server's tools in line with it: new tools created,
/// differing ones changed, and in `replace` mode the server's other tools removed. A
/// server that does not exist is registered first (with `target.base_url` or the
/// document's). Every tool is validated before anything is written; a dry run writes
/// nothing and reports the same.
pub async fn import(
    registry: &RedisRegistry,
    doc: &Value,
    options: &Options,
    target: &Target,
) -> Result<Report, ApiError> {
    let converted = convert(doc, options).map_err(ApiError::Invalid)?;
    let mut problems = Vec::new();
    for tool in &converted.tools {
        for problem in mcp_core::validate::validate_tool(tool) {
            problems.push(Problem::new(
                format!("tools.{}.{}", tool.name, problem.field),
                problem.message,
            ));
        }
    }
    let existing = registry.get_server(&target.server_id).await?;
    let base_url = match (&existing, &target.base_url, &converted.base_url) {
        (Some(server), _, _) => server.base_url.clone(),
        (None, Some(url), _) => url.clone(),
        (None, None, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
            url.clone()
        }
        (None, None, _) => {
            problems.push(Problem::new(
                "baseUrl",
                format!(
                    "server {:?} is not registered and the document names no absolute server URL: give baseUrl",
                    target.server_id
                ),
            ));
            String::new()
        }
    };
    let new_server = if existing.is_none() {
        let config = json!({"name": target.server_id, "baseUrl": base_url});
        match mcp_core::validate::parse_server(&target.server_id, config) {
            Ok(config) => Some(config),
            Err(found) => {
                problems.extend(found);
                None
            }
        }
    } else {
        None
    };
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let stored = if existing.is_some() {
        registry.list_tools(&target.server_id).await?
    } else {
        BTreeMap::new()
    };
    let mut report = Report {
        server: target.server_id.clone(),
        dry_run: target.dry_run,
        server_created: existing.is_none(),
        base_url,
        created: Vec::new(),
        changed: Vec::new(),
        unchanged: Vec::new(),
        removed: Vec::new(),
        skipped: converted.skipped,
        warnings: converted.warnings,
    };
    let imported: BTreeSet<&str> = converted.tools.iter().map(|t| t.name.as_str()).collect();
    for tool in &converted.tools {
        match stored.get(&tool.name) {
            None => report.created.push(tool.name.clone()),
            Some(old) if old == tool => report.unchanged.push(tool.name.clone()),
            Some(_) => report.changed.push(tool.name.clone()),
        }
    }
    if target.mode == ImportMode::Replace {
        report.removed = stored
            .keys()
            .filter(|name| !imported.contains(name.as_str()))
            .cloned()
            .collect();
    }
    if target.dry_run {
        return Ok(report);
    }
    if let Some(config) = new_server {
        write_server(registry, &target.server_id, config).await?;
    }
    let writes: BTreeSet<&String> = report.created.iter().chain(&report.changed).collect();
    for tool in converted.tools.iter().filter(|t| writes.contains(&t.name)) {
        registry
            .upsert_tool(&target.server_id, tool.clone())
            .await?;
    }
    for name in &report.removed {
        registry.delete_tool(&target.server_id, name).await?;
    }
    tracing::info!(event = "admin.openapi.import", server = %target.server_id,
        created = report.created.len(), changed = report.changed.len(),
        removed = report.removed.len(), skipped = report.skipped.len());
    Ok(report)
}

async fn write_server(
    registry: &RedisRegistry,
    server_id: &str,
    config: ServerConfig,
) -> Result<(), ApiError> {
    registry.upsert_server(server_id, config).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(paths: Value) -> Value {
        json!({
            "openapi": "3.0.3",
            "info": {"title": "t", "version": "1"},
            "servers": [{"url": "https://{region}.example.com/v1/", "variables": {"region": {"default": "eu"}}}],
            "paths": paths,
            "components": {
                "schemas": {
                    "Pet": {"type": "object", "required": ["name"], "properties": {
                        "id": {"type": "integer", "readOnly": true},
                        "name": {"type": "string", "example": "Rex"},
                        "tag": {"type": "string", "nullable": true},
                        "owner": {"$ref": "#/components/schemas/Owner"}}},
                    "Owner": {"type": "object", "properties": {"name": {"type": "string"}}},
                    "Node": {"type": "object", "properties": {"child": {"$ref": "#/components/schemas/Node"}}}
                },
                "parameters": {"Limit": {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}}}
            }
        })
    }

    #[test]
    fn an_operation_becomes_a_tool_with_its_arguments_mapped() {
        let doc = doc(json!({
            "/pets/{petId}": {
                "parameters": [{"name": "petId", "in": "path", "required": true, "schema": {"type": "integer"}, "description": "The pet"}],
                "get": {"operationId": "showPetById", "summary": "Info for a pet", "tags": ["pets"],
                    "parameters": [{"$ref": "#/components/parameters/Limit"},
                        {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                        {"name": "session", "in": "cookie", "schema": {"type": "string"}}]},
                "put": {"summary": "Update a pet", "requestBody": {"required": true,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}},
                "head": {"operationId": "headPet"}
            }
        }));
        let converted = convert(&doc, &Options::default()).expect("converted");
        assert_eq!(
            converted.base_url.as_deref(),
            Some("https://eu.example.com/v1")
        );
        assert_eq!(
            converted.skipped,
            vec![Skipped {
                operation: "HEAD /pets/{petId}".into(),
                reason: "HEAD has no tool method".into()
            }]
        );
        assert_eq!(
            converted.warnings,
            vec!["GET /pets/{petId}: cookie parameter \"session\" was left out".to_owned()]
        );
        let get = &converted.tools[0];
        assert_eq!(get.name, "showPetById");
        assert_eq!(get.method, HttpMethod::Get);
        assert_eq!(get.path_template, "/pets/{petId}");
        assert_eq!(get.description, "Info for a pet");
        assert_eq!(get.param_mapping.path["petId"], "petId");
        assert_eq!(get.param_mapping.query["limit"], "limit");
        assert_eq!(get.param_mapping.headers["X-Trace"], "X-Trace");
        assert_eq!(
            get.input_schema["properties"]["limit"],
            json!({"type": "integer", "maximum": 100})
        );
        assert_eq!(
            get.input_schema["properties"]["petId"]["description"],
            "The pet"
        );
        assert_eq!(get.input_schema["required"], json!(["petId"]));
        assert_eq!(get.input_schema["additionalProperties"], false);

        let put = &converted.tools[1];
        assert_eq!(
            put.name, "put_pets_petId",
            "no operationId: method and path"
        );
        assert_eq!(
            put.param_mapping.body.keys().collect::<Vec<_>>(),
            ["name", "owner", "tag"],
            "readOnly id left out"
        );
        let props = &put.input_schema["properties"];
        assert_eq!(props["tag"]["type"], json!(["string", "null"]), "nullable");
        assert_eq!(props["name"]["examples"], json!(["Rex"]));
        assert_eq!(
            props["owner"]["properties"]["name"]["type"], "string",
            "$ref resolved"
        );
        assert_eq!(put.input_schema["required"], json!(["petId", "name"]));
        for tool in &converted.tools {
            assert!(
                mcp_core::validate::validate_tool(tool).is_empty(),
                "{tool:?}"
            );
        }
    }

    #[test]
    fn filters_prefix_and_unique_names() {
        let doc = doc(json!({
            "/a": {"get": {"operationId": "list items!", "tags": ["x"]}, "post": {"operationId": "list_items", "tags": ["y"]}},
            "/b": {"get": {"operationId": "other", "tags": ["y"]}}
        }));
        let all = convert(
            &doc,
            &Options {
                prefix: "shop.".into(),
                ..Options::default()
            },
        )
        .expect("all");
        let names: Vec<&str> = all.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["shop.list_items", "shop.list_items_2", "shop.other"]
        );
        let tagged = convert(
            &doc,
            &Options {
                tags: vec!["y".into()],
                ..Options::default()
            },
        )
        .expect("tagged");
        assert_eq!(tagged.tools.len(), 2);
        let one = convert(
            &doc,
            &Options {
                operations: vec!["other".into()],
                ..Options::default()
            },
        )
        .expect("one");
        assert_eq!(one.tools.len(), 1);
        assert_eq!(one.tools[0].name, "other");
    }

    #[test]
    fn a_body_that_is_not_an_object_or_collides_is_sent_whole() {
        let doc = doc(json!({
            "/tags/{name}": {"post": {"operationId": "addTags",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "requestBody": {"content": {"application/json": {"schema": {"type": "array", "items": {"type": "string"}}}}}}},
            "/pets/{name}": {"post": {"operationId": "renamePet",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Owner"}}}}}},
            "/upload": {"post": {"operationId": "upload", "requestBody": {"content": {"multipart/form-data": {"schema": {}}}}}}
        }));
        let converted = convert(&doc, &Options::default()).expect("converted");
        let by_name = |n: &str| converted.tools.iter().find(|t| t.name == n).expect(n);
        assert_eq!(
            by_name("addTags").param_mapping.raw_body.as_deref(),
            Some("body")
        );
        assert_eq!(
            by_name("addTags").input_schema["properties"]["body"]["type"],
            "array"
        );
        let rename = by_name("renamePet");
        assert_eq!(
            rename.param_mapping.raw_body.as_deref(),
            Some("body"),
            "body field `name` collides with the path's"
        );
        assert_eq!(rename.input_schema["required"], json!(["name", "body"]));
        assert!(
            converted
                .warnings
                .iter()
                .any(|w| w.starts_with("POST /upload: its request body")),
            "{:?}",
            converted.warnings
        );
    }

    #[test]
    fn what_cannot_be_imported_is_refused_with_the_reason() {
        let cyclic = doc(
            json!({"/n": {"post": {"operationId": "n", "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}}}}}),
        );
        let problems = convert(&cyclic, &Options::default()).expect_err("cycle");
        assert_eq!(problems[0].field, "POST /n");
        assert!(
            problems[0]
                .message
                .contains("cyclic $ref: #/components/schemas/Node -> #/components/schemas/Node"),
            "{problems:?}"
        );
        // The same document imports when the cyclic operation is left out.
        let mut fine = cyclic.clone();
        fine["paths"]["/m"] = json!({"get": {"operationId": "m"}});
        assert!(convert(
            &fine,
            &Options {
                operations: vec!["m".into()],
                ..Options::default()
            }
        )
        .is_ok());

        let dangling =
            doc(json!({"/d": {"get": {"parameters": [{"$ref": "#/components/parameters/Nope"}]}}}));
        assert!(
            convert(&dangling, &Options::default()).expect_err("dangling")[0]
                .message
                .contains("points at nothing")
        );
        let external = doc(json!({"/e": {"get": {"parameters": [{"$ref": "other.yaml#/P"}]}}}));
        assert!(
            convert(&external, &Options::default()).expect_err("external")[0]
                .message
                .contains("bundle")
        );
        let swagger = json!({"swagger": "2.0", "paths": {}});
        assert!(convert(&swagger, &Options::default()).expect_err("2.0")[0]
            .message
            .contains("Swagger 2.0"));
    }

    #[test]
    fn documents_are_read_as_json_or_yaml_and_pointers_decoded() {
        let yaml = b"openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /x:\n    get:\n      operationId: x\n";
        let doc = parse_document(yaml).expect("yaml");
        assert_eq!(
            convert(&doc, &Options::default()).expect("converted").tools[0].name,
            "x"
        );
        assert!(parse_document(b"{not: [valid").is_err());
        assert_eq!(percent_decode("/paths/~1a%7Bb%7D"), "/paths/~1a{b}");
    }
}
