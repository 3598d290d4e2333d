//! Owns reading the Prometheus text exposition format (version 0.0.4) that the
//! gateway's `/metrics` serves: samples with their labels, nothing else (comments,
//! `# HELP` and `# TYPE` lines are skipped). Used by `GET /api/metrics` only.

/// A sample's labels, in the order written.
pub type Labels = Vec<(String, String)>;

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("line {line}: {message}")]
pub struct Error {
    pub line: usize,
    pub message: &'static str,
}

/// Every sample of `text`, in order.
pub fn parse(text: &str) -> Result<Vec<Sample>, Error> {
    let mut samples = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |message| Error {
            line: idx + 1,
            message,
        };
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .ok_or(fail("a sample without a value"))?;
        let name = &line[..name_end];
        if name.is_empty() {
            return Err(fail("a sample without a name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            let (parsed, tail) = parse_labels(after).map_err(fail)?;
            labels = parsed;
            rest = tail;
        }
        let value_text = rest
            .split_whitespace()
            .next()
            .ok_or(fail("a sample without a value"))?;
        let value = parse_value(value_text).ok_or(fail("a value that is not a number"))?;
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(samples)
}

/// The labels after `{` up to the closing `}`, and what follows it.
fn parse_labels(mut text: &str) -> Result<(Labels, &str), &'static str> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = text.find('=').ok_or("a label without a value")?;
        let name = text[..eq].trim().to_owned();
        text = text[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("a label value without quotes")?;
        let mut value = String::new();
        let mut chars = text.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("an unterminated label value"),
                },
                Some((at, '"')) => break at,
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value"),
            }
        };
        labels.push((name, value));
        text = text[end + 1..].trim_start();
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text`'s samples, one `name{label=value,...} value` line each.
    fn check(text: &str, expected: &str) {
        let samples = parse(text).expect("parses");
        let got: Vec<String> = samples
            .iter()
            .map(|s| {
                let labels: Vec<String> =
                    s.labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
                format!("{}{{{}}} {}", s.name, labels.join(","), s.value)
            })
            .collect();
        assert_eq!(got.join("\n"), expected);
    }

    #[test]
    fn samples() {
        check(
            "# HELP x Requests\n# TYPE x counter\nx{route=\"call\",server=\"a\",status=\"200\"} 3\n\nup 1\n",
            "x{route=\"call\",server=\"a\",status=\"200\"} 3\nup{} 1",
        );
        check(
            "h_bucket{le=\"+Inf\",server=\"a\"} 7 1700000000\n",
            "h_bucket{le=\"+Inf\",server=\"a\"} 7",
        );
        check(
            "e{m=\"say \\\"hi\\\"\\\\\\n\",} 2.5e1\n",
            "e{m=\"say \\\"hi\\\"\\\\\\n\"} 25",
        );
        check("y{} +Inf\n", "y{} inf");
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            parse("ok 1\nbad{a=\"x\n").map(|_| ()),
            Err(Error {
                line: 2,
                message: "an unterminated label value"
            })
        );
        assert_eq!(
            parse("x one").map(|_| ()),
            Err(Error {
                line: 1,
                message: "a value that is not a number"
            })
        );
        assert!(parse("novalue").is_err());
    }
}
