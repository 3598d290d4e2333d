//! The Kubernetes deployment files, parsed and checked (helm cannot be installed here):
//! the plain manifests (deploy/manifests/mcp-hub.yaml) and the worker Deployments the
//! supervisor applies, against the Kubernetes 1.37 JSON schemas with `kubernetes-validate
//! --strict` (pinned, installed by `scripts/ensure-kubernetes-validate.sh`); the plain
//! manifests as typed Kubernetes objects (kinds, labels, probes, RBAC verbs), the chart's
//! templates against its values.yaml and against the plain manifests, every env var they
//! set against the env vars the binaries read, and the gateway's and admin API's `Host`
//! lists (the Services' in-cluster names) and the supervisor's `MCP_WORKER_MAX` as
//! rendered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Deserialize;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn manifests() -> Vec<Value> {
    let text = read("deploy/manifests/mcp-hub.yaml");
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("a YAML document"))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Every env var name the binaries declare (`env = "..."` in their configs).
fn binary_env_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for path in [
        "core/src/config.rs",
        "gateway/src/config.rs",
        "admin-api/src/config.rs",
        "supervisor/src/config.rs",
        "worker/src/config.rs",
    ] {
        let text = read(path);
        for (i, _) in text.match_indices("env = ") {
            let rest = text[i + 6..].trim_start();
            if let Some(rest) = rest.strip_prefix('"') {
                names.insert(rest.split('"').next().unwrap_or("").to_owned());
            }
        }
    }
    // Read before the flags, by every binary (core's .env loading).
    if read("core/src/config.rs").contains("\"MCP_ENV_FILE\"") {
        names.insert("MCP_ENV_FILE".to_owned());
    }
    names
}

fn env_names(container: &Value) -> Vec<String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["name"].as_str().expect("env name").to_owned())
        .collect()
}

fn by_kind(docs: &[Value]) -> BTreeMap<(String, String), Value> {
    docs.iter()
        .map(|d| {
            (
                (
                    d["kind"].as_str().expect("test value").to_owned(),
                    d["metadata"]["name"]
                        .as_str()
                        .expect("test value")
                        .to_owned(),
                ),
                d.clone(),
            )
        })
        .collect()
}

#[test]
fn plain_manifests_are_typed_kubernetes_objects_with_probes_and_rbac() {
    let docs = manifests();
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["kind"].as_str().expect("test value"))
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "Deployment",
            "Service",
            "Deployment",
            "Service",
            "Deployment",
            "Service",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Deployment"
        ]
    );
    // Each parses as its typed object (field names and value types as the API has them).
    for doc in &docs {
        let name = doc["metadata"]["name"].as_str().expect("test value");
        let ok = match doc["kind"].as_str().expect("test value") {
            "Namespace" => serde_json::from_value::<Namespace>(doc.clone()).is_ok(),
            "Deployment" => serde_json::from_value::<Deployment>(doc.clone()).is_ok(),
            "Service" => serde_json::from_value::<Service>(doc.clone()).is_ok(),
            "ServiceAccount" => serde_json::from_value::<ServiceAccount>(doc.clone()).is_ok(),
            "Role" => serde_json::from_value::<Role>(doc.clone()).is_ok(),
            "RoleBinding" => serde_json::from_value::<RoleBinding>(doc.clone()).is_ok(),
            other => panic!("unexpected kind {other}"),
        };
        assert!(ok, "{name} does not parse as its kind");
        assert_eq!(
            doc["metadata"]["labels"]["app.kubernetes.io/part-of"], "mcp-hub",
            "{name}"
        );
        if doc["kind"] != "Namespace" {
            assert_eq!(doc["metadata"]["namespace"], "mcp-hub", "{name}");
        }
    }
    let all = by_kind(&docs);
    let deployments: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Deployment").collect();
    for d in &deployments {
        let name = d["metadata"]["name"].as_str().expect("test value");
        // The selector picks the template's pods, and a Service with the same labels.
        let template_labels = &d["spec"]["template"]["metadata"]["labels"];
        for (key, value) in d["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("test value")
        {
            assert_eq!(&template_labels[key], value, "{name}: selector {key}");
        }
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        if name != "mcp-hub-supervisor" && name != "mcp-hub-redis" {
            for probe in ["readinessProbe", "livenessProbe"] {
                assert_eq!(
                    container[probe]["httpGet"]["path"], "/healthz",
                    "{name} {probe}"
                );
            }
            let service = &all[&("Service".to_owned(), name.to_owned())];
            assert_eq!(
                service["spec"]["selector"], d["spec"]["selector"]["matchLabels"],
                "{name}: its Service selects its pods"
            );
        }
        if name != "mcp-hub-redis" {
            assert_eq!(container["image"], "mcp-hub:latest", "{name}");
            let command = container["command"][0].as_str().expect("test value");
            assert!(repo()
                .join(format!(
                    "{}/src/main.rs",
                    match command {
                        "mcp-admin" => "admin-api",
                        "mcp-gateway" => "gateway",
                        "mcp-supervisor" => "supervisor",
                        other => panic!("unexpected command {other}"),
                    }
                ))
                .is_file());
        }
    }

    // RBAC: what KubeCluster calls (server-side apply = PATCH, which creates; list;
    // delete; list of pods), bound to the supervisor's service account.
    let role = &all[&("Role".to_owned(), "mcp-hub-supervisor".to_owned())];
    let verbs = |resource: &str| -> BTreeSet<String> {
        role["rules"]
            .as_array()
            .expect("test value")
            .iter()
            .filter(|r| {
                r["resources"]
                    .as_array()
                    .expect("test value")
                    .iter()
                    .any(|x| x == resource)
            })
            .flat_map(|r| {
                r["verbs"]
                    .as_array()
                    .expect("test value")
                    .iter()
                    .map(|v| v.as_str().expect("test value").to_owned())
            })
            .collect()
    };
    for verb in ["create", "patch", "list", "delete"] {
        assert!(verbs("deployments").contains(verb), "deployments: {verb}");
    }
    assert!(verbs("pods").contains("list"));
    assert!(
        !verbs("pods").contains("delete"),
        "the supervisor never deletes pods"
    );
    let binding = &all[&("RoleBinding".to_owned(), "mcp-hub-supervisor".to_owned())];
    assert_eq!(binding["roleRef"]["name"], "mcp-hub-supervisor");
    assert_eq!(binding["subjects"][0]["name"], "mcp-hub-supervisor");
    let supervisor = &all[&("Deployment".to_owned(), "mcp-hub-supervisor".to_owned())];
    assert_eq!(supervisor["spec"]["replicas"], 1);
    assert_eq!(
        supervisor["spec"]["template"]["spec"]["serviceAccountName"],
        "mcp-hub-supervisor"
    );
    let env: BTreeMap<String, Value> = supervisor["spec"]["template"]["spec"]["containers"][0]
        ["env"]
        .as_array()
        .expect("test value")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("test value").to_owned(),
                e["value"].clone(),
            )
        })
        .collect();
    assert_eq!(env["MCP_WORKER_BACKEND"], "kubernetes");
    assert_eq!(env["MCP_K8S_NAMESPACE"], "mcp-hub");
}

#[test]
fn every_env_var_set_is_one_a_binary_reads() {
    let known = binary_env_names();
    assert!(
        known.contains("MCP_WORKER_BACKEND") && known.contains("REDIS_URL"),
        "{known:?}"
    );
    let mut set = BTreeSet::new();
    for d in manifests().iter().filter(|d| d["kind"] == "Deployment") {
        for container in d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("test value")
        {
            set.extend(env_names(container));
        }
    }
    // And the env of the worker Deployments the supervisor applies.
    let settings = mcp_supervisor::kubernetes::KubeSettings {
        namespace: "n".into(),
        image: "i".into(),
        image_pull_policy: "Never".into(),
        service_account: None,
        worker_port: 9100,
        cpu_request: None,
        memory_request: None,
        cpu_limit: None,
        memory_limit: None,
        redis_url: "redis://r".into(),
        key_prefix: "mcp:".into(),
        worker_env: Default::default(),
    };
    let worker = mcp_supervisor::kubernetes::desired_deployment(&settings, "s", 1);
    set.extend(env_names(
        &worker["spec"]["template"]["spec"]["containers"][0],
    ));
    let unknown: Vec<&String> = set.iter().filter(|n| !known.contains(*n)).collect();
    assert!(unknown.is_empty(), "env vars no binary reads: {unknown:?}");
}

/// `name: X` of the env entries in the chart's templates.
fn chart_env_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let dir = repo().join("deploy/helm/mcp-hub/templates");
    for entry in std::fs::read_dir(dir).expect("templates") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("template");
        for line in text.lines() {
            if let Some(name) = line.trim().strip_prefix("- name: ") {
                if name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

#[test]
fn the_chart_matches_its_values_and_the_plain_manifests() {
    let values: Value =
        serde_norway::from_str(&read("deploy/helm/mcp-hub/values.yaml")).expect("values.yaml");
    let chart: Value =
        serde_norway::from_str(&read("deploy/helm/mcp-hub/Chart.yaml")).expect("Chart.yaml");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "mcp-hub");
    // Every `.Values.a.b` a template reads is in values.yaml.
    let dir = repo().join("deploy/helm/mcp-hub/templates");
    let mut read_values = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("templates") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("template");
        for (i, _) in text.match_indices(".Values.") {
            let path: String = text[i + 8..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                .collect();
            read_values.insert(path.trim_end_matches('.').to_owned());
        }
    }
    assert!(read_values.len() > 10, "{read_values:?}");
    for path in &read_values {
        let mut at = &values;
        for key in path.split('.') {
            at = at
                .get(key)
                .unwrap_or_else(|| panic!("values.yaml has no {path}"));
        }
    }
    // The plain manifests set what the chart sets with its defaults (the optional ones
    // are left out there: seed, workers' service account and CPU limit).
    let mut plain = BTreeSet::new();
    for d in manifests().iter().filter(|d| d["kind"] == "Deployment") {
        plain.extend(env_names(&d["spec"]["template"]["spec"]["containers"][0]));
    }
    let optional: BTreeSet<String> = [
        "MCP_ADMIN_SEED",
        "MCP_K8S_SERVICE_ACCOUNT",
        "MCP_K8S_WORKER_CPU_LIMIT",
        "MCP_K8S_WORKER_ENV",
        "MCP_K8S_WORKER_ENV_FROM_SECRETS",
    ]
    .map(str::to_owned)
    .into();
    let chart_env = chart_env_names();
    let expected: BTreeSet<String> = chart_env.difference(&optional).cloned().collect();
    assert_eq!(plain, expected, "plain manifests vs chart env");
}

/// The env of a Deployment's first container, name -> plain value.
fn env_values(deployment: &Value) -> BTreeMap<String, String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// A values.yaml list rendered as the chart's `mcp-hub.joinList` does for release and
/// namespace `mcp-hub` (the plain manifests'): each entry's `tpl`, duplicates dropped.
fn rendered_list(lists: &[&Value]) -> String {
    let mut out: Vec<String> = Vec::new();
    for list in lists {
        for entry in list.as_array().expect("a list in values.yaml") {
            let entry = entry
                .as_str()
                .expect("a string")
                .replace("{{ .Release.Name }}", "mcp-hub")
                .replace("{{ .Release.Namespace }}", "mcp-hub");
            assert!(
                !entry.contains("{{"),
                "{entry}: a template this test does not render"
            );
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    out.join(",")
}

#[test]
fn gateway_and_admin_answer_to_their_service_names_and_the_supervisor_caps_pods() {
    let values: Value =
        serde_norway::from_str(&read("deploy/helm/mcp-hub/values.yaml")).expect("values.yaml");
    let all = by_kind(&manifests());
    let deployment = |name: &str| env_values(&all[&("Deployment".to_owned(), name.to_owned())]);
    let gateway = deployment("mcp-hub-gateway");
    let admin = deployment("mcp-hub-admin");
    let supervisor = deployment("mcp-hub-supervisor");

    // The plain manifests carry what the chart renders from its defaults.
    let gateway_hosts = &gateway["MCP_GATEWAY_ALLOWED_HOSTS"];
    let admin_hosts = &admin["MCP_ADMIN_ALLOWED_HOSTS"];
    assert_eq!(
        gateway_hosts,
        &rendered_list(&[&values["gateway"]["allowedHosts"]])
    );
    assert_eq!(
        admin_hosts,
        &rendered_list(&[
            &values["admin"]["allowedHosts"],
            &values["gateway"]["allowedHosts"]
        ])
    );
    assert_eq!(
        gateway["MCP_GATEWAY_ALLOWED_ORIGINS"],
        rendered_list(&[&values["gateway"]["allowedOrigins"]])
    );
    assert_eq!(
        admin["MCP_ADMIN_ALLOWED_ORIGINS"],
        rendered_list(&[
            &values["admin"]["allowedOrigins"],
            &values["gateway"]["allowedOrigins"]
        ])
    );
    // The origins default to the binaries' own defaults.
    assert_eq!(
        gateway["MCP_GATEWAY_ALLOWED_ORIGINS"],
        mcp_core::web_guard::DEFAULT_ALLOWED_ORIGINS
    );

    // Parsed as the binaries parse them, the lists let in-cluster clients in by the
    // Services' names (with the port, as an HTTP client sends them) and loopback (a
    // port-forward); the admin API also takes the gateway's names, which the gateway
    // passes on; nothing else.
    let parse = |list: &str| {
        let entries: Vec<String> = list.split(',').map(str::to_owned).collect();
        mcp_core::web_guard::HostList::parse(&entries).expect("a valid host list")
    };
    let gateway_list = parse(gateway_hosts);
    let admin_list = parse(admin_hosts);
    let names = |service: &str, port: u16| -> Vec<String> {
        [
            service.to_owned(),
            format!("{service}.mcp-hub.svc"),
            format!("{service}.mcp-hub.svc.cluster.local"),
        ]
        .into_iter()
        .map(|name| format!("{name}:{port}"))
        .collect()
    };
    let loopback = ["localhost:8080", "127.0.0.1:8080", "[::1]:8080"];
    for host in names("mcp-hub-gateway", 8080)
        .iter()
        .map(String::as_str)
        .chain(loopback)
    {
        assert!(
            gateway_list.allows(host.as_bytes()),
            "gateway refuses {host}"
        );
        assert!(admin_list.allows(host.as_bytes()), "admin refuses {host}");
    }
    for host in names("mcp-hub-admin", 8081) {
        assert!(admin_list.allows(host.as_bytes()), "admin refuses {host}");
        assert!(
            !gateway_list.allows(host.as_bytes()),
            "gateway allows {host}"
        );
    }
    for host in ["evil.example:8080", "mcp-hub-gateway.other.svc:8080"] {
        assert!(
            !gateway_list.allows(host.as_bytes()),
            "gateway allows {host}"
        );
        assert!(!admin_list.allows(host.as_bytes()), "admin allows {host}");
    }

    // MCP_WORKER_MAX: set on the supervisor from supervisor.workerMax, a number the
    // supervisor takes (its default, 64).
    let worker_max = values["supervisor"]["workerMax"]
        .as_u64()
        .expect("supervisor.workerMax is a number");
    assert_eq!(worker_max, 64);
    assert_eq!(supervisor["MCP_WORKER_MAX"], worker_max.to_string());

    // The chart's templates set the same variables from those values, and pass each
    // component's extraEnv (empty by default, so the plain manifests have none).
    for (template, component, wired) in [
        (
            "gateway.yaml",
            "gateway",
            &[
                "MCP_GATEWAY_ALLOWED_HOSTS",
                ".Values.gateway.allowedHosts",
                "MCP_GATEWAY_ALLOWED_ORIGINS",
                ".Values.gateway.allowedOrigins",
            ][..],
        ),
        (
            "admin.yaml",
            "admin",
            &[
                "MCP_ADMIN_ALLOWED_HOSTS",
                "concat .Values.admin.allowedHosts .Values.gateway.allowedHosts",
                "MCP_ADMIN_ALLOWED_ORIGINS",
                "concat .Values.admin.allowedOrigins .Values.gateway.allowedOrigins",
            ][..],
        ),
        (
            "supervisor.yaml",
            "supervisor",
            &[
                "MCP_WORKER_MAX",
                ".Values.supervisor.workerMax",
                "MCP_K8S_WORKER_ENV",
                "with .Values.workers.extraEnv",
                "toJson .",
                "MCP_K8S_WORKER_ENV_FROM_SECRETS",
                "with .Values.workers.envFromSecrets",
                "join \",\" .",
            ][..],
        ),
    ] {
        let text = read(&format!("deploy/helm/mcp-hub/templates/{template}"));
        for needle in wired {
            assert!(text.contains(needle), "{template} lacks {needle}");
        }
        assert!(
            text.contains(&format!("with .Values.{component}.extraEnv")),
            "{template} lacks extraEnv"
        );
        assert_eq!(
            values[component]["extraEnv"],
            Value::Array(Vec::new()),
            "{component}.extraEnv"
        );
    }
    assert!(
        read("deploy/helm/mcp-hub/templates/_helpers.tpl").contains("define \"mcp-hub.joinList\"")
    );
    // The workers' extra env and Secrets: empty by default (the plain manifests set
    // neither).
    for key in ["extraEnv", "envFromSecrets"] {
        assert_eq!(
            values["workers"][key],
            Value::Array(Vec::new()),
            "workers.{key}"
        );
    }
}

/// kubernetes-validate, installed on first use (PyPI, pinned: the Kubernetes 1.37 JSON
/// schemas ship inside it, so it needs no network once installed).
fn kubernetes_validate() -> PathBuf {
    let output = std::process::Command::new("bash")
        .arg(repo().join("scripts/ensure-kubernetes-validate.sh"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running scripts/ensure-kubernetes-validate.sh");
    assert!(
        output.status.success(),
        "scripts/ensure-kubernetes-validate.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// `kubernetes-validate --strict FILE` (an unknown field is an error, as with
/// `kubectl --validate=strict`): the resources it passed, after asserting it found no
/// error.
fn validate_strict(file: &Path) -> Vec<String> {
    let output = std::process::Command::new(kubernetes_validate())
        .arg("--strict")
        .arg(file)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "kubernetes-validate failed on {}:\n{text}",
        file.display()
    );
    assert!(
        !text.contains("ERROR") && !text.contains("WARN"),
        "kubernetes-validate on {}:\n{text}",
        file.display()
    );
    text.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(" passed for resource ")?;
            Some(rest.split(' ').next()?.to_owned())
        })
        .collect()
}

#[test]
fn plain_manifests_pass_the_kubernetes_schemas_strictly() {
    let passed = validate_strict(&repo().join("deploy/manifests/mcp-hub.yaml"));
    // Every document of the file was checked, none skipped as an unknown kind.
    let expected: Vec<String> = manifests()
        .iter()
        .map(|doc| {
            format!(
                "{}/{}",
                doc["kind"].as_str().unwrap_or("").to_lowercase(),
                doc["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(passed, expected);
    assert_eq!(passed.len(), 11, "{passed:?}");
}

#[test]
fn worker_deployments_the_supervisor_applies_pass_the_kubernetes_schemas_strictly() {
    use mcp_supervisor::kubernetes::{desired_deployment, worker_env, KubeSettings, WorkerEnv};
    let plain = KubeSettings {
        namespace: "mcp-hub".into(),
        image: "mcp-hub:latest".into(),
        image_pull_policy: "IfNotPresent".into(),
        service_account: None,
        worker_port: 9100,
        cpu_request: Some("50m".into()),
        memory_request: Some("32Mi".into()),
        cpu_limit: None,
        memory_limit: Some("128Mi".into()),
        redis_url: "redis://mcp-hub-redis:6379".into(),
        key_prefix: "mcp:".into(),
        worker_env: WorkerEnv::default(),
    };
    let full = KubeSettings {
        service_account: Some("mcp-worker".into()),
        cpu_limit: Some("1".into()),
        worker_env: WorkerEnv {
            vars: worker_env::parse_vars(
                r#"[{"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
                    {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "rest-creds", "key": "token"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]"#,
            )
            .expect("a valid MCP_K8S_WORKER_ENV"),
            from_secrets: worker_env::parse_secrets("rest-creds,proxy.creds")
                .expect("valid MCP_K8S_WORKER_ENV_FROM_SECRETS"),
        },
        ..plain.clone()
    };
    let documents = [
        desired_deployment(&plain, "weather", 1),
        desired_deployment(&full, "Weather_API", 3),
    ];
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("workers.yaml");
    let text: Vec<String> = documents
        .iter()
        .map(|doc| serde_norway::to_string(doc).expect("YAML"))
        .collect();
    std::fs::write(&file, text.join("---\n")).expect("writing the Deployments");
    let passed = validate_strict(&file);
    assert_eq!(passed.len(), 2, "{passed:?}");
    assert!(passed
        .iter()
        .all(|p| p.starts_with("deployment/mcp-worker-")));
}
