//! Owns the Kubernetes way of running workers (`MCP_WORKER_BACKEND=kubernetes`): one
//! Deployment per active registered server, server-side applied (`replicas` = the
//! server's replicas, probes on the worker's `/healthz`), deleted when the server is
//! deleted or deactivated, and its Ready pods written to Redis as worker records (pod IP
//! and port), so the gateway, the admin API and the dashboard read them as they read a
//! process worker's. The kubelet restarts crashed workers; the pods run with
//! `MCP_WORKER_ORPHAN_TIMEOUT_SECS=0` and no supervisor id, so they do not exit when the
//! supervisor goes away.
//!
//! `MCP_WORKER_MAX` caps the pods of all servers together ([`cap_replicas`]: one replica
//! per server per round, in server id order); a replica left out has a `pending` record
//! saying so, as under the process backend. Every record write follows the state machine
//! from the stored status ([`status_path`], checked with [`status::check_replace`]).
//!
//! Layout: pure parts ([`desired_deployment`], [`cap_replicas`], [`worker_records`],
//! [`desired_records`], [`status_path`], names and labels), the [`Cluster`] seam (the
//! few API calls used: apply, delete, list Deployments, list Pods), [`KubeCluster`]
//! (kube-rs behind it) and [`run`] (the reconcile loop). What this loop does not do yet:
//! leases between several supervisors (run one supervisor replica per namespace and
//! prefix; the chart does) and idle stop.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use mcp_core::runtime::{unix_millis, WorkerRecord, WorkerStatus};
use mcp_core::RedisRegistry;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::status;

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
    /// `MCP_WORKER_MAX`: worker pods of all servers together at most.
    pub worker_max: usize,
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
    let mut pod_spec = json!({
        "containers": [{
            "name": "worker",
            "image": settings.image,
            "imagePullPolicy": settings.image_pull_policy,
            "command": ["mcp-worker"],
            "ports": [{ "name": "mcp", "containerPort": port, "protocol": "TCP" }],
            "env": [
                { "name": "MCP_WORKER_SERVER", "value": server_id },
                { "name": "MCP_WORKER_LISTEN", "value": format!("0.0.0.0:{port}") },
                { "name": "REDIS_URL", "value": settings.redis_url },
                { "name": "MCP_KEY_PREFIX", "value": settings.key_prefix },
                // The kubelet restarts it and the Deployment owns it: it must not exit
                // when the supervisor is gone.
                { "name": "MCP_WORKER_ORPHAN_TIMEOUT_SECS", "value": "0" },
                { "name": "MCP_ENV_FILE", "value": "/nonexistent/.env" },
            ],
            "readinessProbe": probe(2, 1),
            "livenessProbe": probe(5, 3),
            "resources": Value::Object(resources),
        }],
    });
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

/// One server's replicas under `MCP_WORKER_MAX`: what it asks for, what it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub wanted: u32,
    pub granted: u32,
}

/// The replicas each server gets when the pods of all servers together may not pass
/// `max` (`MCP_WORKER_MAX`), pure and deterministic: while the wanted replicas fit, each
/// server gets all of its own; otherwise replicas are handed out one per server per
/// round, servers in id order (byte order), so every server gets one before any gets a
/// second, and the servers last in id order are the ones left short.
pub fn cap_replicas(desired: &BTreeMap<String, u32>, max: usize) -> BTreeMap<String, Grant> {
    let mut grants: BTreeMap<String, Grant> = desired
        .iter()
        .map(|(id, wanted)| {
            let wanted = *wanted;
            (id.clone(), Grant { wanted, granted: 0 })
        })
        .collect();
    let mut room = max;
    let mut round = 0;
    loop {
        let mut handed = false;
        for grant in grants.values_mut().filter(|g| g.wanted > round) {
            if room == 0 {
                return grants;
            }
            grant.granted += 1;
            room -= 1;
            handed = true;
        }
        if !handed {
            return grants;
        }
        round += 1;
    }
}

/// The reason a `pending` record gives (the process backend's words).
pub fn pending_reason(worker_max: usize, supervisor_id: &str) -> String {
    format!("MCP_WORKER_MAX={worker_max} reached on supervisor {supervisor_id}")
}

/// Every server's records (pure): the `running` records of its Ready pods
/// ([`worker_records`]), then a `pending` record (with `reason`) for each replica
/// `MCP_WORKER_MAX` left out, numbered after the pods the Deployment may have.
pub fn desired_records(
    mut running: BTreeMap<String, Vec<WorkerRecord>>,
    grants: &BTreeMap<String, Grant>,
    supervisor_id: &str,
    reason: &str,
) -> BTreeMap<String, Vec<WorkerRecord>> {
    for (id, grant) in grants {
        if grant.granted >= grant.wanted {
            continue;
        }
        let records = running.entry(id.clone()).or_default();
        let first = (records.len() as u32).max(grant.granted);
        for replica_idx in first..grant.wanted {
            records.push(WorkerRecord {
                reason: Some(reason.to_owned()),
                ..WorkerRecord::new(replica_idx, WorkerStatus::Pending, supervisor_id)
            });
        }
    }
    running
}

/// The statuses to write, in order, to go from the stored record's status (`None`: no
/// record) to `to` following the state machine ([`status::allowed`]): the shortest such
/// path, ending with `to` (just `to` when the move is allowed as it is, e.g. a heartbeat
/// of a `running` record); `None` when there is none.
pub fn status_path(stored: Option<WorkerStatus>, to: WorkerStatus) -> Option<Vec<WorkerStatus>> {
    use WorkerStatus::*;
    const ALL: [WorkerStatus; 9] = [
        Pending, Starting, Running, Unhealthy, Restarting, Stopping, Stopped, Failed, Idle,
    ];
    let Some(from) = stored else {
        return Some(vec![to]);
    };
    if status::allowed(from, to) {
        return Some(vec![to]);
    }
    // Breadth first over the nine statuses: the first path found is a shortest one, and
    // the order of ALL makes it the same every time.
    let mut paths: Vec<Vec<WorkerStatus>> = vec![vec![from]];
    let mut seen = vec![from];
    while !paths.is_empty() {
        let mut next = Vec::new();
        for path in paths {
            let last = path[path.len() - 1];
            for step in ALL {
                if seen.contains(&step) || !status::allowed(last, step) {
                    continue;
                }
                let mut longer = path.clone();
                longer.push(step);
                if step == to {
                    longer.remove(0);
                    return Some(longer);
                }
                seen.push(step);
                next.push(longer);
            }
        }
        paths = next;
    }
    None
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
}

/// [`Cluster`] over kube-rs, in one namespace.
pub struct KubeCluster {
    deployments: Api<Deployment>,
    pods: Api<Pod>,
}

impl KubeCluster {
    pub fn new(client: kube::Client, namespace: &str) -> KubeCluster {
        KubeCluster {
            deployments: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client, namespace),
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
}

/// The label selector of everything this registry's supervisor manages.
pub fn selector(settings: &KubeSettings) -> String {
    format!(
        "{MANAGED_BY}={FIELD_MANAGER},{REGISTRY_LABEL}={}",
        registry_label(settings)
    )
}

/// One reconcile: apply the Deployment of every active server with the replicas
/// `MCP_WORKER_MAX` leaves it ([`cap_replicas`]; a server left none keeps a Deployment
/// of 0 replicas), delete the others (ghosts included: a Deployment of ours whose server
/// is gone), and write the Ready pods as worker records and the replicas left out as
/// `pending` ones, removing the records of pods that are gone or not ready. Returns how
/// many Deployments it applied.
pub async fn reconcile_once(
    registry: &RedisRegistry,
    cluster: &dyn Cluster,
    settings: &KubeSettings,
    supervisor_id: &str,
) -> anyhow::Result<usize> {
    let servers = registry.list_servers().await?;
    let desired: BTreeMap<String, u32> = servers
        .iter()
        .filter(|(_, s)| s.active)
        .map(|(id, s)| (id.clone(), s.replicas()))
        .collect();
    let grants = cap_replicas(&desired, settings.worker_max);
    let mut applied = 0;
    for (id, grant) in &grants {
        let name = deployment_name(settings, id);
        match cluster
            .apply(&name, &desired_deployment(settings, id, grant.granted))
            .await
        {
            Ok(()) => applied += 1,
            Err(err) => {
                tracing::warn!(event = "k8s.apply.failed", server_id = %id, deployment = %name, error = %err)
            }
        }
    }
    let selector = selector(settings);
    for (name, server) in cluster.deployments(&selector).await? {
        let wanted = server.as_deref().is_some_and(|s| desired.contains_key(s));
        if !wanted {
            tracing::info!(event = "k8s.deployment.deleted", deployment = %name, server_id = server.as_deref().unwrap_or(""));
            if let Err(err) = cluster.delete(&name).await {
                tracing::warn!(event = "k8s.delete.failed", deployment = %name, error = %err);
            }
        }
    }
    let pods = cluster.pods(&selector).await?;
    let running = worker_records(&pods, settings.worker_port, supervisor_id, unix_millis());
    let reason = pending_reason(settings.worker_max, supervisor_id);
    let records = desired_records(running, &grants, supervisor_id, &reason);
    let runtimes = registry.list_runtime().await?;
    let mut seen = BTreeSet::new();
    for runtime in &runtimes {
        let id = runtime.server_id.as_str();
        seen.insert(id.to_owned());
        let fresh = records.get(id).map(Vec::as_slice).unwrap_or(&[]);
        write_records(registry, id, fresh, &runtime.workers).await?;
    }
    for (id, fresh) in &records {
        if !seen.contains(id) && servers.contains_key(id) {
            write_records(registry, id, fresh, &[]).await?;
        }
    }
    Ok(applied)
}

/// Puts `fresh` and removes the other replicas of `old` (the stored records). Each
/// write follows the state machine from the stored status: through [`status_path`]
/// (e.g. a `pending` replica whose pod is Ready: `starting`, then `running`), every
/// step checked with [`status::check_replace`]; a refused one is logged as
/// `supervisor.illegal_transition` and not written. A `running` record is written
/// every time (its heartbeat); one equal to the stored record is not.
async fn write_records(
    registry: &RedisRegistry,
    server_id: &str,
    fresh: &[WorkerRecord],
    old: &[WorkerRecord],
) -> anyhow::Result<()> {
    for record in fresh {
        let stored_record = old.iter().find(|r| r.replica_idx == record.replica_idx);
        if stored_record == Some(record) {
            // A pending record as it was: nothing to write, no event.
            continue;
        }
        let stored = stored_record.map(|r| r.status);
        let path = status_path(stored, record.status).unwrap_or_else(|| vec![record.status]);
        let mut from = stored;
        for step in path {
            if let Err(err) = status::check_replace(from, step) {
                tracing::error!(event = "supervisor.illegal_transition", server = %server_id, replica = record.replica_idx, error = %err);
                break;
            }
            let write = WorkerRecord {
                status: step,
                ..record.clone()
            };
            registry.put_worker_record(server_id, &write).await?;
            from = Some(step);
        }
        if record.status == WorkerStatus::Pending
            && stored != Some(WorkerStatus::Pending)
            && from == Some(WorkerStatus::Pending)
        {
            tracing::info!(event = "worker.pending", server = %server_id, replica = record.replica_idx,
                reason = record.reason.as_deref().unwrap_or(""));
        }
    }
    for record in old {
        if !fresh.iter().any(|r| r.replica_idx == record.replica_idx) {
            registry
                .remove_worker_record(server_id, record.replica_idx)
                .await?;
        }
    }
    Ok(())
}

/// Reconciles every `interval` until `cancel`; errors are logged and retried.
pub async fn run(
    registry: RedisRegistry,
    cluster: Arc<dyn Cluster>,
    settings: KubeSettings,
    supervisor_id: String,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = timer.tick() => {}
        }
        if let Err(err) =
            reconcile_once(&registry, cluster.as_ref(), &settings, &supervisor_id).await
        {
            tracing::warn!(event = "k8s.reconcile.failed", error = %err);
        }
    }
}

#[cfg(test)]
mod tests;
