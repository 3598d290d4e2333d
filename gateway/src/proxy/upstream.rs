//! Owns the upstream phase: which worker a request goes to (round robin over the
//! routable replicas, a session's pinned replica, never one that failed this request),
//! waiting for a restarting or waking one within `MCP_GATEWAY_WORKER_WAIT`, the peer
//! options of a connection to it, and how a proxy failure maps to the client's answer
//! (503 unreachable, 504 timeout, 502 otherwise; the admin API's own codes) with its
//! `traceback`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pingora::prelude::*;
use pingora::upstreams::peer::HttpPeer;

use super::{Ctx, Gateway};
use crate::errors::GatewayError;
use crate::routes::Route;
use crate::table::{Endpoint, ServerRoute, Table};

/// Attempts per request (connects and connections lost before an answer).
pub(super) const MAX_ATTEMPTS: u32 = 16;

/// How long an idle connection to a worker stays pooled.
pub(super) const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Gateway {
    /// The upstream phase of a call to a server with no routable worker: wake it when
    /// it is idle, and wait (up to `MCP_GATEWAY_WORKER_WAIT`) when one is coming; `Err`
    /// is the 503 to answer. A server with a routable worker passes at once.
    pub(super) async fn await_worker(
        &self,
        ctx: &mut Ctx,
        server: &ServerRoute,
    ) -> Result<(), GatewayError> {
        if !server.workers.is_empty() {
            return Ok(());
        }
        ctx.log_accepted();
        let woken = server.is_idle();
        if woken {
            self.wake(&ctx.server_id, &ctx.request_id).await;
        }
        if !server.records.is_empty() && self.wait_for_worker(ctx, woken).await.is_some() {
            return Ok(());
        }
        let traceback = format!(
            "gateway.route: no routable worker of server {:?} within {:?} (MCP_GATEWAY_WORKER_WAIT)",
            ctx.server_id, self.settings.worker_wait
        );
        tracing::warn!(event = "tool.call.failed", request_id = %ctx.request_id, server = %ctx.server_id, tool = %ctx.tool,
            error = "no running worker", code = "no_worker", status = 503, stage = "gateway.route", traceback);
        Err(GatewayError::no_worker(&ctx.server_id))
    }

    /// The worker for this attempt (kept in `ctx.endpoint`): a routable one that has not
    /// failed this request, waited for within `worker_wait`; else the 503 to answer.
    pub(super) async fn choose_worker(&self, ctx: &mut Ctx) -> Result<SocketAddr> {
        let endpoint = match self.pick(&ctx.server_id, ctx.pinned_replica, &ctx.failed) {
            Some(endpoint) => endpoint,
            None => match self.wait_for_worker(ctx, false).await {
                Some(endpoint) => endpoint,
                None => {
                    ctx.pending_error = Some(GatewayError::no_worker(&ctx.server_id));
                    return Err(Error::explain(HTTPStatus(503), "no running worker"));
                }
            },
        };
        let addr = endpoint.addr;
        ctx.endpoint = Some(endpoint);
        Ok(addr)
    }

    pub(super) fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(self.settings.connect_timeout);
        peer.options.read_timeout = Some(self.settings.read_timeout);
        peer.options.write_timeout = Some(self.settings.read_timeout);
        peer.options.idle_timeout = Some(UPSTREAM_IDLE_TIMEOUT);
        peer
    }

    /// A routable worker of the server, avoiding ones that just failed.
    pub(super) fn pick(
        &self,
        server_id: &str,
        pinned: Option<u32>,
        failed: &[Endpoint],
    ) -> Option<Endpoint> {
        pick_from(
            &self.routes.load(),
            server_id,
            pinned,
            failed,
            &self.next_replica,
        )
    }

    /// Asks the supervisors to start an idle server again (`server.wake`).
    async fn wake(&self, server_id: &str, request_id: &str) {
        tracing::info!(event = "gateway.wake", request_id = %request_id, server = %server_id);
        if let Err(err) = self.registry.request_wake(server_id).await {
            tracing::warn!(event = "gateway.wake.failed", server = %server_id, error = %err);
        }
    }

    /// Waits (up to `worker_wait`) for a routable worker to appear in the table: a
    /// restarting one (a new pid, maybe on the same port) or a waking one. A server
    /// that turns idle meanwhile is woken (unless `woken` says this request already
    /// asked): its worker may have been stopped as idle after the table last showed it
    /// running, so the connection to it failed and the `idle` records came after. Never
    /// one that failed this request (`ctx.failed`).
    pub(super) async fn wait_for_worker(&self, ctx: &Ctx, mut woken: bool) -> Option<Endpoint> {
        let (server_id, pinned, failed) = (
            ctx.server_id.as_str(),
            ctx.pinned_replica,
            ctx.failed.as_slice(),
        );
        let mut changes = self.routes.subscribe();
        let deadline = tokio::time::Instant::now() + self.settings.worker_wait;
        loop {
            if let Some(endpoint) = self.pick(server_id, pinned, failed) {
                return Some(endpoint);
            }
            if !woken
                && self
                    .routes
                    .load()
                    .servers
                    .get(server_id)
                    .is_some_and(ServerRoute::is_idle)
            {
                woken = true;
                self.wake(server_id, &ctx.request_id).await;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return self.pick(server_id, pinned, failed),
            }
        }
    }
}

pub(crate) fn pick_from(
    table: &Table,
    server_id: &str,
    pinned: Option<u32>,
    failed: &[Endpoint],
    counter: &AtomicUsize,
) -> Option<Endpoint> {
    let workers = &table.servers.get(server_id)?.workers;
    if let Some(replica) = pinned {
        return workers
            .iter()
            .find(|w| w.replica_idx == replica && !failed.contains(w))
            .cloned();
    }
    let candidates: Vec<&Endpoint> = workers.iter().filter(|w| !failed.contains(w)).collect();
    if candidates.is_empty() {
        return None;
    }
    let n = counter.fetch_add(1, Ordering::Relaxed);
    Some(candidates[n % candidates.len()].clone())
}

/// `r{replica}.{worker session id}` -> (replica, worker session id).
pub(super) fn split_session(session_id: &str) -> Option<(u32, &str)> {
    let rest = session_id.strip_prefix('r')?;
    let (replica, inner) = rest.split_once('.')?;
    Some((replica.parse().ok()?, inner))
}

/// Maps a proxy error to the answer: worker timeouts 504, unreachable workers 503,
/// other worker failures 502; the admin API's own (`admin_*`) on the admin route.
pub(super) fn classify(e: &Error, route: &Route, server_id: &str) -> GatewayError {
    if e.esource() == &ErrorSource::Downstream && !matches!(e.etype(), HTTPStatus(_)) {
        // The client's side failed (a body that stopped coming or was malformed).
        return match e.etype() {
            ReadTimedout => GatewayError::new(
                408,
                "request_timeout",
                "the request body did not arrive in time",
            ),
            _ => GatewayError::new(400, "bad_request", e.to_string()),
        };
    }
    if *route == Route::Admin {
        // The admin API's failures are its own, not a worker's.
        return match e.etype() {
            HTTPStatus(code) => GatewayError::new(*code, "error", format!("HTTP {code}")),
            ReadTimedout | WriteTimedout => {
                GatewayError::new(504, "admin_timeout", "the admin API did not answer in time")
            }
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError => {
                GatewayError::new(503, "admin_unavailable", "the admin API is not reachable")
            }
            _ => GatewayError::new(502, "admin_failed", "the admin API failed to answer"),
        };
    }
    match e.etype() {
        HTTPStatus(code) => GatewayError::new(*code, "error", format!("HTTP {code}")),
        ReadTimedout | WriteTimedout => {
            GatewayError::new(504, "worker_timeout", "the worker did not answer in time")
        }
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError => {
            GatewayError::no_worker(server_id)
        }
        _ => GatewayError::new(502, "worker_failed", "the worker failed to answer"),
    }
}

/// The PRD's `traceback` of a failed call, in the shape of `mcp_core::log::traceback`:
/// the error, then one `caused by:` line per cause, outermost first. Pingora chains its
/// errors through `cause` rather than `source()`, so its links are walked here (each shows
/// where it came from, upstream, downstream or internal, its kind and its context); the
/// first foreign cause (e.g. the `io::Error` of a refused connect) goes to the shared
/// helper with its own `source()` chain.
pub(crate) fn traceback(e: &Error) -> String {
    let mut links = Vec::new();
    let mut pingora_link: Option<&Error> = Some(e);
    while let Some(link) = pingora_link.take() {
        let mut line = match link.esource().as_str() {
            "" => link.etype().as_str().to_owned(),
            source => format!("{source} {}", link.etype().as_str()),
        };
        if let Some(context) = &link.context {
            line.push_str(&format!(": {context}"));
        }
        links.push(line);
        let Some(cause) = link.cause.as_deref() else {
            break;
        };
        // Pingora boxes the errors it chains (`BError`).
        match cause
            .downcast_ref::<Box<Error>>()
            .map(|boxed| &**boxed)
            .or_else(|| cause.downcast_ref::<Error>())
        {
            Some(inner) => pingora_link = Some(inner),
            None => links.push(mcp_core::log::traceback(cause)),
        }
    }
    links.join("\ncaused by: ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceback_has_one_line_per_cause() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let connect = Error::because(ConnectRefused, "connecting", refused).into_up();
        let e = connect.more_context("peer: 127.0.0.1:1");
        assert_eq!(
            traceback(&e),
            "Upstream ConnectRefused: peer: 127.0.0.1:1\ncaused by: Upstream ConnectRefused: connecting\ncaused by: refused"
        );
        let alone = Error::explain(HTTPStatus(503), "no running worker");
        assert_eq!(traceback(&alone), "HTTPStatus: no running worker");
    }

    #[test]
    fn sessions_carry_their_replica() {
        assert_eq!(split_session("r1.abc-def"), Some((1, "abc-def")));
        assert_eq!(split_session("abc"), None);
        assert_eq!(split_session("rx.abc"), None);
    }
}
