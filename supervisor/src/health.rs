//! Owns probing a worker's `/healthz`: it must answer 200 for the right server (so a
//! port reused by another worker is not mistaken for ours), and reading what the
//! runtime record shows of it (idle time, the circuit breaker's state, the audit
//! writer's counters).

use std::time::Duration;

/// What a healthy worker reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    pub pid: u32,
    pub idle_ms: u64,
    /// Its circuit breaker and retry counters (`None` until a guarded call made them,
    /// or from a worker too old to report them), copied into the runtime record.
    pub resilience: Option<mcp_core::runtime::Resilience>,
    /// Its audit writer's counters (`None` when auditing is off there, or from a worker
    /// too old to report them), copied into the runtime record.
    pub audit: Option<mcp_core::runtime::AuditCounters>,
}

/// A failed probe: the HTTP status when there was one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeFailure {
    pub response_code: Option<u16>,
    pub error: String,
}

pub async fn probe(
    client: &reqwest::Client,
    host: &str,
    port: u16,
    server_id: &str,
    timeout: Duration,
) -> Result<Health, ProbeFailure> {
    let url = format!("http://{host}:{port}/healthz");
    let response = client
        .get(&url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| ProbeFailure {
            response_code: None,
            error: e.to_string(),
        })?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(ProbeFailure {
            response_code: Some(status),
            error: format!("HTTP {status}"),
        });
    }
    let body: serde_json::Value = response.json().await.map_err(|e| ProbeFailure {
        response_code: Some(status),
        error: format!("bad /healthz body: {e}"),
    })?;
    if body["server_id"] != server_id {
        return Err(ProbeFailure {
            response_code: Some(status),
            error: format!("port serves {} instead", body["server_id"]),
        });
    }
    Ok(Health {
        pid: body["pid"].as_u64().unwrap_or(0) as u32,
        idle_ms: body["idle_ms"].as_u64().unwrap_or(0),
        resilience: serde_json::from_value(body["resilience"].clone()).ok(),
        audit: (body["audit"]["enabled"] == true)
            .then(|| serde_json::from_value(body["audit"].clone()).ok())
            .flatten(),
    })
}
