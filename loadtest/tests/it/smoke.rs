//! 5 s at 200 rps over 20 servers must fail under 1% (the PRD's bar), and the MCP and
//! direct-to-worker modes of the generator must work end to end.

use std::time::Duration;

use mcp_loadtest::hub::{Hub, HubOptions};
use mcp_loadtest::{driver, Plan, RunConfig, Scenario, Schedule, Target};

const PRD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/prd.yaml");
const PRD_MCP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/prd-mcp.yaml");

async fn hub_with_servers(ids: &[String], logs: &tempfile::TempDir) -> Hub {
    let bin_dir = mcp_testkit::bin_path("mcp-gateway")
        .parent()
        .expect("binaries folder")
        .to_path_buf();
    let hub = Hub::start(&HubOptions::new(bin_dir, logs.path().to_path_buf()))
        .await
        .expect("hub starts");
    hub.register(&hub.bench_document(ids, 1))
        .await
        .expect("servers registered");
    hub.wait_running(ids, 1, Duration::from_secs(90))
        .await
        .expect("every server has a running worker");
    hub
}

fn plan(path: &str, ids: &[String]) -> Plan {
    let scenario = Scenario::load(std::path::Path::new(path)).expect("scenario");
    Plan::new(scenario.with_servers(ids.to_vec()))
}

fn config(rate: f64, seconds: u64) -> RunConfig {
    RunConfig {
        schedule: Schedule::new(rate, Duration::from_secs(1), Duration::from_secs(seconds))
            .expect("schedule"),
        max_in_flight: 5_000,
        connections: 256,
        timeout: Duration::from_secs(10),
        seed: 1,
        sessions_per_server: 1,
        timeline: false,
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:02}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prd_load_over_20_servers_fails_under_one_percent() {
    let logs = tempfile::tempdir().expect("tempdir");
    let servers = ids("bench_", 20);
    let hub = hub_with_servers(&servers, &logs).await;
    let report = driver::run(
        &plan(PRD, &servers),
        &Target::Gateway(hub.gateway_url.clone()),
        &config(200.0, 5),
        &hub.client,
    )
    .await
    .expect("run");
    print!("{}", report.table());
    assert_eq!(report.offered, 1000);
    assert_eq!(report.succeeded + report.failed, report.offered);
    assert!(
        report.failure_rate < 0.01,
        "failure rate {:.3}% (bar: < 1%): {:?}",
        report.failure_rate * 100.0,
        report.failures
    );
    assert_eq!(report.latency_ms.count, report.succeeded);
    assert!(report.latency_ms.p50 > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_and_direct_modes_complete_their_calls() {
    let logs = tempfile::tempdir().expect("tempdir");
    let servers = ids("mcp_", 2);
    let hub = hub_with_servers(&servers, &logs).await;

    let report = driver::run(
        &plan(PRD_MCP, &servers),
        &Target::Gateway(hub.gateway_url.clone()),
        &config(50.0, 2),
        &hub.client,
    )
    .await
    .expect("MCP run");
    print!("{}", report.table());
    assert_eq!(report.offered, 100);
    assert_eq!(report.failed, 0, "{:?}", report.failures);

    let workers = hub.worker_urls(&servers).await.expect("worker URLs");
    let report = driver::run(
        &plan(PRD, &servers),
        &Target::Direct(workers),
        &config(50.0, 2),
        &hub.client,
    )
    .await
    .expect("direct run");
    print!("{}", report.table());
    assert_eq!(report.failed, 0, "{:?}", report.failures);

    // A tool the servers do not have: every call fails, and says how.
    let scenario =
        Scenario::parse("servers: [mcp_00]\nrequests: [{tool: no_such_tool}]").expect("scenario");
    let report = driver::run(
        &Plan::new(scenario),
        &Target::Gateway(hub.gateway_url.clone()),
        &config(20.0, 1),
        &hub.client,
    )
    .await
    .expect("failing run");
    assert_eq!(report.succeeded, 0);
    assert_eq!(report.failures.get("http_404"), Some(&report.offered));
}
