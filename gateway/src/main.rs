//! `mcp-gateway`: parses and validates the configuration, sets up logs (Pingora's `log`
//! output joins the same JSON stream), builds the Pingora server and runs it. Pingora
//! owns the signals: SIGTERM drains for the grace period, SIGINT stops at once.

use mcp_gateway::config::Config;

/// mimalloc instead of glibc's malloc: glibc's malloc and free were a quarter of the
/// gateway's instructions per call (callgrind) and mimalloc needs about half as many.
/// Built without transparent huge pages (`no_thp`), it takes no more RSS than glibc's
/// (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let config: Config = mcp_core::config::parse("mcp-gateway");
    if let Err(err) = config.validate() {
        eprintln!("mcp-gateway: invalid configuration: {err}");
        return std::process::ExitCode::from(2);
    }
    let _log = match mcp_core::log::init("mcp-gateway", &config.log) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("mcp-gateway: invalid configuration: {err:#}");
            return std::process::ExitCode::from(2);
        }
    };
    // The registry's connection manager needs a Tokio runtime to live on; it gets a
    // small one of its own, separate from Pingora's.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("registry")
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("mcp-gateway: starting the registry runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let registry = match runtime.block_on(async { config.redis.registry() }) {
        // Redis restarted empty: keep routing with the last table.
        Ok(registry) => registry.guard_data_loss(),
        Err(err) => {
            eprintln!("mcp-gateway: invalid configuration: {err:#}");
            return std::process::ExitCode::from(2);
        }
    };
    // Rollback mode runs calls here, so it writes their audit entries (on the registry
    // runtime); with workers, each worker writes its own.
    let audit = if config.supervisor_enabled {
        mcp_core::audit::Sink::disabled()
    } else {
        let stop = tokio_util::sync::CancellationToken::new();
        runtime.block_on(async { mcp_core::audit::start(registry.clone(), &config.audit, stop) })
    };
    let server = match mcp_gateway::build(&config, registry, audit) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("mcp-gateway: {err:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(event = "gateway.listening", addr = %config.listen, metrics_addr = %config.metrics_listen,
        mode = if config.supervisor_enabled { "workers" } else { "rollback" }, pid = std::process::id());
    // Keep the registry runtime alive for the life of the process.
    let _runtime = runtime;
    // `run` returns after the graceful shutdown (`run_forever` would exit the process
    // at once), so `_log` is dropped and the last log lines are written out.
    server.run(pingora::server::RunArgs::default());
    tracing::info!(event = "process.shutdown", reason = "signal");
    std::process::ExitCode::SUCCESS
}
