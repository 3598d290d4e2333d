//! Test support for MCP Hub (a dev-dependency, and the benchmark hubs of `loadtest/`): a real `redis-server` on a free
//! port, child processes that are killed with their whole process group when the test
//! ends (even when it fails), free ports, unique key prefixes, and deadline-based waits.
//! The mock REST API binary (`mcp-mock-api`) lives here too.
#![forbid(unsafe_code)]

pub mod mock_api;
pub mod process;
pub mod python;
pub mod raw_http;
pub mod redis_server;
pub mod sse;
pub mod wait;

pub use mock_api::MockApi;
pub use process::{bin_path, kill_processes_with_arg, ChildProcess};
pub use redis_server::RedisServer;
pub use sse::{parse_sse, SseEvent};
pub use wait::{wait_until, wait_until_async};

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// A key prefix no other test uses, so tests can share a Redis and run in parallel.
pub fn unique_prefix() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}
