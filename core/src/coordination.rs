//! Owns the Redis side of coordinating supervisors and workers: port claims in
//! `mcp:runtime_ports` (`host:port` members, claimed by an atomic script so several
//! supervisors never collide), per-server ownership leases (`mcp:lease:{id}`, renewed
//! by the owner, taken over when they expire), supervisor liveness (`mcp:supervisors`),
//! and runtime-record heartbeats that publish no event.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use redis::{AsyncCommands, Script};

use crate::events::EventKind;
use crate::registry::{RedisRegistry, Result};
use crate::runtime::WorkerRecord;

/// KEYS: ports set. ARGV: host, first port, count, ports to skip (comma-separated).
/// Returns the claimed port, or 0 when the range is full.
static CLAIM_PORT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local skip = {}
for p in string.gmatch(ARGV[4], '[^,]+') do skip[p] = true end
local first, count = tonumber(ARGV[2]), tonumber(ARGV[3])
for port = first, first + count - 1 do
  local member = ARGV[1] .. ':' .. port
  if not skip[tostring(port)] and redis.call('SADD', KEYS[1], member) == 1 then return port end
end
return 0
"#,
    )
});

/// KEYS: lease. ARGV: owner, ttl ms. Takes a free lease or renews our own; returns 1
/// when we hold it afterwards.
static ACQUIRE_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#,
    )
});

/// KEYS: lease. ARGV: owner. Deletes the lease only when we hold it.
static RELEASE_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

impl RedisRegistry {
    /// Claims the first free port of `first..first+count` on `host`, skipping `skip`.
    pub async fn claim_port(
        &self,
        host: &str,
        first: u16,
        count: u16,
        skip: &[u16],
    ) -> Result<Option<u16>> {
        let skip: Vec<String> = skip.iter().map(u16::to_string).collect();
        let port: u16 = self
            .connection()
            .write_script(
                CLAIM_PORT
                    .key(self.keys().runtime_ports())
                    .arg(host)
                    .arg(first)
                    .arg(count)
                    .arg(skip.join(",")),
            )
            .await?;
        Ok((port != 0).then_some(port))
    }

    pub async fn release_port(&self, host: &str, port: u16) -> Result<()> {
        let _: i64 = self
            .connection()
            .write_cmd(
                redis::cmd("SREM")
                    .arg(self.keys().runtime_ports())
                    .arg(format!("{host}:{port}")),
            )
            .await?;
        Ok(())
    }

    /// Every claimed `host:port`.
    pub async fn claimed_ports(&self) -> Result<Vec<String>> {
        let mut conn = self.conn();
        let mut members: Vec<String> = conn.smembers(self.keys().runtime_ports()).await?;
        members.sort();
        Ok(members)
    }

    /// Takes or renews the ownership lease of a server; true when `owner` holds it.
    pub async fn acquire_lease(&self, server_id: &str, owner: &str, ttl_ms: u64) -> Result<bool> {
        let held: i64 = self
            .connection()
            .write_script(
                ACQUIRE_LEASE
                    .key(self.keys().lease(server_id))
                    .arg(owner)
                    .arg(ttl_ms),
            )
            .await?;
        Ok(held == 1)
    }

    /// Gives up `owner`'s lease of a server (compare-and-delete: a lease another
    /// supervisor holds by now is left alone); true when it was `owner`'s and is gone.
    pub async fn release_lease(&self, server_id: &str, owner: &str) -> Result<bool> {
        let deleted: i64 = self
            .connection()
            .write_script(RELEASE_LEASE.key(self.keys().lease(server_id)).arg(owner))
            .await?;
        Ok(deleted == 1)
    }

    /// Who holds a server's lease, if anyone.
    pub async fn lease_holder(&self, server_id: &str) -> Result<Option<String>> {
        let mut conn = self.conn();
        Ok(conn.get(self.keys().lease(server_id)).await?)
    }

    /// Records that supervisor `id` is alive now (unix ms).
    pub async fn supervisor_heartbeat(&self, id: &str, now_ms: u64) -> Result<()> {
        let _: i64 = self
            .connection()
            .write_cmd(
                redis::cmd("HSET")
                    .arg(self.keys().supervisors())
                    .arg(id)
                    .arg(now_ms),
            )
            .await?;
        Ok(())
    }

    /// Last heartbeat of every supervisor (unix ms).
    pub async fn supervisors(&self) -> Result<BTreeMap<String, u64>> {
        let mut conn = self.conn();
        Ok(conn.hgetall(self.keys().supervisors()).await?)
    }

    pub async fn remove_supervisor(&self, id: &str) -> Result<()> {
        let _: i64 = self
            .connection()
            .write_cmd(redis::cmd("HDEL").arg(self.keys().supervisors()).arg(id))
            .await?;
        Ok(())
    }

    /// Rewrites a worker's record without publishing (heartbeats: no status change),
    /// keeping the server in the runtime index.
    pub async fn touch_worker_record(&self, server_id: &str, record: &WorkerRecord) -> Result<()> {
        let json = serde_json::to_string(record).unwrap_or_default();
        let _: i64 = self
            .connection()
            .write_script(
                crate::registry::TOUCH_RUNTIME
                    .key(self.keys().runtime(server_id))
                    .key(self.keys().runtime_index())
                    .arg(record.replica_idx)
                    .arg(json)
                    .arg(server_id),
            )
            .await?;
        Ok(())
    }

    /// Asks the supervisor to start an idle server's workers (publishes `server.wake`).
    pub async fn request_wake(&self, server_id: &str) -> Result<u64> {
        self.publish_for_server(EventKind::ServerWake {
            server_id: server_id.to_owned(),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::keys::Keys;
    use crate::RedisRegistry;

    /// A release gives up only the caller's own lease, on one Redis and on a Cluster
    /// (the script declares its one key).
    async fn check_release(registry: &RedisRegistry) {
        assert!(registry
            .acquire_lease("s1", "sup-a", 60_000)
            .await
            .expect("take"));
        assert!(!registry
            .acquire_lease("s1", "sup-b", 60_000)
            .await
            .expect("taken"));
        assert!(!registry
            .release_lease("s1", "sup-b")
            .await
            .expect("not b's"));
        assert_eq!(
            registry
                .lease_holder("s1")
                .await
                .expect("holder")
                .as_deref(),
            Some("sup-a")
        );
        assert!(registry.release_lease("s1", "sup-a").await.expect("a's"));
        assert_eq!(registry.lease_holder("s1").await.expect("holder"), None);
        assert!(!registry.release_lease("s1", "sup-a").await.expect("gone"));
        assert!(registry
            .acquire_lease("s1", "sup-b", 60_000)
            .await
            .expect("free again"));
    }

    #[tokio::test]
    async fn release_lease_deletes_only_the_callers_own_lease() {
        let redis = mcp_testkit::RedisServer::start();
        let keys = Keys::new(&mcp_testkit::unique_prefix());
        let registry =
            RedisRegistry::new(&redis.url(), keys, Default::default()).expect("registry");
        check_release(&registry).await;
    }

    #[tokio::test]
    async fn release_lease_works_on_a_cluster() {
        let cluster = mcp_testkit::RedisCluster::start();
        let keys = Keys::new(&mcp_testkit::unique_prefix());
        let registry =
            RedisRegistry::new(&cluster.url(), keys, Default::default()).expect("registry");
        check_release(&registry).await;
    }
}
