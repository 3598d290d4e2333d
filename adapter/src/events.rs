//! Owns the hub call protocol's event stream: the SSE frames of one call
//! (`tool_call.started`, one `output.delta` per result, then `tool_call.completed` or
//! `tool_call.error`, every one carrying the `request_id`), produced as the REST call
//! progresses. The worker's `/call` routes and the gateway's rollback mode both send
//! exactly this stream, so they speak the same protocol byte for byte.

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::http::response::write_json;
use crate::http::{Delta, HttpAdapter};
use crate::invoke;

/// Deltas buffered between the REST read and the client, per call.
const DELTA_BUFFER: usize = 8;

/// One SSE frame: `event: NAME\ndata: JSON\n\n`.
pub fn frame<T: serde::Serialize + ?Sized>(name: &str, data: &T) -> Bytes {
    let mut out = Vec::with_capacity(128);
    write_frame(&mut out, name, |out| write_json(out, data));
    Bytes::from(out)
}

/// Appends one SSE frame to `out`, its data written by `data` (JSON on one line).
fn write_frame(out: &mut Vec<u8>, name: &str, data: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    data(out);
    out.extend_from_slice(b"\n\n");
}

/// The events of one call, produced as the REST call progresses: the stream drives the
/// call itself (no task of its own: polling the stream polls the REST call, and the
/// deltas wait in a bounded channel until the stream takes them), and ends after
/// `tool_call.completed` or `tool_call.error`. Dropping the stream (client gone) drops
/// the REST call with it. Shared with the gateway's rollback mode so both speak exactly
/// the same protocol.
///
/// `tool_call.started` goes out at once. After it, each item of the stream is every
/// frame ready at that moment: a delta waits for nothing, but the deltas and the final
/// frame that are already there leave together in one write (a plain REST answer's
/// delta and `tool_call.completed` are one TCP segment instead of two, which spares a
/// wake-up at every hop downstream).
pub fn event_stream(
    adapter: HttpAdapter,
    server_id: String,
    prepared: invoke::Prepared,
    request_id: String,
) -> impl futures::Stream<Item = Bytes> + Send + 'static {
    batches(adapter, server_id, prepared, request_id).map(|(bytes, _last)| bytes)
}

/// [`event_stream`], each batch with whether it is the last (a server that knows the
/// last batch can end its response in the same write).
pub fn batches(
    adapter: HttpAdapter,
    server_id: String,
    prepared: invoke::Prepared,
    request_id: String,
) -> impl futures::Stream<Item = (Bytes, bool)> + Send + 'static {
    let (delta_tx, delta_rx) = mpsc::channel::<Delta>(DELTA_BUFFER);
    let started = frame(
        "tool_call.started",
        &Started {
            request_id: &request_id,
            server: &server_id,
            tool: &prepared.tool.binding.name,
        },
    );
    let call_request_id = request_id.clone();
    let call = Box::pin(async move {
        // The sender goes when the call ends, with this future.
        invoke::execute(&adapter, &server_id, &prepared, &call_request_id, &delta_tx).await
    });
    let rest = Frames {
        request_id,
        deltas: delta_rx,
        call: Some(call),
        seq: 0,
    };
    futures::stream::once(async move { (started, false) }).chain(rest)
}

/// The data of `tool_call.started`, written straight from its fields (building a JSON
/// object first hashed and allocated each key on every call).
#[derive(serde::Serialize)]
struct Started<'a> {
    request_id: &'a str,
    server: &'a str,
    tool: &'a str,
}

/// The data of `tool_call.completed`.
#[derive(serde::Serialize)]
struct Completed<'a> {
    request_id: &'a str,
    status: u16,
    latency_ms: f64,
    deltas: usize,
}

/// What `invoke::execute` ends with: the outcome and its latency in ms, or the error.
type CallResult = Result<(crate::http::Outcome, f64), crate::http::Error>;

/// The part of a call's stream after `tool_call.started`: each item is every frame
/// ready when it is polled, with whether it is the last.
struct Frames {
    request_id: String,
    deltas: mpsc::Receiver<Delta>,
    /// The REST call in progress; `None` once the final frame has gone out.
    call: Option<std::pin::Pin<Box<dyn std::future::Future<Output = CallResult> + Send>>>,
    seq: u64,
}

impl futures::Stream for Frames {
    type Item = (Bytes, bool);

    /// Polls the call (it pushes deltas as it goes), then takes every delta there is,
    /// and the final frame if the call has ended. The call's wake-ups (its socket, or
    /// room in a full channel once this drains it) are this stream's.
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<(Bytes, bool)>> {
        use std::task::Poll;
        let this = &mut *self;
        let Some(call) = this.call.as_mut() else {
            return Poll::Ready(None);
        };
        let ended = call.as_mut().poll(cx);
        let mut batch = Vec::new();
        while let Ok(output) = this.deltas.try_recv() {
            this.push_delta(&mut batch, output);
        }
        match ended {
            Poll::Ready(result) => {
                this.call = None;
                batch.extend_from_slice(&this.final_frame(result));
                Poll::Ready(Some((Bytes::from(batch), true)))
            }
            Poll::Pending if batch.is_empty() => Poll::Pending,
            Poll::Pending => Poll::Ready(Some((Bytes::from(batch), false))),
        }
    }
}

impl Frames {
    /// `{"request_id": .., "seq": .., "output": ..}`, written field by field: the same
    /// JSON as building that object would give, without copying the output into it.
    fn push_delta(&mut self, batch: &mut Vec<u8>, output: Delta) {
        let (request_id, seq) = (&self.request_id, self.seq);
        write_frame(batch, "output.delta", |out| {
            out.extend_from_slice(b"{\"request_id\":");
            write_json(out, request_id.as_str());
            out.extend_from_slice(b",\"seq\":");
            write_json(out, &seq);
            out.extend_from_slice(b",\"output\":");
            output.write_json(out);
            out.push(b'}');
        });
        self.seq += 1;
    }

    fn final_frame(&self, result: CallResult) -> Bytes {
        let request_id = &self.request_id;
        match result {
            Ok((outcome, latency_ms)) => frame(
                "tool_call.completed",
                &Completed {
                    request_id,
                    status: outcome.status,
                    latency_ms,
                    deltas: outcome.n_deltas,
                },
            ),
            Err(err) => {
                let mut error = json!({"code": err.code(), "message": err.message()});
                if let crate::http::Error::Status { status, body } = &err {
                    error["status"] = json!(status);
                    error["body"] = body.clone();
                }
                frame(
                    "tool_call.error",
                    &json!({"request_id": request_id, "error": error}),
                )
            }
        }
    }
}

/// What the existing hub answered to `initialize`.
pub fn server_info(server_id: &str) -> Value {
    json!({
        "protocolVersion": "2024-11-05",
        "serverInfo": {"name": server_id, "version": env!("CARGO_PKG_VERSION")},
        "capabilities": {"tools": {"listChanged": true}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data line of one SSE frame, parsed.
    fn data_of(frame: &[u8], event: &str) -> (String, Value) {
        let text = std::str::from_utf8(frame).expect("utf-8");
        let rest = text
            .strip_prefix(&format!("event: {event}\ndata: "))
            .unwrap_or_else(|| panic!("{text:?}"));
        let data = rest.strip_suffix("\n\n").expect("frame end");
        assert!(!data.contains('\n'), "one data line: {data:?}");
        (data.to_owned(), serde_json::from_str(data).expect("JSON"))
    }

    #[test]
    fn a_delta_frame_is_the_json_object_of_its_fields() {
        let (_tx, deltas) = mpsc::channel(1);
        let mut frames = Frames {
            request_id: "id \"quoted\" \\ é\u{1}".into(),
            deltas,
            call: None,
            seq: 41,
        };
        let output = json!({"z": 1, "a": ["x\ny", null, 2.5, "\u{2028}"], "m": {"b": true}});
        let mut batch = b"before".to_vec();
        frames.push_delta(&mut batch, Delta::Value(output.clone()));
        frames.push_delta(&mut batch, Delta::Value(json!("second")));
        let batch = batch.strip_prefix(b"before").expect("appended");
        let split = batch
            .windows(2)
            .position(|w| w == b"\n\n")
            .expect("two frames")
            + 2;
        let (text, first) = data_of(&batch[..split], "output.delta");
        let want = json!({"request_id": frames.request_id, "seq": 41, "output": output});
        assert_eq!(first, want);
        assert_eq!(
            text,
            want.to_string(),
            "same bytes as serializing the object"
        );
        let (_, second) = data_of(&batch[split..], "output.delta");
        assert_eq!(second["seq"], 42);
        assert_eq!(second["output"], "second");
    }

    /// The stream drives the call: a call that pushes more deltas than the channel
    /// holds still runs to its end (each drain makes room), every delta comes out once
    /// and in order, and the final frame is in the last batch only.
    #[tokio::test]
    async fn the_stream_drives_its_call_through_a_full_channel_to_the_final_frame() {
        let (tx, deltas) = mpsc::channel(DELTA_BUFFER);
        let n = DELTA_BUFFER * 3 + 1;
        let call = Box::pin(async move {
            for i in 0..n {
                tx.send(Delta::Value(json!(i)))
                    .await
                    .map_err(|_| crate::http::Error::Cancelled)?;
                if i % 5 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            Ok((
                crate::http::Outcome {
                    status: 200,
                    n_deltas: n,
                    streamed: true,
                },
                1.0,
            ))
        });
        let mut frames = Frames {
            request_id: "r".into(),
            deltas,
            call: Some(call),
            seq: 0,
        };
        let mut text = String::new();
        let mut batches = 0;
        while let Some((batch, last)) = frames.next().await {
            batches += 1;
            let batch = std::str::from_utf8(&batch).expect("utf-8");
            assert_eq!(batch.contains("tool_call.completed"), last, "{batch}");
            text.push_str(batch);
        }
        assert!(batches > 1, "the deltas left in several batches");
        let outputs: Vec<Value> = text
            .split("\n\n")
            .filter(|f| f.starts_with("event: output.delta"))
            .map(|f| data_of(&format!("{f}\n\n").into_bytes(), "output.delta").1["output"].clone())
            .collect();
        assert_eq!(outputs, (0..n).map(|i| json!(i)).collect::<Vec<_>>());
        assert!(text.ends_with("\n\n") && text.contains(&format!("\"deltas\":{n}")));
        assert!(
            frames.next().await.is_none(),
            "nothing after the last batch"
        );
    }

    #[test]
    fn a_json_body_goes_into_its_delta_frame_as_sent() {
        let (_tx, deltas) = mpsc::channel(1);
        let mut frames = Frames {
            request_id: "r".into(),
            deltas,
            call: None,
            seq: 0,
        };
        let body = br#"{"z":1,"price":1.50,"name":"\u00e9\n","a":[]}"#;
        let mut batch = Vec::new();
        frames.push_delta(&mut batch, Delta::from_json_body(body).expect("JSON"));
        let (text, parsed) = data_of(&batch, "output.delta");
        let body = std::str::from_utf8(body).expect("utf-8");
        assert_eq!(
            text,
            format!(r#"{{"request_id":"r","seq":0,"output":{body}}}"#)
        );
        assert_eq!(parsed["output"]["name"], "\u{e9}\n");
    }

    #[test]
    fn a_json_body_on_several_lines_is_written_on_one() {
        let body = b"{\n  \"a\": [1,\r\n 2]\n}\n";
        let delta = Delta::from_json_body(body).expect("JSON");
        let mut out = Vec::new();
        delta.write_json(&mut out);
        assert_eq!(out, br#"{"a":[1,2]}"#);
        assert!(Delta::from_json_body(b"{\"a\": tru").is_err());
        assert!(Delta::from_json_body(b"{} {}").is_err());
        let raw = Delta::from_json_body(b" [1, {\"b\": null}] ").expect("JSON");
        assert_eq!(raw.into_value(), json!([1, {"b": null}]));
    }

    #[test]
    fn started_and_completed_are_the_json_objects_of_their_fields() {
        let started = Started {
            request_id: "r\"1",
            server: "s",
            tool: "t",
        };
        let (text, _) = data_of(&frame("tool_call.started", &started), "tool_call.started");
        assert_eq!(
            text,
            json!({"request_id": "r\"1", "server": "s", "tool": "t"}).to_string()
        );
        for latency_ms in [1.25, f64::NAN] {
            let completed = Completed {
                request_id: "r",
                status: 200,
                latency_ms,
                deltas: 1,
            };
            let (text, _) = data_of(
                &frame("tool_call.completed", &completed),
                "tool_call.completed",
            );
            assert_eq!(
                text,
                json!({"request_id": "r", "status": 200, "latency_ms": latency_ms, "deltas": 1})
                    .to_string()
            );
        }
    }

    #[test]
    fn a_frame_is_its_event_and_one_line_of_json() {
        let data = json!({"request_id": "r", "text": "two\nlines", "n": [1, 2]});
        let frame = frame("tool_call.completed", &data);
        let (text, parsed) = data_of(&frame, "tool_call.completed");
        assert_eq!(parsed, data);
        assert_eq!(text, data.to_string());
    }
}
