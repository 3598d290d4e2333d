//! Owns sending a checked body to a worker. The gateway reads such a body whole in
//! `request_filter`, so that it is validated before a worker is woken, waited for or
//! connected to; it is then sent from here rather than by Pingora: Pingora replays a
//! body read in `request_filter` from its retry buffer, which holds 64 KiB
//! (`BODY_BUF_LIMIT` of pingora-core) and past that sends nothing at all; and this path
//! costs less per call: no duplex task, channel or per-chunk body filters; the request
//! head is written straight into the buffer that carries a body of up to
//! [`ONE_WRITE_LIMIT`] in the same write, with no header map copied and edited; and
//! idle connections wait in [`super::pool`] rather than in Pingora's pool, which runs a
//! task per idle connection (together about 20k of 114k instructions per call under
//! callgrind). The response hook and the retry decisions of the Pingora path are
//! called, not copied; the fields the gateway sets on a request come from the same
//! [`super::UpstreamFields`]; failures end in the same `fail_to_proxy` (the error is
//! returned from `request_filter`), so both paths answer alike.

use bytes::{BufMut, Bytes, BytesMut};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::protocols::Stream;
use pingora::proxy::{ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use tokio::io::AsyncWriteExt;

use super::{Ctx, Gateway, FORWARDED_FOR_HEADER, FORWARDED_PREFIX_HEADER, SESSION_HEADER};
use mcp_core::request_id;

/// Fields of the client's request that describe its own connection or framing, not the
/// body sent here (which goes out whole, with a `Content-Length`).
const REQUEST_FIELDS_NOT_FORWARDED: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// Bodies up to this size are copied behind the request head and leave with it in one
/// write; a larger one is written after it (the copy would cost more than the write).
const ONE_WRITE_LIMIT: usize = 64 * 1024;

/// Fields of the worker's answer about the worker's own connection.
const RESPONSE_FIELDS_NOT_FORWARDED: [&str; 3] = ["connection", "keep-alive", "proxy-connection"];

/// Sends `body` to a worker and streams its answer to the client (`Ok(true)`: the
/// response was written). Connect failures, and connections lost before any answer,
/// are retried on a live worker like on the Pingora path; here any body size can be,
/// since the whole body is at hand.
pub(super) async fn forward(
    gateway: &Gateway,
    session: &mut Session,
    ctx: &mut Ctx,
    body: Bytes,
) -> Result<bool> {
    let (mut upstream, addr) = loop {
        ctx.attempts += 1;
        let addr = gateway.choose_worker(ctx).await?;
        let peer = gateway.peer(addr);
        let (stream, reused) = match gateway.pool.take(addr) {
            Some(stream) => (stream, true),
            None => match gateway.transport.new_stream(&peer).await {
                Ok(stream) => (stream, false),
                Err(e) => {
                    let e = gateway.fail_to_connect(session, &peer, ctx, e.into_up());
                    if e.retry() {
                        continue;
                    }
                    return Err(e);
                }
            },
        };
        let head = request_head(session.req_header(), ctx, &body)?;
        match send(stream, &peer, head, &body, ctx).await {
            Ok(upstream) => break (upstream, addr),
            Err(e) => {
                let e = gateway.error_while_proxy(&peer, session, e.into_up(), ctx, reused);
                if e.retry() {
                    continue;
                }
                return Err(e);
            }
        }
    };

    let Some(mut header) = upstream.resp_header().cloned() else {
        return Err(
            Error::explain(InvalidHTTPHeader, "the worker sent no response header").into_up(),
        );
    };
    for name in RESPONSE_FIELDS_NOT_FORWARDED {
        if header.headers.contains_key(name) {
            header.remove_header(name);
        }
    }
    gateway
        .upstream_response_filter(session, &mut header, ctx)
        .await?;
    session
        .write_response_header(Box::new(header), false)
        .await
        .map_err(|e| e.into_down())?;
    // The answer's last bytes are held back until the call is recorded and its worker
    // connection pooled: the write that wakes the client is the gateway's last act for
    // this call, so the client does not wait for the gateway's bookkeeping on a shared
    // vCPU, nor get placed on the other one because the gateway still runs (see
    // docs/BENCHMARKS.md). A body the worker sized arrives with its end; a streamed one
    // ends with the empty chunk, after which only the terminator is left to write.
    let mut last = None;
    while let Some(chunk) = upstream.read_body_bytes().await.map_err(|e| e.into_up())? {
        if upstream.is_body_done() {
            last = Some(chunk);
            break;
        }
        session
            .write_response_body(Some(chunk), false)
            .await
            .map_err(|e| e.into_down())?;
    }
    if upstream.is_body_done() {
        upstream.respect_keepalive();
        if let Some(stream) = upstream.reuse().await {
            gateway.pool.put(addr, stream);
        }
    }
    ctx.record(ctx.status, false);
    session
        .write_response_body(last, true)
        .await
        .map_err(|e| e.into_down())?;
    Ok(true)
}

/// The request to the worker as it goes on the wire: the client's request line with the
/// worker's path, the client's fields but those about its own connection and framing and
/// those the gateway sets ([`super::UpstreamFields`], the same ones Pingora's path sets
/// in `upstream_request_filter`), then those, a `Content-Length`, and (when small) the
/// body. Written straight into one buffer: no header map is built, copied or edited.
fn request_head(client: &RequestHeader, ctx: &Ctx, body: &[u8]) -> Result<BytesMut> {
    let fields = ctx.upstream_fields();
    let path = ctx.upstream_path.as_bytes();
    let bad_value = [
        Some(fields.request_id),
        fields.host,
        fields.session,
        fields.forwarded_prefix.as_deref(),
        fields.forwarded_for,
    ]
    .into_iter()
    .flatten()
    .any(|v| !is_field_value(v.as_bytes()));
    if path.is_empty() || !path.iter().all(u8::is_ascii_graphic) || bad_value {
        return Err(Error::explain(
            InvalidHTTPHeader,
            "the request to the worker would carry forbidden bytes",
        ));
    }
    let inline = body.len() <= ONE_WRITE_LIMIT;
    let mut head = BytesMut::with_capacity(512 + if inline { body.len() } else { 0 });
    head.put_slice(client.method.as_str().as_bytes());
    head.put_u8(b' ');
    head.put_slice(path);
    head.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in &client.headers {
        let name = name.as_str();
        let replaced = match name {
            // Origin was checked at the gateway; the worker sees it as a same-host client.
            "host" | "content-length" | "origin" => true,
            SESSION_HEADER => fields.session.is_some(),
            FORWARDED_PREFIX_HEADER => fields.forwarded_prefix.is_some(),
            FORWARDED_FOR_HEADER => true,
            _ => name == request_id::HEADER || REQUEST_FIELDS_NOT_FORWARDED.contains(&name),
        };
        if !replaced {
            put_field(&mut head, name, value.as_bytes());
        }
    }
    if let Some(host) = fields.host {
        put_field(&mut head, "host", host.as_bytes());
    }
    put_field(&mut head, request_id::HEADER, fields.request_id.as_bytes());
    if let Some(session) = fields.session {
        put_field(&mut head, SESSION_HEADER, session.as_bytes());
    }
    if let Some(prefix) = &fields.forwarded_prefix {
        put_field(&mut head, FORWARDED_PREFIX_HEADER, prefix.as_bytes());
    }
    if let Some(addr) = fields.forwarded_for {
        put_field(&mut head, FORWARDED_FOR_HEADER, addr.as_bytes());
    }
    put_field(
        &mut head,
        "content-length",
        body.len().to_string().as_bytes(),
    );
    head.put_slice(b"\r\n");
    if inline {
        head.put_slice(body);
    }
    Ok(head)
}

fn put_field(head: &mut BytesMut, name: &str, value: &[u8]) {
    head.put_slice(name.as_bytes());
    head.put_slice(b": ");
    head.put_slice(value);
    head.put_slice(b"\r\n");
}

/// A field value as HTTP allows it: visible bytes, spaces and tabs, no line breaks.
fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Writes the request (`head`, which carries the body when it is small, else followed by
/// it) and reads the answer's header, with the peer's timeouts as Pingora applies them.
/// The call's `tool.call.accepted` and `tool.call.proxy.start` lines are written between
/// the two, while the worker works, rather than before the request leaves.
async fn send(
    mut stream: Stream,
    peer: &HttpPeer,
    head: BytesMut,
    body: &[u8],
    ctx: &mut Ctx,
) -> Result<HttpSession> {
    let write = async {
        stream.write_all(&head).await?;
        if body.len() > ONE_WRITE_LIMIT {
            stream.write_all(body).await?;
        }
        stream.flush().await
    };
    let written = match peer.options.write_timeout {
        Some(limit) => tokio::time::timeout(limit, write)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
        None => write.await,
    };
    ctx.log_proxy_start();
    written.map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::TimedOut {
            WriteTimedout
        } else {
            WriteError
        };
        Error::because(kind, "while writing the request", e)
    })?;
    // A session over the same connection reads the answer: it has not written the
    // request itself, which only matters to it for HEAD, upgrades and a request's
    // `Connection: close`, none of which is sent here.
    let mut upstream = HttpSession::new_with_options(stream, peer);
    upstream.read_timeout = peer.options.read_timeout;
    upstream.write_timeout = peer.options.write_timeout;
    upstream.read_response().await?;
    Ok(upstream)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::routes::Route;
    use crate::table::Endpoint;

    fn ctx(route: Route, upstream_path: &str) -> Ctx {
        let mut ctx = Ctx::new();
        ctx.route = route;
        ctx.request_id = "rid-1".into();
        ctx.upstream_path = upstream_path.into();
        ctx.endpoint = Some(Endpoint {
            replica_idx: 1,
            addr: "127.0.0.1:9101".parse().expect("addr"),
            host: Arc::from("127.0.0.1:9101"),
            pid: Some(7),
        });
        ctx
    }

    fn client(fields: &[(&str, &str)]) -> RequestHeader {
        let mut header =
            RequestHeader::build("POST", b"/mcp/fruits/get_fruit", None).expect("header");
        for (name, value) in fields {
            header
                .append_header(name.to_string(), *value)
                .expect("field");
        }
        header
    }

    /// The head as text, split into its request line and its fields (lower-cased names).
    fn parse(head: &[u8]) -> (String, Vec<(String, String)>, Vec<u8>) {
        let text = head.to_vec();
        let end = text
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of head");
        let head_text = String::from_utf8(text[..end].to_vec()).expect("utf8");
        let mut lines = head_text.split("\r\n");
        let line = lines.next().expect("request line").to_owned();
        let fields = lines
            .map(|l| {
                let (name, value) = l.split_once(": ").expect("field");
                (name.to_ascii_lowercase(), value.to_owned())
            })
            .collect();
        (line, fields, text[end + 4..].to_vec())
    }

    fn values<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
        fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn the_worker_gets_the_clients_fields_but_framing_connection_and_the_gateways_own() {
        let client = client(&[
            ("Host", "hub.example"),
            ("Content-Type", "application/json"),
            ("Accept", "text/event-stream"),
            ("X-Custom", "kept"),
            ("X-Custom", "twice"),
            ("Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Expect", "100-continue"),
            ("Upgrade", "h2c"),
            ("Proxy-Connection", "keep-alive"),
            ("Trailer", "x-t"),
            ("Content-Length", "999"),
            ("X-Request-Id", "client-id"),
            ("Origin", "http://evil.example"),
        ]);
        let body = br#"{"args":{"id":1}}"#;
        let ctx = ctx(
            Route::ToolCall {
                server_id: "fruits".into(),
                tool: "get_fruit".into(),
            },
            "/call/get_fruit",
        );
        let head = request_head(&client, &ctx, body).expect("head");
        let (line, fields, rest) = parse(&head);
        assert_eq!(line, "POST /call/get_fruit HTTP/1.1");
        assert_eq!(values(&fields, "host"), ["127.0.0.1:9101"]);
        assert_eq!(values(&fields, "content-length"), [body.len().to_string()]);
        assert_eq!(values(&fields, "x-request-id"), ["rid-1"]);
        assert_eq!(values(&fields, "content-type"), ["application/json"]);
        assert_eq!(values(&fields, "accept"), ["text/event-stream"]);
        assert_eq!(values(&fields, "x-custom"), ["kept", "twice"]);
        for gone in REQUEST_FIELDS_NOT_FORWARDED.iter().chain(&["origin"]) {
            assert!(values(&fields, gone).is_empty(), "{gone} was forwarded");
        }
        assert_eq!(fields.len(), 7, "{fields:?}");
        // A small body leaves in the same write as its head.
        assert_eq!(rest, body);
    }

    #[test]
    fn an_mcp_session_goes_to_the_worker_as_its_own_id() {
        let client = client(&[("Mcp-Session-Id", "r1.inner-session")]);
        let mut ctx = ctx(
            Route::McpStreamable {
                server_id: "fruits".into(),
            },
            "/mcp",
        );
        ctx.upstream_session = Some("inner-session".into());
        let (_, fields, _) = parse(&request_head(&client, &ctx, b"{}").expect("head"));
        assert_eq!(values(&fields, SESSION_HEADER), ["inner-session"]);
        // Without one the client's field, whatever it is, passes as it came.
        ctx.upstream_session = None;
        let (_, fields, _) = parse(&request_head(&client, &ctx, b"{}").expect("head"));
        assert_eq!(values(&fields, SESSION_HEADER), ["r1.inner-session"]);
    }

    #[test]
    fn a_large_body_is_left_to_its_own_write() {
        let body = vec![b'x'; ONE_WRITE_LIMIT + 1];
        let ctx = ctx(
            Route::NamedCall {
                server_id: "fruits".into(),
            },
            "/call",
        );
        let head = request_head(&client(&[]), &ctx, &body).expect("head");
        let (_, fields, rest) = parse(&head);
        assert!(rest.is_empty());
        assert_eq!(values(&fields, "content-length"), [body.len().to_string()]);
    }

    #[test]
    fn a_path_or_value_that_would_break_the_head_is_refused() {
        let call = || {
            ctx(
                Route::NamedCall {
                    server_id: "fruits".into(),
                },
                "/call",
            )
        };
        for path in ["", "/call x", "/call\r\nx: y", "/call\u{7f}", "/café"] {
            let mut ctx = call();
            ctx.upstream_path = path.into();
            assert!(request_head(&client(&[]), &ctx, b"{}").is_err(), "{path:?}");
        }
        let mut ctx = call();
        ctx.upstream_session = Some("a\r\nx-injected: 1".into());
        assert!(request_head(&client(&[]), &ctx, b"{}").is_err());
        let mut ctx = call();
        ctx.request_id = "id\n".into();
        assert!(request_head(&client(&[]), &ctx, b"{}").is_err());
    }
}
