//! Owns the incremental Server-Sent Events scanner: bytes go in as the network hands
//! them over (an event may be split anywhere, even inside a UTF-8 character or between
//! `\r` and `\n`), complete events come out. It keeps only the current partial line.

/// One complete event: its `event:` name (`message` when absent) and its joined `data:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

#[derive(Default)]
pub struct Scanner {
    /// Bytes of the line being received (no terminator yet).
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` at the start of the next one belongs to it.
    after_cr: bool,
    name: Option<String>,
    data: Option<String>,
}

impl Scanner {
    /// Feeds bytes and calls `on_event` for every event they complete.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_event: impl FnMut(Event)) {
        if self.after_cr {
            self.after_cr = false;
            if bytes.first() == Some(&b'\n') {
                bytes = &bytes[1..];
            }
        }
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&bytes[..pos]);
            let terminator = bytes[pos];
            bytes = &bytes[pos + 1..];
            if terminator == b'\r' {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.line_done(&line) {
                on_event(event);
            }
        }
        self.line.extend_from_slice(bytes);
    }

    fn line_done(&mut self, line: &[u8]) -> Option<Event> {
        if line.is_empty() {
            let data = self.data.take();
            let name = self.name.take();
            // An event with neither a name nor data is no event (SSE dispatch rules).
            if data.is_none() && name.is_none() {
                return None;
            }
            return Some(Event {
                // An empty `event:` names no event type: it is a message (SSE spec).
                name: name
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "message".into()),
                data: data.unwrap_or_default(),
            });
        }
        if line[0] == b':' {
            return None;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.name = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut scanner = Scanner::default();
        let mut out = Vec::new();
        for chunk in chunks {
            scanner.feed(chunk, |e| out.push((e.name, e.data)));
        }
        out
    }

    fn check(chunks: &[&[u8]], expected: &[(&str, &str)]) {
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, d)| (n.to_string(), d.to_string()))
            .collect();
        assert_eq!(scan(chunks), expected, "{chunks:?}");
    }

    #[test]
    fn events_are_found_whatever_the_chunking() {
        let stream = b"event: tool_call.started\ndata: {\"a\":1}\n\n: comment\nevent: output.delta\ndata: x\ndata: y\n\nevent: tool_call.completed\r\ndata: {}\r\n\r\n";
        let expected = [
            ("tool_call.started", "{\"a\":1}"),
            ("output.delta", "x\ny"),
            ("tool_call.completed", "{}"),
        ];
        check(&[stream], &expected);
        // Every split point, including between \r and \n.
        for cut in 0..stream.len() {
            check(&[&stream[..cut], &stream[cut..]], &expected);
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        check(&bytes, &expected);
    }

    #[test]
    fn unnamed_events_are_messages_and_empty_blocks_are_nothing() {
        check(
            &[b"\n\ndata: {\"jsonrpc\":\"2.0\"}\n\n"],
            &[("message", "{\"jsonrpc\":\"2.0\"}")],
        );
        check(&[b"event: ping\n\n"], &[("ping", "")]);
        check(&[b"event:\ndata: x\n\n"], &[("message", "x")]);
        check(&[b"data:no-space\n\n"], &[("message", "no-space")]);
        check(&[b"event: open\ndata: partial"], &[]);
    }
}
