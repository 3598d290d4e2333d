//! `mcp-worker`: parses the configuration, sets up logs, binds, and hands over to the
//! library until SIGTERM or SIGINT.

use anyhow::Context;
use mcp_worker::config::Config;

/// mimalloc, as in the gateway: malloc and free were a fifth of a call's instructions
/// under glibc; with mimalloc a call takes 129k instead of 155k (callgrind). Built
/// without transparent huge pages (`no_thp` in Cargo.toml), a worker's RSS stays what it
/// was under glibc (11.3 MiB idle, 13.5 MiB after both protocols); with them it was
/// 20-21 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let config: Config = mcp_core::config::parse("mcp-worker");
    let _log = match mcp_core::log::init("mcp-worker", &config.log) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("mcp-worker: invalid configuration: {err:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = if config.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(config.threads))
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("mcp-worker: starting the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(event = "worker.failed", error = format!("{err:#}"));
            eprintln!("mcp-worker: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let shutdown = mcp_core::shutdown::root_token();
    mcp_worker::run(config, listener, shutdown).await
}
