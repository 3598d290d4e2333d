//! Owns every read and write of the registry and runtime records in Redis.
//!
//! Each write and its event go out in one Lua script: the write, `INCR` of the registry
//! version and `PUBLISH` on the events channel happen atomically, so a subscriber that
//! sees version N knows every write up to N is visible. Reads that must be consistent
//! (snapshot, stats) are single scripts too. Every script declares in `KEYS` each key it
//! touches (Redis Cluster refuses the others); a whole-registry read first reads the
//! server ids, then runs its script on their keys, which checks the ids are still the
//! same and is retried when a server came or went in between. Calls during a Redis
//! outage fail fast with [`Error::Unavailable`]; [`crate::connection`] reconnects (and
//! finds the master again) on the next call.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::connection::{Connection, Target};
use crate::events::EventKind;
use crate::keys::Keys;
use crate::model::{ServerConfig, ToolBinding};
use crate::runtime::{ServerRuntime, WorkerRecord};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis could not be reached or did not answer in time.
    #[error("redis is unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    #[error("redis command failed: {0}")]
    Redis(#[source] redis::RedisError),
    #[error("server {0:?} is not registered")]
    ServerNotFound(String),
    #[error("stored value at {key} is not valid: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A masked secret was sent for a server that has no stored secret to keep; the
    /// field is named (`auth.value`, `defaultHeaders.<name>`).
    #[error("{0} is the mask the API hands out and no value is stored for it; send the real one")]
    MaskedSecret(String),
    /// An import cannot be applied to the registry as it stands (checked before any
    /// write); every problem is listed with its field in the document.
    #[error("the document cannot be imported: {}", .0.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<crate::validate::Problem>),
    /// The URL does not parse (the message never repeats it: it may hold a password).
    #[error("invalid redis url: {0}")]
    InvalidUrl(String),
    /// The servers kept coming and going while a whole-registry read was retried.
    #[error("the registry changed during {0} reads in a row; try again")]
    Contended(u32),
    /// Redis holds less of the registry than this client read before, at a lower
    /// version: it lost its data (restarted empty, flushed). A client made with
    /// [`RedisRegistry::guard_data_loss`] refuses such a read, so its owner keeps
    /// serving what it loaded until the registry is re-imported.
    #[error("redis lost the registry's data; serving the last one loaded until it is re-imported")]
    DataLost,
}

impl From<redis::RedisError> for Error {
    fn from(err: redis::RedisError) -> Error {
        if err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
        {
            Error::Unavailable(err)
        } else {
            Error::Redis(err)
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a Redis call may take before the caller gets [`Error::Unavailable`].
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_millis(1_000),
            response: Duration::from_millis(2_000),
        }
    }
}

/// Counts computed from Redis in one script, so they are consistent and idempotent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub servers: u64,
    pub active_servers: u64,
    pub tools: u64,
    pub active_tools: u64,
}

/// A server and its tools as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerEntry {
    pub config: ServerConfig,
    pub tools: BTreeMap<String, ToolBinding>,
}

/// The whole registry at one registry version.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub version: u64,
    pub servers: BTreeMap<String, ServerEntry>,
}

/// Whether a write created the entry or replaced one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    pub created: bool,
    pub version: u64,
}

/// Async client of the shared registry. Cheap to clone: clones share one multiplexed
/// connection.
#[derive(Clone)]
pub struct RedisRegistry {
    /// Multiplexed, and rebuilt on the new master after a failover; a clone is a handle,
    /// not a new socket. Also opens the dedicated pub/sub connections of subscriptions.
    conn: Connection,
    keys: Keys,
    timeouts: Timeouts,
    /// With [`RedisRegistry::guard_data_loss`]: version and entries of the last read
    /// accepted. A std Mutex: held for one comparison, never across an await.
    last_read: Option<Arc<Mutex<(u64, usize)>>>,
}

/// How often a whole-registry read is tried when servers come and go meanwhile.
const SNAPSHOT_ATTEMPTS: u32 = 20;

/// Prepended to every script: `publish(body)` bumps the version and publishes
/// `{"version":N, ...body}`. KEYS[1] is always the version counter, ARGV[1] the channel.
const PUBLISH_LUA: &str = r#"
local function publish(body)
  local v = redis.call('INCR', KEYS[1])
  redis.call('PUBLISH', ARGV[1], '{"version":' .. v .. ',' .. string.sub(body, 2))
  return v
end
local function str(s) return cjson.encode(s) end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PUBLISH_LUA}{body}"))
}

/// KEYS: version, servers. ARGV: channel, id, config, event, kept. A non-empty `kept` is
/// a JSON array of `[field, placeholder]` pairs, `field` being `auth` or
/// `header:<name>`: each placeholder (a quoted JSON string) stands for a stored secret
/// in config and event (`auth.value`, or the stored default header of that name, its
/// case ignored) and is replaced by it inside the script, so keeping the secrets is
/// atomic with the write. A secret not stored: `{-1, i}` (`i` its pair, from 1) and
/// nothing is written.
static UPSERT_SERVER: LazyLock<Script> = LazyLock::new(|| {
    script(&format!(
        "{WRITE_SERVER_LUA}return {{created, publish(event)}}\n"
    ))
});

/// [`UPSERT_SERVER`] and the server's tools in one script, so that an import stopped
/// midway (the admin API killed, Redis gone) never leaves a server without its tools.
/// KEYS: version, servers, tools. ARGV: as [`UPSERT_SERVER`], then for each tool its
/// name, definition and event. Returns {created, last version}.
static IMPORT_SERVER: LazyLock<Script> = LazyLock::new(|| {
    script(&format!(
        "{WRITE_SERVER_LUA}{}",
        r#"
local v = publish(event)
for i = 6, #ARGV, 3 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  v = publish(ARGV[i + 2])
end
return {created, v}
"#
    ))
});

/// The head of [`UPSERT_SERVER`] and [`IMPORT_SERVER`]: the secret swapped in and the
/// server written (`created`); its event (`event`) is left to publish.
const WRITE_SERVER_LUA: &str = r#"
local config, event = ARGV[3], ARGV[4]
if ARGV[5] ~= '' then
  local stored = redis.call('HGET', KEYS[2], ARGV[2])
  local cfg = nil
  if stored then
    local ok, decoded = pcall(cjson.decode, stored)
    if ok and type(decoded) == 'table' then cfg = decoded end
  end
  local function stored_secret(field)
    if not cfg then return nil end
    if field == 'auth' then
      if type(cfg.auth) == 'table' and type(cfg.auth.value) == 'string' then return cfg.auth.value end
      return nil
    end
    local name = string.match(field, '^header:(.*)$')
    if not name or type(cfg.defaultHeaders) ~= 'table' then return nil end
    if type(cfg.defaultHeaders[name]) == 'string' then return cfg.defaultHeaders[name] end
    for k, v in pairs(cfg.defaultHeaders) do
      if type(k) == 'string' and type(v) == 'string' and string.lower(k) == string.lower(name) then return v end
    end
    return nil
  end
  local function splice(text, placeholder, secret)
    local i, j = string.find(text, placeholder, 1, true)
    if not i then error('a stored-secret placeholder is missing') end
    return string.sub(text, 1, i - 1) .. str(secret) .. string.sub(text, j + 1)
  end
  for n, pair in ipairs(cjson.decode(ARGV[5])) do
    local secret = stored_secret(pair[1])
    if not secret then return {-1, n} end
    config, event = splice(config, pair[2], secret), splice(event, pair[2], secret)
  end
end
local created = redis.call('HSET', KEYS[2], ARGV[2], config)
"#;

/// The document field of a `kept` entry of [`WRITE_SERVER_LUA`].
fn masked_field(kept: &str) -> String {
    match kept.strip_prefix("header:") {
        Some(name) => format!("defaultHeaders.{name}"),
        None => "auth.value".to_owned(),
    }
}

/// KEYS: version, servers, tools. ARGV: channel, server id, tool name, tool, event.
static UPSERT_TOOL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return {-1, 0} end
local created = redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
return {created, publish(ARGV[5])}
"#,
    )
});

/// KEYS: version, tools. ARGV: channel, server id, tool name.
static DELETE_TOOL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('HDEL', KEYS[2], ARGV[3]) == 0 then return 0 end
return publish('{"type":"tool.delete","serverId":' .. str(ARGV[2]) .. ',"toolName":' .. str(ARGV[3]) .. '}')
"#,
    )
});

/// KEYS: version, servers, tools. ARGV: channel, server id. Returns {found, tools, version}.
static DELETE_SERVER: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local names = redis.call('HKEYS', KEYS[3])
table.sort(names)
local found = redis.call('HDEL', KEYS[2], ARGV[2])
if found == 0 and #names == 0 then return {0, 0, 0} end
for _, name in ipairs(names) do
  publish('{"type":"tool.delete","serverId":' .. str(ARGV[2]) .. ',"toolName":' .. str(name) .. '}')
end
redis.call('DEL', KEYS[3])
local v = publish('{"type":"server.delete","serverId":' .. str(ARGV[2]) .. '}')
return {found, #names, v}
"#,
    )
});

/// KEYS: version, servers. ARGV: channel, server id, event.
static PUBLISH_IF_SERVER: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return 0 end
return publish(ARGV[3])
"#,
    )
});

/// KEYS: version, runtime, runtime index. ARGV: channel, field, record (empty =
/// delete), event, server id. The index holds the server while its hash exists.
static PUT_RUNTIME: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if ARGV[3] == '' then
  if redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then return 0 end
  if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SREM', KEYS[3], ARGV[5]) end
else
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  redis.call('SADD', KEYS[3], ARGV[5])
end
return publish(ARGV[4])
"#,
    )
});

/// KEYS: runtime, runtime index. ARGV: field, record, server id. A heartbeat: no event.
pub(crate) static TOUCH_RUNTIME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
"#,
    )
});

/// Shared head of the whole-registry reads: KEYS[2] is the servers hash, ARGV the
/// server ids the caller read before (sorted), KEYS[3..] their tools hashes in that
/// order. `same_servers()` is false when a server came or went since.
const SAME_SERVERS_LUA: &str = r#"
local function same_servers()
  local ids = redis.call('HKEYS', KEYS[2])
  if #ids ~= #ARGV then return false end
  table.sort(ids)
  for i = 1, #ids do if ids[i] ~= ARGV[i] then return false end end
  return true
end
"#;

/// KEYS: version, servers, tools of each id. ARGV: server ids. Returns
/// {1, version, {id, config, ...}, {tools of each id}} or {0} when the ids changed.
static SNAPSHOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{SAME_SERVERS_LUA}{}",
        r#"
if not same_servers() then return {0} end
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
local servers, tools = {}, {}
for i = 1, #ARGV do
  servers[#servers + 1] = ARGV[i]
  servers[#servers + 1] = redis.call('HGET', KEYS[2], ARGV[i])
  tools[i] = redis.call('HGETALL', KEYS[i + 2])
end
return {1, v, servers, tools}
"#
    ))
});

/// KEYS: version (unused), servers, tools of each id. ARGV: server ids. `active` is
/// true unless stored as false. Returns {1, servers, active, tools, active} or {0}.
static STATS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{SAME_SERVERS_LUA}{}",
        r#"
if not same_servers() then return {0} end
local s, active_s, t, active_t = 0, 0, 0, 0
for i = 1, #ARGV do
  s = s + 1
  local ok, cfg = pcall(cjson.decode, redis.call('HGET', KEYS[2], ARGV[i]))
  if ok and type(cfg) == 'table' and cfg.active ~= false then active_s = active_s + 1 end
  local tools = redis.call('HVALS', KEYS[i + 2])
  for j = 1, #tools do
    t = t + 1
    local ok2, tool = pcall(cjson.decode, tools[j])
    if ok2 and type(tool) == 'table' and tool.active ~= false then active_t = active_t + 1 end
  end
end
return {1, s, active_s, t, active_t}
"#
    ))
});

fn to_json<T: Serialize>(value: &T) -> String {
    // Serializing these plain data types cannot fail (string keys, no custom impls).
    serde_json::to_string(value).unwrap_or_default()
}

fn event_body(kind: &EventKind) -> String {
    to_json(kind)
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|source| Error::Corrupt {
        key: key.to_owned(),
        source,
    })
}

impl RedisRegistry {
    /// Creates the client without connecting: the first call connects, and a Redis that is
    /// down makes calls fail fast instead of making start-up hang. `redis_url` takes every
    /// form of [`Target::parse`]; on a cluster the key prefix becomes a hash tag
    /// ([`Keys::with_hash_tag`]). Must run inside a Tokio runtime (Sentinel: the
    /// `+switch-master` watchers are spawned there).
    pub fn new(redis_url: &str, keys: Keys, timeouts: Timeouts) -> Result<RedisRegistry> {
        let target = Target::parse(redis_url).map_err(Error::InvalidUrl)?;
        let keys = if target.is_cluster() {
            keys.with_hash_tag()
        } else {
            keys
        };
        Ok(RedisRegistry {
            conn: Connection::new(target, timeouts),
            keys,
            timeouts,
            last_read: None,
        })
    }

    /// For consumers that serve from what they loaded (gateway, supervisor, worker):
    /// a whole read that finds fewer entries (servers and tools) at a lower version than
    /// the last one this client accepted means Redis lost its data (restarted empty,
    /// flushed, restored from an older copy): the counter only grows, and a deletion
    /// raises it. [`RedisRegistry::snapshot`] then fails with [`Error::DataLost`]
    /// (logged as `registry.data_lost`, at error level) instead of answering "these
    /// servers are gone", so its owner keeps serving its last load; the worker checks
    /// its own server with [`RedisRegistry::refuse_if_lost`]. Reads are accepted again
    /// once the registry holds as much as before (the export re-imported: a partial
    /// import midway is refused too) or its version passes the old one; restarting the
    /// process accepts whatever Redis holds. The admin API does not use it: it must
    /// show what Redis holds, and take the re-import.
    pub fn guard_data_loss(mut self) -> RedisRegistry {
        self.last_read = Some(Arc::new(Mutex::new((0, 0))));
        self
    }

    /// `Err(DataLost)` when `entries` (servers and tools read) were read at a `version`
    /// below the last accepted read and are fewer than it had (see
    /// [`RedisRegistry::guard_data_loss`]; always `Ok` without it). Remembers the read
    /// otherwise.
    pub fn refuse_if_lost(&self, version: u64, entries: usize) -> Result<()> {
        let Some(last) = &self.last_read else {
            return Ok(());
        };
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        let (last_version, last_entries) = *last;
        if version < last_version && entries < last_entries {
            tracing::error!(
                event = "registry.data_lost",
                prefix = %self.keys.prefix(),
                version,
                entries,
                last_version,
                last_entries,
                "redis holds less of the registry than before at a lower version: its data was lost; serving the last one loaded; re-import an export (POST /api/import)"
            );
            return Err(Error::DataLost);
        }
        *last = (version, entries);
        Ok(())
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    pub(crate) fn conn(&self) -> Connection {
        self.conn.clone()
    }

    /// The connection itself, for writes that must be confirmed by replicas.
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// `PING`, bounded by the response timeout.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// The current registry version (the version of the last published event).
    pub async fn version(&self) -> Result<u64> {
        let mut conn = self.conn();
        let version: Option<u64> = conn.get(self.keys.version()).await?;
        Ok(version.unwrap_or(0))
    }

    // ---- servers ----

    /// Creates or replaces a server and publishes `server.upsert`. A masked `auth.value`
    /// keeps the stored secret. Validation is the caller's job ([`crate::validate`]).
    pub async fn upsert_server(
        &self,
        server_id: &str,
        server: ServerConfig,
    ) -> Result<WriteOutcome> {
        self.write_server(server_id, server, &[]).await
    }

    /// [`RedisRegistry::upsert_server`] and, in the same script, `tools` with their
    /// `tool.upsert` events (an import: a server is never stored without its tools).
    async fn write_server(
        &self,
        server_id: &str,
        mut server: ServerConfig,
        tools: &[&ToolBinding],
    ) -> Result<WriteOutcome> {
        if server.name.is_empty() {
            server.name = server_id.to_owned();
        }
        // The script swaps each stored secret in for a one-off placeholder, so a
        // concurrent write cannot slip between reading a secret and writing it back.
        let mut kept: Vec<(String, String)> = Vec::new();
        let mut placeholder = |field: String| {
            let token = format!("mcp-hub:stored-secret:{}", uuid::Uuid::new_v4().simple());
            kept.push((field, to_json(&token)));
            token
        };
        if server.auth.value_is_masked() {
            server.auth.value = Some(placeholder("auth".to_owned()));
        }
        let masked_headers: Vec<String> =
            server.masked_default_headers().map(str::to_owned).collect();
        for name in masked_headers {
            let token = placeholder(format!("header:{name}"));
            server.default_headers.insert(name, token);
        }
        let kept_arg = if kept.is_empty() {
            String::new()
        } else {
            to_json(&kept)
        };
        let event = EventKind::ServerUpsert {
            server_id: server_id.to_owned(),
            server: server.clone(),
        };
        let mut invocation = if tools.is_empty() {
            UPSERT_SERVER.key(self.keys.version())
        } else {
            IMPORT_SERVER.key(self.keys.version())
        };
        invocation.key(self.keys.servers());
        if !tools.is_empty() {
            invocation.key(self.keys.tools(server_id));
        }
        invocation
            .arg(self.keys.events())
            .arg(server_id)
            .arg(to_json(&server))
            .arg(event_body(&event))
            .arg(kept_arg);
        for tool in tools {
            let event = EventKind::ToolUpsert {
                server_id: server_id.to_owned(),
                tool_name: tool.name.clone(),
                tool: (*tool).clone(),
            };
            invocation
                .arg(&tool.name)
                .arg(to_json(tool))
                .arg(event_body(&event));
        }
        let (created, version): (i64, u64) = self.conn.write_script(&invocation).await?;
        if created < 0 {
            let field = usize::try_from(version)
                .ok()
                .and_then(|n| kept.get(n.checked_sub(1)?))
                .map_or("auth", |(field, _)| field.as_str());
            return Err(Error::MaskedSecret(masked_field(field)));
        }
        Ok(WriteOutcome {
            created: created == 1,
            version,
        })
    }

    pub async fn get_server(&self, server_id: &str) -> Result<Option<ServerConfig>> {
        let mut conn = self.conn();
        let key = self.keys.servers();
        let json: Option<String> = conn.hget(&key, server_id).await?;
        json.map(|json| parse(&key, &json)).transpose()
    }

    /// Every server, ordered by id.
    pub async fn list_servers(&self) -> Result<BTreeMap<String, ServerConfig>> {
        let mut conn = self.conn();
        let key = self.keys.servers();
        let all: BTreeMap<String, String> = conn.hgetall(&key).await?;
        all.into_iter()
            .map(|(id, json)| Ok((id, parse(&key, &json)?)))
            .collect()
    }

    /// Deletes a server and its tools, publishing `tool.delete` for each tool and then
    /// `server.delete`. Returns the number of tools removed, or `None` if nothing existed.
    pub async fn delete_server(&self, server_id: &str) -> Result<Option<u64>> {
        let (found, n_tools, _version): (i64, u64, u64) = self
            .conn
            .write_script(
                DELETE_SERVER
                    .key(self.keys.version())
                    .key(self.keys.servers())
                    .key(self.keys.tools(server_id))
                    .arg(self.keys.events())
                    .arg(server_id),
            )
            .await?;
        Ok((found == 1 || n_tools > 0).then_some(n_tools))
    }

    /// Publishes `server.restart`; [`Error::ServerNotFound`] for an unknown server.
    pub async fn request_restart(&self, server_id: &str) -> Result<u64> {
        self.publish_for_server(EventKind::ServerRestart {
            server_id: server_id.to_owned(),
        })
        .await
    }

    /// Publishes an event about a registered server; [`Error::ServerNotFound`] otherwise.
    pub(crate) async fn publish_for_server(&self, event: EventKind) -> Result<u64> {
        let server_id = event.server_id().to_owned();
        let version: u64 = self
            .conn
            .write_script(
                PUBLISH_IF_SERVER
                    .key(self.keys.version())
                    .key(self.keys.servers())
                    .arg(self.keys.events())
                    .arg(&server_id)
                    .arg(event_body(&event)),
            )
            .await?;
        if version == 0 {
            return Err(Error::ServerNotFound(server_id));
        }
        Ok(version)
    }

    // ---- tools ----

    /// Creates or replaces a tool of a registered server and publishes `tool.upsert`.
    pub async fn upsert_tool(&self, server_id: &str, tool: ToolBinding) -> Result<WriteOutcome> {
        let event = EventKind::ToolUpsert {
            server_id: server_id.to_owned(),
            tool_name: tool.name.clone(),
            tool: tool.clone(),
        };
        let (created, version): (i64, u64) = self
            .conn
            .write_script(
                UPSERT_TOOL
                    .key(self.keys.version())
                    .key(self.keys.servers())
                    .key(self.keys.tools(server_id))
                    .arg(self.keys.events())
                    .arg(server_id)
                    .arg(&tool.name)
                    .arg(to_json(&tool))
                    .arg(event_body(&event)),
            )
            .await?;
        if created < 0 {
            return Err(Error::ServerNotFound(server_id.to_owned()));
        }
        Ok(WriteOutcome {
            created: created == 1,
            version,
        })
    }

    pub async fn get_tool(&self, server_id: &str, tool_name: &str) -> Result<Option<ToolBinding>> {
        let mut conn = self.conn();
        let key = self.keys.tools(server_id);
        let json: Option<String> = conn.hget(&key, tool_name).await?;
        json.map(|json| parse(&key, &json)).transpose()
    }

    /// The tools of one server, ordered by name.
    pub async fn list_tools(&self, server_id: &str) -> Result<BTreeMap<String, ToolBinding>> {
        let mut conn = self.conn();
        let key = self.keys.tools(server_id);
        let all: BTreeMap<String, String> = conn.hgetall(&key).await?;
        all.into_iter()
            .map(|(name, json)| Ok((name, parse(&key, &json)?)))
            .collect()
    }

    /// Deletes a tool and publishes `tool.delete`; false when it did not exist.
    pub async fn delete_tool(&self, server_id: &str, tool_name: &str) -> Result<bool> {
        let version: u64 = self
            .conn
            .write_script(
                DELETE_TOOL
                    .key(self.keys.version())
                    .key(self.keys.tools(server_id))
                    .arg(self.keys.events())
                    .arg(server_id)
                    .arg(tool_name),
            )
            .await?;
        Ok(version > 0)
    }

    // ---- whole-registry reads ----

    /// Every server with its tools, read atomically with the registry version.
    /// Entries that do not parse are skipped with a warning rather than hiding the rest.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let (_, version, servers, tools): (i64, u64, Vec<String>, Vec<Vec<String>>) =
            self.read_whole(&SNAPSHOT).await?;
        let mut snapshot = Snapshot {
            version,
            servers: BTreeMap::new(),
        };
        let servers_key = self.keys.servers();
        for (pair, tool_pairs) in servers.chunks_exact(2).zip(tools) {
            let (server_id, json) = (&pair[0], &pair[1]);
            let config = match parse::<ServerConfig>(&servers_key, json) {
                Ok(config) => config,
                Err(err) => {
                    tracing::warn!(event = "registry.corrupt", server = %server_id, error = %err, "skipping server");
                    continue;
                }
            };
            let tools_key = self.keys.tools(server_id);
            let mut tools = BTreeMap::new();
            for tool_pair in tool_pairs.chunks_exact(2) {
                match parse::<ToolBinding>(&tools_key, &tool_pair[1]) {
                    Ok(tool) => {
                        tools.insert(tool_pair[0].clone(), tool);
                    }
                    Err(err) => {
                        tracing::warn!(event = "registry.corrupt", server = %server_id, tool = %tool_pair[0], error = %err, "skipping tool")
                    }
                }
            }
            snapshot
                .servers
                .insert(server_id.clone(), ServerEntry { config, tools });
        }
        let entries = snapshot.servers.values().map(|s| 1 + s.tools.len()).sum();
        self.refuse_if_lost(snapshot.version, entries)?;
        Ok(snapshot)
    }

    pub async fn stats(&self) -> Result<Stats> {
        let (_, servers, active_servers, tools, active_tools): (i64, u64, u64, u64, u64) =
            self.read_whole(&STATS).await?;
        Ok(Stats {
            servers,
            active_servers,
            tools,
            active_tools,
        })
    }

    /// Runs a whole-registry read script on the keys of the server ids read just before
    /// (every key declared); again when a server came or went in between.
    async fn read_whole<T: redis::FromRedisValue>(&self, script: &Script) -> Result<T> {
        let mut conn = self.conn();
        for _ in 0..SNAPSHOT_ATTEMPTS {
            let mut ids: Vec<String> = conn.hkeys(self.keys.servers()).await?;
            ids.sort_unstable();
            let mut invocation = script.key(self.keys.version());
            invocation.key(self.keys.servers());
            for id in &ids {
                invocation.key(self.keys.tools(id));
            }
            for id in &ids {
                invocation.arg(id);
            }
            let reply: Vec<redis::Value> = invocation.invoke_async(&mut conn).await?;
            if matches!(reply.first(), Some(redis::Value::Int(1))) {
                return redis::from_redis_value(redis::Value::Array(reply))
                    .map_err(|err| Error::Redis(err.into()));
            }
        }
        Err(Error::Contended(SNAPSHOT_ATTEMPTS))
    }

    // ---- runtime records (written by the supervisor only) ----

    /// Writes one worker's record and publishes `worker.status` in the same script.
    pub async fn put_worker_record(&self, server_id: &str, record: &WorkerRecord) -> Result<u64> {
        let event = EventKind::WorkerStatus {
            server_id: server_id.to_owned(),
            worker: record.clone(),
        };
        let version: u64 = self
            .conn
            .write_script(
                PUT_RUNTIME
                    .key(self.keys.version())
                    .key(self.keys.runtime(server_id))
                    .key(self.keys.runtime_index())
                    .arg(self.keys.events())
                    .arg(record.replica_idx)
                    .arg(to_json(record))
                    .arg(event_body(&event))
                    .arg(server_id),
            )
            .await?;
        Ok(version)
    }

    /// Removes one worker's record and publishes `worker.removed`; false if there was none.
    pub async fn remove_worker_record(&self, server_id: &str, replica_idx: u32) -> Result<bool> {
        let event = EventKind::WorkerRemoved {
            server_id: server_id.to_owned(),
            replica_idx,
        };
        let version: u64 = self
            .conn
            .write_script(
                PUT_RUNTIME
                    .key(self.keys.version())
                    .key(self.keys.runtime(server_id))
                    .key(self.keys.runtime_index())
                    .arg(self.keys.events())
                    .arg(replica_idx)
                    .arg("")
                    .arg(event_body(&event))
                    .arg(server_id),
            )
            .await?;
        Ok(version > 0)
    }

    /// The worker records of one server, ordered by replica.
    pub async fn get_runtime(&self, server_id: &str) -> Result<ServerRuntime> {
        let mut conn = self.conn();
        let key = self.keys.runtime(server_id);
        let fields: BTreeMap<String, String> = conn.hgetall(&key).await?;
        let mut workers = fields
            .values()
            .map(|json| parse::<WorkerRecord>(&key, json))
            .collect::<Result<Vec<_>>>()?;
        workers.sort_by_key(|w| w.replica_idx);
        Ok(ServerRuntime {
            server_id: server_id.to_owned(),
            workers,
        })
    }

    /// Every server's runtime records, ordered by server: the servers come from the
    /// runtime index the write scripts keep (no `SCAN`); a server whose last record went
    /// meanwhile is left out.
    pub async fn list_runtime(&self) -> Result<Vec<ServerRuntime>> {
        let mut conn = self.conn();
        let mut server_ids: Vec<String> = conn.smembers(self.keys.runtime_index()).await?;
        server_ids.sort();
        let mut all = Vec::with_capacity(server_ids.len());
        for server_id in server_ids {
            let runtime = self.get_runtime(&server_id).await?;
            if !runtime.workers.is_empty() {
                all.push(runtime);
            }
        }
        Ok(all)
    }
}

/// How an import treats what the document does not mention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportMode {
    /// Upsert what the document holds; leave everything else alone.
    #[default]
    Merge,
    /// Make the registry equal to the document: servers and tools it lacks are deleted.
    Replace,
}

/// What an import changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportSummary {
    pub servers: u64,
    pub tools: u64,
    pub removed_servers: u64,
    pub removed_tools: u64,
}

impl RedisRegistry {
    /// The whole registry as an import/export document (secrets in clear: the caller
    /// decides whether to mask).
    pub async fn export(&self) -> Result<crate::document::Document> {
        let snapshot = self.snapshot().await?;
        let mut doc = crate::document::Document {
            format: crate::document::FORMAT.to_owned(),
            version: snapshot.version,
            ..Default::default()
        };
        for (server_id, entry) in snapshot.servers {
            doc.tools.insert(server_id.clone(), entry.tools);
            doc.servers.insert(server_id, entry.config);
        }
        Ok(doc)
    }

    /// Writes a validated document ([`crate::document::Document::parse`]). What depends
    /// on the stored registry (a masked `auth.value` needs a stored secret to keep) is
    /// checked before the first write: [`Error::Invalid`] lists every problem and nothing
    /// is written. Each server is written with its tools in one script, atomic with their
    /// events (a server is never stored without its tools); the import as a whole is not
    /// one transaction, so only Redis failing midway (or a concurrent delete of a server
    /// whose masked secret the import keeps) leaves the writes before it in place, and
    /// re-running the import converges.
    pub async fn import(
        &self,
        doc: &crate::document::Document,
        mode: ImportMode,
    ) -> Result<ImportSummary> {
        let mut problems = Vec::new();
        for (server_id, config) in &doc.servers {
            let masked_headers: Vec<&str> = config.masked_default_headers().collect();
            if !config.auth.value_is_masked() && masked_headers.is_empty() {
                continue;
            }
            let stored = self.get_server(server_id).await?;
            if config.auth.value_is_masked()
                && stored
                    .as_ref()
                    .and_then(|s| s.auth.value.as_ref())
                    .is_none()
            {
                problems.push(crate::validate::Problem::new(
                    format!("servers.{server_id}.auth.value"),
                    "is the mask the API hands out and no secret is stored for this server; send the real secret",
                ));
            }
            for name in masked_headers {
                let kept = stored.as_ref().is_some_and(|s| {
                    s.default_headers
                        .keys()
                        .any(|stored| stored.eq_ignore_ascii_case(name))
                });
                if !kept {
                    problems.push(crate::validate::Problem::new(
                        format!("servers.{server_id}.defaultHeaders.{name}"),
                        "is the mask the API hands out and no value is stored for this header; send the real one",
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let mut summary = ImportSummary::default();
        if mode == ImportMode::Replace {
            for server_id in self.list_servers().await?.keys() {
                if !doc.servers.contains_key(server_id) {
                    summary.removed_tools += self.delete_server(server_id).await?.unwrap_or(0);
                    summary.removed_servers += 1;
                }
            }
        }
        let no_tools = BTreeMap::new();
        for (server_id, config) in &doc.servers {
            let tools = doc.tools.get(server_id).unwrap_or(&no_tools);
            // The server and its tools in one script: an import stopped midway leaves
            // whole servers, never one without its tools.
            let bindings: Vec<&ToolBinding> = tools.values().collect();
            self.write_server(server_id, config.clone(), &bindings)
                .await?;
            summary.servers += 1;
            summary.tools += bindings.len() as u64;
            if mode == ImportMode::Replace {
                for name in self.list_tools(server_id).await?.keys() {
                    if !tools.contains_key(name) && self.delete_tool(server_id, name).await? {
                        summary.removed_tools += 1;
                    }
                }
            }
        }
        Ok(summary)
    }
}
