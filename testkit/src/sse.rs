//! Owns reading Server-Sent Events in tests: a whole `text/event-stream` body into
//! `(event, data)` pairs, with `data` parsed as JSON when it is JSON.

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
}

/// The named events of a complete SSE body (comments and unnamed events are skipped).
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = Some(name.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            Some(SseEvent {
                event: event?,
                data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
            })
        })
        .collect()
}
