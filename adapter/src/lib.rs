//! MCP Hub's call engine (`mcp-adapter`): everything between "a registered tool and its
//! arguments" and "the events of its REST call", shared by the worker (every transport)
//! and the gateway's rollback mode, so a call behaves the same wherever it runs.
//!
//! The API is small:
//! - [`tool::compile_tools`] compiles a server's registered bindings into callable
//!   [`tool::Tools`] (validator + JSONPath per tool), keeping the tools that did not
//!   change since the previous snapshot.
//! - [`invoke::prepare`] checks one call (server and tool active, arguments valid), and
//!   [`invoke::execute`] runs it with an [`http::HttpAdapter`], pushing each output delta
//!   into a bounded channel (the sink) as the REST API produces it; or
//!   [`events::event_stream`] runs it as the hub call protocol's SSE frames
//!   (`tool_call.started`, `output.delta`, `tool_call.completed` | `tool_call.error`),
//!   every one with the request id.
//!
//! Layout: [`audit`] (a call's audit entry, recorded by `execute`), [`tool`] (compiling bindings), [`invoke`] (checks and one call), [`http`]
//! (the HTTP adapter: request building, the keep-alive connection [`http::pool`],
//! response reading, retries and the circuit breaker), [`resilience`] (the retry and
//! breaker decisions, pure state machines), [`events`] (the call's SSE frames), [`sse`] (the one Server-Sent
//! Events parser of the workspace).
//!
//! What it must not do: no Redis, no process logic, no HTTP server. It is the only code
//! that calls a registered REST API.
#![forbid(unsafe_code)]

pub mod audit;
pub mod events;
pub mod http;
pub mod invoke;
pub mod resilience;
pub mod sse;
pub mod tool;
