//! `mcp-mock-api`: the mock of the demo REST APIs (FakeStore, Fruits) and the test
//! endpoints, for `make run` and for tests that need it as a separate process.

use clap::Parser;

/// Mock of the demo REST APIs of MCP Hub.
#[derive(Parser, Debug)]
#[command(name = "mcp-mock-api", version)]
struct Config {
    /// Address to listen on (port 0 picks a free one; the bound address is printed).
    #[arg(long, env = "MCP_MOCK_API_LISTEN", default_value = "127.0.0.1:8090")]
    listen: std::net::SocketAddr,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("mcp-mock-api: binding {}: {err}", config.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({"service": "mcp-mock-api", "event": "mock_api.listening", "addr": addr})
    );
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    };
    match mcp_testkit::mock_api::serve(listener, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mcp-mock-api: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
