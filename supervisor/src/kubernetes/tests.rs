//! The pure parts (desired Deployment, worker records from pods) and the client calls
//! of [`KubeCluster`] over tower-test's mock service.

use super::*;

fn settings() -> KubeSettings {
    KubeSettings {
        namespace: "hub".into(),
        image: "registry.local/mcp-hub:1".into(),
        image_pull_policy: "IfNotPresent".into(),
        service_account: Some("mcp-worker".into()),
        worker_port: 9100,
        cpu_request: Some("50m".into()),
        memory_request: Some("32Mi".into()),
        cpu_limit: None,
        memory_limit: Some("128Mi".into()),
        redis_url: "redis://redis:6379".into(),
        key_prefix: "mcp:".into(),
        worker_env: WorkerEnv::default(),
    }
}

#[test]
fn desired_deployment_names_the_server_and_probes_healthz() {
    let s = settings();
    let d = desired_deployment(&s, "Weather_API", 3);
    assert_eq!(d["kind"], "Deployment");
    assert_eq!(d["metadata"]["namespace"], "hub");
    let name = d["metadata"]["name"].as_str().expect("test value");
    assert!(name.starts_with("mcp-worker-weather-api-"), "{name}");
    assert!(
        name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    );
    assert_eq!(
        d["metadata"]["annotations"][SERVER_ANNOTATION],
        "Weather_API"
    );
    assert_eq!(d["metadata"]["labels"][SERVER_LABEL], "Weather_API");
    assert_eq!(d["metadata"]["labels"][MANAGED_BY], FIELD_MANAGER);
    assert_eq!(d["metadata"]["labels"][REGISTRY_LABEL], registry_label(&s));
    assert_eq!(d["spec"]["replicas"], 3);
    // The selector's labels are on the pod template.
    for (key, value) in d["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("test value")
    {
        assert_eq!(&d["spec"]["template"]["metadata"]["labels"][key], value);
    }
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "mcp-worker");
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "registry.local/mcp-hub:1");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz");
        assert_eq!(c[probe]["httpGet"]["port"], 9100);
    }
    assert_eq!(c["resources"]["requests"]["cpu"], "50m");
    assert_eq!(c["resources"]["limits"]["memory"], "128Mi");
    assert!(c["resources"]["limits"].get("cpu").is_none());
    let env: BTreeMap<&str, &str> = c["env"]
        .as_array()
        .expect("test value")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("test value"),
                e["value"].as_str().expect("test value"),
            )
        })
        .collect();
    assert_eq!(env["MCP_WORKER_SERVER"], "Weather_API");
    assert_eq!(env["MCP_WORKER_LISTEN"], "0.0.0.0:9100");
    assert_eq!(env["REDIS_URL"], "redis://redis:6379");
    assert_eq!(env["MCP_KEY_PREFIX"], "mcp:");
    // A pod must not exit when the supervisor is gone.
    assert_eq!(env["MCP_WORKER_ORPHAN_TIMEOUT_SECS"], "0");
    assert!(!env.contains_key("MCP_WORKER_SUPERVISOR_ID"));
    // It parses as the typed Deployment the client sends.
    let typed: Deployment = serde_json::from_value(d).expect("test value");
    assert_eq!(typed.spec.expect("test value").replicas, Some(3));
}

#[test]
fn extra_worker_env_follows_the_hubs_own_and_secrets_become_env_from() {
    // Without any: the hub's variables alone, in HUB_WORKER_ENV's order, and no envFrom.
    let d = desired_deployment(&settings(), "s1", 1);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let names = |c: &Value| -> Vec<String> {
        c["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| e["name"].as_str().expect("name").to_owned())
            .collect()
    };
    assert_eq!(names(c), HUB_WORKER_ENV);
    assert!(c.get("envFrom").is_none(), "{c}");

    let mut s = settings();
    s.worker_env = WorkerEnv {
        vars: worker_env::parse_vars(
            r#"[{"name":"HTTPS_PROXY","value":"http://proxy:3128"},
                {"name":"X","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}},
                {"name":"NO_PROXY","value":"$(REDIS_URL)"}]"#,
        )
        .expect("valid"),
        from_secrets: worker_env::parse_secrets("proxy-creds,api-keys").expect("valid"),
    };
    let d = desired_deployment(&s, "s1", 2);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let mut expected: Vec<&str> = HUB_WORKER_ENV.to_vec();
    expected.extend(["HTTPS_PROXY", "X", "NO_PROXY"]);
    assert_eq!(names(c), expected);
    let env = c["env"].as_array().expect("env");
    // The hub's values are unchanged; the extra entries are as given, JSON for JSON.
    assert_eq!(
        env[2],
        json!({ "name": "REDIS_URL", "value": "redis://redis:6379" })
    );
    assert_eq!(
        env[6],
        json!({ "name": "HTTPS_PROXY", "value": "http://proxy:3128" })
    );
    assert_eq!(
        env[7],
        json!({ "name": "X", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } } })
    );
    assert_eq!(
        c["envFrom"],
        json!([
            { "secretRef": { "name": "proxy-creds" } },
            { "secretRef": { "name": "api-keys" } },
        ])
    );
    // Still the typed Deployment the client sends, with the same env.
    let typed: Deployment = serde_json::from_value(d.clone()).expect("typed");
    let pod = typed.spec.expect("spec").template.spec.expect("pod spec");
    let container = &pod.containers[0];
    assert_eq!(container.env.as_ref().map(Vec::len), Some(9));
    assert_eq!(
        container.env.as_ref().expect("env")[6..],
        s.worker_env.vars[..]
    );
    let from: Vec<&str> = container
        .env_from
        .iter()
        .flatten()
        .map(|f| f.secret_ref.as_ref().expect("secretRef").name.as_str())
        .collect();
    assert_eq!(from, ["proxy-creds", "api-keys"]);
    // The extra env changes the pods, not the names or the selector.
    let plain = desired_deployment(&settings(), "s1", 2);
    assert_eq!(d["metadata"], plain["metadata"]);
    assert_eq!(d["spec"]["selector"], plain["spec"]["selector"]);
}

#[test]
fn names_and_labels_stay_valid_and_distinct() {
    let s = settings();
    // Server ids differing in case only get different Deployments.
    assert_ne!(deployment_name(&s, "abc"), deployment_name(&s, "ABC"));
    for id in ["-x", "_", "a".repeat(64).as_str(), "x-"] {
        let label = label_value(id);
        assert!(label.len() <= 63, "{label}");
        assert!(label.as_bytes()[0].is_ascii_alphanumeric(), "{label}");
        assert!(
            label.as_bytes()[label.len() - 1].is_ascii_alphanumeric(),
            "{label}"
        );
        let name = deployment_name(&s, id);
        assert!(name.len() <= 63 && !name.ends_with('-'), "{name}");
    }
    assert_ne!(label_value("-x"), label_value("_x"));
    let mut other = settings();
    other.key_prefix = "other:".into();
    assert_ne!(registry_label(&s), registry_label(&other));
}

fn pod(name: &str, server: &str, ip: Option<&str>, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "annotations": { SERVER_ANNOTATION: server } },
        "status": {
            "podIP": ip,
            "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
            "containerStatuses": [{ "name": "worker", "ready": ready, "restartCount": 2, "image": "i", "imageID": "" }],
        },
    }))
    .expect("test value")
}

#[test]
fn ready_pods_become_running_records_and_the_rest_do_not() {
    let mut deleting = pod("a-3", "a", Some("10.0.0.3"), true);
    deleting.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).expect("test value"));
    let pods = vec![
        pod("a-2", "a", Some("10.0.0.2"), true),
        pod("a-1", "a", Some("10.0.0.1"), true),
        pod("a-4", "a", Some("10.0.0.4"), false),
        pod("a-5", "a", None, true),
        deleting,
        pod("b-1", "b", Some("10.0.1.1"), true),
    ];
    let records = worker_records(&pods, 9100, "sup", 42);
    let a = &records["a"];
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0].replica_idx, a[0].host.as_deref()),
        (0, Some("10.0.0.1"))
    );
    assert_eq!(
        (a[1].replica_idx, a[1].host.as_deref()),
        (1, Some("10.0.0.2"))
    );
    assert!(a.iter().all(|r| r.status == WorkerStatus::Running
        && r.port == Some(9100)
        && r.pid.is_none()
        && r.restarts == 2
        && r.last_heartbeat == Some(42)
        && r.supervisor_id.as_deref() == Some("sup")));
    assert_eq!(records["b"].len(), 1);
    assert!(worker_records(&pods[2..4], 9100, "sup", 42).is_empty());
}

fn wants(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(id, n)| ((*id).to_owned(), *n)).collect()
}

/// (wanted per server, MCP_WORKER_MAX, granted per server in id order)
type CapCase<'a> = (&'a [(&'a str, u32)], usize, &'a [u32]);

#[test]
fn worker_max_caps_the_replicas_of_all_servers_one_per_server_per_round_in_id_order() {
    let cases: &[CapCase] = &[
        // Fits: everyone gets what they want.
        (&[("a", 3), ("b", 1), ("c", 1)], 5, &[3, 1, 1]),
        (&[("a", 3), ("b", 1), ("c", 1)], 64, &[3, 1, 1]),
        // Short: one each before anyone gets a second.
        (&[("a", 3), ("b", 1), ("c", 1)], 3, &[1, 1, 1]),
        (&[("a", 3), ("b", 1), ("c", 1)], 4, &[2, 1, 1]),
        (&[("a", 3), ("b", 3)], 5, &[3, 2]),
        (&[("a", 2), ("b", 2), ("c", 2)], 4, &[2, 1, 1]),
        // More servers than room: the last in id order get none.
        (&[("a", 1), ("b", 1), ("c", 1)], 2, &[1, 1, 0]),
        (&[("a", 2), ("b", 2), ("c", 2)], 1, &[1, 0, 0]),
        // Byte order of ids: "B" sorts before "a".
        (&[("a", 1), ("B", 1)], 1, &[1, 0]),
        // A server that wants none takes no room.
        (&[("a", 0), ("b", 2)], 1, &[0, 1]),
        (&[], 3, &[]),
    ];
    for (wanted, max, granted) in cases {
        let desired = wants(wanted);
        let grants = cap_replicas(&desired, *max);
        let got: Vec<u32> = grants.values().map(|g| g.granted).collect();
        assert_eq!(&got, granted, "{wanted:?} under {max}");
        assert!(grants
            .iter()
            .all(|(id, g)| g.wanted == desired[id] && g.granted <= g.wanted));
        let total: u32 = got.iter().sum();
        let asked: u32 = desired.values().sum();
        assert_eq!(
            total as usize,
            (*max).min(asked as usize),
            "{wanted:?} under {max}"
        );
        // The same input gives the same output.
        assert_eq!(grants, cap_replicas(&desired, *max));
    }
}

fn running(idx: u32) -> WorkerRecord {
    WorkerRecord::new(idx, WorkerStatus::Running, "sup")
}

#[test]
fn replicas_left_out_by_worker_max_get_pending_records_after_the_pods() {
    let grant = |wanted, granted| Grant { wanted, granted };
    // (running records, grant, statuses by replica index)
    type Case<'a> = (u32, Grant, &'a [(u32, WorkerStatus)]);
    use WorkerStatus::{Pending as P, Running as R, Starting as S};
    let cases: &[Case] = &[
        // Everything granted: the pods, and `starting` for a pod not Ready yet.
        (2, grant(2, 2), &[(0, R), (1, R)]),
        (1, grant(2, 2), &[(0, R), (1, S)]),
        // One left out: pending after the granted ones, also while a pod is not ready.
        (2, grant(3, 2), &[(0, R), (1, R), (2, P)]),
        (1, grant(3, 2), &[(0, R), (1, S), (2, P)]),
        // None granted: all pending.
        (0, grant(2, 0), &[(0, P), (1, P)]),
        // A pod still Ready after a lower grant keeps its number; pending ones follow.
        (3, grant(3, 2), &[(0, R), (1, R), (2, R)]),
    ];
    for (pods, grant, expected) in cases {
        let mut by_server = BTreeMap::new();
        if *pods > 0 {
            by_server.insert("s".to_owned(), (0..*pods).map(running).collect());
        }
        let grants = BTreeMap::from([("s".to_owned(), *grant)]);
        let records = desired_records(by_server, &grants, "sup", "MCP_WORKER_MAX=2 reached");
        let got: Vec<(u32, WorkerStatus)> = records
            .get("s")
            .into_iter()
            .flatten()
            .map(|r| (r.replica_idx, r.status))
            .collect();
        assert_eq!(&got, expected, "{pods} pods, {grant:?}");
        for r in records.get("s").into_iter().flatten() {
            let pending = r.status == WorkerStatus::Pending;
            assert_eq!(
                r.reason.as_deref() == Some("MCP_WORKER_MAX=2 reached"),
                pending
            );
            assert_eq!(r.supervisor_id.as_deref(), Some("sup"));
        }
    }
    // Servers without a grant (deleted, inactive) keep their pods' records as they are.
    let only_pods = BTreeMap::from([("gone".to_owned(), vec![running(0)])]);
    let records = desired_records(only_pods.clone(), &BTreeMap::new(), "sup", "r");
    assert_eq!(records, only_pods);
    assert_eq!(
        pending_reason(3, "sup-1"),
        "MCP_WORKER_MAX=3 reached on supervisor sup-1"
    );
}

#[test]
fn every_record_write_follows_the_state_machine_from_the_stored_status() {
    use WorkerStatus::*;
    let cases: &[(Option<WorkerStatus>, WorkerStatus, &[WorkerStatus])] = &[
        // No record, or a move the state machine allows: written as it is.
        (None, Running, &[Running]),
        (None, Pending, &[Pending]),
        (Some(Running), Running, &[Running]),
        (Some(Starting), Running, &[Running]),
        (Some(Unhealthy), Running, &[Running]),
        (Some(Stopped), Pending, &[Pending]),
        // A pending replica whose pod is Ready, a process backend's stopped or idle one.
        (Some(Pending), Running, &[Starting, Running]),
        (Some(Stopped), Running, &[Starting, Running]),
        (Some(Idle), Running, &[Starting, Running]),
        (Some(Failed), Running, &[Starting, Running]),
        (Some(Restarting), Running, &[Starting, Running]),
        (Some(Stopping), Running, &[Stopped, Starting, Running]),
        // A running replica that MCP_WORKER_MAX now leaves out.
        (Some(Running), Pending, &[Stopping, Stopped, Pending]),
        (Some(Starting), Pending, &[Stopping, Stopped, Pending]),
    ];
    for (stored, to, expected) in cases {
        let path = status_path(*stored, *to).expect("a path");
        assert_eq!(&path, expected, "{stored:?} -> {to:?}");
        let mut from = *stored;
        for step in path {
            assert!(
                crate::status::check_replace(from, step).is_ok(),
                "{stored:?} -> {to:?}: {from:?} -> {step:?}"
            );
            from = Some(step);
        }
    }
    // Every status reaches running and pending.
    const ALL: [WorkerStatus; 9] = [
        Pending, Starting, Running, Unhealthy, Restarting, Stopping, Stopped, Failed, Idle,
    ];
    for from in ALL {
        for to in [Running, Pending] {
            assert_eq!(
                status_path(Some(from), to).and_then(|p| p.last().copied()),
                Some(to)
            );
        }
    }
}

type Mock =
    tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;

fn mock_cluster() -> (KubeCluster, Mock) {
    let (service, handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    (
        KubeCluster::new(kube::Client::new(service, "hub"), "hub"),
        handle,
    )
}

fn respond(
    send: tower_test::mock::SendResponse<http::Response<kube::client::Body>>,
    status: u16,
    body: Value,
) {
    send.send_response(
        http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(
                serde_json::to_vec(&body).expect("test value"),
            ))
            .expect("test value"),
    );
}

#[tokio::test]
async fn apply_is_a_forced_server_side_apply_patch() {
    let (cluster, mut handle) = mock_cluster();
    let desired = desired_deployment(&settings(), "weather", 2);
    let name = deployment_name(&settings(), "weather");
    let server = tokio::spawn({
        let desired = desired.clone();
        let name = name.clone();
        async move {
            let (request, send) = handle.next_request().await.expect("a request");
            assert_eq!(request.method(), http::Method::PATCH);
            assert_eq!(
                request.uri().path(),
                format!("/apis/apps/v1/namespaces/hub/deployments/{name}")
            );
            let query = request.uri().query().unwrap_or("").to_owned();
            assert!(query.contains("fieldManager=mcp-supervisor"), "{query}");
            assert!(query.contains("force=true"), "{query}");
            assert_eq!(
                request.headers()["content-type"],
                "application/apply-patch+yaml"
            );
            let body = request
                .into_body()
                .collect_bytes()
                .await
                .expect("test value");
            let sent: Value = serde_json::from_slice(&body).expect("test value");
            assert_eq!(sent, desired);
            respond(send, 200, desired);
        }
    });
    cluster.apply(&name, &desired).await.expect("test value");
    server.await.expect("test value");
}

#[tokio::test]
async fn list_and_delete_use_the_hub_labels_and_a_gone_deployment_is_fine() {
    let (cluster, mut handle) = mock_cluster();
    let s = settings();
    let selector = selector(&s);
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.expect("list");
        assert_eq!(request.method(), http::Method::GET);
        assert_eq!(
            request.uri().path(),
            "/apis/apps/v1/namespaces/hub/deployments"
        );
        let query = request.uri().query().unwrap_or("").to_owned();
        assert!(query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dmcp-supervisor%2Cmcp-hub%2Fregistry%3D"), "{query}");
        respond(
            send,
            200,
            json!({
                "apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {},
                "items": [{ "metadata": { "name": "mcp-worker-x", "annotations": { SERVER_ANNOTATION: "x" } } }],
            }),
        );
        let (request, send) = handle.next_request().await.expect("delete");
        assert_eq!(request.method(), http::Method::DELETE);
        assert_eq!(
            request.uri().path(),
            "/apis/apps/v1/namespaces/hub/deployments/mcp-worker-x"
        );
        respond(
            send,
            404,
            json!({
                "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound",
                "message": "deployments.apps \"mcp-worker-x\" not found", "code": 404,
            }),
        );
        let (request, send) = handle.next_request().await.expect("pods");
        assert_eq!(request.uri().path(), "/api/v1/namespaces/hub/pods");
        respond(
            send,
            200,
            json!({ "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [] }),
        );
    });
    let listed = cluster.deployments(&selector).await.expect("test value");
    assert_eq!(
        listed,
        vec![("mcp-worker-x".to_owned(), Some("x".to_owned()))]
    );
    cluster
        .delete("mcp-worker-x")
        .await
        .expect("404 on delete is success");
    assert!(cluster
        .pods(&selector)
        .await
        .expect("test value")
        .is_empty());
    server.await.expect("test value");
}

#[tokio::test]
async fn a_pod_watch_event_wakes_the_reconcile_loop() {
    let (cluster, mut handle) = mock_cluster();
    let selector = selector(&settings());
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.expect("the watch");
        assert_eq!(request.method(), http::Method::GET);
        assert_eq!(request.uri().path(), "/api/v1/namespaces/hub/pods");
        let query = request.uri().query().unwrap_or("").to_owned();
        assert!(query.contains("watch=true"), "{query}");
        assert!(query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dmcp-supervisor%2Cmcp-hub%2Fregistry%3D"), "{query}");
        let event = json!({
            "type": "MODIFIED",
            "object": { "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "mcp-worker-x-1" } },
        });
        let mut body = serde_json::to_vec(&event).expect("test value");
        body.push(b'\n');
        send.send_response(
            http::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(body))
                .expect("test value"),
        );
        // Kept so the watch made again after this one ends waits instead of failing.
        handle
    });
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        cluster.pods_changed(&selector),
    )
    .await
    .expect("a Pod event resolves pods_changed");
    drop(server.await.expect("test value"));
}
