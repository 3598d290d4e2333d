//! `mcp-supervisor`: parses and validates the configuration, sets up logs, and runs the
//! supervisor until SIGTERM or SIGINT.

use mcp_supervisor::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config: Config = mcp_core::config::parse("mcp-supervisor");
    if let Err(err) = config.validate() {
        eprintln!("mcp-supervisor: invalid configuration: {err}");
        return std::process::ExitCode::from(2);
    }
    let _log = match mcp_core::log::init("mcp-supervisor", &config.log) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("mcp-supervisor: invalid configuration: {err:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let shutdown = mcp_core::shutdown::root_token();
    match mcp_supervisor::run(config, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(event = "supervisor.failed", error = format!("{err:#}"));
            eprintln!("mcp-supervisor: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
