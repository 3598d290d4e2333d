//! Owns the audit log of tool calls: one [`Entry`] per call in the Redis Stream
//! `{prefix}audit` (its key from [`crate::keys`]), capped with `XADD MAXLEN ~`.
//! The writer is never on a call's path: [`Sink::record`] is a `try_send` into a bounded
//! channel; one task drains it in batches (what arrived within `MCP_AUDIT_FLUSH_MS` of
//! the batch's first entry) and appends each batch in one pipeline. A
//! full buffer (Redis slow or down) drops the entry and counts it; the count is logged
//! as `audit.dropped` (warn) at most once per report interval.
//! Also the readers: [`page`] (newest first, filtered, cursor-paged) and [`read_after`]
//! (what came after an id, with `XREAD BLOCK`), used by the admin API.
//! What it must not do: block or fail a call, or write anything it was not given (the
//! caller redacts arguments before they get here: [`Entry::args`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Args};
use redis::Value as RedisValue;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::registry::{self, RedisRegistry};

/// Entries appended in one pipeline at most.
const BATCH: usize = 256;

/// The audit flags every binary that runs calls shares (the worker, the gateway in
/// rollback mode).
#[derive(Args, Clone, Debug)]
pub struct AuditArgs {
    /// Append one entry per tool call to the `{prefix}audit` Redis Stream.
    #[arg(long, env = "MCP_AUDIT_ENABLED", default_value_t = true, action = ArgAction::Set)]
    pub audit_enabled: bool,
    /// Length the stream is trimmed to (`XADD MAXLEN ~`, so Redis may keep a few more).
    #[arg(long, env = "MCP_AUDIT_MAXLEN", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_maxlen: u64,
    /// Entries waiting to be written at most; beyond it entries are dropped and counted.
    #[arg(long, env = "MCP_AUDIT_BUFFER", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub audit_buffer: u64,
    /// How often dropped entries are reported (`audit.dropped`), in milliseconds.
    #[arg(long, env = "MCP_AUDIT_REPORT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub audit_report_ms: u64,
    /// How long the writer gathers entries after the first of a batch before it appends
    /// them in one pipeline, in milliseconds (0: at once). One round trip per call cost
    /// Redis and the worker more than the call's own work at the capacity rate.
    #[arg(long, env = "MCP_AUDIT_FLUSH_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub audit_flush_ms: u64,
}

impl Default for AuditArgs {
    fn default() -> AuditArgs {
        AuditArgs {
            audit_enabled: true,
            audit_maxlen: 100_000,
            audit_buffer: 10_000,
            audit_report_ms: 10_000,
            audit_flush_ms: 50,
        }
    }
}

/// One tool call, as stored (each field one stream field; absent ones not written).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The stream entry id (`ms-seq`), the paging cursor; empty before it is written.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// When the call ended, Unix ms.
    pub ts: u64,
    pub request_id: String,
    pub server: String,
    pub tool: String,
    /// `hub` (POST /mcp/{id}/{tool}), `mcp` (Streamable HTTP), `sse` (the old
    /// HTTP+SSE transport) or `rollback` (the gateway's rollback mode).
    pub transport: String,
    /// The caller's address (`X-Forwarded-For` from the gateway, else the peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The MCP session id (`Mcp-Session-Id`, or the old transport's session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// `ok`, `error` or `cancelled` (the caller went away).
    pub status: String,
    pub latency_ms: f64,
    /// The REST API's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_status: Option<u16>,
    /// The error's stable code (`upstream_status`, `upstream_timeout`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub args_bytes: u64,
    pub result_bytes: u64,
    /// The arguments as JSON, only for a server whose registration says
    /// `audit.includeArguments`, secrets redacted by the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
}

/// `ms` with three decimals, as `format!("{ms:.3}")` writes it (to the microsecond;
/// a half is rounded up) from integers, without float formatting; 0 for what is not a
/// time.
fn millis_3(ms: f64) -> String {
    let micros = if ms.is_finite() && ms > 0.0 {
        (ms * 1000.0).round() as u64
    } else {
        0
    };
    format!("{}.{:03}", micros / 1000, micros % 1000)
}

impl Entry {
    /// The stream fields, in a fixed order; the text ones borrowed (the writer copies
    /// them once, into its pipeline).
    pub fn fields(&self) -> Vec<(&'static str, Cow<'_, str>)> {
        let mut out = Vec::with_capacity(14);
        out.extend([
            ("ts", Cow::Owned(self.ts.to_string())),
            ("request_id", Cow::Borrowed(self.request_id.as_str())),
            ("server", Cow::Borrowed(self.server.as_str())),
            ("tool", Cow::Borrowed(self.tool.as_str())),
            ("transport", Cow::Borrowed(self.transport.as_str())),
            ("status", Cow::Borrowed(self.status.as_str())),
            ("latency_ms", Cow::Owned(millis_3(self.latency_ms))),
            ("args_bytes", Cow::Owned(self.args_bytes.to_string())),
            ("result_bytes", Cow::Owned(self.result_bytes.to_string())),
        ]);
        let optional = [
            ("caller", self.caller.as_deref().map(Cow::Borrowed)),
            ("session", self.session.as_deref().map(Cow::Borrowed)),
            (
                "rest_status",
                self.rest_status.map(|s| Cow::Owned(s.to_string())),
            ),
            ("error", self.error.as_deref().map(Cow::Borrowed)),
            ("args", self.args.as_deref().map(Cow::Borrowed)),
        ];
        out.extend(
            optional
                .into_iter()
                .filter_map(|(name, value)| value.map(|v| (name, v))),
        );
        out
    }

    /// An entry read back from the stream (unknown fields ignored, bad numbers as 0).
    pub fn from_fields(id: String, fields: &HashMap<String, String>) -> Entry {
        let text = |name: &str| fields.get(name).cloned().unwrap_or_default();
        let number = |name: &str| fields.get(name).and_then(|v| v.parse().ok());
        Entry {
            id,
            ts: number("ts").unwrap_or(0),
            request_id: text("request_id"),
            server: text("server"),
            tool: text("tool"),
            transport: text("transport"),
            caller: fields.get("caller").cloned(),
            session: fields.get("session").cloned(),
            status: text("status"),
            latency_ms: fields
                .get("latency_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
            rest_status: number("rest_status").map(|s: u64| u16::try_from(s).unwrap_or(0)),
            error: fields.get("error").cloned(),
            args_bytes: number("args_bytes").unwrap_or(0),
            result_bytes: number("result_bytes").unwrap_or(0),
            args: fields.get("args").cloned(),
        }
    }
}

/// Counters of one process's audit writer; read by `/healthz` and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Entries Redis acknowledged.
    pub written: AtomicU64,
    /// Entries dropped: the buffer was full, or their batch failed to be written.
    pub dropped: AtomicU64,
    /// Pipelines Redis acknowledged (each one round trip, for one batch).
    pub batches: AtomicU64,
}

/// Where calls hand their entries. Cheap to clone; a disabled sink does nothing.
#[derive(Clone, Debug, Default)]
pub struct Sink {
    /// Bounded: a full channel drops rather than waits (a call never waits for Redis).
    tx: Option<mpsc::Sender<Entry>>,
    stats: Arc<Stats>,
}

impl Sink {
    /// A sink that records nothing (auditing off).
    pub fn disabled() -> Sink {
        Sink::default()
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Hands `entry` to the writer without waiting; full buffer: dropped and counted.
    pub fn record(&self, entry: Entry) {
        if let Some(tx) = &self.tx {
            if tx.try_send(entry).is_err() {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// Starts the writer task for `args` (disabled: no task, a sink that does nothing). The
/// task ends when `shutdown` is cancelled (after one last flush) or every sink is gone.
pub fn start(registry: RedisRegistry, args: &AuditArgs, shutdown: CancellationToken) -> Sink {
    if !args.audit_enabled {
        return Sink::disabled();
    }
    let capacity = usize::try_from(args.audit_buffer).unwrap_or(10_000).max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let stats = Arc::new(Stats::default());
    let writer = Writer {
        registry,
        maxlen: args.audit_maxlen,
        stats: stats.clone(),
        report_every: Duration::from_millis(args.audit_report_ms),
        flush_after: Duration::from_millis(args.audit_flush_ms),
    };
    tokio::spawn(writer.run(rx, shutdown));
    Sink {
        tx: Some(tx),
        stats,
    }
}

struct Writer {
    registry: RedisRegistry,
    maxlen: u64,
    stats: Arc<Stats>,
    report_every: Duration,
    flush_after: Duration,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Entry>, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut report = tokio::time::interval(self.report_every);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported = 0u64;
        let mut last_error_logged: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    // The entries of the next moments go in the same pipeline: a
                    // sleep, not a wait per entry, so the calls' sends wake nothing.
                    if batch.len() < BATCH && !self.flush_after.is_zero() {
                        tokio::select! {
                            () = tokio::time::sleep(self.flush_after) => {}
                            () = shutdown.cancelled() => {}
                        }
                        while batch.len() < BATCH {
                            match rx.try_recv() {
                                Ok(entry) => batch.push(entry),
                                Err(_) => break,
                            }
                        }
                    }
                    if let Err(err) = self.append(&batch).await {
                        self.stats.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        let due = last_error_logged.is_none_or(|t| t.elapsed() >= self.report_every);
                        if due {
                            last_error_logged = Some(tokio::time::Instant::now());
                            tracing::warn!(event = "audit.write.failed", entries = batch.len(), error = %err);
                        }
                    }
                    batch.clear();
                }
                _ = report.tick() => {
                    reported = self.report_drops(reported);
                }
                () = shutdown.cancelled() => {
                    rx.close();
                    while rx.recv_many(&mut batch, BATCH).await > 0 {
                        let flushed = tokio::time::timeout(Duration::from_secs(1), self.append(&batch)).await;
                        batch.clear();
                        if !matches!(flushed, Ok(Ok(()))) {
                            break;
                        }
                    }
                    break;
                }
            }
        }
        self.report_drops(reported);
    }

    /// Logs `audit.dropped` when entries were dropped since the last report.
    fn report_drops(&self, reported: u64) -> u64 {
        let dropped = self.stats.dropped.load(Ordering::Relaxed);
        if dropped > reported {
            tracing::warn!(
                event = "audit.dropped",
                dropped = dropped - reported,
                dropped_total = dropped,
                written_total = self.stats.written.load(Ordering::Relaxed)
            );
        }
        dropped
    }

    async fn append(&self, batch: &[Entry]) -> registry::Result<()> {
        let key = self.registry.keys().audit();
        let maxlen = self.maxlen.to_string();
        let mut pipe = redis::Pipeline::with_capacity(batch.len());
        for entry in batch {
            let fields = entry.fields();
            let bytes = fields
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
                + key.len()
                + maxlen.len()
                + 12;
            // Sized once: no argument grows the command's buffers.
            let mut cmd = redis::Cmd::with_capacity(6 + 2 * fields.len(), bytes);
            cmd.arg("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(&maxlen)
                .arg("*");
            for (name, value) in &fields {
                cmd.arg(*name).arg(value.as_ref());
            }
            // Not `ignore()`d (a hash set insert per command): the ids are dropped below.
            pipe.add_command(cmd);
        }
        let mut conn = self.registry.conn();
        let _ids: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
        self.stats
            .written
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// What [`page`] returns: entries newest first, and the cursor of the next page.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub entries: Vec<Entry>,
    /// Pass as `before` for the next (older) page; absent at the start of the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Entries read to fill this page (filters skip some).
    pub scanned: u64,
}

/// Filters of [`page`]; every one optional.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub server: Option<String>,
    pub tool: Option<String>,
    pub status: Option<String>,
    pub request_id: Option<String>,
    /// Inclusive, Unix ms.
    pub since_ms: Option<u64>,
    /// Inclusive, Unix ms.
    pub until_ms: Option<u64>,
}

impl Filter {
    pub fn matches(&self, entry: &Entry) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        is(&self.server, &entry.server)
            && is(&self.tool, &entry.tool)
            && is(&self.status, &entry.status)
            && is(&self.request_id, &entry.request_id)
    }
}

/// Entries read from Redis per round trip while filling a page.
const SCAN_CHUNK: usize = 500;

/// At most `limit` entries matching `filter`, newest first, older than the entry id
/// `before` (exclusive) when given. Reads at most `max_scan` entries, so a rare filter
/// returns a short page with a `next` cursor rather than reading the whole stream.
pub async fn page(
    registry: &RedisRegistry,
    filter: &Filter,
    before: Option<&str>,
    limit: usize,
    max_scan: usize,
) -> registry::Result<Page> {
    // Nothing is older than the first possible id (and Redis refuses the range `(0-0`).
    if before.is_some_and(|id| {
        id.split_once('-')
            .is_some_and(|(ms, seq)| ms.parse::<u64>() == Ok(0) && seq.parse::<u64>() == Ok(0))
    }) {
        return Ok(Page::default());
    }
    let key = registry.keys().audit();
    let mut end = match (before, filter.until_ms) {
        (Some(id), _) => format!("({id}"),
        (None, Some(until)) => format!("{until}-18446744073709551615"),
        (None, None) => "+".to_owned(),
    };
    let start = filter
        .since_ms
        .map(|ms| format!("{ms}-0"))
        .unwrap_or_else(|| "-".to_owned());
    let mut out = Page::default();
    let mut conn = registry.conn();
    loop {
        let chunk = SCAN_CHUNK.min(max_scan.saturating_sub(out.scanned as usize).max(1));
        let raw: RedisValue = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg(&end)
            .arg(&start)
            .arg("COUNT")
            .arg(chunk)
            .query_async(&mut conn)
            .await?;
        let entries = parse_entries(raw);
        let exhausted = entries.len() < chunk;
        for entry in entries {
            out.scanned += 1;
            end = format!("({}", entry.id);
            let last_id = entry.id.clone();
            if filter.until_ms.is_some_and(|until| entry.ts > until) || !filter.matches(&entry) {
                out.next = Some(last_id);
                continue;
            }
            if filter.since_ms.is_some_and(|since| entry.ts < since) {
                out.next = Some(last_id);
                continue;
            }
            out.entries.push(entry);
            out.next = Some(last_id);
            if out.entries.len() >= limit {
                return Ok(out);
            }
        }
        if exhausted {
            out.next = None;
            return Ok(out);
        }
        if out.scanned as usize >= max_scan {
            return Ok(out);
        }
    }
}

/// The id of the newest entry (`0-0` for an empty or missing stream): where a live
/// follower starts.
pub async fn last_id(registry: &RedisRegistry) -> registry::Result<String> {
    let mut conn = registry.conn();
    let raw: RedisValue = redis::cmd("XREVRANGE")
        .arg(registry.keys().audit())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await?;
    Ok(parse_entries(raw)
        .into_iter()
        .next()
        .map(|e| e.id)
        .unwrap_or_else(|| "0-0".to_owned()))
}

/// The entries after `after_id` (at most `count`), waiting up to `block` for one with
/// `XREAD BLOCK` on a connection of its own (a blocked command would stall every other
/// call on the shared one). Empty when nothing came. On Redis Cluster it does not block
/// (the caller polls).
pub async fn read_after(
    registry: &RedisRegistry,
    after_id: &str,
    count: usize,
    block: Duration,
) -> registry::Result<Vec<Entry>> {
    let key = registry.keys().audit();
    let block_ms = u64::try_from(block.as_millis()).unwrap_or(u64::MAX);
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(count);
    let raw: RedisValue = match registry.connection().dedicated().await? {
        Some(mut dedicated) => {
            cmd.arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&key)
                .arg(after_id);
            let bound = block + registry.timeouts().response;
            match tokio::time::timeout(bound, cmd.query_async(&mut dedicated)).await {
                Ok(result) => result?,
                Err(_) => {
                    let err = std::io::Error::new(std::io::ErrorKind::TimedOut, "XREAD timed out");
                    return Err(registry::Error::Unavailable(err.into()));
                }
            }
        }
        None => {
            cmd.arg("STREAMS").arg(&key).arg(after_id);
            let mut conn = registry.conn();
            let raw: RedisValue = cmd.query_async(&mut conn).await?;
            if matches!(raw, RedisValue::Nil) {
                tokio::time::sleep(block.min(Duration::from_millis(500))).await;
            }
            raw
        }
    };
    // XREAD: [[key, [entries]]] (RESP2), or a map key -> entries (RESP3); nil on timeout.
    let streams = match raw {
        RedisValue::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                RedisValue::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect::<Vec<_>>(),
        RedisValue::Map(pairs) => pairs.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    Ok(streams.into_iter().flat_map(parse_entries).collect())
}

/// `[[id, [field, value, ...]], ...]` -> entries (anything else skipped).
fn parse_entries(raw: RedisValue) -> Vec<Entry> {
    let RedisValue::Array(items) = raw else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let RedisValue::Array(mut pair) = item else {
                return None;
            };
            if pair.len() != 2 {
                return None;
            }
            let fields = pair.pop()?;
            let id = text_of(pair.pop()?)?;
            let mut map = HashMap::new();
            match fields {
                RedisValue::Array(flat) => {
                    let mut it = flat.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        if let (Some(k), Some(v)) = (text_of(k), text_of(v)) {
                            map.insert(k, v);
                        }
                    }
                }
                RedisValue::Map(pairs) => {
                    for (k, v) in pairs {
                        if let (Some(k), Some(v)) = (text_of(k), text_of(v)) {
                            map.insert(k, v);
                        }
                    }
                }
                _ => return None,
            }
            Some(Entry::from_fields(id, &map))
        })
        .collect()
}

fn text_of(value: RedisValue) -> Option<String> {
    match value {
        RedisValue::BulkString(bytes) => String::from_utf8(bytes).ok(),
        RedisValue::SimpleString(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_survives_its_stream_fields() {
        let entry = Entry {
            id: "1-0".into(),
            ts: 1_700_000_000_000,
            request_id: "r1".into(),
            server: "s".into(),
            tool: "t".into(),
            transport: "mcp".into(),
            caller: Some("10.0.0.1".into()),
            session: Some("abc".into()),
            status: "error".into(),
            latency_ms: 12.5,
            rest_status: Some(503),
            error: Some("upstream_status".into()),
            args_bytes: 10,
            result_bytes: 20,
            args: Some("{\"a\":1}".into()),
        };
        let map: HashMap<String, String> = entry
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_owned()))
            .collect();
        assert_eq!(Entry::from_fields("1-0".into(), &map), entry);
        let bare = Entry {
            status: "ok".into(),
            ..Entry::default()
        };
        let names: Vec<_> = bare.fields().into_iter().map(|(k, _)| k).collect();
        assert!(!names.contains(&"args") && !names.contains(&"caller"));
    }

    #[test]
    fn latency_is_written_with_three_decimals_as_format_would() {
        for ms in [
            0.0,
            0.0004,
            0.0005,
            0.001,
            0.01,
            0.1,
            1.0,
            12.5,
            12.3456,
            999.9995,
            1234567.891,
        ] {
            assert_eq!(millis_3(ms), format!("{ms:.3}"), "{ms}");
        }
        assert_eq!(millis_3(f64::NAN), "0.000");
        assert_eq!(millis_3(-1.0), "0.000");
    }

    #[test]
    fn filters_match_every_given_field() {
        let entry = Entry {
            server: "s".into(),
            tool: "t".into(),
            status: "ok".into(),
            request_id: "r".into(),
            ..Entry::default()
        };
        let check = |filter: Filter, want: bool| assert_eq!(filter.matches(&entry), want);
        check(Filter::default(), true);
        check(
            Filter {
                server: Some("s".into()),
                tool: Some("t".into()),
                ..Filter::default()
            },
            true,
        );
        check(
            Filter {
                status: Some("error".into()),
                ..Filter::default()
            },
            false,
        );
        check(
            Filter {
                request_id: Some("x".into()),
                ..Filter::default()
            },
            false,
        );
    }

    #[tokio::test]
    async fn a_full_buffer_drops_and_counts_without_waiting() {
        let (tx, _rx) = mpsc::channel(1);
        let sink = Sink {
            tx: Some(tx),
            stats: Arc::default(),
        };
        sink.record(Entry::default());
        sink.record(Entry::default());
        sink.record(Entry::default());
        assert_eq!(sink.stats().dropped.load(Ordering::Relaxed), 2);
        let off = Sink::disabled();
        off.record(Entry::default());
        assert!(!off.is_enabled());
        assert_eq!(off.stats().dropped.load(Ordering::Relaxed), 0);
    }
}
