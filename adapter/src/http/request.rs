//! Owns turning a tool binding and its arguments into an HTTP request: the URL (path
//! placeholders percent-encoded as exactly one segment each, so no value can add a
//! segment or climb out of the template), query, headers, JSON or raw body, default
//! headers and auth. Pure functions; nothing here does I/O.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

use mcp_core::model::{AuthKind, ServerConfig, ToolBinding};

/// Everything but RFC 3986 unreserved characters is encoded, `/` `?` `#` `%` included.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("missing argument {arg:?} for path placeholder {{{placeholder}}}")]
    MissingPathArgument { placeholder: String, arg: String },
    #[error("argument {arg:?} cannot be a path segment: {reason}")]
    BadPathArgument { arg: String, reason: &'static str },
    #[error("argument {arg:?} for header {header:?} is not a valid header value (CR, LF, NUL or another control character)")]
    BadHeaderValue { arg: String, header: String },
    #[error("the URL built from baseUrl and pathTemplate is invalid: {0}")]
    BadUrl(String),
}

/// A request ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub method: mcp_core::model::HttpMethod,
    pub url: url::Url,
    /// In the order they are sent; names as configured.
    pub headers: Vec<(String, String)>,
    pub body: Option<Body>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Value),
    Text(String),
}

/// A value usable in a path, query or header: strings as they are, numbers and
/// booleans in their JSON form. `None` for absent or null.
fn scalar_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other @ (Value::Number(_) | Value::Bool(_)) => Some(other.to_string()),
        other => Some(other.to_string()),
    }
}

fn has_crlf(text: &str) -> bool {
    text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// The path with each placeholder replaced by its argument, encoded as one segment.
pub fn expand_path(tool: &ToolBinding, args: &Map<String, Value>) -> Result<String, Error> {
    let template = &tool.path_template;
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template.as_str();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let placeholder = &after[..close];
        let arg = tool
            .param_mapping
            .path
            .get(placeholder)
            .map(String::as_str)
            .unwrap_or(placeholder);
        let value = match args.get(arg) {
            None | Some(Value::Null) => {
                return Err(Error::MissingPathArgument {
                    placeholder: placeholder.to_owned(),
                    arg: arg.to_owned(),
                })
            }
            Some(Value::String(s)) => s.clone(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            Some(_) => {
                return Err(Error::BadPathArgument {
                    arg: arg.to_owned(),
                    reason: "objects and arrays are not allowed",
                })
            }
        };
        match value.as_str() {
            "" => {
                return Err(Error::BadPathArgument {
                    arg: arg.to_owned(),
                    reason: "it is empty",
                })
            }
            "." | ".." => {
                return Err(Error::BadPathArgument {
                    arg: arg.to_owned(),
                    reason: "dot segments are not allowed",
                })
            }
            _ => {}
        }
        if has_crlf(&value) {
            return Err(Error::BadPathArgument {
                arg: arg.to_owned(),
                reason: "it contains CR, LF or NUL",
            });
        }
        out.extend(utf8_percent_encode(&value, SEGMENT));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A server's base URL, parsed.
struct Base {
    /// The parsed URL when a call's URL can be made from it by setting its path: it has
    /// no query or fragment and can hold a path (else each call parses the whole URL).
    url: Option<url::Url>,
    /// Its path without trailing slashes (empty when it does not parse).
    path: String,
}

/// The parsed base URL, remembered for the last base URL seen on this thread: a worker
/// serves one server, so its calls parse no URL at all (a parse, host included, was
/// about a tenth of a call's instructions).
fn parsed_base(base_url: &str) -> std::rc::Rc<Base> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(String, std::rc::Rc<Base>)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((url, base)) if url == base_url => base.clone(),
        _ => {
            let parsed = url::Url::parse(base_url).ok();
            let base = std::rc::Rc::new(Base {
                path: parsed
                    .as_ref()
                    .map(|u| u.path().trim_end_matches('/').to_owned())
                    .unwrap_or_default(),
                url: parsed.filter(|u| {
                    u.query().is_none() && u.fragment().is_none() && !u.cannot_be_a_base()
                }),
            });
            *last = Some((base_url.to_owned(), base.clone()));
            base
        }
    })
}

/// Builds the full request for one call. `request_id` goes out as `x-request-id`.
pub fn build(
    server: &ServerConfig,
    tool: &ToolBinding,
    args: &Map<String, Value>,
    request_id: &str,
) -> Result<Built, Error> {
    let path = expand_path(tool, args)?;
    let base = parsed_base(&server.base_url);
    let base_path = base.path.as_str();
    let mut url = match &base.url {
        // The same URL as parsing base and path joined: only the path is parsed.
        Some(base_url) => {
            let mut url = base_url.clone();
            url.set_path(&format!("{base_path}{path}"));
            url
        }
        None => {
            let joined = format!("{}{}", server.base_url.trim_end_matches('/'), path);
            url::Url::parse(&joined).map_err(|e| Error::BadUrl(e.to_string()))?
        }
    };
    // The parser must not have reinterpreted anything: the path we built is the path sent.
    let sent = url.path();
    let as_built = (sent.len() == base_path.len() + path.len()
        && sent.starts_with(base_path)
        && sent.ends_with(path.as_str()))
        || (path.is_empty() && sent == "/");
    if !as_built {
        return Err(Error::BadUrl(format!(
            "path {:?} would be normalised to {:?}",
            path,
            url.path()
        )));
    }
    {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (param, arg) in &tool.param_mapping.query {
            match args.get(arg) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        if let Some(text) = scalar_text(Some(item)) {
                            pairs.push((param.clone(), text));
                        }
                    }
                }
                other => {
                    if let Some(text) = scalar_text(other) {
                        pairs.push((param.clone(), text));
                    }
                }
            }
        }
        if server.auth.kind == AuthKind::Query {
            if let (Some(key), Some(value)) = (&server.auth.key, &server.auth.value) {
                pairs.push((key.clone(), value.clone()));
            }
        }
        if !pairs.is_empty() {
            let mut query = url.query_pairs_mut();
            for (k, v) in &pairs {
                query.append_pair(k, v);
            }
        }
    }

    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in &server.default_headers {
        headers.push((name.clone(), value.clone()));
    }
    for (header, arg) in &tool.param_mapping.headers {
        if let Some(text) = scalar_text(args.get(arg)) {
            // A valid HeaderValue has no CR, LF, NUL nor other control character.
            if http::HeaderValue::from_str(&text).is_err() {
                return Err(Error::BadHeaderValue {
                    arg: arg.clone(),
                    header: header.clone(),
                });
            }
            headers.push((header.clone(), text));
        }
    }
    match server.auth.kind {
        AuthKind::Bearer => {
            if let Some(token) = &server.auth.value {
                headers.push(("Authorization".into(), format!("Bearer {token}")));
            }
        }
        AuthKind::Header => {
            if let (Some(key), Some(value)) = (&server.auth.key, &server.auth.value) {
                headers.push((key.clone(), value.clone()));
            }
        }
        AuthKind::None | AuthKind::Query => {}
    }
    headers.push((mcp_core::request_id::HEADER.into(), request_id.into()));

    // `rawBody`: a string is sent as text, any other JSON value as JSON, absent or null
    // as no body. `body`: an object of the mapped arguments that are present and not null.
    let body = if let Some(arg) = &tool.param_mapping.raw_body {
        match args.get(arg) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(Body::Text(text.clone())),
            Some(other) => Some(Body::Json(other.clone())),
        }
    } else if !tool.param_mapping.body.is_empty() {
        let mut object = Map::new();
        for (target, arg) in &tool.param_mapping.body {
            match args.get(arg) {
                None | Some(Value::Null) => {}
                Some(value) => {
                    object.insert(target.clone(), value.clone());
                }
            }
        }
        Some(Body::Json(Value::Object(object)))
    } else {
        None
    };
    Ok(Built {
        method: tool.method,
        url,
        headers,
        body,
    })
}

/// The URL with the query-auth secret replaced, fit for a log line.
pub fn redacted_url(url: &url::Url, server: &ServerConfig) -> String {
    let secret_key = match (server.auth.kind, &server.auth.key) {
        (AuthKind::Query, Some(key)) => key.as_str(),
        _ => return url.to_string(),
    };
    let mut copy = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let value = if k == secret_key {
                mcp_core::model::MASKED_SECRET.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), value)
        })
        .collect();
    copy.query_pairs_mut().clear().extend_pairs(pairs);
    copy.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(template: &str) -> ToolBinding {
        serde_json::from_value(json!({
            "name": "t", "method": "GET", "pathTemplate": template,
            "paramMapping": {"path": {"id": "id", "b": "b"}}
        }))
        .expect("tool")
    }

    fn args(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("object")
    }

    /// One case: the id value -> the expanded path, or an error.
    fn check(id: Value, expected: Result<&str, &str>) {
        let got = expand_path(&tool("/items/{id}/x"), &args(json!({"id": id})));
        match (got, expected) {
            (Ok(path), Ok(want)) => assert_eq!(path, want),
            (Err(err), Err(want)) => assert!(
                err.to_string().contains(want),
                "{err} should mention {want}"
            ),
            (got, want) => panic!("{id}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn path_values_stay_inside_their_segment() {
        check(json!(42), Ok("/items/42/x"));
        check(json!("abc-_.~"), Ok("/items/abc-_.~/x"));
        check(json!("a/b"), Ok("/items/a%2Fb/x"));
        check(json!("../../admin"), Ok("/items/..%2F..%2Fadmin/x"));
        check(json!("%2e%2e"), Ok("/items/%252e%252e/x"));
        check(json!("a?b=c#d"), Ok("/items/a%3Fb%3Dc%23d/x"));
        check(json!("sp ace"), Ok("/items/sp%20ace/x"));
        check(json!("é"), Ok("/items/%C3%A9/x"));
        check(json!(".."), Err("dot segments"));
        check(json!("."), Err("dot segments"));
        check(json!(""), Err("empty"));
        check(json!("a\r\nb"), Err("CR, LF"));
        check(json!({"x": 1}), Err("objects and arrays"));
        check(Value::Null, Err("missing argument"));
    }

    #[test]
    fn the_built_url_is_the_template_under_the_base() {
        let server: ServerConfig =
            serde_json::from_value(json!({"baseUrl": "http://h:1/api/"})).expect("server");
        for id in ["..", "%2e%2e", "../x", "a/../../b", "./", "\\..\\"] {
            match build(&server, &tool("/items/{id}"), &args(json!({"id": id})), "r") {
                Ok(built) => {
                    assert!(
                        built.url.path().starts_with("/api/items/"),
                        "{id} -> {}",
                        built.url
                    );
                    assert_eq!(
                        built.url.path().matches('/').count(),
                        3,
                        "{id} -> {}",
                        built.url
                    );
                    assert_eq!(built.url.query(), None);
                }
                Err(err) => assert!(matches!(err, Error::BadPathArgument { .. }), "{id}: {err}"),
            }
        }
    }

    #[test]
    fn a_template_the_url_parser_would_rewrite_is_refused_whatever_base_came_before() {
        // Alternating bases on one thread: the remembered base path follows the server.
        let server = |base: &str| -> ServerConfig {
            serde_json::from_value(json!({"baseUrl": base})).expect("server")
        };
        let (v1, v2, root) = (
            server("http://h/v1"),
            server("http://h/a/v2/"),
            server("http://h"),
        );
        for _ in 0..2 {
            let url =
                |s: &ServerConfig| build(s, &tool("/items/{id}"), &args(json!({"id": 7})), "r");
            assert_eq!(url(&v1).expect("v1").url.as_str(), "http://h/v1/items/7");
            assert_eq!(url(&v2).expect("v2").url.as_str(), "http://h/a/v2/items/7");
            assert_eq!(url(&root).expect("root").url.as_str(), "http://h/items/7");
            for (base, template) in [
                (&v1, "/x/../../admin"),
                (&v2, "/./items"),
                (&root, "/a//../b"),
            ] {
                match build(base, &tool(template), &args(json!({})), "r") {
                    Err(Error::BadUrl(msg)) => assert!(msg.contains("normalised"), "{msg}"),
                    other => panic!("{template}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn the_url_is_the_one_parsing_base_and_path_joined_would_give() {
        // The reference: parse the joined text, refuse it if the path moved.
        let reference = |base: &str, path: &str| -> Option<String> {
            let url = url::Url::parse(&format!("{}{path}", base.trim_end_matches('/'))).ok()?;
            let base_path = url::Url::parse(base)
                .map(|u| u.path().trim_end_matches('/').to_owned())
                .unwrap_or_default();
            (url.path() == format!("{base_path}{path}") || (path.is_empty() && url.path() == "/"))
                .then(|| url.to_string())
        };
        let bases = [
            "http://h",
            "http://h/",
            "https://user:pw@h.example:8443/v1/",
            "http://127.0.0.1:8090/api",
            "http://h/a%20b",
            "http://h/api?key=1",
            "http://h/api#frag",
            "not a url",
            "mailto:x@y",
        ];
        let paths = [
            "",
            "/",
            "/items/7",
            "/a b",
            "/a%2Fb",
            "/a?b",
            "/a#b",
            "/a\\b",
            "/./x",
            "/x/..",
            "/é",
            "/a\tb",
            "/a ",
            "//x",
            "/items/%C3%A9",
        ];
        for base in bases {
            for path in paths {
                let server: ServerConfig =
                    serde_json::from_value(json!({"baseUrl": base})).expect("server");
                let tool: ToolBinding = serde_json::from_value(json!({
                    "name": "t", "method": "GET", "pathTemplate": path
                }))
                .expect("tool");
                let got = build(&server, &tool, &Map::new(), "r")
                    .ok()
                    .map(|b| b.url.to_string());
                assert_eq!(got, reference(base, path), "{base:?} + {path:?}");
            }
        }
    }

    #[test]
    fn query_headers_body_and_auth() {
        let server: ServerConfig = serde_json::from_value(json!({
            "baseUrl": "http://h/v1",
            "defaultHeaders": {"Accept": "application/json"},
            "auth": {"type": "query", "key": "api_key", "value": "s3cret"}
        }))
        .expect("server");
        let tool: ToolBinding = serde_json::from_value(json!({
            "name": "t", "method": "POST", "pathTemplate": "/p",
            "paramMapping": {"query": {"q": "query", "tag": "tags", "n": "absent"}, "headers": {"X-Trace": "trace"}, "body": {"title": "title", "price": "price", "gone": "nothing"}}
        }))
        .expect("tool");
        let built = build(&server, &tool, &args(json!({"query": "a b&c", "tags": ["x", 2], "trace": "t-1", "title": "T", "price": 9.5, "nothing": null})), "req-1").expect("builds");
        assert_eq!(
            built.url.as_str(),
            "http://h/v1/p?q=a+b%26c&tag=x&tag=2&api_key=s3cret"
        );
        assert_eq!(
            redacted_url(&built.url, &server),
            "http://h/v1/p?q=a+b%26c&tag=x&tag=2&api_key=********"
        );
        assert_eq!(
            built.headers,
            vec![
                ("Accept".into(), "application/json".into()),
                ("X-Trace".into(), "t-1".into()),
                ("x-request-id".into(), "req-1".into())
            ]
        );
        assert_eq!(
            built.body,
            Some(Body::Json(json!({"title": "T", "price": 9.5})))
        );

        let bad = build(
            &server,
            &tool,
            &args(json!({"trace": "a\r\nInjected: 1"})),
            "r",
        );
        assert!(matches!(bad, Err(Error::BadHeaderValue { .. })));
        for value in ["tab\tis fine", "plain"] {
            assert!(build(&server, &tool, &args(json!({"trace": value})), "r").is_ok());
        }
        for value in ["bell\u{7}", "escape\u{1b}[31m", "del\u{7f}"] {
            let bad = build(&server, &tool, &args(json!({"trace": value})), "r");
            assert!(
                matches!(bad, Err(Error::BadHeaderValue { .. })),
                "{value:?}"
            );
        }
    }

    #[test]
    fn raw_body_and_header_auth() {
        let server: ServerConfig = serde_json::from_value(
            json!({"baseUrl": "http://h", "auth": {"type": "bearer", "value": "tok"}}),
        )
        .expect("server");
        let tool: ToolBinding = serde_json::from_value(json!({"name": "t", "method": "PUT", "pathTemplate": "", "paramMapping": {"rawBody": "payload"}})).expect("tool");
        let text =
            build(&server, &tool, &args(json!({"payload": "plain text"})), "r").expect("builds");
        assert_eq!(text.body, Some(Body::Text("plain text".into())));
        assert!(text
            .headers
            .contains(&("Authorization".into(), "Bearer tok".into())));
        let json_body = build(
            &server,
            &tool,
            &args(json!({"payload": [1, {"a": true}]})),
            "r",
        )
        .expect("builds");
        assert_eq!(json_body.body, Some(Body::Json(json!([1, {"a": true}]))));
        let none = build(&server, &tool, &args(json!({})), "r").expect("builds");
        assert_eq!(none.body, None);
    }
}
