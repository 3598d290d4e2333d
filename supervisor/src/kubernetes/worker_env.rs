//! Owns the extra environment of the worker pods (`MCP_K8S_WORKER_ENV`, a JSON list of
//! Kubernetes `EnvVar` objects, and `MCP_K8S_WORKER_ENV_FROM_SECRETS`, Secret names whose
//! keys become env vars through `envFrom`): parsed and checked in full when the
//! configuration is parsed, so a bad one is one clear line and exit 2 at start-up, never
//! a Deployment the API server refuses later. It never echoes a value (values may be
//! credentials, such as a proxy URL with a password).
//!
//! The hub's own variables ([`super::HUB_WORKER_ENV`]: server id, listen address,
//! `REDIS_URL`, `MCP_KEY_PREFIX`, ...) are what makes a pod a worker of this hub, so an
//! extra entry naming one is refused rather than silently overriding or being overridden;
//! a key of an `envFrom` Secret with one of those names loses to the hub's, as Kubernetes
//! gives `env` precedence over `envFrom`.

use std::collections::BTreeSet;
use std::ffi::OsStr;

use k8s_openapi::api::core::v1::EnvVar;
use serde_json::Value;

use super::HUB_WORKER_ENV;

/// Why `MCP_K8S_WORKER_ENV` or `MCP_K8S_WORKER_ENV_FROM_SECRETS` is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("MCP_K8S_WORKER_ENV is not JSON: {0}")]
    Json(String),
    #[error("MCP_K8S_WORKER_ENV must be a JSON list of EnvVar objects ({{\"name\": ..., \"value\": ...}} or {{\"name\": ..., \"valueFrom\": ...}})")]
    NotAList,
    #[error("MCP_K8S_WORKER_ENV entry {idx}: {problem}")]
    Entry { idx: usize, problem: String },
    #[error("MCP_K8S_WORKER_ENV entry {idx}: {name} is set by the hub itself for every worker (its own: {hub}); set it through the hub's own setting")]
    HubOwned {
        idx: usize,
        name: String,
        hub: String,
    },
    #[error("MCP_K8S_WORKER_ENV entry {idx}: {name} is already set by an earlier entry")]
    Duplicate { idx: usize, name: String },
    #[error("MCP_K8S_WORKER_ENV_FROM_SECRETS: {0:?} is not a Secret name (lowercase letters, digits, '-' and '.', alphanumeric at both ends, at most 253)")]
    SecretName(String),
    #[error("MCP_K8S_WORKER_ENV_FROM_SECRETS: {0} is named twice")]
    SecretTwice(String),
}

/// An entry that is an object but not an EnvVar's shape.
const WRONG_TYPE: &str = "not a Kubernetes EnvVar: a field has the wrong type (name and value are strings, valueFrom an object with one source)";

/// The extra env of every worker pod (empty by default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerEnv {
    /// Appended to the container's `env`, after the hub's own, in this order (so a value
    /// may refer to a hub variable as `$(REDIS_URL)`).
    pub vars: Vec<EnvVar>,
    /// One `envFrom: [{secretRef: {name}}]` each, in this order (a later Secret's key
    /// wins over an earlier one's; any `env` entry wins over both).
    pub from_secrets: Vec<String>,
}

/// `MCP_K8S_WORKER_ENV`: a JSON list of EnvVar objects; "" is the empty list. Each entry
/// has a name (printable ASCII without `=`, as the API server takes it) and either a
/// `value` or a `valueFrom` with exactly one source; a field the EnvVar type does not have
/// (a misspelt `valueform`, say) is refused, as `kubectl --validate=strict` would.
pub fn parse_vars(text: &str) -> Result<Vec<EnvVar>, Error> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let list: Value = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
    let Value::Array(entries) = list else {
        return Err(Error::NotAList);
    };
    let mut vars = Vec::with_capacity(entries.len());
    let mut seen = BTreeSet::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let idx = i + 1;
        let problem = |problem: String| Error::Entry { idx, problem };
        if !entry.is_object() {
            return Err(problem("not an object".into()));
        }
        let var: EnvVar = serde_json::from_value(entry.clone())
            // Not serde's message: it may quote a value.
            .map_err(|_| problem(WRONG_TYPE.into()))?;
        // What the typed object does not read back is a field it does not have.
        let back = serde_json::to_value(&var).map_err(|e| problem(e.to_string()))?;
        if let Some(difference) = first_difference(&entry, &back, "") {
            return Err(problem(difference));
        }
        let name = var.name.as_str();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b'=') {
            return Err(problem(format!(
                "name {name:?} must be printable ASCII without '=' or spaces"
            )));
        }
        match (&var.value, &var.value_from) {
            (Some(_), Some(_)) => {
                return Err(problem(format!(
                    "{name} has both value and valueFrom; give one"
                )))
            }
            (None, None) => return Err(problem(format!("{name} has no value nor valueFrom"))),
            (None, Some(_)) => {
                let sources = entry["valueFrom"].as_object().map_or(0, |o| o.len());
                if sources != 1 {
                    return Err(problem(format!(
                        "{name}: valueFrom must have exactly one of configMapKeyRef, fieldRef, resourceFieldRef, secretKeyRef"
                    )));
                }
            }
            (Some(_), None) => {}
        }
        if HUB_WORKER_ENV.contains(&name) {
            return Err(Error::HubOwned {
                idx,
                name: name.to_owned(),
                hub: HUB_WORKER_ENV.join(", "),
            });
        }
        if !seen.insert(name.to_owned()) {
            return Err(Error::Duplicate {
                idx,
                name: name.to_owned(),
            });
        }
        vars.push(var);
    }
    Ok(vars)
}

/// Where `given` (the entry as written) and `typed` (read back from the EnvVar) first
/// differ, as a sentence naming the field; never a value.
fn first_difference(given: &Value, typed: &Value, path: &str) -> Option<String> {
    let at = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (given, typed) {
        (Value::Object(given), Value::Object(typed)) => {
            for (key, value) in given {
                match typed.get(key) {
                    None if value.is_null() => {}
                    None => return Some(format!("unknown field {}", at(key))),
                    Some(back) => {
                        if let Some(difference) = first_difference(value, back, &at(key)) {
                            return Some(difference);
                        }
                    }
                }
            }
            typed
                .keys()
                .find(|key| !given.contains_key(*key))
                .map(|key| format!("missing field {}", at(key)))
        }
        _ if given == typed => None,
        _ => Some(format!(
            "{} does not read back as given (of the wrong type?)",
            if path.is_empty() { "the entry" } else { path }
        )),
    }
}

/// `MCP_K8S_WORKER_ENV_FROM_SECRETS`: comma-separated Secret names (spaces around a
/// name and empty entries are ignored; "" is none), each a DNS-1123 subdomain, once.
pub fn parse_secrets(text: &str) -> Result<Vec<String>, Error> {
    let mut names: Vec<String> = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let valid = name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
        if !valid {
            return Err(Error::SecretName(name.to_owned()));
        }
        if names.iter().any(|n| n == name) {
            return Err(Error::SecretTwice(name.to_owned()));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// A clap value parser whose error is this module's one line alone: clap's own message
/// would repeat the whole value, and values may be credentials.
#[derive(Clone)]
pub struct Quiet<T>(pub fn(&str) -> Result<T, Error>);

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Quiet<T> {
    type Value = T;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let text = value.to_str().ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidUtf8,
                "MCP_K8S_WORKER_ENV*: not UTF-8\n",
            )
        })?;
        (self.0)(text).map_err(|err| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{err}\n"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` parsed as `MCP_K8S_WORKER_ENV`: the names, or the error's line.
    fn check_vars(text: &str, expected: Result<&[&str], &str>) {
        let got = parse_vars(text)
            .map(|vars| vars.into_iter().map(|v| v.name).collect::<Vec<_>>())
            .map_err(|e| e.to_string());
        match expected {
            Ok(names) => assert_eq!(got, Ok(names.iter().map(|n| n.to_string()).collect())),
            Err(line) => assert_eq!(got, Err(line.to_owned()), "{text}"),
        }
    }

    #[test]
    fn worker_env_takes_values_and_value_sources_in_order() {
        check_vars("", Ok(&[]));
        check_vars(" [] ", Ok(&[]));
        check_vars(
            r#"[{"name":"HTTPS_PROXY","value":"http://proxy:3128"},
                {"name":"X","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}},
                {"name":"POD_IP","valueFrom":{"fieldRef":{"fieldPath":"status.podIP"}}},
                {"name":"EMPTY","value":""},
                {"name":"NO_PROXY","value":"$(REDIS_URL),.svc"}]"#,
            Ok(&["HTTPS_PROXY", "X", "POD_IP", "EMPTY", "NO_PROXY"]),
        );
        let vars = parse_vars(
            r#"[{"name":"X","valueFrom":{"secretKeyRef":{"name":"s","key":"k","optional":true}}}]"#,
        )
        .expect("valid");
        let source = vars[0].value_from.as_ref().expect("valueFrom");
        let secret = source.secret_key_ref.as_ref().expect("secretKeyRef");
        assert_eq!((secret.name.as_str(), secret.key.as_str()), ("s", "k"));
        assert_eq!(secret.optional, Some(true));
    }

    #[test]
    fn bad_worker_env_is_one_line_naming_the_entry_and_never_its_value() {
        let e = "MCP_K8S_WORKER_ENV entry";
        check_vars(
            r#"{"name":"A","value":"b"}"#,
            Err("MCP_K8S_WORKER_ENV must be a JSON list of EnvVar objects ({\"name\": ..., \"value\": ...} or {\"name\": ..., \"valueFrom\": ...})"),
        );
        check_vars(r#"["A=b"]"#, Err(&format!("{e} 1: not an object")));
        check_vars(
            r#"[{"name":"A","value":"secret-1"},{"name":"B","valu":"secret-2"}]"#,
            Err(&format!("{e} 2: unknown field valu")),
        );
        check_vars(
            r#"[{"name":"B","valueFrom":{"secretKeyRef":{"name":"s","kye":"k"}}}]"#,
            Err(&format!("{e} 1: unknown field valueFrom.secretKeyRef.kye")),
        );
        check_vars(
            r#"[{"name":"B","valueFrom":{"secretKeyRef":{"key":"k"}}}]"#,
            Err(&format!("{e} 1: missing field valueFrom.secretKeyRef.name")),
        );
        check_vars(
            r#"[{"name":"B","value":"x","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}}]"#,
            Err(&format!("{e} 1: B has both value and valueFrom; give one")),
        );
        check_vars(
            r#"[{"name":"B"}]"#,
            Err(&format!("{e} 1: B has no value nor valueFrom")),
        );
        check_vars(
            r#"[{"name":"B","valueFrom":{}}]"#,
            Err(&format!("{e} 1: B: valueFrom must have exactly one of configMapKeyRef, fieldRef, resourceFieldRef, secretKeyRef")),
        );
        check_vars(
            r#"[{"name":"A B","value":"x"}]"#,
            Err(&format!(
                "{e} 1: name \"A B\" must be printable ASCII without '=' or spaces"
            )),
        );
        check_vars(
            r#"[{"value":"x"}]"#,
            Err(&format!("{e} 1: missing field name")),
        );
        check_vars(
            r#"[{"name":"A","value":1}]"#,
            Err(&format!("{e} 1: {WRONG_TYPE}")),
        );
        check_vars(
            r#"[{"name":"A","value":"x"},{"name":"A","value":"y"}]"#,
            Err(&format!("{e} 2: A is already set by an earlier entry")),
        );
        let err = parse_vars(r#"[{"name":"A","value":"#).expect_err("not JSON");
        assert!(
            err.to_string()
                .starts_with("MCP_K8S_WORKER_ENV is not JSON: "),
            "{err}"
        );
        // The hub's own variables are refused, each of them.
        for name in HUB_WORKER_ENV {
            let err = parse_vars(&format!(r#"[{{"name":"{name}","value":"x"}}]"#))
                .expect_err("a hub variable");
            assert!(
                matches!(&err, Error::HubOwned { idx: 1, name: n, .. } if n == name),
                "{err}"
            );
            assert!(err.to_string().contains("set by the hub itself"), "{err}");
        }
        // No message carries a value.
        for text in [
            r#"[{"name":"A","value":"secret-1","valueFrom":{"fieldRef":{"fieldPath":"x"}}}]"#,
            r#"[{"name":"REDIS_URL","value":"secret-1"}]"#,
            r#"[{"name":"A","value":"secret-1","extra":"secret-1"}]"#,
            r#"[{"name":"A","valueFrom":"secret-1"}]"#,
            r#"[{"name":"A","valueFrom":{"secretKeyRef":{"name":["secret-1"]}}}]"#,
        ] {
            let err = parse_vars(text).expect_err("refused").to_string();
            assert!(!err.contains("secret-1"), "{err}");
        }
    }

    #[test]
    fn secret_names_are_dns_subdomains_named_once() {
        let ok = |text: &str| parse_secrets(text).map_err(|e| e.to_string());
        assert_eq!(ok(""), Ok(vec![]));
        assert_eq!(ok(" , "), Ok(vec![]));
        assert_eq!(
            ok("proxy-creds, api.keys ,x"),
            Ok(vec!["proxy-creds".into(), "api.keys".into(), "x".into()])
        );
        for bad in ["Proxy", "-a", "a-", "a_b", &"a".repeat(254)] {
            assert_eq!(
                parse_secrets(bad),
                Err(Error::SecretName(bad.to_owned())),
                "{bad}"
            );
        }
        assert_eq!(
            ok("a,b,a"),
            Err("MCP_K8S_WORKER_ENV_FROM_SECRETS: a is named twice".into())
        );
    }
}
