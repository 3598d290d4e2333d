//! Owns the Redis key layout. Nothing outside this module builds a key string.
//!
//! Every key starts with a configurable prefix (default `mcp:`) so tests and tenants can
//! share one Redis.

/// The key names under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    /// Ends with `:`; kept as one `String` so building a key is one allocation.
    prefix: String,
}

impl Default for Keys {
    fn default() -> Keys {
        Keys::new(Keys::DEFAULT_PREFIX)
    }
}

impl Keys {
    pub const DEFAULT_PREFIX: &'static str = "mcp";

    /// `prefix` without the trailing colon, e.g. `mcp` or `test-3f2a`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: format!("{}:", prefix.trim_end_matches(':')),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Hash: server id -> ServerConfig JSON.
    pub fn servers(&self) -> String {
        format!("{}servers", self.prefix)
    }

    /// Hash: tool name -> ToolBinding JSON.
    pub fn tools(&self, server_id: &str) -> String {
        format!("{}tools:{server_id}", self.prefix)
    }

    /// Pub/sub channel of registry and runtime events.
    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// Counter: the registry version, incremented by every published event.
    pub fn version(&self) -> String {
        format!("{}version", self.prefix)
    }

    /// Hash: replica index -> worker runtime record JSON.
    pub fn runtime(&self, server_id: &str) -> String {
        format!("{}server_runtime:{server_id}", self.prefix)
    }

    /// `SCAN` pattern that matches every runtime key.
    pub fn runtime_pattern(&self) -> String {
        format!("{}server_runtime:*", self.prefix)
    }

    /// The server id of a runtime key, if it is one.
    pub fn server_id_of_runtime_key<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.prefix)?
            .strip_prefix("server_runtime:")
    }

    /// Set: claimed `host:port` pairs.
    pub fn runtime_ports(&self) -> String {
        format!("{}runtime_ports", self.prefix)
    }

    /// String with expiry: which supervisor owns a server's workers.
    pub fn lease(&self, server_id: &str) -> String {
        format!("{}lease:{server_id}", self.prefix)
    }

    /// Hash: supervisor id -> liveness JSON.
    pub fn supervisors(&self) -> String {
        format!("{}supervisors", self.prefix)
    }

    /// Lock guarding port claims.
    pub fn ports_lock(&self) -> String {
        format!("{}runtime_ports:lock", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_is_the_prds() {
        let keys = Keys::default();
        assert_eq!(keys.servers(), "mcp:servers");
        assert_eq!(keys.tools("fruits_api"), "mcp:tools:fruits_api");
        assert_eq!(keys.events(), "mcp:events");
        assert_eq!(keys.runtime("fruits_api"), "mcp:server_runtime:fruits_api");
        assert_eq!(keys.runtime_ports(), "mcp:runtime_ports");
    }

    #[test]
    fn prefix_is_normalised_and_runtime_keys_parse_back() {
        let keys = Keys::new("t1:");
        assert_eq!(keys.servers(), "t1:servers");
        assert_eq!(
            keys.server_id_of_runtime_key(&keys.runtime("a-b")),
            Some("a-b")
        );
        assert_eq!(
            keys.server_id_of_runtime_key("other:server_runtime:x"),
            None
        );
    }
}
