//! Owns log set-up and the canonical log field names. One JSON object per line on stdout
//! (or plain text for a terminal), written in batches by a background thread (`writer`)
//! so logging never blocks the hot path nor wakes a thread per line. Span fields (`request_id`, `server`, `tool`, ...) are copied onto
//! every event inside the span, so each line stands on its own in Kibana or Datadog.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};

mod writer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};
pub use writer::{batch_writer, BatchWriter, WriterGuard};

use crate::config::{LogArgs, LogFormat};

/// The canonical field names, as the PRD names them. Use these, never ad-hoc spellings.
pub mod fields {
    pub const SERVICE: &str = "service";
    pub const EVENT: &str = "event";
    pub const REQUEST_ID: &str = "request_id";
    pub const SERVER: &str = "server";
    pub const TOOL: &str = "tool";
    /// Milliseconds, as a number (the PRD's `latency`).
    pub const LATENCY: &str = "latency";
}

/// Keeps the background log writer alive; dropping it writes what is queued.
pub struct LogGuard {
    _writer: WriterGuard,
}

/// Keeps one success-path event in `every` (1 = all, 0 = none): the process-wide one is
/// [`SAMPLER`], set once by [`init`]; tests use their own, so no test changes what
/// another reads.
struct Sampler {
    every: AtomicU64,
    counter: AtomicU64,
}

impl Sampler {
    const fn new() -> Sampler {
        Sampler {
            every: AtomicU64::new(1),
            counter: AtomicU64::new(0),
        }
    }

    fn sampled(&self) -> bool {
        match self.every.load(Ordering::Relaxed) {
            0 => false,
            1 => true,
            every => self
                .counter
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(every),
        }
    }

    fn set_fraction(&self, fraction: f64) {
        let every = if fraction <= 0.0 {
            0
        } else {
            (1.0 / fraction).round().max(1.0) as u64
        };
        self.every.store(every, Ordering::Relaxed);
    }
}

static SAMPLER: Sampler = Sampler::new();

/// Whether to log this success-path event. Errors skip this check: they are never sampled.
pub fn sampled() -> bool {
    SAMPLER.sampled()
}

/// Dependencies that log whole requests and responses at debug level, headers and
/// bodies included (Pingora's "Sending header to upstream RequestHeader {..}" and body
/// events, rmcp's "response message"): credentials and admin tokens. They stay at info
/// when `MCP_LOG_LEVEL` asks for debug or trace, unless it names them.
const VERBATIM_DEPENDENCIES: [&str; 2] = ["pingora", "rmcp"];

/// `MCP_LOG_LEVEL` as the filter's directives: `level` plus `{dependency}=info` for each
/// of [`VERBATIM_DEPENDENCIES`] it does not name, when its default level is debug or
/// trace (a quieter default stays as it is).
pub fn filter_directives(level: &str) -> String {
    let verbose = level.split(',').any(|directive| {
        let directive = directive.trim();
        !directive.contains('=')
            && (directive.eq_ignore_ascii_case("debug") || directive.eq_ignore_ascii_case("trace"))
    });
    let mut directives = level.to_owned();
    if verbose {
        for target in VERBATIM_DEPENDENCIES {
            if !level.split(',').any(|d| d.trim().starts_with(target)) {
                directives.push_str(&format!(",{target}=info"));
            }
        }
    }
    directives
}

/// Installs the global subscriber for `service` (also bridging the `log` crate, which
/// Pingora uses). Fails if the level filter does not parse or a subscriber is installed.
pub fn init(service: &'static str, args: &LogArgs) -> anyhow::Result<LogGuard> {
    use anyhow::Context as _;
    let filter = EnvFilter::try_new(filter_directives(&args.log_level)).context("MCP_LOG_LEVEL")?;
    SAMPLER.set_fraction(args.log_sample);
    let (writer, guard) = batch_writer(service, std::io::stdout());
    let registry = tracing_subscriber::registry().with(filter);
    let result = match args.log_format {
        LogFormat::Json => registry.with(JsonLayer { service, writer }).try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_target(false),
            )
            .try_init(),
    };
    result.context("installing the log subscriber")?;
    Ok(LogGuard { _writer: guard })
}

/// Formats one JSON object per event.
struct JsonLayer {
    service: &'static str,
    writer: BatchWriter,
}

/// Fields recorded on a span, stored in its extensions.
struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let number = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.0.insert(field.name().to_owned(), number);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole chain, so `tool.call.failed` carries its cause.
        self.0
            .insert(field.name().to_owned(), error_chain(value).into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for JsonLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut fields = Map::new();
            attrs.record(&mut JsonVisitor(&mut fields));
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor(&mut fields.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // Written straight into the line, no intermediate map: this runs for every log
        // line on the call path.
        let mut line = JsonLine::new();
        line.raw_field("timestamp", write_rfc3339_now);
        line.str_field("level", event.metadata().level().as_str());
        line.str_field(fields::SERVICE, self.service);
        let own = event.metadata().fields();
        if let Some(scope) = ctx.event_scope(event) {
            // Innermost span first, so it wins over outer ones (a name is written
            // once); the event's own fields win over all.
            for span in scope {
                if let Some(span_fields) = span.extensions().get::<SpanFields>() {
                    for (name, value) in &span_fields.0 {
                        if own.field(name).is_none() {
                            line.span_field(name, value);
                        }
                    }
                }
            }
        }
        event.record(&mut line);
        if !line.has(fields::EVENT) {
            let target = format!("log.{}", event.metadata().target());
            line.str_field(fields::EVENT, &target);
        }
        self.writer.write_line(&line.finish());
    }
}

/// Most event field names a line remembers for its duplicate check; more than any event
/// of this code base has. A name past them is still checked against the line's own
/// fields and its span fields.
const MAX_EVENT_NAMES: usize = 24;

/// One JSON object being written, with the names written so far (no duplicates).
/// Event field names are `'static` and kept in an array (no allocation per line); only a
/// span's field names are owned copies.
struct JsonLine {
    out: Vec<u8>,
    names: [&'static str; MAX_EVENT_NAMES],
    n_names: usize,
    span_names: Vec<String>,
}

impl JsonLine {
    fn new() -> JsonLine {
        JsonLine {
            out: Vec::with_capacity(320),
            names: [""; MAX_EVENT_NAMES],
            n_names: 0,
            span_names: Vec::new(),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.names[..self.n_names].contains(&name) || self.span_names.iter().any(|n| n == name)
    }

    /// Writes `"name":` (with the separator) and lets `value` write the value. A name
    /// already written is skipped: the line's own fields (`timestamp`, `level`,
    /// `service`) come first and an event field of the same name never duplicates them.
    fn raw_field(&mut self, name: &'static str, value: impl FnOnce(&mut Vec<u8>)) {
        if self.has(name) {
            return;
        }
        self.write_name(name);
        value(&mut self.out);
        if let Some(slot) = self.names.get_mut(self.n_names) {
            *slot = name;
            self.n_names += 1;
        }
    }

    fn write_name(&mut self, name: &str) {
        let separator = if self.out.is_empty() { b'{' } else { b',' };
        self.out.push(separator);
        write_json_str(&mut self.out, name);
        self.out.push(b':');
    }

    fn str_field(&mut self, name: &'static str, value: &str) {
        self.raw_field(name, |out| write_json_str(out, value));
    }

    fn value_field(&mut self, name: &'static str, value: &Value) {
        self.raw_field(name, |out| {
            let _ = serde_json::to_writer(out, value);
        });
    }

    /// A span's field (its name is not `'static`).
    fn span_field(&mut self, name: &str, value: &Value) {
        if self.has(name) {
            return;
        }
        self.write_name(name);
        let _ = serde_json::to_writer(&mut self.out, value);
        self.span_names.push(name.to_owned());
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"}\n");
        self.out
    }
}

/// Writes `text` as a JSON string. Text with nothing to escape (every name and nearly
/// every value of a log line) is copied in one go; anything else goes through
/// `serde_json`, whose escaping the line's readers expect.
fn write_json_str(out: &mut Vec<u8>, text: &str) {
    if !needs_escaping(text.as_bytes()) {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(out, text);
    }
}

/// Whether JSON needs any of these bytes escaped (`"`, `\\` or a control character),
/// eight bytes at a time: a log line's strings are URLs, ids and names, scanned on every
/// call's path.
fn needs_escaping(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte of `v` is zero exactly where the result has its high bit set (the classic
    // "has a zero byte" test; exact when no byte of `v` is 0x80 or above, which the
    // `!word` term rules out for the bytes that matter).
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // Bytes below 0x20 (non-ASCII bytes have their high bit set and never count).
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
        let quote = has_zero(word ^ (ONES * u64::from(b'"')));
        let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
        if control | quote | backslash != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Formats a value straight into a JSON string's body, escaped as `serde_json` escapes
/// (no intermediate `String`: `%` and `?` fields are most of a call's log fields).
struct JsonEscaped<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for JsonEscaped<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let out = &mut *self.0;
        let bytes = text.as_bytes();
        let mut start = 0;
        for (i, &byte) in bytes.iter().enumerate() {
            let escape: &[u8] = match byte {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0x00..=0x1f => b"",
                _ => continue,
            };
            out.extend_from_slice(&bytes[start..i]);
            if escape.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            } else {
                out.extend_from_slice(escape);
            }
            start = i + 1;
        }
        out.extend_from_slice(&bytes[start..]);
        Ok(())
    }
}

impl Visit for JsonLine {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let number = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.value_field(field.name(), &number);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw_field(field.name(), |out| {
            let _ = serde_json::to_writer(out, &value);
        });
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw_field(field.name(), |out| {
            let _ = serde_json::to_writer(out, &value);
        });
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw_field(field.name(), |out| {
            out.extend_from_slice(if value { b"true" } else { b"false" })
        });
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.str_field(field.name(), value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.str_field(field.name(), &error_chain(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.raw_field(field.name(), |out| {
            out.push(b'"');
            let _ = std::fmt::Write::write_fmt(&mut JsonEscaped(out), format_args!("{value:?}"));
            out.push(b'"');
        });
    }
}

/// An error and its sources, `outer: inner: root`.
/// An error and each `source()` below it on one line, joined by ": " (what error
/// messages shown to callers and the `error` log field carry).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    join_chain(error, ": ")
}

/// The PRD's `traceback` field of a failure: the error, then each `source()` below it on
/// its own line as `caused by: ...`, outermost first. Rust errors carry no stack; their
/// cause chain is what says where a failure came from (e.g. a refused TCP connect under
/// an HTTP client error).
pub fn traceback(error: &dyn std::error::Error) -> String {
    join_chain(error, "\ncaused by: ")
}

fn join_chain(error: &dyn std::error::Error, separator: &str) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(separator);
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Current UTC time as `"2026-11-24T14:02:16.123Z"` (quoted), written into `out`. The
/// date and time of day are formatted once a second per thread, then copied.
fn write_rfc3339_now(out: &mut Vec<u8>) {
    thread_local! {
        /// The second last formatted, and `"YYYY-MM-DDTHH:MM:SS` for it.
        static SECOND: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != secs {
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days as i64);
        let mut text = Vec::with_capacity(20);
        let _ = write!(
            text,
            "\"{:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            year.clamp(0, 9999),
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60,
        );
        prefix.copy_from_slice(&text[..20]);
        SECOND.set((secs, prefix));
    }
    out.extend_from_slice(&prefix);
    let millis = now.subsec_millis();
    out.extend_from_slice(&[
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
        b'"',
    ]);
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_keeps_dependencies_that_log_headers_and_bodies_at_info() {
        assert_eq!(
            super::filter_directives("debug"),
            "debug,pingora=info,rmcp=info"
        );
        assert_eq!(
            super::filter_directives("mcp_gateway=trace,TRACE"),
            "mcp_gateway=trace,TRACE,pingora=info,rmcp=info"
        );
        // Named: the operator's choice. Quieter defaults: unchanged.
        assert_eq!(
            super::filter_directives("debug,pingora_proxy=debug"),
            "debug,pingora_proxy=debug,rmcp=info"
        );
        assert_eq!(super::filter_directives("info"), "info");
        assert_eq!(
            super::filter_directives("warn,mcp_worker=debug"),
            "warn,mcp_worker=debug"
        );
        for level in ["debug", "warn", "debug,rmcp=trace"] {
            assert!(
                tracing_subscriber::EnvFilter::try_new(super::filter_directives(level)).is_ok()
            );
        }
    }

    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn debug_and_display_values_are_escaped_as_serde_json_escapes_them() {
        let tricky = "quote \" backslash \\ newline \n cr \r tab \t bell \u{7} nul \u{0} \u{1f} del \u{7f} é ✓";
        let mut out = Vec::new();
        let _ = std::fmt::Write::write_str(&mut JsonEscaped(&mut out), tricky);
        let expected = serde_json::to_string(tricky).expect("json");
        assert_eq!(
            format!("\"{}\"", String::from_utf8(out).expect("utf8")),
            expected
        );
        let lines = lines_of(|| {
            tracing::info!(event = "e", shown = %tricky, debugged = ?tricky);
        });
        assert_eq!(lines[0]["shown"], tricky);
        assert_eq!(lines[0]["debugged"], format!("{tricky:?}"));
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for text in [
            "",
            "request_id",
            "http://127.0.0.1:8080/api/fruits/1?family=Rosaceae",
            "quote \" backslash \\ newline \n tab \t nul \u{0} unit \u{1f}",
            "del \u{7f} é ✓ 🍎",
        ] {
            let mut out = Vec::new();
            write_json_str(&mut out, text);
            assert_eq!(
                String::from_utf8(out).expect("utf8"),
                serde_json::to_string(text).expect("json"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn every_byte_that_needs_escaping_is_found_at_every_offset() {
        for special in (0u8..0x20).chain([b'"', b'\\']) {
            for len in 1..20 {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    assert!(needs_escaping(&bytes), "{special:#x} at {at} of {len}");
                }
            }
        }
        for plain in [
            &b""[..],
            b"request_id",
            b"0123456789abcdef0123",
            "é ✓ 🍎 \u{7f} ~!".as_bytes(),
        ] {
            assert!(!needs_escaping(plain), "{plain:?}");
        }
        for byte in 0x20u8..=0xff {
            let bytes = [b'x', b'x', b'x', b'x', b'x', b'x', b'x', byte, b'y'];
            let expected = byte == b'"' || byte == b'\\';
            assert_eq!(needs_escaping(&bytes), expected, "{byte:#x}");
        }
    }

    #[test]
    fn a_line_with_more_fields_than_the_name_array_holds_keeps_them_all() {
        let lines = lines_of(|| {
            tracing::info!(
                event = "wide",
                f01 = 1u64,
                f02 = 2u64,
                f03 = 3u64,
                f04 = 4u64,
                f05 = 5u64,
                f06 = 6u64,
                f07 = 7u64,
                f08 = 8u64,
                f09 = 9u64,
                f10 = 10u64,
                f11 = 11u64,
                f12 = 12u64,
                f13 = 13u64,
                f14 = 14u64,
                f15 = 15u64,
                f16 = 16u64,
                f17 = 17u64,
                f18 = 18u64,
                f19 = 19u64,
                f20 = 20u64,
                f21 = 21u64,
                f22 = 22u64,
                f23 = 23u64,
                f24 = 24u64,
                f25 = 25u64,
                f26 = u64::MAX,
                f27 = -27i64,
                service = "other"
            );
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["event"], "wide");
        assert_eq!(line["f01"], 1);
        assert_eq!(line["f25"], 25);
        assert_eq!(line["f26"], u64::MAX);
        assert_eq!(line["f27"], -27);
        assert_eq!(line["service"], "svc", "the line's own field still wins");
    }

    #[test]
    fn the_timestamp_is_the_current_second_to_the_millisecond() {
        let before = std::time::SystemTime::now();
        let mut first = Vec::new();
        let mut second = Vec::new();
        write_rfc3339_now(&mut first);
        write_rfc3339_now(&mut second);
        let after = std::time::SystemTime::now();
        for stamp in [&first, &second] {
            let text: String = serde_json::from_slice(stamp).expect("a JSON string");
            assert_eq!(text.len(), 24, "{text}");
            assert!(text.ends_with('Z'), "{text}");
            let formatted = |t: std::time::SystemTime| {
                let mut out = Vec::new();
                let secs = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let (y, m, d) = civil_from_days((secs / 86_400) as i64);
                let rem = secs % 86_400;
                let _ = write!(
                    out,
                    "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                    rem / 3600,
                    rem % 3600 / 60,
                    rem % 60
                );
                String::from_utf8(out).unwrap_or_default()
            };
            let (low, high) = (formatted(before), formatted(after));
            assert!(
                text[..19] >= *low.as_str() && text[..19] <= *high.as_str(),
                "{text} within {low} .. {high}"
            );
        }
    }

    /// Lines a JsonLayer writes for what `emit` logs.
    fn raw_lines_of(emit: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if let Ok(mut out) = self.0.lock() {
                    out.extend_from_slice(buf);
                }
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let (writer, guard) = batch_writer("svc", sink.clone());
        let subscriber = tracing_subscriber::registry().with(JsonLayer {
            service: "svc",
            writer,
        });
        tracing::subscriber::with_default(subscriber, emit);
        drop(guard);
        let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf8");
        text.lines().map(str::to_owned).collect()
    }

    fn lines_of(emit: impl FnOnce()) -> Vec<Value> {
        raw_lines_of(emit)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn an_event_field_named_like_a_common_field_never_duplicates_it() {
        let lines = raw_lines_of(|| {
            let span = tracing::info_span!("outer", level = "span");
            let _entered = span.enter();
            tracing::info!(
                event = "process.shutdown",
                service = "other",
                timestamp = 1u64
            );
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let raw = &lines[0];
        for key in ["\"service\":", "\"timestamp\":", "\"level\":", "\"event\":"] {
            assert_eq!(raw.matches(key).count(), 1, "{key} once in {raw}");
        }
        let line: Value = serde_json::from_str(raw).expect("json");
        assert_eq!(line["service"], "svc", "the line's own service wins");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["event"], "process.shutdown");
    }

    #[test]
    fn lines_are_json_with_the_common_fields_and_typed_values() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other("root \"cause\""));
        let lines = lines_of(|| {
            let span = tracing::info_span!("call", request_id = "r-1", server = "outer");
            let _entered = span.enter();
            tracing::info!(
                event = "tool.http.response",
                server = "fruits_api",
                status = 200u64,
                latency = 1.5,
                ok = true,
                delta = -3i64,
                url = "http://x/\n\"q\"",
                error = &err as &dyn std::error::Error
            );
            tracing::warn!("plain message {}", 42);
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let line = &lines[0];
        assert!(line["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 24));
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["service"], "svc");
        assert_eq!(line["event"], "tool.http.response");
        assert_eq!(line["request_id"], "r-1", "span fields are copied");
        assert_eq!(line["server"], "fruits_api", "the event's own field wins");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency"], 1.5);
        assert_eq!(line["ok"], true);
        assert_eq!(line["delta"], -3);
        assert_eq!(line["url"], "http://x/\n\"q\"");
        assert_eq!(line["error"], "outer: root \"cause\"");
        let raw = serde_json::to_string(line).expect("json");
        assert_eq!(
            raw.matches("\"server\"").count(),
            1,
            "no duplicate keys: {raw}"
        );
        assert_eq!(lines[1]["message"], "plain message 42");
        assert_eq!(lines[1]["event"], "log.mcp_core::log::tests");
        assert_eq!(lines[1]["request_id"], "r-1", "still inside the span");
    }

    #[test]
    fn a_traceback_has_one_line_per_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("calling the REST API")]
        struct Outer(#[source] Middle);
        #[derive(Debug, thiserror::Error)]
        #[error("tcp connect error")]
        struct Middle(#[source] std::io::Error);
        let err = Outer(Middle(std::io::Error::other("connection refused")));
        assert_eq!(
            traceback(&err),
            "calling the REST API\ncaused by: tcp connect error\ncaused by: connection refused"
        );
        assert_eq!(traceback(&std::io::Error::other("alone")), "alone");
    }

    #[test]
    fn sampling_keeps_the_fraction() {
        // A sampler of its own: the process-wide one stays as other tests expect it.
        let sampler = super::Sampler::new();
        sampler.set_fraction(0.25);
        let kept = (0..1000).filter(|_| sampler.sampled()).count();
        assert_eq!(kept, 250);
        sampler.set_fraction(0.0);
        assert!(!(0..10).any(|_| sampler.sampled()));
        sampler.set_fraction(1.0);
        assert!((0..10).all(|_| sampler.sampled()));
        assert!(
            sampled(),
            "the process-wide sampler keeps every event by default"
        );
    }
}
