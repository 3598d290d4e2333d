//! Owns `/api/audit`: the audit log of tool calls (the `{prefix}audit` Redis Stream,
//! written by the workers and rollback mode through `mcp_core::audit`), read only.
//! `GET /api/audit` pages through it newest first with filters and a cursor;
//! `GET /api/audit/stream` (or `?follow=true`) sends new entries live as SSE, read with
//! `XREAD BLOCK` on a connection of its own, ending when the client goes away.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::Stream;
use mcp_core::audit::{self, Filter, Page};
use serde::Deserialize;

use crate::body::Query;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::AppState;

/// Entries per page by default, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;
/// Entries read at most to fill one page (a rare filter returns a short page and a cursor).
const MAX_SCAN: usize = 10_000;
/// How long one `XREAD BLOCK` of the live stream waits.
const FOLLOW_BLOCK: Duration = Duration::from_secs(5);

/// The query of `GET /api/audit`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only calls to this server.
    pub server: Option<String>,
    /// Only calls of this tool.
    pub tool: Option<String>,
    /// `ok`, `error` or `cancelled`.
    #[param(pattern = "^(ok|error|cancelled)$")]
    pub status: Option<String>,
    /// Only the call with this request id.
    pub request_id: Option<String>,
    /// Calls that ended at or after this time (Unix ms).
    pub since: Option<u64>,
    /// Calls that ended at or before this time (Unix ms); before `since`, no call did.
    pub until: Option<u64>,
    /// The `next` cursor of the previous page: entries older than it (its pattern,
    /// [`cursor_pattern`], is set by `crate::openapi`).
    pub before: Option<String>,
    /// Entries per page (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `true`: the live stream (as `/api/audit/stream`).
    pub follow: Option<bool>,
}

impl AuditQuery {
    /// The filter, once every parameter is checked (the same rules for a page and the
    /// live stream, which ignores `before` and `limit`).
    fn filter(&self) -> Result<Filter, ApiError> {
        if let Some(status) = &self.status {
            if !["ok", "error", "cancelled"].contains(&status.as_str()) {
                return Err(ApiError::BadRequest(
                    "status must be ok, error or cancelled".into(),
                ));
            }
        }
        if self.before.as_deref().is_some_and(|b| !valid_cursor(b)) {
            return Err(ApiError::BadRequest(
                "before must be a cursor from a previous page (ms-seq)".into(),
            ));
        }
        if self.limit.is_some_and(|l| l == 0 || l > MAX_LIMIT) {
            return Err(ApiError::BadRequest(format!(
                "limit must be 1 to {MAX_LIMIT}"
            )));
        }
        Ok(Filter {
            server: self.server.clone(),
            tool: self.tool.clone(),
            status: self.status.clone(),
            request_id: self.request_id.clone(),
            since_ms: self.since,
            until_ms: self.until,
        })
    }
}

/// A stream entry id (`ms-seq`), the only cursor form.
fn valid_cursor(id: &str) -> bool {
    id.split_once('-').is_some_and(|(ms, seq)| {
        !ms.is_empty()
            && !seq.is_empty()
            && ms.bytes().all(|b| b.is_ascii_digit())
            && seq.bytes().all(|b| b.is_ascii_digit())
            // Redis ids are two u64s; a larger number is no cursor of ours.
            && ms.parse::<u64>().is_ok()
            && seq.parse::<u64>().is_ok()
    })
}

/// [`valid_cursor`] as a pattern: two decimal numbers that fit a u64 (leading zeros
/// allowed), `ms-seq`. A number of fewer digits than `u64::MAX` always fits; one of as
/// many fits when, at its first digit that differs, it has the smaller one.
pub fn cursor_pattern() -> String {
    let max = u64::MAX.to_string();
    let digits = max.len();
    let mut alternatives = vec![format!("[0-9]{{1,{}}}", digits - 1)];
    for (i, digit) in max.bytes().enumerate().skip(1) {
        let below = match digit - b'0' {
            0 => continue,
            1 => "0".to_owned(),
            d => format!("[0-{}]", d - 1),
        };
        let tail = match digits - 1 - i {
            0 => String::new(),
            1 => "[0-9]".to_owned(),
            n => format!("[0-9]{{{n}}}"),
        };
        alternatives.push(format!("{}{below}{tail}", &max[..i]));
    }
    alternatives.push(max.clone());
    let number = format!("0*({})", alternatives.join("|"));
    format!("^{number}-{number}$")
}

/// One page of audit entries, newest first (`follow=true`: the live stream instead, as
/// `GET /api/audit/stream` sends it).
#[utoipa::path(get, path = "/api/audit", operation_id = "listAudit", tag = "audit", params(AuditQuery),
    responses((status = 200,
            description = "a page (`application/json`); with `follow=true`, the live stream (`text/event-stream`, one `audit` event per new entry)",
            content((Page = "application/json"), ("text/event-stream"))),
        (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Response> {
    let filter = query.filter()?;
    if query.follow == Some(true) {
        return Ok(follow(state, filter).await?.into_response());
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let page = audit::page(
        &state.registry,
        &filter,
        query.before.as_deref(),
        limit,
        MAX_SCAN,
    )
    .await?;
    Ok(Json(page).into_response())
}

/// New audit entries as they are written (`text/event-stream`, one `audit` event per
/// entry, its id the stream id), filtered like `GET /api/audit`.
#[utoipa::path(get, path = "/api/audit/stream", operation_id = "streamAudit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "one `audit` event per new entry", content_type = "text/event-stream"),
        (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Response> {
    let filter = query.filter()?;
    Ok(follow(state, filter).await?.into_response())
}

async fn follow(
    state: AppState,
    filter: Filter,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let start = audit::last_id(&state.registry).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        let mut last = start;
        loop {
            let read = tokio::select! {
                read = audit::read_after(&state.registry, &last, 100, FOLLOW_BLOCK) => read,
                () = tx.closed() => return,
            };
            let entries = match read {
                Ok(entries) => entries,
                Err(err) => {
                    tracing::warn!(event = "admin.audit.follow_failed", error = %err);
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = tx.closed() => return,
                    }
                }
            };
            for entry in entries {
                last.clone_from(&entry.id);
                if !filter.matches(&entry) {
                    continue;
                }
                let data = serde_json::to_string(&entry).unwrap_or_default();
                let event = SseEvent::default().event("audit").id(entry.id).data(data);
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        }
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_states_the_query_rules() {
        let doc = crate::openapi::document_json(true);
        for path in ["/api/audit", "/api/audit/stream"] {
            let params = doc["paths"][path]["get"]["parameters"]
                .as_array()
                .expect("parameters");
            let param = |name: &str| {
                params
                    .iter()
                    .find(|p| p["name"] == name)
                    .map(|p| p["schema"].clone())
                    .unwrap_or_else(|| panic!("{path} documents {name}"))
            };
            assert_eq!(param("limit")["minimum"], 1, "{path}");
            assert_eq!(param("limit")["maximum"], MAX_LIMIT, "{path}");
            assert_eq!(param("status")["pattern"], "^(ok|error|cancelled)$");
            assert_eq!(param("before")["pattern"], cursor_pattern());
        }
        // `follow=true` answers the live stream: both content types are documented.
        let content = &doc["paths"]["/api/audit"]["get"]["responses"]["200"]["content"];
        assert_eq!(
            content["application/json"]["schema"]["$ref"],
            "#/components/schemas/Page"
        );
        assert!(content["text/event-stream"].is_object(), "{content}");
        assert!(
            doc["paths"]["/api/audit/stream"]["get"]["responses"]["200"]["content"]
                ["text/event-stream"]
                .is_object()
        );
        let query = |status: &str, before: &str, limit: usize| AuditQuery {
            status: Some(status.into()),
            before: Some(before.into()),
            limit: Some(limit),
            ..AuditQuery::default()
        };
        assert!(query("ok", "1-0", MAX_LIMIT).filter().is_ok());
        assert!(query("", "1-0", 1).filter().is_err());
        assert!(query("ok", "", 1).filter().is_err());
        assert!(query("ok", "1-0", 0).filter().is_err());
        assert!(query("ok", "1-0", MAX_LIMIT + 1).filter().is_err());
        // An empty time range is no error: no call ended in it.
        let empty = AuditQuery {
            since: Some(2),
            until: Some(1),
            ..AuditQuery::default()
        };
        assert!(empty.filter().is_ok());
    }

    #[test]
    fn only_stream_ids_are_cursors() {
        let pattern = mcp_core::validate::compile_schema(
            &serde_json::json!({"type": "string", "pattern": cursor_pattern()}),
        )
        .expect("the cursor pattern compiles");
        for (id, ok) in [
            ("1700000000000-0", true),
            ("1-2", true),
            ("-", false),
            ("+", false),
            ("1", false),
            ("a-1", false),
            ("1-", false),
            ("(1-0", false),
            ("0-0", true),
            ("18446744073709551615-18446744073709551615", true),
            ("18446744073709551616-0", false),
            ("18446744073709551615-0", true),
            ("18446744073709551609-0", true),
            ("18446744073709551620-0", false),
            ("9999999999999999999-0", true),
            ("99999999999999999999-0", false),
            ("066485962926097509254-0", false),
            ("0018446744073709551615-007", true),
            ("17999999999999999999-1", true),
            ("18446744073709551700-1", false),
            ("1-18446744073709551616", false),
            ("1-18446744073709551615", true),
            ("1-2-3", false),
            ("1 -2", false),
        ] {
            assert_eq!(valid_cursor(id), ok, "{id}");
            // The document's pattern says the same (schemathesis sent a 21-digit
            // cursor the old `^[0-9]+-[0-9]+$` allowed).
            assert_eq!(
                pattern.is_valid(&serde_json::json!(id)),
                ok,
                "pattern: {id}"
            );
        }
    }
}
