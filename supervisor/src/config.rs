//! Owns the configuration of `mcp-supervisor`, validated in full before anything starts.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};
use k8s_openapi::api::core::v1::EnvVar;
use mcp_core::config::{parse_duration, LogArgs, RedisArgs};

use crate::kubernetes::worker_env::{self, Quiet};

/// Supervisor of MCP Hub workers: keeps one worker process per active registered server
/// (times its replicas) running and healthy, and `mcp:server_runtime:{id}` true.
#[derive(Parser, Debug, Clone)]
#[command(name = "mcp-supervisor", version, args_override_self = true)]
pub struct Config {
    /// `false`: do nothing and exit 0 (calls then run inside the gateway: rollback mode).
    #[arg(long, env = "MCP_SUPERVISOR_ENABLED", default_value_t = true, action = ArgAction::Set)]
    pub enabled: bool,
    /// This supervisor's id; stable across restarts so it re-adopts its own workers
    /// (default: the host name). Two supervisors on one host need different ids.
    #[arg(long, env = "MCP_SUPERVISOR_ID")]
    pub supervisor_id: Option<String>,
    /// The `mcp-worker` binary (default: next to this binary).
    #[arg(long, env = "MCP_SUPERVISOR_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// First port tried for workers.
    #[arg(long, env = "MCP_WORKER_BASE_PORT", default_value_t = 9100)]
    pub base_port: u16,
    /// How many ports from the base port workers may use.
    #[arg(long, env = "MCP_WORKER_PORT_COUNT", default_value_t = 1000)]
    pub port_count: u16,
    /// Workers this supervisor runs at most (with `kubernetes`: worker pods of all servers);
    /// replicas over the cap stay `pending`.
    #[arg(long, env = "MCP_WORKER_MAX", default_value_t = 64)]
    pub worker_max: usize,
    /// Stop a worker that served no call for this long (`idle`); 0 = never. E.g. `300s`.
    #[arg(long, env = "MCP_WORKER_IDLE_TTL", default_value = "0", value_parser = parse_duration)]
    pub idle_ttl: Duration,
    /// Address workers listen on.
    #[arg(long, env = "MCP_WORKER_BIND_HOST", default_value = "127.0.0.1")]
    pub bind_host: IpAddr,
    /// Host the gateway should use to reach workers (recorded in runtime records).
    #[arg(long, env = "MCP_WORKER_ADVERTISE_HOST", default_value = "127.0.0.1")]
    pub advertise_host: String,
    /// Interval of `/healthz` probes.
    #[arg(long, env = "MCP_WORKER_HEALTH_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub health_interval: Duration,
    /// Failed probes in a row before a worker is restarted.
    #[arg(long, env = "MCP_WORKER_HEALTH_FAILURES", default_value_t = 3)]
    pub health_failures: u32,
    /// A worker whose resident memory passes this many MiB is restarted (checked at
    /// every health probe, logged as `worker.rss.exceeded`); 0 = no limit.
    #[arg(long, env = "MCP_WORKER_MAX_RSS_MB", default_value_t = 0)]
    pub max_rss_mb: u64,
    /// Time a new worker has to answer `/healthz`.
    #[arg(long, env = "MCP_WORKER_START_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub start_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when stopping a worker.
    #[arg(long, env = "MCP_WORKER_STOP_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub stop_timeout: Duration,
    /// First restart delay after a crash; doubles per failure in a row.
    #[arg(long, env = "MCP_WORKER_BACKOFF_MIN", default_value = "200ms", value_parser = parse_duration)]
    pub backoff_min: Duration,
    /// Longest restart delay.
    #[arg(long, env = "MCP_WORKER_BACKOFF_MAX", default_value = "30s", value_parser = parse_duration)]
    pub backoff_max: Duration,
    /// Full reconcile interval (repairs anything an event missed; renews leases).
    #[arg(long, env = "MCP_SUPERVISOR_RECONCILE_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub reconcile_interval: Duration,
    /// Ownership lease of a server; another supervisor takes over this long after a
    /// supervisor dies.
    #[arg(long, env = "MCP_SUPERVISOR_LEASE_TTL", default_value = "10s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// Workers exit by themselves when their owner (the supervisor their runtime record
    /// names) has been gone this long.
    #[arg(long, env = "MCP_WORKER_ORPHAN_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub orphan_timeout: Duration,
    /// On SIGTERM, stop the workers too (default: leave them for a rolling restart).
    #[arg(long, env = "MCP_SUPERVISOR_STOP_WORKERS_ON_EXIT", default_value_t = false, action = ArgAction::Set)]
    pub stop_workers_on_exit: bool,
    /// How workers run: `process` (local processes, the default) or `kubernetes` (one
    /// Deployment per server in `MCP_K8S_NAMESPACE`; see docs/SCALING.md).
    #[arg(long, env = "MCP_WORKER_BACKEND", value_enum, default_value_t = Backend::Process)]
    pub backend: Backend,
    /// Kubernetes: the namespace of the worker Deployments (default: the supervisor's own
    /// namespace in a pod, else `default`).
    #[arg(long, env = "MCP_K8S_NAMESPACE")]
    pub k8s_namespace: Option<String>,
    /// Kubernetes: the workers' image (the repo's Dockerfile builds one with every binary).
    #[arg(long, env = "MCP_K8S_WORKER_IMAGE", default_value = "mcp-hub:latest")]
    pub k8s_worker_image: String,
    /// Kubernetes: the workers' `imagePullPolicy`.
    #[arg(
        long,
        env = "MCP_K8S_IMAGE_PULL_POLICY",
        default_value = "IfNotPresent"
    )]
    pub k8s_image_pull_policy: String,
    /// Kubernetes: the workers' service account (default: the namespace's default).
    #[arg(long, env = "MCP_K8S_SERVICE_ACCOUNT")]
    pub k8s_service_account: Option<String>,
    /// Kubernetes: the port workers listen on in their pods.
    #[arg(long, env = "MCP_K8S_WORKER_PORT", default_value_t = 9100)]
    pub k8s_worker_port: u16,
    /// Kubernetes: the workers' CPU request (e.g. `100m`); unset = none.
    #[arg(long, env = "MCP_K8S_WORKER_CPU_REQUEST")]
    pub k8s_cpu_request: Option<String>,
    /// Kubernetes: the workers' memory request (e.g. `32Mi`); unset = none.
    #[arg(long, env = "MCP_K8S_WORKER_MEMORY_REQUEST")]
    pub k8s_memory_request: Option<String>,
    /// Kubernetes: the workers' CPU limit; unset = none.
    #[arg(long, env = "MCP_K8S_WORKER_CPU_LIMIT")]
    pub k8s_cpu_limit: Option<String>,
    /// Kubernetes: the workers' memory limit; unset = none.
    #[arg(long, env = "MCP_K8S_WORKER_MEMORY_LIMIT")]
    pub k8s_memory_limit: Option<String>,
    /// Kubernetes: more env of the worker containers, a JSON list of Kubernetes EnvVar
    /// objects (`[{"name":"HTTPS_PROXY","value":"http://proxy:3128"},{"name":"TOKEN",
    /// "valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}}]`), after the hub's own; one
    /// naming a variable the hub sets (`REDIS_URL`, `MCP_KEY_PREFIX`, `MCP_WORKER_SERVER`,
    /// ...) is refused at start-up. Unset = none.
    #[arg(long, env = "MCP_K8S_WORKER_ENV", default_value = "", hide_default_value = true,
        value_parser = Quiet(worker_env::parse_vars))]
    // A whole path: one value that is a list, not clap's repeated flag.
    pub k8s_worker_env: ::std::vec::Vec<EnvVar>,
    /// Kubernetes: Secrets whose keys become env vars of the worker containers
    /// (`envFrom: secretRef`), comma-separated; a key named like one of the hub's own
    /// variables does not override it. Unset = none.
    #[arg(long, env = "MCP_K8S_WORKER_ENV_FROM_SECRETS", default_value = "", hide_default_value = true,
        value_parser = Quiet(worker_env::parse_secrets))]
    // A whole path: one value that is a list, not clap's repeated flag.
    pub k8s_worker_env_from_secrets: ::std::vec::Vec<String>,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// `MCP_WORKER_BACKEND`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Process,
    Kubernetes,
}

impl Config {
    /// The Kubernetes backend's settings.
    pub fn kube_settings(&self) -> crate::kubernetes::KubeSettings {
        let namespace = self.k8s_namespace.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .map(|n| n.trim().to_owned())
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".to_owned())
        });
        crate::kubernetes::KubeSettings {
            namespace,
            image: self.k8s_worker_image.clone(),
            image_pull_policy: self.k8s_image_pull_policy.clone(),
            service_account: self.k8s_service_account.clone(),
            worker_port: self.k8s_worker_port,
            cpu_request: self.k8s_cpu_request.clone(),
            memory_request: self.k8s_memory_request.clone(),
            cpu_limit: self.k8s_cpu_limit.clone(),
            memory_limit: self.k8s_memory_limit.clone(),
            redis_url: self.redis.redis_url.clone(),
            key_prefix: self.redis.key_prefix.clone(),
            worker_env: crate::kubernetes::WorkerEnv {
                vars: self.k8s_worker_env.clone(),
                from_secrets: self.k8s_worker_env_from_secrets.clone(),
            },
        }
    }

    /// The id, defaulting to the host name.
    pub fn supervisor_id(&self) -> String {
        self.supervisor_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "supervisor".to_owned())
        })
    }

    pub fn worker_bin(&self) -> PathBuf {
        self.worker_bin.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join("mcp-worker")))
                .unwrap_or_else(|| PathBuf::from("mcp-worker"))
        })
    }

    /// What clap cannot check, one line each.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(id) = &self.supervisor_id {
            if !mcp_core::validate::is_valid_server_id(id) {
                return Err("MCP_SUPERVISOR_ID must match [A-Za-z0-9_-]{1,64}".into());
            }
        }
        let bin = self.worker_bin();
        if self.enabled && self.backend == Backend::Process && !bin.is_file() {
            return Err(format!(
                "worker binary {} not found (set MCP_SUPERVISOR_WORKER_BIN)",
                bin.display()
            ));
        }
        if self.port_count == 0 || u32::from(self.base_port) + u32::from(self.port_count) > 65_536 {
            return Err(
                "MCP_WORKER_BASE_PORT + MCP_WORKER_PORT_COUNT must stay within 1..65535".into(),
            );
        }
        if !matches!(
            self.k8s_image_pull_policy.as_str(),
            "Always" | "IfNotPresent" | "Never"
        ) {
            return Err("MCP_K8S_IMAGE_PULL_POLICY must be Always, IfNotPresent or Never".into());
        }
        if self.k8s_worker_port == 0 {
            return Err("MCP_K8S_WORKER_PORT must not be 0".into());
        }
        if self.base_port == 0 {
            return Err("MCP_WORKER_BASE_PORT must not be 0".into());
        }
        if self.worker_max == 0 {
            return Err("MCP_WORKER_MAX must be at least 1".into());
        }
        if self.health_failures == 0 {
            return Err("MCP_WORKER_HEALTH_FAILURES must be at least 1".into());
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return Err("MCP_WORKER_BACKOFF_MIN must be > 0 and <= MCP_WORKER_BACKOFF_MAX".into());
        }
        if self.lease_ttl < Duration::from_millis(500)
            || self.reconcile_interval * 2 > self.lease_ttl
        {
            return Err("MCP_SUPERVISOR_LEASE_TTL must be >= 500ms and at least twice MCP_SUPERVISOR_RECONCILE_INTERVAL".into());
        }
        if self.health_interval.is_zero() || self.reconcile_interval.is_zero() {
            return Err("intervals must be greater than 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["mcp-supervisor"];
        argv.extend(args);
        // clap's first line, as `mcp_core::config::parse` prints it.
        Config::try_parse_from(argv).map_err(|e| {
            let text = e.to_string();
            text.lines().next().unwrap_or("").to_owned()
        })
    }

    #[test]
    fn worker_env_settings_reach_the_kube_settings_or_fail_in_one_line() {
        let config = parse(&[]).expect("defaults");
        assert_eq!(config.kube_settings().worker_env, Default::default());
        let config = parse(&[
            "--k8s-worker-env",
            r#"[{"name":"HTTPS_PROXY","value":"http://proxy:3128"}]"#,
            "--k8s-worker-env-from-secrets",
            "proxy-creds, api-keys",
        ])
        .expect("valid");
        let env = config.kube_settings().worker_env;
        assert_eq!(env.vars.len(), 1);
        assert_eq!(env.vars[0].name, "HTTPS_PROXY");
        assert_eq!(env.from_secrets, ["proxy-creds", "api-keys"]);

        let err = parse(&[
            "--k8s-worker-env",
            r#"[{"name":"REDIS_URL","value":"redis://secret@elsewhere"}]"#,
        ])
        .expect_err("a hub variable");
        assert!(
            err.starts_with(
                "error: MCP_K8S_WORKER_ENV entry 1: REDIS_URL is set by the hub itself"
            ),
            "{err}"
        );
        assert!(!err.contains("secret@"), "the value is not echoed: {err}");
        let err = parse(&["--k8s-worker-env-from-secrets", "Bad_Name"]).expect_err("bad");
        assert!(
            err.starts_with(
                "error: MCP_K8S_WORKER_ENV_FROM_SECRETS: \"Bad_Name\" is not a Secret name"
            ),
            "{err}"
        );
    }
}
