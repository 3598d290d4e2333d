//! Owns `/healthz`: which server this worker serves, how many tools, at which registry
//! version, its circuit breaker's state with the retry counters (`resilience`, retries
//! by reason included) and its audit writer's counters (`audit`). The supervisor checks
//! `server_id` to be sure it probes the right worker, and copies `resilience` and `audit`
//! into the runtime record, where the gateway's `/metrics` reads them.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::state::WorkerState;

pub async fn healthz(State(state): State<Arc<WorkerState>>) -> Json<Value> {
    let served = state.current();
    Json(json!({
        "status": "ok",
        "server_id": state.server_id,
        "registered": served.config.is_some(),
        "tools": served.tools.len(),
        "version": served.version,
        "pid": std::process::id(),
        "idle_ms": state.idle_ms(),
        "audit": {
            "enabled": state.audit.is_enabled(),
            "written": state.audit.stats().written.load(std::sync::atomic::Ordering::Relaxed),
            "dropped": state.audit.stats().dropped.load(std::sync::atomic::Ordering::Relaxed),
        },
        // The breaker's state and the retry counters, once a call of a server with
        // `retry` or `circuitBreaker` made them (`null` before).
        "resilience": state.adapter.find_guard(&state.server_id).map(|guard| guard.report()),
    }))
}
