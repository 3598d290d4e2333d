//! Owns the request id: what an incoming `X-Request-Id` must look like to be kept, and
//! how a new one is made. Shared by the gateway, the worker and the admin API so an id
//! survives every hop unchanged.

/// The header every hop uses.
pub const HEADER: &str = "x-request-id";

/// 1 to 128 characters of `[A-Za-z0-9._:-]`: safe in a header, a log line and a URL.
pub fn is_valid(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A new id: a UUIDv7, so ids sort by time.
pub fn generate() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The incoming id when it is valid, otherwise a new one.
pub fn keep_or_generate(incoming: Option<&str>) -> String {
    match incoming {
        Some(id) if is_valid(id) => id.to_owned(),
        _ => generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids_are_kept_and_others_replaced() {
        assert_eq!(keep_or_generate(Some("abc-123_x.y:z")), "abc-123_x.y:z");
        for bad in ["", "a b", "a\r\nb", "ü", &"x".repeat(129)] {
            let id = keep_or_generate(Some(bad));
            assert_ne!(id, bad);
            assert!(is_valid(&id));
        }
        assert_ne!(generate(), generate());
    }
}
