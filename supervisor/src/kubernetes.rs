//! Owns the Kubernetes way of running workers (`MCP_WORKER_BACKEND=kubernetes`): one
//! Deployment per active registered server, server-side applied (`replicas` = the
//! server's replicas, probes on the worker's `/healthz`), deleted when the server is
//! deleted or deactivated, and its Ready pods written to Redis as worker records (pod IP
//! and port), so the gateway, the admin API and the dashboard read them as they read a
//! process worker's. The kubelet restarts crashed workers; the pods run with
//! `MCP_WORKER_ORPHAN_TIMEOUT_SECS=0` and no supervisor id, so they do not exit when the
//! supervisor goes away.
//!
//! This module only says what runs: [`KubeBackend`] is a [`ServerBackend`] (apply a
//! server's Deployment with N replicas, delete one, observe Deployments and Ready
//! pods), and [`run`] drives it with [`ServerSupervisor`], which holds the leases
//! (several supervisors on one cluster each apply only the servers they hold),
//! `MCP_WORKER_MAX`, idle stop (a Deployment scaled to 0) and the records.
//!
//! Layout: pure parts ([`desired_deployment`], [`worker_records`], names and labels;
//! [`worker_env`], the workers' extra env from `MCP_K8S_WORKER_ENV*`, checked at start-up),
//! the [`Cluster`] seam (the few API calls used: apply, delete, list Deployments, list
//! Pods, and an optional change trigger), [`KubeCluster`] (kube-rs behind it),
//! [`KubeBackend`] and [`run`]. Pods are listed every reconcile; registry events, the
//! `MCP_SUPERVISOR_RECONCILE_INTERVAL` timer and [`KubeCluster`]'s Pod watch (any
//! change of a Pod of ours, [`Cluster::pods_changed`]) trigger one.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use mcp_core::runtime::{WorkerRecord, WorkerStatus};
use mcp_core::RedisRegistry;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::backend::{Observed, Placement, ServerBackend};
#[cfg(test)]
use crate::servers::{cap_replicas, desired_records, pending_reason, status_path, Grant};
use crate::servers::{Options, ServerSupervisor};

pub mod worker_env;
pub use worker_env::WorkerEnv;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "mcp-supervisor";
/// Label on everything the supervisor applies.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label naming the registry (Redis URL and key prefix) a Deployment belongs to.
pub const REGISTRY_LABEL: &str = "mcp-hub/registry";
/// Label naming the server (sanitised to a label value; the exact id is an annotation).
pub const SERVER_LABEL: &str = "mcp-hub/server";
/// Annotation with the exact server id (on the Deployment and on its pods).
pub const SERVER_ANNOTATION: &str = "mcp-hub/server-id";

/// The env vars the hub sets on every worker container, in this order (what makes a
/// pod a worker of this hub and of this server); `MCP_K8S_WORKER_ENV` may not name one.
pub const HUB_WORKER_ENV: [&str; 6] = [
    "MCP_WORKER_SERVER",
    "MCP_WORKER_LISTEN",
    "REDIS_URL",
    "MCP_KEY_PREFIX",
    "MCP_WORKER_ORPHAN_TIMEOUT_SECS",
    "MCP_ENV_FILE",
];

/// What the Deployments are made of (`MCP_K8S_*`).
#[derive(Clone, Debug)]
pub struct KubeSettings {
    pub namespace: String,
    pub image: String,
    pub image_pull_policy: String,
    pub service_account: Option<String>,
    /// The port the worker listens on inside its pod.
    pub worker_port: u16,
    pub cpu_request: Option<String>,
    pub memory_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_limit: Option<String>,
    /// `REDIS_URL` and `MCP_KEY_PREFIX` given to the workers (the supervisor's own).
    pub redis_url: String,
    pub key_prefix: String,
    /// `MCP_K8S_WORKER_ENV` and `MCP_K8S_WORKER_ENV_FROM_SECRETS`, after the hub's own.
    pub worker_env: WorkerEnv,
}

/// A short stable hash (FNV-1a, 32 bits, hex) for names and label values.
fn short_hash(text: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{hash:08x}")
}

/// `text` as a Kubernetes label value (`[A-Za-z0-9_.-]`, at most 63, alphanumeric at
/// both ends): unchanged when it already is one, else sanitised plus a hash of the
/// original so two ids never share a value.
pub fn label_value(text: &str) -> String {
    let valid = !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && text.as_bytes()[0].is_ascii_alphanumeric()
        && text.as_bytes()[text.len() - 1].is_ascii_alphanumeric();
    if valid {
        return text.to_owned();
    }
    let clean: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let clean = clean.trim_matches('-');
    let head: String = clean.chars().take(50).collect();
    let head = head.trim_end_matches('-');
    if head.is_empty() {
        format!("h{}", short_hash(text))
    } else {
        format!("{head}-{}", short_hash(text))
    }
}

/// The registry's label value: one per Redis URL and key prefix, so two hubs in one
/// namespace never delete each other's Deployments as ghosts.
pub fn registry_label(settings: &KubeSettings) -> String {
    let prefix: String = settings
        .key_prefix
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(20)
        .collect();
    let hash = short_hash(&format!("{}\n{}", settings.redis_url, settings.key_prefix));
    if prefix.is_empty() {
        format!("r{hash}")
    } else {
        format!("{prefix}-{hash}")
    }
}

/// The Deployment's name for a server: a DNS-1123 label (lowercase, at most 63), with a
/// hash of the exact id and registry (server ids are case-sensitive, names are not).
pub fn deployment_name(settings: &KubeSettings, server_id: &str) -> String {
    let clean: String = server_id
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let clean = clean.trim_matches('-');
    let hash = short_hash(&format!("{}\n{server_id}", registry_label(settings)));
    if clean.is_empty() {
        format!("mcp-worker-{hash}")
    } else {
        format!("mcp-worker-{clean}-{hash}")
    }
}

/// The Deployment to apply for `server_id` with `replicas` pods (pure).
pub fn desired_deployment(settings: &KubeSettings, server_id: &str, replicas: u32) -> Value {
    let name = deployment_name(settings, server_id);
    let labels = json!({
        MANAGED_BY: FIELD_MANAGER,
        REGISTRY_LABEL: registry_label(settings),
        SERVER_LABEL: label_value(server_id),
        "app.kubernetes.io/name": "mcp-worker",
        "app.kubernetes.io/instance": name,
    });
    let port = settings.worker_port;
    let probe = |period: u32, failures: u32| {
        json!({
            "httpGet": { "path": "/healthz", "port": port },
            "periodSeconds": period,
            "failureThreshold": failures,
            "timeoutSeconds": 2,
        })
    };
    let mut resources = serde_json::Map::new();
    let quantities = |cpu: &Option<String>, memory: &Option<String>| {
        let mut map = serde_json::Map::new();
        for (key, value) in [("cpu", cpu), ("memory", memory)] {
            if let Some(value) = value {
                map.insert(key.to_owned(), json!(value));
            }
        }
        map
    };
    let requests = quantities(&settings.cpu_request, &settings.memory_request);
    let limits = quantities(&settings.cpu_limit, &settings.memory_limit);
    if !requests.is_empty() {
        resources.insert("requests".into(), Value::Object(requests));
    }
    if !limits.is_empty() {
        resources.insert("limits".into(), Value::Object(limits));
    }
    // The hub's own (HUB_WORKER_ENV, in that order), then MCP_K8S_WORKER_ENV's, which
    // never names one of them (worker_env refuses it at start-up).
    let mut env = vec![
        json!({ "name": "MCP_WORKER_SERVER", "value": server_id }),
        json!({ "name": "MCP_WORKER_LISTEN", "value": format!("0.0.0.0:{port}") }),
        json!({ "name": "REDIS_URL", "value": settings.redis_url }),
        json!({ "name": "MCP_KEY_PREFIX", "value": settings.key_prefix }),
        // The kubelet restarts it and the Deployment owns it: it must not exit when the
        // supervisor is gone.
        json!({ "name": "MCP_WORKER_ORPHAN_TIMEOUT_SECS", "value": "0" }),
        json!({ "name": "MCP_ENV_FILE", "value": "/nonexistent/.env" }),
    ];
    env.extend(settings.worker_env.vars.iter().map(|var| json!(var)));
    let mut pod_spec = json!({
        "containers": [{
            "name": "worker",
            "image": settings.image,
            "imagePullPolicy": settings.image_pull_policy,
            "command": ["mcp-worker"],
            "ports": [{ "name": "mcp", "containerPort": port, "protocol": "TCP" }],
            "env": env,
            "readinessProbe": probe(2, 1),
            "livenessProbe": probe(5, 3),
            "resources": Value::Object(resources),
        }],
    });
    if !settings.worker_env.from_secrets.is_empty() {
        // Kubernetes gives `env` precedence over `envFrom`: a Secret key named like a
        // hub variable does not override it.
        let from: Vec<Value> = settings
            .worker_env
            .from_secrets
            .iter()
            .map(|name| json!({ "secretRef": { "name": name } }))
            .collect();
        pod_spec["containers"][0]["envFrom"] = Value::Array(from);
    }
    if let Some(account) = &settings.service_account {
        pod_spec["serviceAccountName"] = json!(account);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": { SERVER_ANNOTATION: server_id },
        },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app.kubernetes.io/instance": name, REGISTRY_LABEL: registry_label(settings) } },
            "template": {
                "metadata": { "labels": labels, "annotations": { SERVER_ANNOTATION: server_id } },
                "spec": pod_spec,
            },
        },
    })
}

/// True when the pod serves: Ready condition true, an IP, not being deleted.
fn pod_ready(pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(status) = &pod.status else {
        return false;
    };
    status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The server id a pod belongs to (its annotation).
fn pod_server(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(SERVER_ANNOTATION)
        .map(String::as_str)
}

/// The worker records of every server from a Pod list (pure): each Ready pod is a
/// `running` record with the pod's IP and `port`, replicas numbered in pod-name order.
pub fn worker_records(
    pods: &[Pod],
    port: u16,
    supervisor_id: &str,
    now_ms: u64,
) -> BTreeMap<String, Vec<WorkerRecord>> {
    let mut ready: BTreeMap<String, Vec<(&str, &Pod)>> = BTreeMap::new();
    for pod in pods.iter().filter(|p| pod_ready(p)) {
        if let (Some(server), Some(name)) = (pod_server(pod), pod.metadata.name.as_deref()) {
            ready
                .entry(server.to_owned())
                .or_default()
                .push((name, pod));
        }
    }
    ready
        .into_iter()
        .map(|(server, mut pods)| {
            pods.sort_by_key(|(name, _)| *name);
            let records = pods
                .iter()
                .enumerate()
                .map(|(idx, (_, pod))| {
                    let mut record =
                        WorkerRecord::new(idx as u32, WorkerStatus::Running, supervisor_id);
                    record.host = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
                    record.port = Some(port);
                    record.last_heartbeat = Some(now_ms);
                    record.restarts = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .map(|cs| cs.iter().map(|c| c.restart_count.max(0) as u32).sum())
                        .unwrap_or(0);
                    record
                })
                .collect();
            (server, records)
        })
        .collect()
}

/// The few API calls the backend makes, so tests can put a fake cluster behind it.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// Server-side apply of one Deployment (the JSON of [`desired_deployment`]).
    async fn apply(&self, name: &str, deployment: &Value) -> anyhow::Result<()>;
    async fn delete(&self, name: &str) -> anyhow::Result<()>;
    /// The Deployments with `selector`'s labels: (name, server id annotation).
    async fn deployments(&self, selector: &str) -> anyhow::Result<Vec<(String, Option<String>)>>;
    async fn pods(&self, selector: &str) -> anyhow::Result<Vec<Pod>>;
    /// Resolves when a Pod with `selector`'s labels may have changed (a watch); the
    /// default never resolves, leaving the reconcile timer alone.
    async fn pods_changed(&self, _selector: &str) {
        std::future::pending::<()>().await
    }
}

/// [`Cluster`] over kube-rs, in one namespace.
pub struct KubeCluster {
    deployments: Api<Deployment>,
    pods: Api<Pod>,
    /// Signalled by the Pod watch on every event (one stored permit: a burst of events
    /// is one reconcile).
    pods_changed: Arc<tokio::sync::Notify>,
    /// The Pod watch task, started by the first [`Cluster::pods_changed`]; a std Mutex:
    /// held to start it, never across an await. Aborted on drop.
    watch: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        if let Some(task) = self
            .watch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// How long one Pod watch request lasts before it is made again (the API server's
/// limit is longer; a fresh request also recovers from a lost connection).
const WATCH_TIMEOUT_SECS: u32 = 290;

/// Watches the Pods with `selector`'s labels and signals `changed` on every event,
/// forever: a watch that ends or fails is made again after a second (the reconcile
/// timer still runs meanwhile). Each new watch starts with the current Pods as
/// `ADDED` events (resource version "0"), so nothing changed between two is missed.
async fn watch_pods(pods: Api<Pod>, selector: String, changed: Arc<tokio::sync::Notify>) {
    use futures::StreamExt;
    let params = kube::api::WatchParams::default()
        .labels(&selector)
        .timeout(WATCH_TIMEOUT_SECS);
    loop {
        match pods.watch(&params, "0").await {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(_) => changed.notify_one(),
                        Err(err) => {
                            tracing::warn!(event = "k8s.watch.failed", error = %err);
                            break;
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(event = "k8s.watch.failed", error = %err),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

impl KubeCluster {
    pub fn new(client: kube::Client, namespace: &str) -> KubeCluster {
        KubeCluster {
            deployments: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client, namespace),
            pods_changed: Arc::default(),
            watch: std::sync::Mutex::new(None),
        }
    }

    /// In-cluster configuration, else `KUBECONFIG` (kube's inference).
    pub async fn connect(namespace: &str) -> anyhow::Result<KubeCluster> {
        let client = kube::Client::try_default().await?;
        Ok(KubeCluster::new(client, namespace))
    }
}

#[async_trait]
impl Cluster for KubeCluster {
    async fn apply(&self, name: &str, deployment: &Value) -> anyhow::Result<()> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.deployments
            .patch(name, &params, &Patch::Apply(deployment))
            .await?;
        Ok(())
    }

    async fn delete(&self, name: &str) -> anyhow::Result<()> {
        match self
            .deployments
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    async fn deployments(&self, selector: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let list = self
            .deployments
            .list(&ListParams::default().labels(selector))
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|d| {
                let server = d
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(SERVER_ANNOTATION).cloned());
                Some((d.metadata.name?, server))
            })
            .collect())
    }

    async fn pods(&self, selector: &str) -> anyhow::Result<Vec<Pod>> {
        Ok(self
            .pods
            .list(&ListParams::default().labels(selector))
            .await?
            .items)
    }

    async fn pods_changed(&self, selector: &str) {
        {
            let mut watch = self
                .watch
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if watch.is_none() {
                *watch = Some(tokio::spawn(watch_pods(
                    self.pods.clone(),
                    selector.to_owned(),
                    self.pods_changed.clone(),
                )));
            }
        }
        self.pods_changed.notified().await
    }
}

/// The label selector of everything this registry's supervisor manages.
pub fn selector(settings: &KubeSettings) -> String {
    format!(
        "{MANAGED_BY}={FIELD_MANAGER},{REGISTRY_LABEL}={}",
        registry_label(settings)
    )
}

/// [`ServerBackend`] over a [`Cluster`]: a server's workers are its Deployment.
pub struct KubeBackend {
    cluster: Arc<dyn Cluster>,
    settings: KubeSettings,
}

impl KubeBackend {
    pub fn new(cluster: Arc<dyn Cluster>, settings: KubeSettings) -> KubeBackend {
        KubeBackend { cluster, settings }
    }
}

#[async_trait]
impl ServerBackend for KubeBackend {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn placement_name(&self, server_id: &str) -> String {
        deployment_name(&self.settings, server_id)
    }

    async fn apply(&self, server_id: &str, replicas: u32) -> anyhow::Result<()> {
        let name = deployment_name(&self.settings, server_id);
        self.cluster
            .apply(
                &name,
                &desired_deployment(&self.settings, server_id, replicas),
            )
            .await
    }

    async fn remove(&self, name: &str) -> anyhow::Result<()> {
        self.cluster.delete(name).await
    }

    async fn observe(&self) -> anyhow::Result<Observed> {
        let selector = selector(&self.settings);
        let placements = self
            .cluster
            .deployments(&selector)
            .await?
            .into_iter()
            .map(|(name, server_id)| Placement { name, server_id })
            .collect();
        let pods = self.cluster.pods(&selector).await?;
        Ok(Observed {
            placements,
            serving: worker_records(&pods, self.settings.worker_port, "", 0),
        })
    }

    async fn changed(&self) {
        self.cluster.pods_changed(&selector(&self.settings)).await
    }
}

/// Runs the Kubernetes backend under [`ServerSupervisor`] (leases, `MCP_WORKER_MAX`,
/// idle stop, records) until `cancel`.
pub async fn run(
    registry: RedisRegistry,
    cluster: Arc<dyn Cluster>,
    settings: KubeSettings,
    options: Options,
    cancel: CancellationToken,
) {
    let backend = Arc::new(KubeBackend::new(cluster, settings));
    ServerSupervisor::new(registry, backend, options, cancel)
        .run()
        .await;
}

#[cfg(test)]
mod tests;
