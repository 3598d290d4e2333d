//! Owns the event type carried on the `mcp:events` channel. Wire format: changing a
//! variant or a field is a protocol change for every consumer.
//!
//! Every event carries the registry `version` it was published at. Versions are assigned
//! by Redis inside the same script as the write, so they are unique, strictly increasing
//! and in publish order; a consumer that sees a gap knows it missed something.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{ServerConfig, ToolBinding};
use crate::runtime::WorkerRecord;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub version: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum EventKind {
    #[serde(rename = "server.upsert")]
    ServerUpsert {
        server_id: String,
        server: ServerConfig,
    },
    /// The server's tools are gone too; their `tool.delete` events precede this one.
    #[serde(rename = "server.delete")]
    ServerDelete { server_id: String },
    #[serde(rename = "tool.upsert")]
    ToolUpsert {
        server_id: String,
        tool_name: String,
        tool: ToolBinding,
    },
    #[serde(rename = "tool.delete")]
    ToolDelete {
        server_id: String,
        tool_name: String,
    },
    /// An operator asked for the server's workers to be restarted.
    #[serde(rename = "server.restart")]
    ServerRestart { server_id: String },
    /// A call reached a server whose workers were stopped as idle: start them.
    #[serde(rename = "server.wake")]
    ServerWake { server_id: String },
    /// A worker's runtime record changed.
    #[serde(rename = "worker.status")]
    WorkerStatus {
        server_id: String,
        worker: WorkerRecord,
    },
    /// A worker's runtime record was removed.
    #[serde(rename = "worker.removed")]
    WorkerRemoved { server_id: String, replica_idx: u32 },
}

impl EventKind {
    /// The `type` field, as on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::ServerUpsert { .. } => "server.upsert",
            EventKind::ServerDelete { .. } => "server.delete",
            EventKind::ToolUpsert { .. } => "tool.upsert",
            EventKind::ToolDelete { .. } => "tool.delete",
            EventKind::ServerRestart { .. } => "server.restart",
            EventKind::ServerWake { .. } => "server.wake",
            EventKind::WorkerStatus { .. } => "worker.status",
            EventKind::WorkerRemoved { .. } => "worker.removed",
        }
    }

    pub fn server_id(&self) -> &str {
        match self {
            EventKind::ServerUpsert { server_id, .. }
            | EventKind::ServerDelete { server_id }
            | EventKind::ToolUpsert { server_id, .. }
            | EventKind::ToolDelete { server_id, .. }
            | EventKind::ServerRestart { server_id }
            | EventKind::ServerWake { server_id }
            | EventKind::WorkerStatus { server_id, .. }
            | EventKind::WorkerRemoved { server_id, .. } => server_id,
        }
    }

    /// A copy fit for a dashboard or a log: secrets masked.
    pub fn masked(&self) -> EventKind {
        match self {
            EventKind::ServerUpsert { server_id, server } => EventKind::ServerUpsert {
                server_id: server_id.clone(),
                server: server.masked(),
            },
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape() {
        let event = Event {
            version: 7,
            kind: EventKind::ToolDelete {
                server_id: "s".into(),
                tool_name: "t".into(),
            },
        };
        let json = serde_json::to_value(&event).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"version": 7, "type": "tool.delete", "serverId": "s", "toolName": "t"})
        );
        assert_eq!(
            serde_json::from_value::<Event>(json).expect("parses"),
            event
        );
    }
}
