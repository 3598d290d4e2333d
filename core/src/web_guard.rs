//! Owns the web-security rules every HTTP listener of the hub shares (the gateway's
//! `MCP_GATEWAY_ALLOWED_*`, the admin API's `MCP_ADMIN_ALLOWED_*`): the `Host`
//! allow-list (against DNS rebinding), the `Origin` policy (against cross-site requests
//! from a page the operator has open) and what counts as a JSON content type. Pure
//! functions over header bytes, no allocation per request; each listener turns a refusal
//! into its own error shape.

/// The default `Host` allow-list: the loopback names.
pub const DEFAULT_ALLOWED_HOSTS: &str = "localhost,127.0.0.1,::1";
/// The default `Origin` allow-list: pages served from loopback, any port.
pub const DEFAULT_ALLOWED_ORIGINS: &str = "http://localhost,http://127.0.0.1";

/// The `Host` values a listener answers to: `host` (any port) or `host:port`, compared
/// without case; `*` allows any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostList {
    any: bool,
    /// Lowercase host (IPv6 without brackets) and the port an entry names, if any.
    entries: Vec<(String, Option<u16>)>,
}

impl HostList {
    /// Parses the comma-separated setting's entries; `Err` names the bad one.
    pub fn parse(entries: &[String]) -> Result<HostList, String> {
        let mut list = HostList::default();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if entry == "*" {
                list.any = true;
                continue;
            }
            // A bare IPv6 address (`::1`) is a host without a port.
            let parsed = match entry.parse::<std::net::Ipv6Addr>() {
                Ok(ip) => Some((ip.to_string(), None)),
                Err(_) => split_authority(entry.as_bytes())
                    .map(|(host, port)| (String::from_utf8_lossy(host).to_ascii_lowercase(), port)),
            };
            match parsed {
                Some(parsed) if !parsed.0.is_empty() => list.entries.push(parsed),
                _ => return Err(format!("{entry:?} is not a host or host:port")),
            }
        }
        if !list.any && list.entries.is_empty() {
            return Err("lists no host".into());
        }
        Ok(list)
    }

    /// Whether a `Host` header value is allowed (a malformed one never is).
    pub fn allows(&self, value: &[u8]) -> bool {
        if self.any {
            return true;
        }
        let Some((host, port)) = split_authority(value) else {
            return false;
        };
        self.entries.iter().any(|(h, p)| {
            h.as_bytes().eq_ignore_ascii_case(host)
                && match p {
                    Some(p) => port == Some(*p),
                    None => true,
                }
        })
    }
}

/// `host[:port]` of a `Host` value: an IPv6 host loses its brackets. `None` when it is
/// not one (empty, a bad port, characters a host cannot have).
fn split_authority(value: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let end = rest.iter().position(|&b| b == b']')?;
        let (host, after) = (&rest[..end], &rest[end + 1..]);
        match after {
            [] => (host, None),
            [b':', port @ ..] => (host, Some(port)),
            _ => return None,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if !host_ok {
        return None;
    }
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.len() <= 5 => {
            let mut n: u32 = 0;
            for &b in digits {
                if !b.is_ascii_digit() {
                    return None;
                }
                n = n * 10 + u32::from(b - b'0');
            }
            Some(u16::try_from(n).ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// Whether a browser's `Origin` may use a listener: listed in `allowed` (an entry
/// without a port allows every port of its scheme and host; `*` any), or the same
/// origin as the request's own `Host` (the dashboard served by the same listener, under
/// whatever allowed name it is reached by; the Host is checked separately).
pub fn origin_allowed(origin: &str, host: Option<&[u8]>, allowed: &[String]) -> bool {
    let origin = origin.trim_end_matches('/');
    let same_origin = host.is_some_and(|host| {
        origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|authority| authority.as_bytes().eq_ignore_ascii_case(host))
    });
    same_origin
        || allowed.iter().any(|a| {
            let a = a.trim_end_matches('/');
            a == "*"
                || a.eq_ignore_ascii_case(origin)
                || (origin.len() > a.len()
                    && origin.as_bytes()[..a.len()].eq_ignore_ascii_case(a.as_bytes())
                    && origin[a.len()..].strip_prefix(':').is_some_and(|port| {
                        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                    }))
        })
}

/// `application/json` or a `+json` type, any parameters, any case.
pub fn is_json(content_type: &[u8]) -> bool {
    let essence = match content_type.iter().position(|&b| b == b';') {
        Some(semicolon) => &content_type[..semicolon],
        None => content_type,
    };
    let essence = essence.trim_ascii();
    essence.eq_ignore_ascii_case(b"application/json")
        || (essence.len() > 5
            && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json")
            && essence[..12.min(essence.len())].eq_ignore_ascii_case(b"application/"))
}

/// A method that never changes state (`GET`, `HEAD`, `OPTIONS`; no body type is asked
/// of it), by name.
pub fn is_safe_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hosts() {
        let allowed = HostList::parse(&list(&[
            "localhost",
            "127.0.0.1",
            "::1",
            "Hub.Example:8443",
        ]))
        .expect("parses");
        for (host, ok) in [
            ("localhost", true),
            ("LOCALHOST:8080", true),
            ("127.0.0.1:8080", true),
            ("[::1]:8080", true),
            ("[::1]", true),
            ("hub.example:8443", true),
            ("hub.example:80", false),
            ("hub.example", false),
            ("evil.example.com", false),
            ("localhost.evil.example", false),
            ("127.0.0.1.nip.io", false),
            ("localhost:", false),
            ("localhost:99999", false),
            ("localhost:80x", false),
            ("[::1]x", false),
            ("", false),
            ("a b", false),
        ] {
            assert_eq!(allowed.allows(host.as_bytes()), ok, "{host}");
        }
        let any = HostList::parse(&list(&["*"])).expect("parses");
        assert!(any.allows(b"evil.example.com"));
        assert!(HostList::parse(&list(&["a b"])).is_err());
        assert!(HostList::parse(&list(&["host:http"])).is_err());
        assert!(HostList::parse(&[]).is_err());
    }

    #[test]
    fn origins() {
        let allowed = list(&["http://localhost", "https://app.example.com:8443"]);
        let check = |origin: &str, host: Option<&str>| {
            origin_allowed(origin, host.map(str::as_bytes), &allowed)
        };
        assert!(check("http://localhost", None));
        assert!(check("http://localhost:3000", None));
        assert!(check("HTTP://LOCALHOST:3000", None));
        assert!(check("https://app.example.com:8443", None));
        assert!(!check("https://app.example.com", None));
        assert!(!check("http://localhost.evil.com", None));
        assert!(!check("http://localhost:", None));
        assert!(!check("http://evil.com", None));
        assert!(!check("null", None));
        // The gateway's own origin, under an allowed Host.
        assert!(check("http://hub.internal:8080", Some("hub.internal:8080")));
        assert!(check("https://hub.internal", Some("hub.internal")));
        assert!(!check(
            "http://hub.internal:8080",
            Some("hub.internal:9999")
        ));
        assert!(origin_allowed("http://evil.com", None, &list(&["*"])));
    }

    #[test]
    fn json_content_types() {
        for (value, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            (" application/json ;", true),
            ("application/vnd.api+json", true),
            ("text/plain", false),
            ("text/plain; application/json", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
            ("text/x+json", false),
            ("", false),
        ] {
            assert_eq!(is_json(value.as_bytes()), ok, "{value}");
        }
    }
}
