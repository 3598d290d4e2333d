//! The Kubernetes backend end to end, without an API server: a fake [`Cluster`] whose
//! "pods" are real `mcp-worker` processes, each on its own loopback address (127.0.0.N,
//! the same port for all, as pods have), started with the env of the applied
//! Deployment, Ready once `/healthz` answers, restarted when they die (the kubelet).
//! The real gateway then reaches them through the records the backend wrote. A test
//! against a real cluster runs when `MCP_TEST_KUBECONFIG` is set.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use mcp_core::keys::Keys;
use mcp_core::runtime::WorkerStatus;
use mcp_core::RedisRegistry;
use mcp_supervisor::kubernetes::{self, Cluster, KubeSettings, SERVER_ANNOTATION};
use mcp_supervisor::servers::Options;
use mcp_testkit::hub::{Hub, HubOptions};
use mcp_testkit::ChildProcess;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

struct FakePod {
    name: String,
    ip: String,
    child: ChildProcess,
    restarts: u32,
}

struct FakeDeployment {
    labels: BTreeMap<String, String>,
    server: Option<String>,
    env: Vec<(String, String)>,
    /// The pod template of the last apply (a change would roll the pods out).
    template: Value,
    pods: Vec<FakePod>,
    serial: u32,
}

/// A namespace that runs what is applied to it, on loopback.
struct FakeCluster {
    port: u16,
    next_ip: AtomicU8,
    deployments: Mutex<BTreeMap<String, FakeDeployment>>,
    http: reqwest::Client,
}

impl FakeCluster {
    fn new(port: u16) -> FakeCluster {
        FakeCluster {
            port,
            next_ip: AtomicU8::new(2),
            deployments: Mutex::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(1))
                .build()
                .expect("client"),
        }
    }

    /// Starts a pod's worker from the Deployment's env, on 127.0.0.N:port.
    fn start_pod(&self, deployment: &str, d: &mut FakeDeployment) -> FakePod {
        let ip = format!("127.0.0.{}", self.next_ip.fetch_add(1, Ordering::SeqCst));
        d.serial += 1;
        FakePod {
            name: format!("{deployment}-{}", d.serial),
            child: self.spawn_worker(&d.env, &ip),
            ip,
            restarts: 0,
        }
    }

    fn spawn_worker(&self, env: &[(String, String)], ip: &str) -> ChildProcess {
        let mut command = Command::new(mcp_testkit::bin_path("mcp-worker"));
        command.envs(env.iter().map(|(k, v)| (k, v)));
        // The pod's 0.0.0.0 is its own address; here, its loopback address.
        command.env("MCP_WORKER_LISTEN", format!("{ip}:{}", self.port));
        ChildProcess::spawn("mcp-worker", command)
    }

    fn matches(labels: &BTreeMap<String, String>, selector: &str) -> bool {
        selector.split(',').all(|pair| {
            pair.split_once('=')
                .is_some_and(|(k, v)| labels.get(k).map(String::as_str) == Some(v))
        })
    }

    fn pod_count(&self, name: &str) -> usize {
        self.deployments
            .lock()
            .expect("test value")
            .get(name)
            .map_or(0, |d| d.pods.len())
    }
}

#[async_trait]
impl Cluster for FakeCluster {
    async fn apply(&self, name: &str, deployment: &Value) -> anyhow::Result<()> {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(deployment["metadata"]["labels"].clone())?;
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let env: Vec<(String, String)> = container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or("").to_owned(),
                    e["value"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        anyhow::ensure!(
            container["readinessProbe"]["httpGet"]["path"] == "/healthz",
            "no readiness probe"
        );
        let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
        let server = deployment["metadata"]["annotations"][SERVER_ANNOTATION]
            .as_str()
            .map(str::to_owned);
        let mut all = self.deployments.lock().expect("test value");
        let d = all
            .entry(name.to_owned())
            .or_insert_with(|| FakeDeployment {
                labels: labels.clone(),
                server: server.clone(),
                env: env.clone(),
                template: Value::Null,
                pods: Vec::new(),
                serial: 0,
            });
        (d.labels, d.server, d.env) = (labels, server, env);
        d.template = deployment["spec"]["template"].clone();
        while d.pods.len() > replicas {
            d.pods.pop();
        }
        while d.pods.len() < replicas {
            let pod = self.start_pod(name, d);
            d.pods.push(pod);
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> anyhow::Result<()> {
        // Dropping the pods kills their processes.
        self.deployments.lock().expect("test value").remove(name);
        Ok(())
    }

    async fn deployments(&self, selector: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
        Ok(self
            .deployments
            .lock()
            .expect("test value")
            .iter()
            .filter(|(_, d)| FakeCluster::matches(&d.labels, selector))
            .map(|(name, d)| (name.clone(), d.server.clone()))
            .collect())
    }

    async fn pods(&self, selector: &str) -> anyhow::Result<Vec<Pod>> {
        // The kubelet: a dead container is started again.
        let mut probes = Vec::new();
        {
            let mut all = self.deployments.lock().expect("test value");
            for d in all
                .values_mut()
                .filter(|d| FakeCluster::matches(&d.labels, selector))
            {
                for i in 0..d.pods.len() {
                    if d.pods[i].child.has_exited() {
                        let ip = d.pods[i].ip.clone();
                        d.pods[i].child = self.spawn_worker(&d.env, &ip);
                        d.pods[i].restarts += 1;
                    }
                    let pod = &d.pods[i];
                    probes.push((
                        pod.name.clone(),
                        pod.ip.clone(),
                        d.server.clone().unwrap_or_default(),
                        pod.restarts,
                    ));
                }
            }
        }
        let mut pods = Vec::new();
        for (name, ip, server, restarts) in probes {
            let ready = self
                .http
                .get(format!("http://{ip}:{}/healthz", self.port))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            pods.push(serde_json::from_value(json!({
                "metadata": { "name": name, "annotations": { SERVER_ANNOTATION: server } },
                "status": {
                    "podIP": ip,
                    "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
                    "containerStatuses": [{ "name": "worker", "ready": ready, "restartCount": restarts, "image": "", "imageID": "" }],
                },
            }))?);
        }
        Ok(pods)
    }
}

fn settings(hub: &Hub, port: u16) -> KubeSettings {
    settings_for(&hub.redis.url(), &hub.prefix, port)
}

/// The loop's options: `supervisor_id`, `MCP_WORKER_MAX`, `MCP_WORKER_IDLE_TTL`, a
/// 300 ms reconcile interval and a lease of 1.5 s.
fn loop_options(supervisor_id: &str, worker_max: usize, idle_ttl: Duration) -> Options {
    Options {
        supervisor_id: supervisor_id.to_owned(),
        worker_max,
        idle_ttl,
        lease_ttl: Duration::from_millis(1500),
        reconcile_interval: Duration::from_millis(300),
    }
}

fn settings_for(redis_url: &str, prefix: &str, port: u16) -> KubeSettings {
    KubeSettings {
        namespace: "test".into(),
        image: "mcp-hub:test".into(),
        image_pull_policy: "Never".into(),
        service_account: None,
        worker_port: port,
        cpu_request: None,
        memory_request: None,
        cpu_limit: None,
        memory_limit: None,
        redis_url: redis_url.to_owned(),
        key_prefix: prefix.to_owned(),
        worker_env: Default::default(),
    }
}

/// (replica, status, reason) of every record of `server_id`, once `check` holds.
async fn wait_statuses(
    registry: &RedisRegistry,
    server_id: &str,
    what: &str,
    check: impl Fn(&[(u32, WorkerStatus, String)]) -> bool,
) -> Vec<(u32, WorkerStatus, String)> {
    mcp_testkit::wait_until_async(what, Duration::from_secs(30), || async {
        let runtime = registry.get_runtime(server_id).await.ok()?;
        let mut records: Vec<(u32, WorkerStatus, String)> = runtime
            .workers
            .iter()
            .map(|w| {
                (
                    w.replica_idx,
                    w.status,
                    w.reason.clone().unwrap_or_default(),
                )
            })
            .collect();
        records.sort_by_key(|r| r.0);
        check(&records).then_some(records)
    })
    .await
}

/// (host, restarts) of the running records of `server_id`, once `check` holds.
async fn wait_records(
    registry: &RedisRegistry,
    server_id: &str,
    what: &str,
    check: impl Fn(&[(String, u32)]) -> bool,
) -> Vec<(String, u32)> {
    mcp_testkit::wait_until_async(what, Duration::from_secs(30), || async {
        let runtime = registry.get_runtime(server_id).await.ok()?;
        let running: Vec<(String, u32)> = runtime
            .workers
            .iter()
            .filter(|w| w.status == WorkerStatus::Running)
            .map(|w| (w.host.clone().unwrap_or_default(), w.restarts))
            .collect();
        (runtime.workers.len() == running.len() && check(&running)).then_some(running)
    })
    .await
}

/// A tool call through the gateway: (status, body).
async fn call(client: &reqwest::Client, hub: &Hub, server_id: &str) -> (u16, String) {
    let response = client
        .post(format!("{}/mcp/{server_id}/text", hub.gateway_url))
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// A hub whose gateway routes to workers but runs no process supervisor (the
/// Kubernetes backend under test is the only writer of worker records), with one
/// server `id` on the mock API and its tool `text`.
async fn hub_with_text_server(id: &str) -> (Hub, RedisRegistry) {
    let mut options = HubOptions::for_tests();
    options
        .supervisor_flags
        .insert("--enabled".into(), "false".into());
    let hub = Hub::start(options).await.expect("the hub");
    let registry = RedisRegistry::new(&hub.redis.url(), Keys::new(&hub.prefix), Default::default())
        .expect("registry");
    let server = serde_json::from_value(json!({ "baseUrl": hub.mock_url })).expect("server");
    registry.upsert_server(id, server).await.expect("server");
    registry
        .upsert_tool(
            id,
            serde_json::from_value(
                json!({"name": "text", "method": "GET", "pathTemplate": "/test/text"}),
            )
            .expect("tool"),
        )
        .await
        .expect("tool");
    (hub, registry)
}

#[tokio::test]
async fn pods_of_applied_deployments_serve_gateway_calls_through_their_records() {
    let (hub, registry) = hub_with_text_server("k8s_api").await;

    let port = mcp_testkit::free_port();
    let settings = settings(&hub, port);
    let fake = Arc::new(FakeCluster::new(port));
    // A ghost of ours (its server is gone) and another hub's Deployment in the namespace.
    let ghost = kubernetes::desired_deployment(&settings, "gone", 1);
    let ghost_name = kubernetes::deployment_name(&settings, "gone");
    fake.apply(&ghost_name, &ghost).await.expect("ghost");
    let mut other_settings = settings.clone();
    other_settings.key_prefix = format!("{}other:", hub.prefix);
    let other_name = kubernetes::deployment_name(&other_settings, "k8s_api");
    fake.apply(
        &other_name,
        &kubernetes::desired_deployment(&other_settings, "k8s_api", 1),
    )
    .await
    .expect("other hub");

    let cancel = CancellationToken::new();
    let backend = tokio::spawn(kubernetes::run(
        registry.clone(),
        fake.clone(),
        settings.clone(),
        loop_options("sup-k8s", 64, Duration::ZERO),
        cancel.clone(),
    ));
    let name = kubernetes::deployment_name(&settings, "k8s_api");

    // One Ready pod -> one running record with the pod's address.
    let records = wait_records(&registry, "k8s_api", "one running pod record", |r| {
        r.len() == 1
    })
    .await;
    assert!(
        records[0].0.starts_with("127.0.0.") && records[0].0 != "127.0.0.1",
        "{records:?}"
    );
    let runtime = registry.get_runtime("k8s_api").await.expect("runtime");
    assert_eq!(runtime.workers[0].port, Some(port));
    assert_eq!(runtime.workers[0].supervisor_id.as_deref(), Some("sup-k8s"));
    // The ghost went on the first reconcile, the other hub's Deployment stays.
    assert_eq!(fake.pod_count(&ghost_name), 0);
    assert!(!fake
        .deployments
        .lock()
        .expect("test value")
        .contains_key(&ghost_name));
    assert_eq!(fake.pod_count(&other_name), 1);

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let health: Value = client
        .get(format!("{}/healthz", hub.gateway_url))
        .send()
        .await
        .expect("gateway health")
        .json()
        .await
        .expect("json");
    assert_eq!(
        health["mode"], "workers",
        "the gateway routes to workers: {health}"
    );
    // The pod's worker has served no call yet: its idle time grows until the call.
    let pod_health = format!("http://{}:{port}/healthz", records[0].0);
    let idle_ms = || async {
        let health: Value = client
            .get(&pod_health)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        health["idle_ms"].as_u64()
    };
    let idle_before = mcp_testkit::wait_until_async(
        "the pod idle for 500 ms",
        Duration::from_secs(10),
        || async { idle_ms().await.filter(|ms| *ms >= 500) },
    )
    .await;
    let (status, body) = mcp_testkit::wait_until_async(
        "a call through the gateway to the pod",
        Duration::from_secs(20),
        || async {
            let (status, body) = call(&client, &hub, "k8s_api").await;
            (status == 200 && body.contains("tool_call.completed")).then_some((status, body))
        },
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let idle_after = idle_ms().await.expect("pod health");
    assert!(
        idle_after < idle_before,
        "the pod served the call: idle {idle_before} ms -> {idle_after} ms"
    );
    println!(
        "call through the gateway to {}: {status}, pod idle {idle_before} ms -> {idle_after} ms",
        records[0].0
    );
    // What the pod's /healthz reports (here its audit writer's counters) reaches its
    // record, as under the process backend.
    let audit = mcp_testkit::wait_until_async(
        "the pod's audit counters in its record",
        Duration::from_secs(20),
        || async {
            let runtime = registry.get_runtime("k8s_api").await.ok()?;
            runtime.workers.first()?.audit.filter(|a| a.written >= 1)
        },
    )
    .await;
    println!("the pod's record: audit {audit:?}");

    // Two replicas -> two pods on two addresses, both routable.
    let mut config = registry
        .get_server("k8s_api")
        .await
        .expect("get")
        .expect("exists");
    config.replicas = Some(2);
    registry
        .upsert_server("k8s_api", config.clone())
        .await
        .expect("replicas");
    let two = wait_records(&registry, "k8s_api", "two running pod records", |r| {
        r.len() == 2
    })
    .await;
    assert_ne!(two[0].0, two[1].0);
    assert_eq!(fake.pod_count(&name), 2);

    // A crashed pod: its record goes while it is not Ready, and the "kubelet"'s restart
    // comes back as a record with restarts = 1.
    let victim = {
        let all = fake.deployments.lock().expect("test value");
        all[&name].pods[0].child.pid()
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let after = wait_records(&registry, "k8s_api", "the restarted pod back", |r| {
        r.len() == 2 && r.iter().any(|(_, restarts)| *restarts == 1)
    })
    .await;
    println!("after a pod crash: {after:?}");
    let (status, body) = call(&client, &hub, "k8s_api").await;
    assert_eq!(status, 200, "{body}");

    // Deactivated -> the Deployment is deleted and the records go.
    config.active = false;
    registry
        .upsert_server("k8s_api", config)
        .await
        .expect("deactivate");
    mcp_testkit::wait_until_async("records removed", Duration::from_secs(20), || async {
        registry
            .get_runtime("k8s_api")
            .await
            .ok()
            .filter(|r| r.workers.is_empty())
    })
    .await;
    assert_eq!(fake.pod_count(&name), 0);
    assert!(!fake
        .deployments
        .lock()
        .expect("test value")
        .contains_key(&name));
    assert_eq!(
        fake.pod_count(&other_name),
        1,
        "another hub's Deployment is never ours"
    );

    cancel.cancel();
    backend.await.expect("backend loop");
}

/// A change of a server's registration (a new tool, a new timeout, a new base path)
/// reaches its running pod without a rollout: the Deployment's pod template names only
/// the server, the hub and the image, and the worker reloads its server and tools from
/// Redis on the registry's events, so the same process serves the new tool.
#[tokio::test]
async fn a_registration_change_reaches_the_running_pod_without_a_rollout() {
    let (hub, registry) = hub_with_text_server("k8s_cfg").await;
    let port = mcp_testkit::free_port();
    let settings = settings(&hub, port);
    let fake = Arc::new(FakeCluster::new(port));
    let cancel = CancellationToken::new();
    let backend = tokio::spawn(kubernetes::run(
        registry.clone(),
        fake.clone(),
        settings.clone(),
        loop_options("sup-k8s", 64, Duration::ZERO),
        cancel.clone(),
    ));
    let name = kubernetes::deployment_name(&settings, "k8s_cfg");
    let before = wait_records(&registry, "k8s_cfg", "one running pod record", |r| {
        r.len() == 1
    })
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    mcp_testkit::wait_until_async(
        "a call through the gateway to the pod",
        Duration::from_secs(20),
        || async {
            let (status, body) = call(&client, &hub, "k8s_cfg").await;
            (status == 200 && body.contains("tool_call.completed")).then_some(())
        },
    )
    .await;
    let pod = |fake: &FakeCluster| {
        let all = fake.deployments.lock().expect("test value");
        let d = &all[&name];
        (
            d.template.clone(),
            d.pods[0].name.clone(),
            d.pods[0].child.pid(),
        )
    };
    let (template, pod_name, pid) = pod(&fake);
    assert!(template.is_object(), "{template}");

    // The registration changes: a longer timeout, and a new tool.
    let mut config = registry
        .get_server("k8s_cfg")
        .await
        .expect("get")
        .expect("exists");
    config.timeout_ms = Some(15_000);
    registry
        .upsert_server("k8s_cfg", config)
        .await
        .expect("the new timeout");
    registry
        .upsert_tool(
            "k8s_cfg",
            serde_json::from_value(
                json!({"name": "echo_query", "method": "GET", "pathTemplate": "/test/text", "paramMapping": {"query": {"q": "q"}}}),
            )
            .expect("tool"),
        )
        .await
        .expect("the new tool");
    let body = mcp_testkit::wait_until_async(
        "the new tool served by the pod",
        Duration::from_secs(20),
        || async {
            let response = client
                .post(format!("{}/mcp/k8s_cfg/echo_query", hub.gateway_url))
                .json(&json!({"args": {"q": "x"}}))
                .send()
                .await
                .ok()?;
            let status = response.status().as_u16();
            let body = response.text().await.ok()?;
            (status == 200 && body.contains("tool_call.completed")).then_some(body)
        },
    )
    .await;
    assert!(body.contains("tool_call.completed"), "{body}");

    // After a reconcile that has seen the change (the record's heartbeat, written by the
    // loop's probe, is newer than the new tool): the same template, the same pod and
    // process, the same record.
    let served_at = mcp_core::runtime::unix_millis();
    mcp_testkit::wait_until_async(
        "a reconcile after the change",
        Duration::from_secs(10),
        || async {
            let runtime = registry.get_runtime("k8s_cfg").await.ok()?;
            runtime
                .workers
                .first()?
                .last_heartbeat
                .filter(|at| *at > served_at)
        },
    )
    .await;
    let (template_after, pod_after, pid_after) = pod(&fake);
    assert_eq!(template_after, template, "the pod template changed");
    assert_eq!(
        (pod_after, pid_after),
        (pod_name, pid),
        "the pod was replaced"
    );
    let after = wait_records(&registry, "k8s_cfg", "the pod's record", |r| r.len() == 1).await;
    assert_eq!(after, before);

    cancel.cancel();
    backend.await.expect("backend loop");
}

/// `MCP_WORKER_MAX=3` over servers wanting 2 + 1 + 1 pods: one each, in id order, the
/// second replica of `cap_a` `pending` with the process backend's reason; a stored
/// `stopped` record (left by a process backend) becomes `running` (through
/// `starting`); once `cap_c` is deleted, `cap_a` gets its second pod and its pending
/// record goes.
#[tokio::test]
async fn worker_max_caps_the_pods_of_all_servers_and_the_rest_wait_pending() {
    let redis = mcp_testkit::RedisServer::start();
    let prefix = mcp_testkit::unique_prefix();
    let registry =
        RedisRegistry::new(&redis.url(), Keys::new(&prefix), Default::default()).expect("registry");
    for (id, replicas) in [("cap_a", 2), ("cap_b", 1), ("cap_c", 1)] {
        let server = serde_json::from_value(
            json!({ "baseUrl": "http://127.0.0.1:9", "replicas": replicas }),
        )
        .expect("server");
        registry.upsert_server(id, server).await.expect("server");
    }
    // What a process backend leaves when it stops a worker.
    let stopped = mcp_core::runtime::WorkerRecord::new(0, WorkerStatus::Stopped, "sup-process");
    registry
        .put_worker_record("cap_b", &stopped)
        .await
        .expect("stopped record");

    let port = mcp_testkit::free_port();
    let settings = settings_for(&redis.url(), &prefix, port);
    let fake = Arc::new(FakeCluster::new(port));
    // cap_b's pod is Ready before the first reconcile, so that reconcile writes
    // `running` over the stored `stopped` (which the state machine allows only through
    // `starting`; refused, the record would stay `stopped`).
    let b_name = kubernetes::deployment_name(&settings, "cap_b");
    fake.apply(
        &b_name,
        &kubernetes::desired_deployment(&settings, "cap_b", 1),
    )
    .await
    .expect("cap_b's Deployment");
    let b_health = {
        let all = fake.deployments.lock().expect("test value");
        format!("http://{}:{port}/healthz", all[&b_name].pods[0].ip)
    };
    mcp_testkit::wait_until_async("cap_b's pod answers", Duration::from_secs(20), || async {
        fake.http
            .get(&b_health)
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    let cancel = CancellationToken::new();
    let backend = tokio::spawn(kubernetes::run(
        registry.clone(),
        fake.clone(),
        settings.clone(),
        loop_options("sup-k8s", 3, Duration::ZERO),
        cancel.clone(),
    ));
    let reason = "MCP_WORKER_MAX=3 reached on supervisor sup-k8s".to_owned();
    let a = wait_statuses(&registry, "cap_a", "cap_a: one running, one pending", |r| {
        r.len() == 2 && r[0].1 == WorkerStatus::Running && r[1].1 == WorkerStatus::Pending
    })
    .await;
    assert_eq!(a[1], (1, WorkerStatus::Pending, reason));
    for id in ["cap_b", "cap_c"] {
        wait_statuses(&registry, id, "one running record", |r| {
            r.len() == 1 && r[0].1 == WorkerStatus::Running
        })
        .await;
    }
    let name = |id: &str| kubernetes::deployment_name(&settings, id);
    let pods: Vec<usize> = ["cap_a", "cap_b", "cap_c"]
        .iter()
        .map(|id| fake.pod_count(&name(id)))
        .collect();
    assert_eq!(pods, [1, 1, 1], "3 pods in all");
    let b = registry.get_runtime("cap_b").await.expect("runtime");
    assert_eq!(b.workers[0].supervisor_id.as_deref(), Some("sup-k8s"));

    // Room again: cap_a's second replica gets a pod, and its pending record goes.
    registry.delete_server("cap_c").await.expect("delete");
    wait_statuses(&registry, "cap_a", "cap_a: two running", |r| {
        r.len() == 2 && r.iter().all(|w| w.1 == WorkerStatus::Running)
    })
    .await;
    assert_eq!(fake.pod_count(&name("cap_a")), 2);
    mcp_testkit::wait_until_async("cap_c's pods gone", Duration::from_secs(10), || async {
        (fake.pod_count(&name("cap_c")) == 0).then_some(())
    })
    .await;

    cancel.cancel();
    backend.await.expect("backend loop");
}

/// One supervisor's view of the shared fake cluster: every apply is recorded under its
/// name, so a test can tell which supervisors applied a Deployment.
struct Seen {
    cluster: Arc<FakeCluster>,
    supervisor_id: String,
    /// Deployment name -> the supervisors that applied it.
    applied: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
}

#[async_trait]
impl Cluster for Seen {
    async fn apply(&self, name: &str, deployment: &Value) -> anyhow::Result<()> {
        self.applied
            .lock()
            .expect("test value")
            .entry(name.to_owned())
            .or_default()
            .insert(self.supervisor_id.clone());
        self.cluster.apply(name, deployment).await
    }

    async fn delete(&self, name: &str) -> anyhow::Result<()> {
        self.cluster.delete(name).await
    }

    async fn deployments(&self, selector: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
        self.cluster.deployments(selector).await
    }

    async fn pods(&self, selector: &str) -> anyhow::Result<Vec<Pod>> {
        self.cluster.pods(selector).await
    }
}

/// Two supervisors with the Kubernetes backend on one registry and one cluster: each
/// server's Deployment is applied by one of them only (the one holding its lease, which
/// its records name). `sup-a` (`MCP_WORKER_MAX=2`) takes two of the four servers and
/// marks the others `pending`, `sup-b` (4) takes those; when `sup-a` dies (its loop
/// aborted: no clean shutdown, no lease released), `sup-b` takes its servers over once
/// the lease expires, without a second pod: the pods `sup-a` applied keep serving.
#[tokio::test]
async fn two_supervisors_on_one_cluster_apply_each_server_once_and_take_over() {
    let redis = mcp_testkit::RedisServer::start();
    let prefix = mcp_testkit::unique_prefix();
    let registry =
        RedisRegistry::new(&redis.url(), Keys::new(&prefix), Default::default()).expect("registry");
    let ids = ["lease_a", "lease_b", "lease_c", "lease_d"];
    for id in ids {
        let server =
            serde_json::from_value(json!({ "baseUrl": "http://127.0.0.1:9" })).expect("server");
        registry.upsert_server(id, server).await.expect("server");
    }
    let port = mcp_testkit::free_port();
    let settings = settings_for(&redis.url(), &prefix, port);
    let fake = Arc::new(FakeCluster::new(port));
    let applied: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
    let start = |supervisor_id: &str, worker_max: usize, cancel: &CancellationToken| {
        let seen = Seen {
            cluster: fake.clone(),
            supervisor_id: supervisor_id.to_owned(),
            applied: applied.clone(),
        };
        tokio::spawn(kubernetes::run(
            registry.clone(),
            Arc::new(seen),
            settings.clone(),
            loop_options(supervisor_id, worker_max, Duration::ZERO),
            cancel.clone(),
        ))
    };
    let (cancel_a, cancel_b) = (CancellationToken::new(), CancellationToken::new());
    let loop_a = start("sup-a", 2, &cancel_a);
    let held_by = |holder: &'static str| {
        let registry = registry.clone();
        async move {
            let mut held = Vec::new();
            for id in ids {
                if registry.lease_holder(id).await.ok().flatten().as_deref() == Some(holder) {
                    held.push(id);
                }
            }
            held
        }
    };
    let a_first = mcp_testkit::wait_until_async(
        "sup-a holds two leases",
        Duration::from_secs(20),
        || async { Some(held_by("sup-a").await).filter(|held| held.len() == 2) },
    )
    .await;
    let full = "MCP_WORKER_MAX=2 reached on supervisor sup-a";
    for id in ids.iter().filter(|id| !a_first.contains(id)) {
        wait_statuses(&registry, id, "pending on sup-a", |r| {
            r.len() == 1 && r[0].1 == WorkerStatus::Pending && r[0].2 == full
        })
        .await;
    }
    let loop_b = start("sup-b", 4, &cancel_b);

    for id in ids {
        wait_statuses(&registry, id, "one running record", |r| {
            r.len() == 1 && r[0].1 == WorkerStatus::Running
        })
        .await;
    }
    let name = |id: &str| kubernetes::deployment_name(&settings, id);
    let mut owners = BTreeMap::new();
    for id in ids {
        let holder = registry
            .lease_holder(id)
            .await
            .expect("lease")
            .expect("held");
        let runtime = registry.get_runtime(id).await.expect("runtime");
        assert_eq!(
            runtime.workers[0].supervisor_id.as_deref(),
            Some(holder.as_str())
        );
        let appliers = applied.lock().expect("test value")[&name(id)].clone();
        assert_eq!(
            appliers,
            BTreeSet::from([holder.clone()]),
            "{id}: applied by its lease holder only"
        );
        assert_eq!(fake.pod_count(&name(id)), 1);
        owners.insert(id, holder);
    }
    println!("owners: {owners:?}");
    let b_first = held_by("sup-b").await;
    assert_eq!(a_first.len() + b_first.len(), 4, "{owners:?}");
    assert_eq!(a_first, held_by("sup-a").await, "sup-a kept its two");
    let pids = |id: &str| -> Vec<u32> {
        let all = fake.deployments.lock().expect("test value");
        all[&name(id)].pods.iter().map(|p| p.child.pid()).collect()
    };
    let before: BTreeMap<&str, Vec<u32>> = ids.iter().map(|id| (*id, pids(id))).collect();

    // sup-a dies: after its leases expire, sup-b owns everything.
    loop_a.abort();
    let _ = loop_a.await;
    cancel_a.cancel(); // its heartbeat task, which the abort left running
    for id in ids {
        mcp_testkit::wait_until_async("sup-b holds the lease", Duration::from_secs(20), || async {
            let holder = registry.lease_holder(id).await.ok().flatten()?;
            let runtime = registry.get_runtime(id).await.ok()?;
            (holder == "sup-b"
                && runtime.workers.len() == 1
                && runtime.workers[0].status == WorkerStatus::Running
                && runtime.workers[0].supervisor_id.as_deref() == Some("sup-b"))
            .then_some(())
        })
        .await;
        assert_eq!(fake.pod_count(&name(id)), 1, "{id}: still one pod");
        assert_eq!(pids(id), before[id], "{id}: the same pod keeps serving");
        assert!(applied.lock().expect("test value")[&name(id)].contains("sup-b"));
    }
    cancel_b.cancel();
    loop_b.await.expect("loop b");
}

/// A supervisor that stops cleanly (SIGTERM cancels its root token, as here) gives its
/// leases up: the standby applies the same Deployments and owns the servers at its next
/// reconcile, long before the lease TTL (60 s here), and the pods keep serving.
#[tokio::test]
async fn a_supervisor_that_stops_cleanly_hands_its_servers_over_long_before_the_lease_ttl() {
    let redis = mcp_testkit::RedisServer::start();
    let prefix = mcp_testkit::unique_prefix();
    let registry =
        RedisRegistry::new(&redis.url(), Keys::new(&prefix), Default::default()).expect("registry");
    let ids = ["stop_a", "stop_b"];
    for id in ids {
        let server =
            serde_json::from_value(json!({ "baseUrl": "http://127.0.0.1:9" })).expect("server");
        registry.upsert_server(id, server).await.expect("server");
    }
    let port = mcp_testkit::free_port();
    let settings = settings_for(&redis.url(), &prefix, port);
    let fake = Arc::new(FakeCluster::new(port));
    let start = |supervisor_id: &str, cancel: &CancellationToken| {
        let options = Options {
            lease_ttl: Duration::from_secs(60),
            ..loop_options(supervisor_id, 64, Duration::ZERO)
        };
        tokio::spawn(kubernetes::run(
            registry.clone(),
            fake.clone(),
            settings.clone(),
            options,
            cancel.clone(),
        ))
    };
    let holder = |id: &'static str| {
        let registry = registry.clone();
        async move { registry.lease_holder(id).await.ok().flatten() }
    };
    let (cancel_a, cancel_b) = (CancellationToken::new(), CancellationToken::new());
    let loop_a = start("sup-a", &cancel_a);
    for id in ids {
        wait_statuses(&registry, id, "running on sup-a", |r| {
            r.len() == 1 && r[0].1 == WorkerStatus::Running
        })
        .await;
        assert_eq!(holder(id).await.as_deref(), Some("sup-a"));
    }
    let loop_b = start("sup-b", &cancel_b);
    let name = |id: &str| kubernetes::deployment_name(&settings, id);
    let pids = |id: &str| -> Vec<u32> {
        let all = fake.deployments.lock().expect("test value");
        all[&name(id)].pods.iter().map(|p| p.child.pid()).collect()
    };
    let before: BTreeMap<&str, Vec<u32>> = ids.iter().map(|id| (*id, pids(id))).collect();

    let stopped_at = std::time::Instant::now();
    cancel_a.cancel();
    loop_a.await.expect("loop a");
    for id in ids {
        // Free, or sup-b's already (its reconcile may run between the two).
        assert_ne!(
            holder(id).await.as_deref(),
            Some("sup-a"),
            "{id}: released when sup-a stopped"
        );
    }
    for id in ids {
        mcp_testkit::wait_until_async("sup-b owns it", Duration::from_secs(20), || async {
            let runtime = registry.get_runtime(id).await.ok()?;
            (holder(id).await.as_deref() == Some("sup-b")
                && runtime.workers.len() == 1
                && runtime.workers[0].status == WorkerStatus::Running
                && runtime.workers[0].supervisor_id.as_deref() == Some("sup-b"))
            .then_some(())
        })
        .await;
    }
    let took = stopped_at.elapsed();
    println!("sup-b owns both servers {took:?} after sup-a stopped (lease TTL 60 s)");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    for id in ids {
        assert_eq!(pids(id), before[id], "{id}: the same pod keeps serving");
    }
    cancel_b.cancel();
    loop_b.await.expect("loop b");
}

/// `MCP_WORKER_IDLE_TTL` on Kubernetes: a server whose pod served no call for the TTL is
/// scaled to 0 and its record says `idle`; the next call through the gateway wakes it
/// (`server.wake`), gets a new pod and is answered.
#[tokio::test]
async fn an_idle_server_is_scaled_to_zero_and_the_next_call_wakes_it() {
    let (hub, registry) = hub_with_text_server("idle_api").await;
    let port = mcp_testkit::free_port();
    let settings = settings(&hub, port);
    let fake = Arc::new(FakeCluster::new(port));
    let cancel = CancellationToken::new();
    let ttl = Duration::from_secs(2);
    let backend = tokio::spawn(kubernetes::run(
        registry.clone(),
        fake.clone(),
        settings.clone(),
        loop_options("sup-k8s", 64, ttl),
        cancel.clone(),
    ));
    let name = kubernetes::deployment_name(&settings, "idle_api");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    wait_records(&registry, "idle_api", "one running pod record", |r| {
        r.len() == 1
    })
    .await;
    let (status, body) = call(&client, &hub, "idle_api").await;
    assert_eq!(status, 200, "{body}");

    // No call for the TTL: scaled to 0, the record says idle.
    let idle = wait_statuses(&registry, "idle_api", "the record idle", |r| {
        r.len() == 1 && r[0].1 == WorkerStatus::Idle
    })
    .await;
    println!("after {ttl:?} without a call: {idle:?}");
    assert_eq!(fake.pod_count(&name), 0, "scaled to 0");
    assert!(
        fake.deployments
            .lock()
            .expect("test value")
            .contains_key(&name),
        "the Deployment stays, with 0 replicas"
    );

    // The next call wakes it through the gateway and is answered by a new pod.
    let woken_at = std::time::Instant::now();
    let (status, body) = call(&client, &hub, "idle_api").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tool_call.completed"), "{body}");
    println!(
        "call to the idle server answered in {:?}",
        woken_at.elapsed()
    );
    let serial = fake.deployments.lock().expect("test value")[&name].serial;
    assert_eq!(serial, 2, "a second pod was started for the wake");

    cancel.cancel();
    backend.await.expect("backend loop");
}

/// Against a real cluster, when `MCP_TEST_KUBECONFIG` names a kubeconfig: applies the
/// Deployment of a throwaway server id, reads it back by the hub's labels, deletes it.
/// Pods are not awaited (the image may not be pullable there).
#[tokio::test]
async fn real_cluster_apply_list_delete_when_configured() {
    let Ok(path) = std::env::var("MCP_TEST_KUBECONFIG") else {
        println!("skipped: set MCP_TEST_KUBECONFIG to a kubeconfig to run against a real cluster");
        return;
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let namespace = std::env::var("MCP_TEST_K8S_NAMESPACE").unwrap_or_else(|_| "default".into());
    let client = kube::Client::try_from(config).expect("client");
    let cluster = kubernetes::KubeCluster::new(client, &namespace);
    let settings = KubeSettings {
        namespace: namespace.clone(),
        image: "mcp-hub:latest".into(),
        image_pull_policy: "IfNotPresent".into(),
        service_account: None,
        worker_port: 9100,
        cpu_request: None,
        memory_request: None,
        cpu_limit: None,
        memory_limit: None,
        redis_url: "redis://127.0.0.1:6379".into(),
        key_prefix: mcp_testkit::unique_prefix(),
        worker_env: Default::default(),
    };
    let name = kubernetes::deployment_name(&settings, "real_cluster_test");
    cluster
        .apply(
            &name,
            &kubernetes::desired_deployment(&settings, "real_cluster_test", 0),
        )
        .await
        .expect("apply");
    let listed = cluster
        .deployments(&kubernetes::selector(&settings))
        .await
        .expect("list");
    assert_eq!(
        listed,
        vec![(name.clone(), Some("real_cluster_test".to_owned()))]
    );
    cluster.delete(&name).await.expect("delete");
}
