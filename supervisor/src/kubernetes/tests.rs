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
