//! Owns the registry's data model. Every type here that derives `Serialize` is wire
//! format (Redis values, admin API bodies, events): changing one is a protocol change.
//! Field names are the existing hub's camelCase JSON; fields this hub added are optional
//! with defaults so old dumps import unchanged. Unknown fields are kept (`extra`) so a
//! round trip never loses what an older or newer writer stored.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// What the admin API shows instead of a secret. Posting it back keeps the stored secret.
pub const MASKED_SECRET: &str = "********";

/// One registered REST API, exposed as one MCP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerConfig {
    /// Display name; defaults to the server id.
    #[serde(default)]
    pub name: String,
    /// Absolute http(s) URL that every tool's `pathTemplate` is appended to.
    pub base_url: String,
    #[serde(default)]
    pub auth: Auth,
    /// Headers sent with every call of this server's tools. The values of those named
    /// like credentials ([`is_credential_header`]) are masked as `auth.value` is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default_headers: BTreeMap<String, String>,
    #[serde(default = "default_true")]
    pub active: bool,
    /// Total time allowed for one REST call, in milliseconds (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Number of worker processes for this server (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Retries of failed REST calls (absent: no retries). A tool's own `retry`
    /// overrides it field by field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// The circuit breaker in front of this REST API (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// What the audit log keeps of this server's calls (absent: the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditConfig>,
    /// Fields this version does not know, kept as they were.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: Map<String, Value>,
}

impl ServerConfig {
    pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
    pub const MAX_REPLICAS: u32 = 16;

    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(Self::DEFAULT_TIMEOUT_MS)
    }

    pub fn replicas(&self) -> u32 {
        self.replicas.unwrap_or(1)
    }

    /// Whether the audit log keeps this server's call arguments (registration
    /// `"audit": {"includeArguments": true}`; default false: only their size).
    pub fn audit_includes_arguments(&self) -> bool {
        self.audit.is_some_and(|audit| audit.include_arguments)
    }

    /// A copy fit for an API response or a log line: the secret and the values of the
    /// credential default headers ([`is_credential_header`]) replaced by [`MASKED_SECRET`].
    pub fn masked(&self) -> ServerConfig {
        let mut copy = self.clone();
        copy.auth = copy.auth.masked();
        for (name, value) in &mut copy.default_headers {
            if is_credential_header(name) {
                MASKED_SECRET.clone_into(value);
            }
        }
        copy
    }

    /// The default headers whose value is the mask: posting one back keeps the value
    /// stored for that header.
    pub fn masked_default_headers(&self) -> impl Iterator<Item = &str> {
        self.default_headers
            .iter()
            .filter(|(_, value)| value.as_str() == MASKED_SECRET)
            .map(|(name, _)| name.as_str())
    }
}

/// Whether a header's value is a credential, going by its name (case-insensitive):
/// `Authorization`, `Proxy-Authorization`, `Cookie`, any name ending in `key` (`X-Api-Key`,
/// `Ocp-Apim-Subscription-Key`), and any name holding `auth`, `token`, `secret`, `passw`,
/// `session`, `signature` or `credential`. A default header named so is masked in every
/// API response, export and event the admin API serves.
pub fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "cookie"
        || name.ends_with("key")
        || [
            "auth",
            "token",
            "secret",
            "passw",
            "session",
            "signature",
            "credential",
        ]
        .iter()
        .any(|part| name.contains(part))
}

/// How the worker authenticates to the REST API.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    #[serde(rename = "type", default)]
    pub kind: AuthKind,
    /// Header name (`header`) or query parameter name (`query`); unused for `bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The secret. Never returned by the API in clear, never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Auth {
    pub fn masked(&self) -> Auth {
        Auth {
            kind: self.kind,
            key: self.key.clone(),
            value: self.value.as_ref().map(|_| MASKED_SECRET.to_owned()),
        }
    }

    /// True when the value is the mask the API hands out, not a real secret.
    pub fn value_is_masked(&self) -> bool {
        self.value.as_deref() == Some(MASKED_SECRET)
    }
}

/// Secrets stay out of `{:?}` so they cannot reach a log line by accident.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("value", &self.value.as_ref().map(|_| MASKED_SECRET))
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    #[default]
    None,
    Bearer,
    Header,
    Query,
}

/// One tool: one HTTP call to the server's REST API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolBinding {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub method: HttpMethod,
    /// Path appended to the server's `baseUrl`, with `{placeholder}`s filled from arguments.
    #[serde(default)]
    pub path_template: String,
    #[serde(default)]
    pub param_mapping: ParamMapping,
    /// JSON Schema of the tool's arguments.
    #[serde(default = "default_input_schema")]
    #[schema(value_type = Object)]
    pub input_schema: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mapping: Option<ResponseMapping>,
    #[serde(default = "default_true")]
    pub active: bool,
    /// This tool's overrides of the server's `retry`, field by field (`idempotent: true`
    /// lets a POST or PATCH be retried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: Map<String, Value>,
}

/// When a failed REST call is tried again: on a connect error, a timeout of one attempt
/// or HTTP 502/503/504, for GET, HEAD, PUT and DELETE (POST and PATCH only when
/// `idempotent` is true), with exponential back-off and jitter, `Retry-After` honoured,
/// within the call's `timeoutMs`. Every field is optional: the defaults (or the server's
/// values, for a tool) fill in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included (default 3; 1 turns retries off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Back-off before the first retry, doubled before each next one (default 100 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_delay_ms: Option<u64>,
    /// Longest back-off (default 2000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay_ms: Option<u64>,
    /// Retries allowed, as a percentage of first attempts (default 20: at most 20%
    /// extra calls, plus a reserve of 10 retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_percent: Option<u32>,
    /// Time allowed for one attempt (default: the whole `timeoutMs`, so a timeout is
    /// not retried); shorter lets a timed-out attempt be tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_timeout_ms: Option<u64>,
    /// True: the call may be repeated safely even for POST/PATCH. False: never retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent: Option<bool>,
}

impl RetryConfig {
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    pub const MAX_ATTEMPTS: u32 = 10;
    pub const DEFAULT_BASE_DELAY_MS: u64 = 100;
    pub const DEFAULT_MAX_DELAY_MS: u64 = 2_000;
    pub const DEFAULT_BUDGET_PERCENT: u32 = 20;

    /// `self`'s fields where set, else `base`'s.
    pub fn or(self, base: RetryConfig) -> RetryConfig {
        RetryConfig {
            max_attempts: self.max_attempts.or(base.max_attempts),
            base_delay_ms: self.base_delay_ms.or(base.base_delay_ms),
            max_delay_ms: self.max_delay_ms.or(base.max_delay_ms),
            budget_percent: self.budget_percent.or(base.budget_percent),
            attempt_timeout_ms: self.attempt_timeout_ms.or(base.attempt_timeout_ms),
            idempotent: self.idempotent.or(base.idempotent),
        }
    }
}

/// What the audit log (`{prefix}audit`, docs/AUDIT.md) keeps of a server's calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditConfig {
    /// Keep each call's arguments in its entry, credential headers and the server's
    /// secrets redacted (default false: only their size).
    #[serde(default)]
    pub include_arguments: bool,
}

/// The circuit breaker: after `failureThreshold` consecutive failed attempts
/// (connect errors, timeouts, HTTP 5xx), or, when `errorRatePercent` is set, once that
/// share of at least `minCalls` attempts in the last `windowMs` failed, it opens and
/// calls fail at once with `circuit_open`; after `coolDownMs` one probe call goes
/// through (half-open): success closes it, failure opens it again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open the breaker (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    /// Time open before a probe (default 30000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cool_down_ms: Option<u64>,
    /// Also open when this percentage (1-100) of the attempts in the last `windowMs`
    /// failed, failures in a row or not (default: absent, only `failureThreshold`
    /// opens it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_percent: Option<u32>,
    /// The window of `errorRatePercent`, counted in ten buckets of `windowMs / 10`
    /// (default 10000 ms; only with `errorRatePercent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
    /// Attempts the window must hold before its error rate can open the breaker, so a
    /// handful of calls cannot (default 20; only with `errorRatePercent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_calls: Option<u32>,
}

/// The error-rate rule of a [`CircuitBreakerConfig`], defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorRateRule {
    pub percent: u32,
    pub window_ms: u64,
    pub min_calls: u32,
}

impl CircuitBreakerConfig {
    pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
    pub const DEFAULT_COOL_DOWN_MS: u64 = 30_000;
    pub const DEFAULT_WINDOW_MS: u64 = 10_000;
    pub const MIN_WINDOW_MS: u64 = 100;
    pub const MAX_WINDOW_MS: u64 = 600_000;
    pub const DEFAULT_MIN_CALLS: u32 = 20;
    pub const MAX_MIN_CALLS: u32 = 100_000;

    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
            .unwrap_or(Self::DEFAULT_FAILURE_THRESHOLD)
    }

    pub fn cool_down_ms(&self) -> u64 {
        self.cool_down_ms.unwrap_or(Self::DEFAULT_COOL_DOWN_MS)
    }

    /// The error-rate rule; `None` (off) without `errorRatePercent`.
    pub fn error_rate(&self) -> Option<ErrorRateRule> {
        let percent = self.error_rate_percent?;
        Some(ErrorRateRule {
            percent,
            window_ms: self.window_ms.unwrap_or(Self::DEFAULT_WINDOW_MS),
            min_calls: self.min_calls.unwrap_or(Self::DEFAULT_MIN_CALLS).max(1),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where each argument goes. Every map is `target -> argument name`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParamMapping {
    /// `{placeholder}` of `pathTemplate` -> argument.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub path: BTreeMap<String, String>,
    /// Query parameter -> argument.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Header -> argument.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Key of the JSON body -> argument.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub body: BTreeMap<String, String>,
    /// Argument sent as the whole body (a string as text, anything else as JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_body: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseMapping {
    /// RFC 9535 JSONPath applied to a JSON response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick: Option<String>,
}

fn default_true() -> bool {
    true
}

fn default_input_schema() -> Value {
    serde_json::json!({"type": "object"})
}

/// The `{placeholder}` names of a path template, in order.
pub fn path_placeholders(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                names.push(&after[..close]);
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn existing_hub_json_round_trips_unchanged() {
        let json = serde_json::json!({
            "name": "fakestore_api",
            "baseUrl": "https://fakestoreapi.com",
            "auth": {"type": "bearer", "value": "s3cret"},
            "defaultHeaders": {"Accept": "application/json"},
            "active": true,
            "futureField": {"kept": [1, 2]}
        });
        let server: ServerConfig = serde_json::from_value(json.clone()).expect("parses");
        assert_eq!(server.auth.kind, AuthKind::Bearer);
        assert_eq!(serde_json::to_value(&server).expect("serializes"), json);
    }

    #[test]
    fn tool_defaults_fill_in_and_round_trip() {
        let json = serde_json::json!({
            "name": "get_product_by_id",
            "description": "one product",
            "method": "GET",
            "pathTemplate": "/products/{id}",
            "paramMapping": {"path": {"id": "id"}},
            "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "responseMapping": {"pick": "$.title"},
            "active": true
        });
        let tool: ToolBinding = serde_json::from_value(json.clone()).expect("parses");
        assert_eq!(tool.method, HttpMethod::Get);
        assert_eq!(serde_json::to_value(&tool).expect("serializes"), json);
    }

    #[test]
    fn secrets_are_masked_in_debug_and_masked_copies() {
        let auth = Auth {
            kind: AuthKind::Header,
            key: Some("X-Key".into()),
            value: Some("s3cret".into()),
        };
        assert!(!format!("{auth:?}").contains("s3cret"));
        assert_eq!(auth.masked().value.as_deref(), Some(MASKED_SECRET));
        assert!(auth.masked().value_is_masked());
    }

    #[test]
    fn credential_default_headers_are_masked_and_the_others_kept() {
        let server: ServerConfig = serde_json::from_value(json!({
            "baseUrl": "http://x",
            "defaultHeaders": {
                "Authorization": "Bearer s3cret", "X-Api-Key": "k3y", "cookie": "sid=1",
                "X-Auth-Token": "t0k", "Ocp-Apim-Subscription-Key": "sub",
                "Accept": "application/json", "X-Tenant": "acme"
            }
        }))
        .expect("server");
        let masked = server.masked();
        for name in [
            "Authorization",
            "X-Api-Key",
            "cookie",
            "X-Auth-Token",
            "Ocp-Apim-Subscription-Key",
        ] {
            assert_eq!(masked.default_headers[name], MASKED_SECRET, "{name}");
        }
        assert_eq!(masked.default_headers["Accept"], "application/json");
        assert_eq!(masked.default_headers["X-Tenant"], "acme");
        let mut posted: Vec<&str> = masked.masked_default_headers().collect();
        posted.sort_unstable();
        assert_eq!(
            posted,
            [
                "Authorization",
                "Ocp-Apim-Subscription-Key",
                "X-Api-Key",
                "X-Auth-Token",
                "cookie"
            ]
        );
        assert_eq!(server.masked_default_headers().count(), 0);
    }

    #[test]
    fn placeholders_are_found_in_order() {
        assert_eq!(path_placeholders("/a/{x}/b/{y_1}"), vec!["x", "y_1"]);
        assert_eq!(path_placeholders("/plain"), Vec::<&str>::new());
        assert_eq!(path_placeholders("/broken/{x"), Vec::<&str>::new());
    }
}
