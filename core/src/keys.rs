//! Owns the Redis key layout. Nothing outside this module builds a key string.
//!
//! Every key starts with a configurable prefix (default `mcp:`) so tests and tenants can
//! share one Redis. On Redis Cluster the prefix is a hash tag (`{mcp}:servers`): every
//! key of one hub then lives in one slot, which the scripts need (each bumps the one
//! registry version, and the snapshot reads every server's tools at once). Every key a
//! script touches is declared in its `KEYS`, so the layout is Cluster-safe as it stands.

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

    /// The same layout with the prefix as a Redis Cluster hash tag (`{mcp}:`), unless
    /// the prefix holds one already.
    pub fn with_hash_tag(self) -> Keys {
        let bare = self.prefix.trim_end_matches(':');
        let tagged = bare
            .find('{')
            .is_some_and(|open| bare[open + 1..].find('}').is_some_and(|len| len > 0));
        if tagged {
            return self;
        }
        Keys {
            prefix: format!("{{{bare}}}:"),
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

    /// Set: ids of the servers that have a runtime hash, kept by the scripts that write
    /// runtime records (listing them needs no `SCAN`, which a cluster cannot do in one go).
    pub fn runtime_index(&self) -> String {
        format!("{}server_runtime_index", self.prefix)
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

    /// Stream: one entry per tool call (the audit log, `crate::audit`), capped with
    /// `XADD MAXLEN ~`; it shares the prefix's hash tag, so it lives in the hub's slot.
    pub fn audit(&self) -> String {
        format!("{}audit", self.prefix)
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
        assert_eq!(keys.audit(), "mcp:audit");
        assert_eq!(keys.clone().with_hash_tag().audit(), "{mcp}:audit");
    }

    #[test]
    fn prefix_is_normalised() {
        let keys = Keys::new("t1:");
        assert_eq!(keys.servers(), "t1:servers");
        assert_eq!(keys.runtime_index(), "t1:server_runtime_index");
    }

    #[test]
    fn a_cluster_prefix_is_one_hash_tag() {
        let keys = Keys::default().with_hash_tag();
        assert_eq!(keys.servers(), "{mcp}:servers");
        assert_eq!(keys.tools("fruits_api"), "{mcp}:tools:fruits_api");
        assert_eq!(keys.with_hash_tag().servers(), "{mcp}:servers");
        assert_eq!(
            Keys::new("t-{a}").with_hash_tag().servers(),
            "t-{a}:servers",
            "a prefix with a tag keeps it"
        );
        assert_eq!(Keys::new("x{}").with_hash_tag().servers(), "{x{}}:servers");
    }
}
