//! `mcp-admin`: parses the configuration, sets up logs and hands over to the library.

use mcp_admin::config::{Command, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config: Config = mcp_core::config::parse("mcp-admin");
    if let Err(err) = config.validate() {
        eprintln!("mcp-admin: invalid configuration: {err}");
        return std::process::ExitCode::from(2);
    }
    let _log = match mcp_core::log::init("mcp-admin", &config.log) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("mcp-admin: invalid configuration: {err:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match &config.command {
        None | Some(Command::Serve) => mcp_admin::serve_until_signal(config).await,
        Some(Command::Import(args)) => mcp_admin::cli::import(&config, args).await,
        Some(Command::Export(args)) => mcp_admin::cli::export(&config, args).await,
        Some(Command::OpenapiImport(args)) => mcp_admin::cli::openapi_import(&config, args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(event = "admin.failed", error = format!("{err:#}"));
            eprintln!("mcp-admin: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
