//! Owns the chaos suite's "bad input at the edges" fault: 10,000 connections opened to
//! the gateway at once and held, and slow-loris clients (a request head and body sent
//! one byte at a time) against the gateway and the admin API, while the PRD load runs.
//! The promise: the other clients' calls do not fail, and the gateway's memory stays
//! bounded (its resident memory before, at the peak and after is reported).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{settle, window, Ctx, Fault, Injected};
use crate::procfs;

/// Connections opened at once and held through the window.
pub const FLOOD_CONNECTIONS: usize = 10_000;
/// Slow-loris clients per target (the gateway and the admin API).
const SLOW_CLIENTS: usize = 100;
/// Between two bytes of a slow client.
const SLOW_BYTE_EVERY: Duration = Duration::from_millis(50);

fn addr(url: &url::Url) -> anyhow::Result<SocketAddr> {
    url.socket_addrs(|| None)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("{url} names no address"))
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("?".into(), |b| {
        format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
    })
}

/// A slow-loris client: a complete, valid request written one byte every
/// [`SLOW_BYTE_EVERY`] until `until`. True when the server closed the connection first
/// (a header or body timeout), false when the client gave up at `until`.
async fn slow_client(addr: SocketAddr, path: String, until: Instant) -> bool {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
    else {
        return true;
    };
    let body = r#"{"args":{}}"#;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut probe = [0u8; 1];
    for byte in request.as_bytes() {
        if Instant::now() >= until {
            return false;
        }
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            return true;
        }
        // A server that gave up on the request closes the connection (with or without
        // an answer first): a read that ends or fails says so.
        match tokio::time::timeout(SLOW_BYTE_EVERY, stream.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {
                // An early answer (e.g. 408) counts as a close once the stream ends.
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut rest))
                    .await;
                return true;
            }
            Err(_) => {}
        }
    }
    false
}

pub async fn flood(ctx: &mut Ctx) -> anyhow::Result<Fault> {
    let gateway = addr(&ctx.hub.gateway_url)?;
    let admin = addr(&ctx.hub.admin_url)?;
    let gateway_pid = ctx.pids["mcp-gateway"];
    let admin_pid = ctx.pids["mcp-admin"];
    let hold = ctx.timing.after / 2;
    let server = ctx.ids[0].clone();
    let inject = async move {
        let rss_before = procfs::rss_bytes(gateway_pid);
        let admin_before = procfs::rss_bytes(admin_pid);
        let t0 = Instant::now();
        let until = t0 + hold;
        let mut slow = JoinSet::new();
        for _ in 0..SLOW_CLIENTS {
            slow.spawn(slow_client(
                gateway,
                format!("/mcp/{server}/get_fruits"),
                until,
            ));
            slow.spawn(slow_client(admin, "/api/import?mode=merge".into(), until));
        }
        let mut connects = JoinSet::new();
        for _ in 0..FLOOD_CONNECTIONS {
            connects.spawn(tokio::time::timeout(
                Duration::from_secs(5),
                TcpStream::connect(gateway),
            ));
        }
        let mut held = Vec::with_capacity(FLOOD_CONNECTIONS);
        while let Some(done) = connects.join_next().await {
            if let Ok(Ok(Ok(stream))) = done {
                held.push(stream);
            }
        }
        let opened = held.len();
        let opened_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let (mut peak, mut admin_peak) = (rss_before, admin_before);
        while Instant::now() < until {
            peak = peak.max(procfs::rss_bytes(gateway_pid));
            admin_peak = admin_peak.max(procfs::rss_bytes(admin_pid));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(held);
        let mut closed_by_server = 0;
        while let Some(done) = slow.join_next().await {
            closed_by_server += usize::from(done.unwrap_or(false));
        }
        // What the connections took is given back once they are gone.
        let settle_deadline = Instant::now() + Duration::from_secs(5);
        let mut after = procfs::rss_bytes(gateway_pid);
        while Instant::now() < settle_deadline && after > rss_before.map(|b| b + 8 * 1024 * 1024) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            after = procfs::rss_bytes(gateway_pid);
        }
        Ok(Injected {
            hub_recovered_ms: None,
            notes: vec![
                format!(
                    "{opened} of {FLOOD_CONNECTIONS} connections to the gateway opened at once ({opened_ms:.0} ms) and held {:.1} s without a byte sent",
                    hold.as_secs_f64()
                ),
                format!(
                    "{} slow-loris clients ({SLOW_CLIENTS} on the gateway's /mcp/{{id}}/{{tool}}, {SLOW_CLIENTS} on the admin API's POST /api/import), one byte every {} ms: {closed_by_server} closed by the server within the window",
                    2 * SLOW_CLIENTS,
                    SLOW_BYTE_EVERY.as_millis()
                ),
                format!(
                    "gateway resident memory: {} before, {} at the peak, {} after; admin API: {} before, {} at the peak",
                    mib(rss_before),
                    mib(peak),
                    mib(after),
                    mib(admin_before),
                    mib(admin_peak)
                ),
            ],
        })
    };
    let mut fault = window(ctx, false, ctx.timing.after, inject).await?;
    fault.what = format!(
        "{FLOOD_CONNECTIONS} idle connections opened to the gateway at once, and {} slow-loris clients on the gateway and the admin API: the PRD load must not fail",
        2 * SLOW_CLIENTS
    );
    fault.allowed_failures = Some(0);
    settle(ctx, fault).await
}
