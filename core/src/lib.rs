//! Shared vocabulary of MCP Hub: the registry model and its validation, the Redis key
//! layout, the registry client and its events, worker runtime records, configuration
//! helpers and the JSON log set-up. No process logic lives here.
//!
//! Layout:
//! - [`audit`]: the audit log of tool calls (a Redis Stream): batched writer, readers.
//! - [`model`]: `ServerConfig`, `ToolBinding` and their parts (wire format: camelCase JSON).
//! - [`validate`]: what makes a registration acceptable, as a list of problems.
//! - [`keys`]: the only place that builds Redis key strings.
//! - [`connection`]: `REDIS_URL` (one node, Sentinel, Cluster) and the only place that
//!   opens Redis connections; follows the master across failovers.
//! - [`registry`]: `RedisRegistry`, atomic writes that publish their event with a version.
//! - [`coordination`]: port claims, ownership leases, supervisor liveness.
//! - [`events`]: the event type carried on `mcp:events`.
//! - [`subscription`]: typed event stream that says when a consumer must reload.
//! - [`runtime`]: worker runtime records written by the supervisor.
//! - [`document`]: the import/export document (and the existing hub's shapes).
//! - [`request_id`]: the `x-request-id` kept or made at every hop.
//! - [`shutdown`]: the root cancellation token, cancelled by SIGTERM/SIGINT.
//! - [`config`]: `.env` loading and the arguments every binary shares.
//! - [`log`]: tracing set-up and the canonical log field names.
//! - [`web_guard`]: the Host/Origin/JSON-type rules every HTTP listener shares.
#![forbid(unsafe_code)]

pub mod audit;
pub mod config;
pub mod connection;
pub mod coordination;
pub mod document;
pub mod events;
pub mod keys;
pub mod log;
pub mod model;
pub mod registry;
pub mod request_id;
pub mod runtime;
pub mod shutdown;
pub mod subscription;
pub mod validate;
pub mod web_guard;

pub use registry::RedisRegistry;
