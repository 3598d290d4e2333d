//! Owns parsing Server-Sent Events as the HTML standard defines the stream
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>):
//! bytes go in as the network hands them over (an event may be split anywhere, inside a
//! UTF-8 character or between `\r` and `\n`), complete events come out. Lines end with
//! CRLF, LF or a bare CR; a leading byte-order mark is skipped; `:` lines are comments;
//! `event`, `data`, `id` and `retry` are the fields, anything else is ignored.
//!
//! Incremental: each byte is looked at once, whatever the chunking, and only the
//! current line and the current event's data are kept (a 1 MiB event costs 1 MiB, read
//! in linear time; `benches/sse.rs`). An optional cap bounds that memory.
//!
//! The REST adapter reads streaming REST APIs with it; the load generator reads the
//! hub's own answers with it.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The event type: the last `event:` field, `message` when there was none (or it
    /// was empty).
    pub name: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id seen so far on the stream (it carries over to later events, as
    /// the standard says), if any.
    pub id: Option<String>,
    /// A `retry:` field of this event (milliseconds), if any.
    pub retry: Option<u64>,
}

/// The current event and line outgrew the parser's cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event is larger than {0} bytes")]
pub struct TooLarge(pub usize);

#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes of the line being received (no terminator yet).
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` at the start of the next one belongs
    /// to that line ending.
    after_cr: bool,
    /// Where the stream stands on its byte-order mark: bytes of it seen so far, or done.
    bom: Bom,
    name: String,
    data: String,
    /// Whether a `data` field was seen for the current event (an event with an empty
    /// data buffer is not dispatched).
    has_data: bool,
    last_id: Option<String>,
    retry: Option<u64>,
    /// Largest line plus event data held at once; `None`: no cap.
    limit: Option<usize>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Bom {
    #[default]
    Start,
    /// This many bytes of `EF BB BF` were seen.
    Partial(usize),
    Done,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// A parser that refuses an event (its data plus the line being read) over `limit`
    /// bytes.
    pub fn with_limit(limit: usize) -> Parser {
        Parser {
            limit: Some(limit),
            ..Parser::default()
        }
    }

    /// Feeds bytes and calls `on_event` for every event they complete.
    pub fn feed(&mut self, bytes: &[u8], mut on_event: impl FnMut(Event)) -> Result<(), TooLarge> {
        let mut bytes = self.skip_bom(bytes);
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
        }
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            let terminator = bytes[pos];
            let (line, rest) = (&bytes[..pos], &bytes[pos + 1..]);
            bytes = rest;
            if terminator == b'\r' {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            if self.line.is_empty() {
                self.line_done(line, &mut on_event);
            } else {
                let mut whole = std::mem::take(&mut self.line);
                whole.extend_from_slice(line);
                self.line_done(&whole, &mut on_event);
                whole.clear();
                self.line = whole;
            }
            self.check_limit()?;
        }
        self.line.extend_from_slice(bytes);
        self.check_limit()
    }

    /// The end of the stream. The standard drops an event the stream did not finish
    /// with a blank line; a REST API that ends its body right after its last data line
    /// still meant it, so this dispatches it (as if the blank line had come).
    pub fn finish(&mut self) -> Option<Event> {
        let mut last = None;
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, &mut |e| last = Some(e));
        }
        self.after_cr = false;
        if last.is_none() {
            self.dispatch(&mut |e| last = Some(e));
        }
        last
    }

    fn skip_bom<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let mut seen = match self.bom {
            Bom::Done => return bytes,
            Bom::Start => 0,
            Bom::Partial(n) => n,
        };
        let mut rest = bytes;
        while seen < BOM.len() {
            match rest.first() {
                None => {
                    self.bom = Bom::Partial(seen);
                    return rest;
                }
                Some(&b) if b == BOM[seen] => {
                    seen += 1;
                    rest = &rest[1..];
                }
                Some(_) => {
                    // Not a BOM after all: the bytes taken for one were the stream's own.
                    self.bom = Bom::Done;
                    self.line.extend_from_slice(&BOM[..seen]);
                    return rest;
                }
            }
        }
        self.bom = Bom::Done;
        rest
    }

    fn check_limit(&self) -> Result<(), TooLarge> {
        match self.limit {
            Some(limit) if self.line.len() + self.data.len() > limit => Err(TooLarge(limit)),
            _ => Ok(()),
        }
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut impl FnMut(Event)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => {
                self.name.clear();
                self.name.push_str(&String::from_utf8_lossy(value));
            }
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.has_data = true;
                self.data.push_str(&String::from_utf8_lossy(value));
            }
            b"id" if !value.contains(&0) => {
                self.last_id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(Event)) {
        let name = std::mem::take(&mut self.name);
        let retry = self.retry.take();
        if !self.has_data {
            return;
        }
        self.has_data = false;
        on_event(Event {
            name: if name.is_empty() {
                "message".to_owned()
            } else {
                name
            },
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone().filter(|id| !id.is_empty()),
            retry,
        });
    }
}

/// One event of a complete body, with its data read as JSON where it is JSON (and kept
/// as a JSON string otherwise).
#[derive(Debug, Clone)]
pub struct JsonEvent {
    pub event: String,
    pub data: serde_json::Value,
}

/// Every event of a complete `text/event-stream` body, for readers that hold the whole
/// answer at once (the tests read the hub's answers with it): [`Parser`] underneath, no
/// cap, the last event dispatched even without its closing blank line.
pub fn parse_json_events(body: &str) -> Vec<JsonEvent> {
    let mut parser = Parser::new();
    let mut events = Vec::new();
    let mut push = |e: Event| {
        events.push(JsonEvent {
            data: serde_json::from_str(&e.data).unwrap_or(serde_json::Value::String(e.data)),
            event: e.name,
        })
    };
    // No cap, so feeding cannot fail.
    let _ = parser.feed(body.as_bytes(), &mut push);
    if let Some(last) = parser.finish() {
        push(last);
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<Event> {
        let mut parser = Parser::new();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, |e| out.push(e)).expect("no cap");
        }
        out
    }

    /// The events of `stream` as (name, data), fed whole, at every split point into two
    /// chunks, and one byte at a time: all must agree.
    fn check(stream: &[u8], expected: &[(&str, &str)]) {
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, d)| (n.to_string(), d.to_string()))
            .collect();
        let names = |events: Vec<Event>| -> Vec<(String, String)> {
            events.into_iter().map(|e| (e.name, e.data)).collect()
        };
        assert_eq!(names(parse(&[stream])), expected, "whole: {stream:?}");
        for cut in 0..=stream.len() {
            let got = names(parse(&[&stream[..cut], &stream[cut..]]));
            assert_eq!(got, expected, "cut at {cut}: {stream:?}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(names(parse(&bytes)), expected, "byte by byte: {stream:?}");
    }

    #[test]
    fn lf_crlf_and_bare_cr_all_end_lines() {
        let expected = [("a", "1"), ("b", "2"), ("c", "3")];
        check(
            b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\nevent: c\ndata: 3\n\n",
            &expected,
        );
        check(
            b"event: a\r\ndata: 1\r\n\r\nevent: b\r\ndata: 2\r\n\r\nevent: c\r\ndata: 3\r\n\r\n",
            &expected,
        );
        check(
            b"event: a\rdata: 1\r\revent: b\rdata: 2\r\revent: c\rdata: 3\r\r",
            &expected,
        );
        check(
            b"event: a\r\ndata: 1\r\revent: b\ndata: 2\n\r\nevent: c\rdata: 3\n\n",
            &expected,
        );
    }

    #[test]
    fn comments_and_unknown_fields_are_skipped() {
        check(
            b": comment\n:\nevent: x\nfoo: bar\n: another\ndata: d\n\n",
            &[("x", "d")],
        );
        // A comment alone is no event.
        check(b": keep-alive\n\n", &[]);
    }

    #[test]
    fn data_lines_join_with_newlines() {
        check(
            b"data: a\ndata: b\ndata\ndata: c\n\n",
            &[("message", "a\nb\n\nc")],
        );
        check(b"data:no-space\n\n", &[("message", "no-space")]);
        check(b"data:  two spaces\n\n", &[("message", " two spaces")]);
        check(b"data\n\n", &[("message", "")]);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_names_reset() {
        check(b"event: ping\n\ndata: x\n\n", &[("message", "x")]);
        check(b"event:\ndata: x\n\n", &[("message", "x")]);
        check(
            b"\n\n\ndata: {\"jsonrpc\":\"2.0\"}\n\n",
            &[("message", "{\"jsonrpc\":\"2.0\"}")],
        );
        // Unfinished at the end of the stream: not (yet) an event.
        check(b"event: open\ndata: partial", &[]);
    }

    #[test]
    fn a_byte_order_mark_at_the_start_is_skipped_once() {
        check(b"\xEF\xBB\xBFdata: a\n\n", &[("message", "a")]);
        check(
            b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n",
            &[("message", "b")],
        );
        // Bytes that begin like a BOM but are not one belong to the stream.
        let events = parse(&[b"\xEF", b"\xBBxdata: a\n\n"]);
        assert!(events.is_empty(), "the first line's field is not `data`");
    }

    #[test]
    fn ids_carry_over_and_retry_is_read() {
        let events = parse(&[b"id: 7\nretry: 1500\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: x\0y\nretry: 1s\ndata: d\n\n"]);
        let got: Vec<(Option<&str>, Option<u64>)> =
            events.iter().map(|e| (e.id.as_deref(), e.retry)).collect();
        assert_eq!(
            got,
            [
                (Some("7"), Some(1500)),
                (Some("7"), None),
                (None, None),
                (None, None)
            ]
        );
    }

    #[test]
    fn utf8_split_inside_a_character_comes_out_whole() {
        check("data: é€😀\n\n".as_bytes(), &[("message", "é€😀")]);
    }

    #[test]
    fn a_large_event_in_many_chunks_is_one_event() {
        let payload = "x".repeat(1 << 20);
        let stream = format!("event: big\ndata: {payload}\n\n");
        let mut parser = Parser::new();
        let mut out = Vec::new();
        for chunk in stream.as_bytes().chunks(1000) {
            parser.feed(chunk, |e| out.push(e)).expect("no cap");
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.len(), 1 << 20);
    }

    #[test]
    fn the_cap_counts_the_line_and_the_data() {
        let mut parser = Parser::with_limit(10);
        assert!(parser.feed(b"data: 12345\n", |_| {}).is_ok());
        assert_eq!(parser.feed(b"data: 678901\n", |_| {}), Err(TooLarge(10)));
        let mut parser = Parser::with_limit(10);
        assert_eq!(parser.feed(b"data: 0123456789", |_| {}), Err(TooLarge(10)));
    }

    #[test]
    fn finish_dispatches_an_event_the_stream_did_not_end() {
        let mut parser = Parser::new();
        parser
            .feed(b"data: a\n\ndata: tail", |_| {})
            .expect("no cap");
        assert_eq!(parser.finish().map(|e| e.data), Some("tail".into()));
        assert_eq!(parser.finish(), None);
        let mut parser = Parser::new();
        parser
            .feed(b"data: one\ndata: two\n", |_| {})
            .expect("no cap");
        assert_eq!(parser.finish().map(|e| e.data), Some("one\ntwo".into()));
    }
}
