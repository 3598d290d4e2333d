//! Owns the suite's streaming figure: a REST API that streams 10 MiB (the mock's
//! `/test/stream/chunks`, 10,240 chunks of 1 KiB with no `Content-Length`, so the worker
//! passes each on as an `output.delta` as it comes) through one worker and the gateway,
//! read once by a client as fast as it can (throughput) and once by a slow one (1 MiB/s,
//! ten times slower than the REST API). The resident memory of the worker and the
//! gateway is sampled every 50 ms; the figure is its peak above the level before the
//! call: what a slow client makes the hub hold.

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::hub::Hub;
use crate::procfs;

pub const SERVER: &str = "stream_00";
const CHUNKS: usize = 10 * 1024;
const CHUNK_BYTES: usize = 1024;
/// The slow client's reading rate, in bytes per second.
const SLOW_RATE: f64 = 1024.0 * 1024.0;
/// The client's socket receive buffer (the kernel doubles it): small, so the slow
/// client's pace reaches the hub instead of disappearing into the socket.
const RECV_BUFFER: u32 = 64 * 1024;

#[derive(Debug, Serialize)]
pub struct Streaming {
    /// What the REST API sends for one call.
    pub rest_bytes: u64,
    pub fast: StreamRun,
    pub slow: StreamRun,
}

#[derive(Debug, Serialize)]
pub struct StreamRun {
    /// The client's reading rate in bytes per second (`None`: as fast as it can).
    pub read_rate: Option<f64>,
    /// Bytes of the HTTP answer the client read (SSE frames, chunk headers).
    pub received_bytes: u64,
    pub seconds: f64,
    /// REST bytes per second delivered (`rest_bytes / seconds`).
    pub rest_mib_per_s: f64,
    /// The stream ended with `tool_call.completed`.
    pub completed: bool,
    pub worker_rss_before: u64,
    pub worker_rss_peak: u64,
    pub gateway_rss_before: u64,
    pub gateway_rss_peak: u64,
}

/// The registration of the streaming server: one tool over the mock's chunk stream.
fn document(hub: &Hub) -> serde_json::Value {
    let tool = json!({
        "name": "stream",
        "description": "Streams n chunks of size bytes.",
        "method": "GET",
        "pathTemplate": "/test/stream/chunks",
        "paramMapping": {"query": {"n": "n", "size": "size", "interval_ms": "interval_ms"}},
        "inputSchema": {"type": "object", "properties": {
            "n": {"type": "integer"}, "size": {"type": "integer"}, "interval_ms": {"type": "integer"}},
            "additionalProperties": false}
    });
    json!({
        "servers": {SERVER: {"name": SERVER, "baseUrl": hub.mock_url.as_str(), "replicas": 1, "timeoutMs": 120_000}},
        "tools": {SERVER: {"stream": tool}}
    })
}

pub async fn run(hub: &Hub) -> anyhow::Result<Streaming> {
    hub.register(&document(hub)).await?;
    let ids = [SERVER.to_owned()];
    hub.wait_running(&ids, 1, Duration::from_secs(60)).await?;
    let worker = hub
        .worker_pids()
        .await
        .remove(SERVER)
        .and_then(|pids| pids.into_iter().next())
        .context("the streaming server has no worker pid")?;
    let gateway = hub.parts.gateway.pid();
    // One small call first, so both runs find connections and buffers already made.
    read_one(hub, worker, gateway, None, 16).await?;
    let fast = read_one(hub, worker, gateway, None, CHUNKS).await?;
    let slow = read_one(hub, worker, gateway, Some(SLOW_RATE), CHUNKS).await?;
    Ok(Streaming {
        rest_bytes: (CHUNKS * CHUNK_BYTES) as u64,
        fast,
        slow,
    })
}

/// The highest RSS of two processes, sampled every 50 ms until stopped.
struct Peak {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl Peak {
    fn start(a: u32, b: u32) -> Peak {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peak = (0u64, 0u64);
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        peak.0 = peak.0.max(procfs::rss_bytes(a).unwrap_or(0));
                        peak.1 = peak.1.max(procfs::rss_bytes(b).unwrap_or(0));
                    }
                }
            }
            peak
        });
        Peak { stop, task }
    }

    async fn stop(self) -> (u64, u64) {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// One call of `chunks` chunks through the gateway, read at `rate` bytes per second
/// (or as fast as possible), on a connection of its own.
async fn read_one(
    hub: &Hub,
    worker: u32,
    gateway: u32,
    rate: Option<f64>,
    chunks: usize,
) -> anyhow::Result<StreamRun> {
    let addr = hub
        .gateway_url
        .socket_addrs(|| None)?
        .into_iter()
        .next()
        .context("the gateway URL names no address")?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(RECV_BUFFER)?;
    let mut stream = socket.connect(addr).await?;
    let body = json!({"args": {"n": chunks, "size": CHUNK_BYTES, "interval_ms": 0}}).to_string();
    let request = format!(
        "POST /mcp/{SERVER}/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (worker_rss_before, gateway_rss_before) = (
        procfs::rss_bytes(worker).unwrap_or(0),
        procfs::rss_bytes(gateway).unwrap_or(0),
    );
    let peak = Peak::start(worker, gateway);
    let started = Instant::now();
    stream.write_all(request.as_bytes()).await?;
    let mut buffer = vec![0u8; 16 * 1024];
    // The end of the stream, where the final event is.
    let mut tail: Vec<u8> = Vec::new();
    let mut received = 0u64;
    let deadline = started + Duration::from_secs(120);
    loop {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
            .await
            .context("the stream did not end within 120 s")??;
        if n == 0 {
            break;
        }
        received += n as u64;
        tail.extend_from_slice(&buffer[..n]);
        if tail.len() > 64 * 1024 {
            tail.drain(..tail.len() - 32 * 1024);
        }
        if let Some(rate) = rate {
            tokio::time::sleep_until(started + Duration::from_secs_f64(received as f64 / rate))
                .await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let (worker_rss_peak, gateway_rss_peak) = peak.stop().await;
    let completed = tail
        .windows(b"tool_call.completed".len())
        .any(|w| w == b"tool_call.completed");
    Ok(StreamRun {
        read_rate: rate,
        received_bytes: received,
        seconds,
        rest_mib_per_s: (chunks * CHUNK_BYTES) as f64 / (1024.0 * 1024.0) / seconds,
        completed,
        worker_rss_before,
        worker_rss_peak,
        gateway_rss_before,
        gateway_rss_peak,
    })
}
