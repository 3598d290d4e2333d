//! `mcp-loadtest`: an open-loop, SSE-aware load generator made for MCP Hub, and the
//! benchmark suite that writes `docs/BENCHMARKS.md`.
//!
//! Layout: `schedule` (when each request is due), `scenario` (what it sends), `driver`
//! (sending on time and judging answers), `http1` (its client for hub calls, on the
//! call engine's pool), `mcp` (reading MCP answers; SSE through `mcp_adapter::sse`), `report`
//! (histograms and the table/JSON), `hub` (a whole hub started for measuring),
//! `procfs` (memory and CPU of other processes), `suite` (the benchmark scenarios), `chaos` (faults under load, `docs/RELIABILITY.md`).
#![forbid(unsafe_code)]

pub mod chaos;
pub mod driver;
pub mod http1;
pub mod hub;
pub mod mcp;
pub mod procfs;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod suite;

pub use driver::{run, RunConfig, Target};
pub use report::Report;
pub use scenario::{Plan, Scenario};
pub use schedule::Schedule;
