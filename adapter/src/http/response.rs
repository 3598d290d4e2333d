//! Owns reading a REST API response into output deltas: JSON (with
//! `responseMapping.pick`), text, and streamed
//! bodies (Server-Sent Events, NDJSON, chunked text) where each event, line or chunk
//! becomes its own delta as it arrives. `responseMapping.pick` applies to JSON bodies.
//! Bodies are read under a size cap.

use bytes::{Bytes, BytesMut};
use serde_json::value::RawValue;
use serde_json::Value;

use http_body_util::BodyExt;

use super::{Deltas, Error, Outcome};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Json,
    Sse,
    Ndjson,
    /// Chunked text with no length: each chunk is a delta.
    TextStream,
    Text,
}

/// A REST API's answer, its body read under the call's deadline.
pub struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: hyper::body::Incoming,
    /// The connection, given back to the pool once the body has been read to its end.
    lease: Option<super::pool::Lease>,
    deadline: tokio::time::Instant,
    timeout_ms: u64,
}

impl Answer {
    pub(super) fn new(
        response: http::Response<hyper::body::Incoming>,
        lease: super::pool::Lease,
        deadline: tokio::time::Instant,
        timeout_ms: u64,
    ) -> Answer {
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            lease: Some(lease),
            deadline,
            timeout_ms,
        }
    }

    fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }

    /// The REST API's status.
    pub(super) fn status(&self) -> u16 {
        self.status
    }

    /// The `Retry-After` it asked for (delta-seconds or an HTTP date), as a wait from now.
    pub(super) fn retry_after(&self) -> Option<std::time::Duration> {
        self.headers
            .get(http::header::RETRY_AFTER)
            .and_then(|value| {
                crate::resilience::parse_retry_after(value.as_bytes(), std::time::SystemTime::now())
            })
    }

    /// The declared `Content-Length`.
    fn content_length(&self) -> Option<u64> {
        self.headers
            .get(http::header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The next piece of the body, `None` at its end.
    async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            let frame = match tokio::time::timeout_at(self.deadline, self.body.frame()).await {
                Err(_) => return Err(Error::Timeout(self.timeout_ms)),
                Ok(None) => {
                    if let Some(lease) = self.lease.take() {
                        lease.release();
                    }
                    return Ok(None);
                }
                Ok(Some(Err(err))) => return Err(Error::Body(Box::new(err))),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

fn kind_of(response: &Answer) -> Kind {
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    match essence {
        "text/event-stream" => Kind::Sse,
        "application/x-ndjson"
        | "application/jsonl"
        | "application/jsonlines"
        | "application/json-seq" => Kind::Ndjson,
        e if e == "application/json" || e.ends_with("+json") => Kind::Json,
        e if response.content_length().is_none() && (e.starts_with("text/") || e.is_empty()) => {
            Kind::TextStream
        }
        _ => Kind::Text,
    }
}

/// One piece of a tool's output.
#[derive(Debug)]
pub enum Delta {
    /// A value the adapter built: text, the part of a JSON body that
    /// `responseMapping.pick` chose, a streamed event or line.
    Value(Value),
    /// A whole JSON body passed on as the REST API sent it: checked to be JSON, on one
    /// line. Parsing it into a tree only to write it out again was a fifth of a call's
    /// instructions in the worker.
    Json(Box<RawValue>),
}

impl Delta {
    /// A JSON body as a delta: passed on as it is, unless it spans lines (pretty
    /// printed), which would break an SSE `data:` line; then it is parsed and written
    /// compact.
    pub fn from_json_body(body: &[u8]) -> Result<Delta, serde_json::Error> {
        let raw: Box<RawValue> = serde_json::from_slice(body)?;
        if raw.get().bytes().any(|b| b == b'\n' || b == b'\r') {
            return serde_json::from_str(raw.get()).map(Delta::Value);
        }
        Ok(Delta::Json(raw))
    }

    /// The output as a JSON value (the MCP result needs one).
    pub fn into_value(self) -> Value {
        match self {
            Delta::Value(value) => value,
            // Checked when it was made: it parses.
            Delta::Json(raw) => serde_json::from_str(raw.get())
                .unwrap_or_else(|_| Value::String(raw.get().to_owned())),
        }
    }

    /// Appends the output as JSON on one line.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Delta::Value(value) => write_json(out, value),
            Delta::Json(raw) => out.extend_from_slice(raw.get().as_bytes()),
        }
    }
}

/// Appends `value` as compact JSON, straight into `out` (no intermediate `String`, no
/// `fmt` machinery). Serializing a `Value` into memory cannot fail; if it ever did,
/// `null` keeps the frame well formed.
pub(crate) fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// Reads the whole response and sends its deltas.
pub async fn read(
    mut response: Answer,
    pick_path: Option<&serde_json_path::JsonPath>,
    max_bytes: usize,
    deltas: Deltas<'_>,
) -> Result<Outcome, Error> {
    let status = response.status;
    let kind = kind_of(&response);
    if status >= 400 {
        // The status is the news; the body only explains it, so a large one is cut to
        // its first bytes rather than turning the error into `upstream_too_large`.
        let (body, cut) = read_prefix(&mut response, ERROR_BODY_BYTES.min(max_bytes)).await?;
        let body = match serde_json::from_slice(&body) {
            Ok(json) if !cut => json,
            _ => {
                let mut text = String::from_utf8_lossy(&body).into_owned();
                if cut {
                    text.push_str(" [cut]");
                }
                Value::String(text)
            }
        };
        return Err(Error::Status { status, body });
    }
    let mut outcome = Outcome {
        status,
        n_deltas: 0,
        streamed: false,
    };
    match kind {
        Kind::Json | Kind::Text => {
            let body = read_all(&mut response, max_bytes).await?;
            let delta = if body.is_empty() {
                Delta::Value(Value::Null)
            } else if kind == Kind::Json {
                match pick_path {
                    Some(path) => {
                        let value = serde_json::from_slice(&body).map_err(Error::InvalidJson)?;
                        Delta::Value(pick(path, &value))
                    }
                    None => Delta::from_json_body(&body).map_err(Error::InvalidJson)?,
                }
            } else {
                Delta::Value(Value::String(String::from_utf8_lossy(&body).into_owned()))
            };
            deltas.send(delta).await?;
            outcome.n_deltas = 1;
        }
        Kind::Sse | Kind::Ndjson | Kind::TextStream => {
            outcome.streamed = true;
            let mut splitter = Splitter::new(kind, max_bytes);
            let mut text_tail = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if kind == Kind::TextStream {
                    text_tail.extend_from_slice(&chunk);
                    let valid = utf8_prefix_len(&text_tail);
                    if valid > 0 {
                        let text: Vec<u8> = text_tail.drain(..valid).collect();
                        send(
                            deltas,
                            Value::String(String::from_utf8_lossy(&text).into_owned()),
                        )
                        .await?;
                        outcome.n_deltas += 1;
                    }
                    continue;
                }
                let mut items = Vec::new();
                splitter.push(&chunk, max_bytes, &mut items)?;
                for item in items {
                    send(deltas, item).await?;
                    outcome.n_deltas += 1;
                }
            }
            if !text_tail.is_empty() {
                send(
                    deltas,
                    Value::String(String::from_utf8_lossy(&text_tail).into_owned()),
                )
                .await?;
                outcome.n_deltas += 1;
            }
            if let Some(item) = splitter.finish() {
                send(deltas, item).await?;
                outcome.n_deltas += 1;
            }
        }
    }
    Ok(outcome)
}

async fn send(deltas: Deltas<'_>, value: Value) -> Result<(), Error> {
    deltas.send(Delta::Value(value)).await
}

/// How much of an error answer's body a tool error carries.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// Reads up to `limit` bytes of the body; `true` when there was more (left unread).
async fn read_prefix(response: &mut Answer, limit: usize) -> Result<(Bytes, bool), Error> {
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body.freeze(), true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), false))
}

async fn read_all(response: &mut Answer, max_bytes: usize) -> Result<Bytes, Error> {
    if response
        .content_length()
        .is_some_and(|len| len > max_bytes as u64)
    {
        return Err(Error::TooLarge(max_bytes));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max_bytes {
            return Err(Error::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Length of the longest prefix that is complete UTF-8 (a split character waits for
/// the next chunk; invalid bytes are passed on and replaced later).
fn utf8_prefix_len(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(err) if err.error_len().is_none() => err.valid_up_to(),
        Err(_) => bytes.len(),
    }
}

/// Splits a streamed body into SSE events ([`crate::sse::Parser`]) or NDJSON lines, each
/// byte scanned once whatever the chunking.
enum Splitter {
    Sse(crate::sse::Parser),
    Lines {
        buffer: BytesMut,
        /// Bytes of `buffer` already scanned for a newline.
        scanned: usize,
    },
}

impl Splitter {
    fn new(kind: Kind, max_bytes: usize) -> Splitter {
        match kind {
            Kind::Sse => Splitter::Sse(crate::sse::Parser::with_limit(max_bytes)),
            _ => Splitter::Lines {
                buffer: BytesMut::new(),
                scanned: 0,
            },
        }
    }

    /// Feeds a chunk; the items it completes are appended to `out`. An event or line
    /// larger than `max_bytes` fails the call.
    fn push(&mut self, chunk: &[u8], max_bytes: usize, out: &mut Vec<Value>) -> Result<(), Error> {
        match self {
            Splitter::Sse(parser) => parser
                .feed(chunk, |event| out.push(event_value(event.data)))
                .map_err(|_| Error::TooLarge(max_bytes)),
            Splitter::Lines { buffer, scanned } => {
                buffer.extend_from_slice(chunk);
                while let Some(pos) = buffer[*scanned..].iter().position(|&b| b == b'\n') {
                    let line = buffer.split_to(*scanned + pos + 1);
                    *scanned = 0;
                    out.extend(line_value(&line[..line.len() - 1]));
                }
                *scanned = buffer.len();
                if buffer.len() > max_bytes {
                    return Err(Error::TooLarge(max_bytes));
                }
                Ok(())
            }
        }
    }

    /// The last item of a body that ended without its terminator.
    fn finish(&mut self) -> Option<Value> {
        match self {
            Splitter::Sse(parser) => parser.finish().map(|event| event_value(event.data)),
            Splitter::Lines { buffer, .. } => line_value(&std::mem::take(buffer)),
        }
    }
}

/// An SSE event's data as a delta: JSON when it parses, else the text.
fn event_value(data: String) -> Value {
    serde_json::from_str(&data).unwrap_or(Value::String(data))
}

fn line_value(line: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
}

/// Applies `responseMapping.pick` (RFC 9535 JSONPath): one match gives that value,
/// several an array, none `null`.
pub fn pick(path: &serde_json_path::JsonPath, value: &Value) -> Value {
    let nodes = path.query(value).all();
    match nodes.len() {
        0 => Value::Null,
        1 => nodes[0].clone(),
        _ => Value::Array(nodes.into_iter().cloned().collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn items(kind: Kind, chunks: &[&str]) -> Vec<Value> {
        let mut splitter = Splitter::new(kind, 1 << 20);
        let mut out = Vec::new();
        for chunk in chunks {
            splitter
                .push(chunk.as_bytes(), 1 << 20, &mut out)
                .expect("fits");
        }
        out.extend(splitter.finish());
        out
    }

    #[test]
    fn sse_events_split_across_chunks() {
        let got = items(
            Kind::Sse,
            &[
                "data: {\"seq\"",
                ": 0}\n\n: comment\n\nevent: x\ndata: a\ndata: b\r\n\r\ndata: tail",
            ],
        );
        assert_eq!(got, vec![json!({"seq": 0}), json!("a\nb"), json!("tail")]);
    }

    #[test]
    fn ndjson_lines_split_across_chunks() {
        let got = items(
            Kind::Ndjson,
            &[
                "{\"seq\": 0}\n{\"se",
                "q\": 1}\n\nnot json\n{\"last\": true}",
            ],
        );
        assert_eq!(
            got,
            vec![
                json!({"seq": 0}),
                json!({"seq": 1}),
                json!("not json"),
                json!({"last": true})
            ]
        );
    }

    #[test]
    fn pick_one_many_none() {
        let doc = json!({"items": [{"id": 1}, {"id": 2}], "title": "t"});
        let path = |p: &str| serde_json_path::JsonPath::parse(p).expect("path");
        assert_eq!(pick(&path("$.title"), &doc), json!("t"));
        assert_eq!(pick(&path("$.items[*].id"), &doc), json!([1, 2]));
        assert_eq!(pick(&path("$.missing"), &doc), Value::Null);
    }

    #[test]
    fn utf8_boundaries_wait_for_the_rest() {
        let bytes = "é".as_bytes();
        assert_eq!(utf8_prefix_len(&bytes[..1]), 0);
        assert_eq!(utf8_prefix_len(bytes), 2);
    }
}
