//! Owns the chaos suite's "bad input at the edges" fault: 10,000 connections opened to
//! the gateway at once and held, and slow-loris clients (a request head and body sent
//! one byte at a time) against the gateway and the admin API, while the PRD load runs.
//! The connections are opened from a thread of their own, so the PRD load (this
//! process's main runtime) is a client apart from the storm, as it would be.
//! The promise: the other clients' calls do not fail, and the gateway's memory stays
//! bounded (its resident memory before, at the peak and after is reported, with what its
//! connection cap, `MCP_GATEWAY_MAX_CONNECTIONS`, shed and the most connections it held
//! open). Also bodies
//! of exactly the gateway's and the admin API's size limits and one byte past them,
//! sent during the PRD load: the first are served, the others get a JSON 413.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{settle, window, Ctx, Fault, Injected};
use crate::procfs;

/// The gateway's connection figures from its metrics: (open now, shed by reason in
/// `mcp_gateway_connections_shed_total`'s order: evicted_idle, refused,
/// first_byte_timeout); zeros for a series it does not have.
async fn connection_metrics(client: &reqwest::Client, url: &str) -> (f64, [f64; 3]) {
    let Ok(text) = async { client.get(url).send().await?.text().await }.await else {
        return (0.0, [0.0; 3]);
    };
    let value = |series: &str| {
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    };
    let shed = |reason: &str| {
        value(&format!(
            "mcp_gateway_connections_shed_total{{reason=\"{reason}\"}}"
        ))
    };
    (
        value("mcp_gateway_connections_open"),
        [
            shed("evicted_idle"),
            shed("refused"),
            shed("first_byte_timeout"),
        ],
    )
}

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
    let metrics_url = ctx.hub.metrics_url.to_string();
    let storm = async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let (_, shed_before) = connection_metrics(&client, &metrics_url).await;
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
        let mut open_peak = 0.0f64;
        while Instant::now() < until {
            peak = peak.max(procfs::rss_bytes(gateway_pid));
            admin_peak = admin_peak.max(procfs::rss_bytes(admin_pid));
            open_peak = open_peak.max(connection_metrics(&client, &metrics_url).await.0);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, shed_after) = connection_metrics(&client, &metrics_url).await;
        // Those the gateway closed (a read sees the end at once; an open one would block).
        let mut byte = [0u8; 1];
        let closed_held = held
            .iter()
            .filter(|stream| match stream.try_read(&mut byte) {
                Ok(n) => n == 0,
                Err(err) => err.kind() != std::io::ErrorKind::WouldBlock,
            })
            .count();
        drop(held);
        let shed: Vec<f64> = shed_after
            .iter()
            .zip(shed_before)
            .map(|(after, before)| after - before)
            .collect();
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
                    "the gateway's connection cap: at most {open_peak:.0} connections open at once; shed {:.0} idle ones for newcomers, refused {:.0}, closed {:.0} silent past the first-byte timeout; {closed_held} of the {opened} held were closed by the gateway",
                    shed[0], shed[1], shed[2]
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
    // The storm runs on a thread and runtime of its own, as another client's would: the
    // PRD load's calls (the other clients, sent by this process's own runtime) do not
    // wait behind its 10,000 connects.
    let inject = async move {
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(storm)
        })
        .await
        .map_err(|err| anyhow::anyhow!("the flood's thread: {err}"))?
    };
    let mut fault = window(ctx, false, ctx.timing.after, inject).await?;
    fault.what = format!(
        "{FLOOD_CONNECTIONS} idle connections opened to the gateway at once, and {} slow-loris clients on the gateway and the admin API: the PRD load must not fail",
        2 * SLOW_CLIENTS
    );
    fault.allowed_failures = Some(0);
    settle(ctx, fault).await
}

/// What one sized request got: its status and JSON body (`Err`: a transport failure).
type Sized = Result<(u16, serde_json::Value), String>;

/// `POST url` with `body` (chunked when `chunked`, else with its Content-Length).
async fn send_sized(
    client: &reqwest::Client,
    url: url::Url,
    body: Vec<u8>,
    chunked: bool,
) -> Sized {
    if chunked {
        return send_chunked(&url, &body).await;
    }
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("{e:#}"))?;
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("reading the answer: {e:#}"))?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

/// `POST url` with `body` in 64 KiB chunks (`Transfer-Encoding: chunked`), on a
/// connection of its own, read to its end.
async fn send_chunked(url: &url::Url, body: &[u8]) -> Sized {
    let io = |e: std::io::Error| format!("{e}");
    let target = addr(url).map_err(|e| format!("{e:#}"))?;
    let exchange = async {
        let mut stream = TcpStream::connect(target).await.map_err(io)?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            url.path()
        );
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        for chunk in body.chunks(64 * 1024) {
            stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await
                .map_err(io)?;
            stream.write_all(chunk).await.map_err(io)?;
            stream.write_all(b"\r\n").await.map_err(io)?;
        }
        stream.write_all(b"0\r\n\r\n").await.map_err(io)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map_err(io)?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| "no answer within 30 s".to_owned())??;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                text.chars().take(80).collect::<String>()
            )
        })?;
    // The JSON body, whatever the framing of the answer.
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, rest)| Some(&rest[rest.find('{')?..=rest.rfind('}')?]))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or(serde_json::Value::Null);
    Ok((status, body))
}

/// `json` followed by spaces up to exactly `size` bytes (still the same JSON).
fn padded(json: &str, size: usize) -> Vec<u8> {
    let mut body = json.as_bytes().to_vec();
    body.resize(size.max(body.len()), b' ');
    body
}

fn limit_of(launch: &super::procs::Launch, flag: &str, env: &str, default: usize) -> usize {
    launch
        .setting(flag, env)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub async fn bodies(ctx: &mut Ctx) -> anyhow::Result<Fault> {
    let gateway_launch =
        super::procs::Launch::of("mcp-gateway", ctx.pids["mcp-gateway"], &ctx.log_dir)?;
    let admin_launch = super::procs::Launch::of("mcp-admin", ctx.pids["mcp-admin"], &ctx.log_dir)?;
    let call_limit = limit_of(
        &gateway_launch,
        "--max-body-bytes",
        "MCP_MAX_BODY_BYTES",
        1024 * 1024,
    );
    let admin_limit = limit_of(
        &admin_launch,
        "--max-body-bytes",
        "MCP_ADMIN_MAX_BODY_BYTES",
        8 * 1024 * 1024,
    );
    let quick = ctx.timing.quick;
    let rounds = if quick { 1 } else { 5 };
    let call_url = ctx
        .hub
        .gateway_url
        .join(&format!("mcp/{}/get_fruits", ctx.ids[0]))?;
    let import = "api/import?mode=merge";
    let admin_urls = [
        ("through the gateway", ctx.hub.gateway_url.join(import)?),
        ("direct", ctx.hub.admin_url.join(import)?),
    ];
    let client = ctx.hub.client.clone();
    let found: std::sync::Mutex<(Vec<String>, Vec<String>)> = Default::default();
    let inject = async {
        // (what, answered as expected, how many, answers seen)
        let mut tally: Vec<(
            String,
            usize,
            usize,
            std::collections::BTreeMap<String, usize>,
        )> = Vec::new();
        let mut record = |what: String, ok: bool, seen: String| {
            let entry = match tally.iter_mut().position(|t| t.0 == what) {
                Some(at) => &mut tally[at],
                None => {
                    tally.push((what, 0, 0, Default::default()));
                    let last = tally.len() - 1;
                    &mut tally[last]
                }
            };
            entry.1 += usize::from(ok);
            entry.2 += 1;
            *entry.3.entry(seen).or_default() += 1;
        };
        let seen = |answer: &Sized| match answer {
            Ok((status, body)) => match body["error"]["code"].as_str() {
                Some(code) => format!("{status} {code}"),
                None => status.to_string(),
            },
            Err(error) => format!("transport failure: {error}"),
        };
        let json_413 = |answer: &Sized| matches!(answer, Ok((413, body)) if super::limits::is_error(body, "payload_too_large"));
        for round in 0..rounds {
            if round > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let at = send_sized(
                &client,
                call_url.clone(),
                padded(r#"{"args":{}}"#, call_limit),
                false,
            )
            .await;
            record(
                format!("a call of exactly {call_limit} bytes (MCP_MAX_BODY_BYTES)"),
                matches!(at, Ok((200, _))),
                seen(&at),
            );
            let over = send_sized(
                &client,
                call_url.clone(),
                padded(r#"{"args":{}}"#, call_limit + 1),
                false,
            )
            .await;
            record(
                format!("a call of {} bytes", call_limit + 1),
                json_413(&over),
                seen(&over),
            );
            let chunked = send_sized(
                &client,
                call_url.clone(),
                padded(r#"{"args":{}}"#, call_limit + 1),
                true,
            )
            .await;
            record(
                format!("a chunked call of {} bytes", call_limit + 1),
                json_413(&chunked),
                seen(&chunked),
            );
            for (how, url) in &admin_urls {
                let empty = r#"{"servers":{},"tools":{}}"#;
                let at = send_sized(&client, url.clone(), padded(empty, admin_limit), false).await;
                // Served, or refused as a registration (4xx with the JSON error): not a
                // transport failure, not a 413.
                let handled = matches!(&at, Ok((status, body)) if (200..300).contains(status)
                    || ((400..500).contains(status) && *status != 413 && body["error"]["code"].is_string()));
                record(format!("an import of exactly {admin_limit} bytes (MCP_ADMIN_MAX_BODY_BYTES), {how}"), handled, seen(&at));
                let over =
                    send_sized(&client, url.clone(), padded(empty, admin_limit + 1), false).await;
                record(
                    format!("an import of {} bytes, {how}", admin_limit + 1),
                    json_413(&over),
                    seen(&over),
                );
            }
        }
        let mut notes = Vec::new();
        let mut broken = Vec::new();
        for (what, ok, n, answers) in &tally {
            let answers: Vec<String> = answers.iter().map(|(a, k)| format!("{a} x{k}")).collect();
            notes.push(format!(
                "{what}: {ok} of {n} as expected ({})",
                answers.join(", ")
            ));
            if ok < n {
                broken.push(format!(
                    "{what}: {} of {n} not as expected ({})",
                    n - ok,
                    answers.join(", ")
                ));
            }
        }
        if let Ok(mut found) = found.lock() {
            *found = (notes, broken);
        }
        Ok(Injected::default())
    };
    let after = if quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(10)
    };
    let mut fault = window(ctx, false, after, inject).await?;
    let (notes, broken) = found.into_inner().unwrap_or_default();
    fault.notes = notes;
    fault.broken = broken;
    fault.what = format!(
        "during the PRD load, {rounds} round(s) of: a call body of exactly the gateway's limit ({call_limit} bytes, JSON padded with spaces) and one byte past it (with a Content-Length, and chunked), an import body of exactly the admin API's limit ({admin_limit} bytes) and one byte past it (through the gateway and direct): at the limit served (or a JSON validation error), past it a JSON 413 `payload_too_large` with a message and a request id, never a transport failure; the PRD load must not fail"
    );
    fault.allowed_failures = Some(0);
    settle(ctx, fault).await
}
