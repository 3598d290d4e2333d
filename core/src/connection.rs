//! Owns every connection the hub opens to Redis: which node takes the calls (the one
//! address of `redis://`, the master the sentinels name for `redis+sentinel://`, the
//! slot owners of `redis+cluster://`), connecting with timeouts, and moving to the new
//! master when it changes. Nothing else in the hub opens a Redis connection; nothing
//! here knows a key.
//!
//! With Sentinel, calls never stay on a demoted master: the connection is rebuilt (the
//! sentinels asked again, the answer checked with `ROLE`) on a `+switch-master` message
//! from any sentinel, on a `READONLY` error (the call is then retried once: a refused
//! write did nothing), and on every reconnect. Between a replica's promotion and the
//! sentinels' `+switch-master` the old master still accepts writes that the failover
//! then discards, so with Sentinel a write is acknowledged only once `WAIT` says
//! `min_replicas` replicas have it (default 1).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionInfo, ErrorKind, FromRedisValue, IntoConnectionInfo,
    RedisError, RedisFuture, RedisResult, ScriptInvocation, ServerErrorKind, Value,
};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::registry::Timeouts;

/// Default port of a sentinel in `redis+sentinel://` host lists.
pub const SENTINEL_PORT: u16 = 26379;
/// Default port of a node in `redis+cluster://` host lists.
pub const REDIS_PORT: u16 = 6379;

/// Where the registry lives, parsed from `REDIS_URL`. Its `Debug` names hosts, never
/// credentials.
#[derive(Clone)]
pub enum Target {
    /// `redis://` or `unix://`: one node, as redis-rs parses it.
    Single(ConnectionInfo),
    /// `redis+sentinel://`: the master of `master_name`, as the sentinels say.
    Sentinel(SentinelTarget),
    /// `redis+cluster://`: a Redis Cluster, found from its seed nodes.
    Cluster(ClusterTarget),
}

#[derive(Clone)]
pub struct SentinelTarget {
    /// Every sentinel, with the sentinels' own credentials.
    pub sentinels: Vec<ConnectionInfo>,
    pub master_name: String,
    /// Database and credentials of the data nodes (master and replicas).
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Replicas that must have a write (`WAIT`) before it is acknowledged.
    pub min_replicas: u32,
}

#[derive(Clone)]
pub struct ClusterTarget {
    /// Seed nodes, with the data nodes' credentials.
    pub nodes: Vec<ConnectionInfo>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Single(info) => write!(f, "Single({})", info.addr()),
            Target::Sentinel(t) => {
                let hosts: Vec<String> = t.sentinels.iter().map(|s| s.addr().to_string()).collect();
                write!(
                    f,
                    "Sentinel({} via {}, db {}, min_replicas {})",
                    t.master_name,
                    hosts.join(","),
                    t.db,
                    t.min_replicas
                )
            }
            Target::Cluster(t) => {
                let hosts: Vec<String> = t.nodes.iter().map(|s| s.addr().to_string()).collect();
                write!(f, "Cluster({})", hosts.join(","))
            }
        }
    }
}

impl Target {
    /// Parses `REDIS_URL`:
    /// - `redis://[user][:password@]host[:port][/db]`, `rediss://...`, `unix:///path`;
    /// - `redis+sentinel://[user][:password@]host1[:port],host2[:port]/master_name[/db]`
    ///   `[?sentinel_username=...&sentinel_password=...&min_replicas=N]`: user and
    ///   password are the data nodes', the query's those of the sentinels (default: none),
    ///   sentinel port 26379 by default, `min_replicas` 1 by default;
    /// - `redis+cluster://[user][:password@]host1[:port],host2[:port][/]`.
    ///
    /// User names and passwords are percent-decoded. Errors never repeat the URL.
    pub fn parse(url: &str) -> Result<Target, String> {
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            return parse_sentinel(rest).map(Target::Sentinel);
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            return parse_cluster(rest).map(Target::Cluster);
        }
        url.into_connection_info()
            .map(Target::Single)
            .map_err(|err| err.to_string().replacen(" - InvalidClientConfig", "", 1))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }

    fn min_replicas(&self) -> u32 {
        match self {
            Target::Sentinel(t) => t.min_replicas,
            _ => 0,
        }
    }
}

/// The parts of a URL with a host list.
struct HostList {
    username: Option<String>,
    password: Option<String>,
    hosts: Vec<(String, u16)>,
    path: String,
    query: Vec<(String, String)>,
}

fn decode(text: &str, what: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("the {what} is not valid percent-encoded UTF-8"))
}

fn parse_host_list(rest: &str, default_port: u16) -> Result<HostList, String> {
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (mut username, mut password) = (None, None);
    if let Some(userinfo) = userinfo {
        let (user, pass) = match userinfo.split_once(':') {
            Some((user, pass)) => (user, Some(pass)),
            None => (userinfo, None),
        };
        username = Some(decode(user, "user name")?).filter(|u| !u.is_empty());
        password = pass.map(|p| decode(p, "password")).transpose()?;
    }
    let mut list = Vec::new();
    for host in hosts.split(',') {
        let (name, port) = if let Some(v6) = host.strip_prefix('[') {
            let (name, after) = v6
                .split_once(']')
                .ok_or("an IPv6 host lacks its closing ]")?;
            (name, after.strip_prefix(':'))
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (host, None),
            }
        };
        if name.is_empty() {
            return Err("a host in the list is empty".into());
        }
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .map_err(|_| format!("{port:?} is not a port"))?,
            None => default_port,
        };
        list.push((name.to_owned(), port));
    }
    let query = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok(HostList {
        username,
        password,
        hosts: list,
        path: path.to_owned(),
        query,
    })
}

/// A TCP node's connection info with the given database and credentials.
fn node_info(
    host: &str,
    port: u16,
    db: i64,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<ConnectionInfo, String> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let info = format!("redis://{host}:{port}/{db}")
        .into_connection_info()
        .map_err(|_| format!("{host:?} is not a valid host"))?;
    let mut redis = info.redis_settings().clone();
    if let Some(username) = username {
        redis = redis.set_username(username);
    }
    if let Some(password) = password {
        redis = redis.set_password(password);
    }
    Ok(info.set_redis_settings(redis))
}

fn parse_sentinel(rest: &str) -> Result<SentinelTarget, String> {
    let list = parse_host_list(rest, SENTINEL_PORT)?;
    let mut segments = list.path.trim_start_matches('/').split('/');
    let master_name = segments.next().unwrap_or_default();
    if master_name.is_empty() {
        return Err("the master name is missing (redis+sentinel://host:26379/mymaster/0)".into());
    }
    let master_name = decode(master_name, "master name")?;
    let db = match segments.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse::<i64>()
            .map_err(|_| format!("{db:?} is not a database number"))?,
    };
    if segments.next().is_some() {
        return Err("the path has more than /master_name/db".into());
    }
    let (mut sentinel_username, mut sentinel_password, mut min_replicas) = (None, None, 1);
    for (key, value) in list.query {
        match key.as_str() {
            "sentinel_username" => sentinel_username = Some(value),
            "sentinel_password" => sentinel_password = Some(value),
            "min_replicas" => {
                min_replicas = value
                    .parse()
                    .map_err(|_| format!("min_replicas={value:?} is not a number"))?
            }
            other => {
                return Err(format!(
                "unknown parameter {other:?} (known: sentinel_username, sentinel_password, min_replicas)"
            ))
            }
        }
    }
    let sentinels = list
        .hosts
        .iter()
        .map(|(host, port)| {
            node_info(
                host,
                *port,
                0,
                sentinel_username.as_deref(),
                sentinel_password.as_deref(),
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(SentinelTarget {
        sentinels,
        master_name,
        db,
        username: list.username,
        password: list.password,
        min_replicas,
    })
}

fn parse_cluster(rest: &str) -> Result<ClusterTarget, String> {
    let list = parse_host_list(rest, REDIS_PORT)?;
    if !matches!(list.path.as_str(), "" | "/" | "/0") {
        return Err("a cluster has database 0 only: nothing may follow the hosts".into());
    }
    if let Some((key, _)) = list.query.first() {
        return Err(format!("unknown parameter {key:?}"));
    }
    let nodes = list
        .hosts
        .iter()
        .map(|(host, port)| {
            node_info(
                host,
                *port,
                0,
                list.username.as_deref(),
                list.password.as_deref(),
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(ClusterTarget { nodes })
}

// ---- connections ----

/// A handle on the node that takes the registry's calls. Cheap to clone: clones share
/// one multiplexed connection. Implements [`ConnectionLike`], so redis-rs commands and
/// scripts run on it directly.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    timeouts: Timeouts,
    /// The node calls go to; `None` before the first call and once it is known to be
    /// gone or demoted. A std Mutex: held only to clone or swap the `Arc`, never across
    /// an await.
    current: Mutex<Option<Arc<Node>>>,
    /// One connect at a time, so a burst of calls after a failover asks the sentinels
    /// once; a tokio Mutex because it is held across the connect.
    connecting: tokio::sync::Mutex<()>,
    /// Failed connects so far: a caller that waited for a connect that failed fails too,
    /// instead of trying again in turn (each try may take the connect timeout).
    failures: Mutex<u64>,
    /// The address of the last node connected to, bumped (with its count) whenever calls
    /// move to another node or the sentinels announce a new master; subscriptions watch
    /// it to resubscribe on the new master.
    changes: watch::Sender<(u64, String)>,
    /// Stops the sentinel watchers when the last handle goes.
    _stop: DropGuard,
}

struct Node {
    conn: NodeConn,
    /// `host:port`, as in `+switch-master` messages (cluster: the seed list).
    addr: String,
    /// How to open a pub/sub connection to this node (cluster: to a seed).
    info: Option<ConnectionInfo>,
}

#[derive(Clone)]
enum NodeConn {
    Single(MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for NodeConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            NodeConn::Single(conn) => conn.req_packed_command(cmd),
            NodeConn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            NodeConn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            NodeConn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            NodeConn::Single(conn) => conn.get_db(),
            NodeConn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// An error that counts as "Redis is unavailable" (an I/O error for redis-rs).
fn unavailable(message: String) -> RedisError {
    RedisError::from(std::io::Error::other(message))
}

fn is_read_only(err: &RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || err.code() == Some("READONLY")
        || err.to_string().contains("READONLY")
}

/// True when the node is gone for this handle (the connection must be rebuilt).
fn is_connection_lost(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_unrecoverable_error()
}

/// What to do with a call's result.
enum Verdict<T> {
    Done(RedisResult<T>),
    /// The node refused the call as a replica: the call did nothing, run it again on
    /// the master.
    Retry,
}

impl Connection {
    /// A handle that connects on first use; must run inside a Tokio runtime (the
    /// sentinel watchers are spawned on it).
    pub fn new(target: Target, timeouts: Timeouts) -> Connection {
        let stop = CancellationToken::new();
        let inner = Arc::new(Inner {
            target,
            timeouts,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            failures: Mutex::new(0),
            changes: watch::channel((0, String::new())).0,
            _stop: stop.clone().drop_guard(),
        });
        if let Target::Sentinel(sentinel) = &inner.target {
            for info in &sentinel.sentinels {
                tokio::spawn(watch_sentinel(
                    Arc::downgrade(&inner),
                    info.clone(),
                    sentinel.master_name.clone(),
                    stop.clone(),
                ));
            }
        }
        Connection { inner }
    }

    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    /// Changes of the node calls go to (count, `host:port`).
    pub(crate) fn changes(&self) -> watch::Receiver<(u64, String)> {
        self.inner.changes.subscribe()
    }

    /// A dedicated pub/sub connection to the node calls go to (cluster: to a seed node;
    /// a cluster delivers every `PUBLISH` to every node).
    pub(crate) async fn pubsub(&self) -> RedisResult<redis::aio::PubSub> {
        let infos: Vec<ConnectionInfo> = match &self.inner.target {
            Target::Cluster(cluster) => cluster.nodes.clone(),
            _ => {
                let node = self.inner.node().await?;
                node.info.clone().into_iter().collect()
            }
        };
        let mut last = None;
        for info in infos {
            let attempt = async { redis::Client::open(info)?.get_async_pubsub().await };
            match tokio::time::timeout(self.inner.timeouts.connect, attempt).await {
                Ok(Ok(pubsub)) => return Ok(pubsub),
                Ok(Err(err)) => last = Some(err),
                Err(_) => last = Some(unavailable("pub/sub connect timed out".into())),
            }
        }
        Err(last.unwrap_or_else(|| unavailable("no node to subscribe on".into())))
    }

    /// A connection of its own to the node calls go to, for a blocking command (`XREAD
    /// BLOCK`) that would stall every call sharing the multiplexed one; `None` on a
    /// cluster (the caller polls instead). The caller bounds each command's time.
    pub(crate) async fn dedicated(&self) -> RedisResult<Option<MultiplexedConnection>> {
        if matches!(self.inner.target, Target::Cluster(_)) {
            return Ok(None);
        }
        let node = self.inner.node().await?;
        let Some(info) = node.info.clone() else {
            return Ok(None);
        };
        // No response timeout of its own: a blocked read answers late on purpose.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.timeouts.connect))
            .set_response_timeout(None);
        let attempt = async {
            redis::Client::open(info)?
                .get_multiplexed_async_connection_with_config(&config)
                .await
        };
        match tokio::time::timeout(self.inner.timeouts.connect, attempt).await {
            Ok(result) => result.map(Some),
            Err(_) => Err(unavailable("dedicated connect timed out".into())),
        }
    }

    /// Runs a write script on the master and acknowledges it only once `min_replicas`
    /// replicas have it (`WAIT` on the same connection, so it covers this write).
    pub(crate) async fn write_script<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        self.write(Write::Script(invocation)).await
    }

    /// [`Connection::write_script`] for a plain command.
    pub(crate) async fn write_cmd<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        self.write(Write::Cmd(cmd)).await
    }

    /// Sends `write` to the current node, following a master change once, and
    /// acknowledges it as [`Connection::write_script`] says.
    async fn write<T: FromRedisValue>(&self, write: Write<'_, '_>) -> RedisResult<T> {
        let mut retried = false;
        loop {
            let node = self.inner.node().await?;
            let mut conn = node.conn.clone();
            let result = match write {
                Write::Script(invocation) => invocation.invoke_async(&mut conn).await,
                Write::Cmd(cmd) => cmd.query_async(&mut conn).await,
            };
            match self.inner.verdict(&node, result, &mut retried) {
                Verdict::Retry => continue,
                Verdict::Done(result) => {
                    let value = result?;
                    self.inner.confirm(&mut conn).await?;
                    return Ok(value);
                }
            }
        }
    }
}

/// What [`Connection::write`] sends.
#[derive(Clone, Copy)]
enum Write<'a, 's> {
    Script(&'a ScriptInvocation<'s>),
    Cmd(&'a Cmd),
}

impl Inner {
    fn current(&self) -> Option<Arc<Node>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn failures(&self) -> u64 {
        *self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node calls go to, connecting (and with Sentinel, asking where the master is)
    /// when there is none.
    async fn node(&self) -> RedisResult<Arc<Node>> {
        if let Some(node) = self.current() {
            return Ok(node);
        }
        let failures_before = self.failures();
        let _connecting = self.connecting.lock().await;
        if let Some(node) = self.current() {
            return Ok(node);
        }
        if self.failures() != failures_before {
            return Err(unavailable(
                "redis is unreachable (a connect just failed)".into(),
            ));
        }
        // The sentinels are asked in parallel and the master checked after: two rounds.
        let budget = (self.timeouts.connect + self.timeouts.response) * 2;
        let result = match tokio::time::timeout(budget, self.connect()).await {
            Ok(result) => result,
            Err(_) => Err(unavailable(format!(
                "connecting to redis took over {} ms",
                budget.as_millis()
            ))),
        };
        match result {
            Ok(node) => {
                let node = Arc::new(node);
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(node.clone());
                // The first node is no change; a node at another address is.
                self.changes.send_if_modified(|(n, addr)| {
                    if *addr == node.addr {
                        return false;
                    }
                    let first = addr.is_empty();
                    if !first {
                        tracing::warn!(event = "redis.master.changed", from = %addr, to = %node.addr);
                        *n += 1;
                    }
                    addr.clone_from(&node.addr);
                    !first
                });
                Ok(node)
            }
            Err(err) => {
                *self.failures.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                Err(err)
            }
        }
    }

    fn config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(Some(self.timeouts.response))
    }

    async fn connect(&self) -> RedisResult<Node> {
        match &self.target {
            Target::Single(info) => {
                let conn = redis::Client::open(info.clone())?
                    .get_multiplexed_async_connection_with_config(&self.config())
                    .await?;
                Ok(Node {
                    conn: NodeConn::Single(conn),
                    addr: info.addr().to_string(),
                    info: Some(info.clone()),
                })
            }
            Target::Sentinel(sentinel) => self.connect_master(sentinel).await,
            Target::Cluster(cluster) => {
                let mut builder = redis::cluster::ClusterClientBuilder::new(cluster.nodes.clone())
                    .connection_timeout(self.timeouts.connect)
                    .response_timeout(self.timeouts.response)
                    .retries(2);
                if let Some(first) = cluster.nodes.first() {
                    let settings = first.redis_settings();
                    if let Some(username) = settings.username() {
                        builder = builder.username(username);
                    }
                    if let Some(password) = settings.password() {
                        builder = builder.password(password);
                    }
                }
                let conn = builder.build()?.get_async_connection().await?;
                let addrs: Vec<String> =
                    cluster.nodes.iter().map(|n| n.addr().to_string()).collect();
                Ok(Node {
                    conn: NodeConn::Cluster(conn),
                    addr: addrs.join(","),
                    info: None,
                })
            }
        }
    }

    /// Asks every sentinel at once where the master is (each within the timeouts, so a
    /// sentinel that is down or hangs costs nothing), then connects to the address most
    /// of them name that says `ROLE` master.
    async fn connect_master(&self, sentinel: &SentinelTarget) -> RedisResult<Node> {
        let config = self.config();
        let lookups = sentinel.sentinels.iter().map(|info| {
            let config = config.clone();
            let budget = self.timeouts.connect + self.timeouts.response;
            async move {
                let lookup = async {
                    let mut conn = redis::Client::open(info.clone())?
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?;
                    redis::cmd("SENTINEL")
                        .arg("GET-MASTER-ADDR-BY-NAME")
                        .arg(&sentinel.master_name)
                        .query_async::<Option<(String, u16)>>(&mut conn)
                        .await
                };
                tokio::time::timeout(budget, lookup)
                    .await
                    .unwrap_or_else(|_| Err(unavailable("sentinel did not answer in time".into())))
            }
        });
        let answers = futures::future::join_all(lookups).await;
        let mut votes: Vec<((String, u16), usize)> = Vec::new();
        let mut last_err = None;
        for answer in answers {
            match answer {
                Ok(Some(addr)) => match votes.iter_mut().find(|(a, _)| *a == addr) {
                    Some((_, n)) => *n += 1,
                    None => votes.push((addr, 1)),
                },
                Ok(None) => {}
                Err(err) => last_err = Some(err),
            }
        }
        if votes.is_empty() {
            return Err(last_err.unwrap_or_else(|| {
                unavailable(format!(
                    "no sentinel knows a master named {:?}",
                    sentinel.master_name
                ))
            }));
        }
        votes.sort_by_key(|v| std::cmp::Reverse(v.1));
        for ((host, port), _) in votes {
            let info = node_info(
                &host,
                port,
                sentinel.db,
                sentinel.username.as_deref(),
                sentinel.password.as_deref(),
            )
            .map_err(unavailable)?;
            let attempt = async {
                let mut conn = redis::Client::open(info.clone())?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
                let is_master = matches!(role.first(), Some(Value::BulkString(b)) if b == b"master")
                    || matches!(role.first(), Some(Value::SimpleString(s)) if s == "master");
                Ok::<_, RedisError>(is_master.then_some(conn))
            };
            match attempt.await {
                Ok(Some(conn)) => {
                    return Ok(Node {
                        conn: NodeConn::Single(conn),
                        addr: format!("{host}:{port}"),
                        info: Some(info),
                    })
                }
                Ok(None) => {
                    last_err = Some(unavailable(format!(
                        "{host}:{port}, named master by the sentinels, is not a master (failover in progress)"
                    )))
                }
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.unwrap_or_else(|| unavailable("no master found".into())))
    }

    /// Forgets `node` if calls still go to it, so the next call connects afresh.
    fn drop_node(&self, node: &Arc<Node>, why: &str) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, node)) {
            *current = None;
            tracing::warn!(event = "redis.connection.dropped", addr = %node.addr, reason = why);
        }
    }

    /// Forgets the node unless it is at `new_addr` (a `+switch-master` announcement),
    /// and tells subscriptions to move.
    fn master_switched(&self, new_addr: &str) {
        {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if current.as_ref().is_some_and(|c| c.addr != new_addr) {
                *current = None;
            }
        }
        self.changes.send_if_modified(|(n, addr)| {
            if addr == new_addr {
                return false;
            }
            tracing::warn!(event = "redis.master.changed", from = %addr, to = %new_addr, reason = "+switch-master");
            *n += 1;
            new_addr.clone_into(addr);
            true
        });
    }

    fn verdict<T>(
        &self,
        node: &Arc<Node>,
        result: RedisResult<T>,
        retried: &mut bool,
    ) -> Verdict<T> {
        let Err(err) = &result else {
            return Verdict::Done(result);
        };
        if matches!(node.conn, NodeConn::Cluster(_)) {
            // The cluster connection follows MOVED, failovers and lost nodes itself.
            return Verdict::Done(result);
        }
        if is_read_only(err) {
            self.drop_node(node, "READONLY: the node is a replica now");
            if !*retried {
                *retried = true;
                return Verdict::Retry;
            }
            return Verdict::Done(Err(unavailable(
                "the master refuses writes as a replica (failover in progress)".into(),
            )));
        }
        if is_connection_lost(err) {
            self.drop_node(node, "connection lost");
        }
        Verdict::Done(result)
    }

    /// `WAIT min_replicas` after a write on the same connection.
    async fn confirm(&self, conn: &mut NodeConn) -> RedisResult<()> {
        let needed = self.target.min_replicas();
        if needed == 0 || matches!(conn, NodeConn::Cluster(_)) {
            return Ok(());
        }
        // Below the response timeout, so WAIT answers before the connection gives up.
        let wait_ms = (self.timeouts.response.as_millis() as u64 / 2).max(1);
        let acked: i64 = redis::cmd("WAIT")
            .arg(needed)
            .arg(wait_ms)
            .query_async(conn)
            .await?;
        if acked < i64::from(needed) {
            return Err(unavailable(format!(
                "the write reached the master but {acked} of {needed} replicas confirmed it within {wait_ms} ms"
            )));
        }
        Ok(())
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut retried = false;
            loop {
                let node = self.inner.node().await?;
                let mut conn = node.conn.clone();
                let result = conn.req_packed_command(cmd).await;
                match self.inner.verdict(&node, result, &mut retried) {
                    Verdict::Retry => continue,
                    Verdict::Done(result) => return result,
                }
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut retried = false;
            loop {
                let node = self.inner.node().await?;
                let mut conn = node.conn.clone();
                let result = conn.req_packed_commands(pipeline, offset, count).await;
                match self.inner.verdict(&node, result, &mut retried) {
                    Verdict::Retry => continue,
                    Verdict::Done(result) => return result,
                }
            }
        })
    }

    fn get_db(&self) -> i64 {
        match &self.inner.target {
            Target::Single(info) => info.redis_settings().db(),
            Target::Sentinel(sentinel) => sentinel.db,
            Target::Cluster(_) => 0,
        }
    }
}

/// Follows one sentinel's `+switch-master` announcements for as long as the connection
/// lives, reconnecting to the sentinel with back-off.
async fn watch_sentinel(
    inner: Weak<Inner>,
    info: ConnectionInfo,
    master_name: String,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connect = async {
            let mut pubsub = redis::Client::open(info.clone())?
                .get_async_pubsub()
                .await?;
            pubsub.subscribe("+switch-master").await?;
            Ok::<_, RedisError>(pubsub.into_on_message())
        };
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            result = tokio::time::timeout(Duration::from_secs(5), connect) => result,
        };
        if let Ok(Ok(mut stream)) = stream {
            backoff = Duration::from_millis(100);
            loop {
                let msg = tokio::select! {
                    () = stop.cancelled() => return,
                    msg = stream.next() => msg,
                };
                let Some(msg) = msg else { break };
                // "<master name> <old ip> <old port> <new ip> <new port>"
                let payload = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
                let parts: Vec<&str> = payload.split(' ').collect();
                if parts.len() == 5 && parts[0] == master_name {
                    let Some(inner) = inner.upgrade() else { return };
                    inner.master_switched(&format!("{}:{}", parts[3], parts[4]));
                }
            }
        }
        if inner.strong_count() == 0 {
            return;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> SentinelTarget {
        match Target::parse(url) {
            Ok(Target::Sentinel(t)) => t,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn sentinel_urls() {
        let t = sentinel("redis+sentinel://h1:26379,h2,[::1]:26380/mymaster/2");
        let hosts: Vec<String> = t.sentinels.iter().map(|s| s.addr().to_string()).collect();
        assert_eq!(hosts, ["h1:26379", "h2:26379", "::1:26380"]);
        assert_eq!(
            (t.master_name.as_str(), t.db, t.min_replicas),
            ("mymaster", 2, 1)
        );
        assert_eq!((t.username, t.password), (None, None));

        let t = sentinel(
            "redis+sentinel://app:p%40ss@h1/m?sentinel_password=s%26cret&sentinel_username=sen&min_replicas=0",
        );
        assert_eq!(t.username.as_deref(), Some("app"));
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        assert_eq!((t.db, t.min_replicas), (0, 0));
        let s = t.sentinels[0].redis_settings();
        assert_eq!((s.username(), s.password()), (Some("sen"), Some("s&cret")));

        let t = sentinel("redis+sentinel://:only-pass@h1/m/");
        assert_eq!(
            (t.username, t.password.as_deref()),
            (None, Some("only-pass"))
        );
    }

    #[test]
    fn bad_urls_say_why_without_the_password() {
        for bad in [
            "redis+sentinel://h1:26379",
            "redis+sentinel://h1:26379/",
            "redis+sentinel://h1:x/m",
            "redis+sentinel://h1,/m",
            "redis+sentinel://:hunter2@h1/m/db",
            "redis+sentinel://h1/m/0/extra",
            "redis+sentinel://h1/m?sentinel_pasword=hunter2",
            "redis+sentinel://h1/m?min_replicas=-1",
            "redis+cluster://h1,h2/3",
            "redis+cluster://h1?x=1",
        ] {
            let err = Target::parse(bad).expect_err(bad);
            assert!(!err.contains("hunter2"), "{bad}: {err}");
        }
    }

    #[test]
    fn cluster_and_single_urls() {
        match Target::parse("redis+cluster://:pw@n1:7000,n2:7001,n3") {
            Ok(Target::Cluster(c)) => {
                let hosts: Vec<String> = c.nodes.iter().map(|s| s.addr().to_string()).collect();
                assert_eq!(hosts, ["n1:7000", "n2:7001", "n3:6379"]);
                assert_eq!(c.nodes[2].redis_settings().password(), Some("pw"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Target::parse("redis://127.0.0.1:6379/1"),
            Ok(Target::Single(_))
        ));
        let debug = format!(
            "{:?}",
            Target::parse("redis+sentinel://u:hunter2@h/m").expect("ok")
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
