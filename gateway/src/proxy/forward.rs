//! Owns sending a checked body to a worker. The gateway reads such a body whole in
//! `request_filter`, so that it is validated before a worker is woken, waited for or
//! connected to; it is then sent from here rather than by Pingora: Pingora replays a
//! body read in `request_filter` from its retry buffer, which holds 64 KiB
//! (`BODY_BUF_LIMIT` of pingora-core) and past that sends nothing at all; and this path
//! costs less per call (about 11k of 92k instructions under callgrind: no duplex task,
//! channel or per-chunk body filters, and the head and a body of up to
//! [`ONE_WRITE_LIMIT`] leave in one write). The `ProxyHttp` hooks of the Pingora path
//! (header rewrites, retry decisions) are called, not copied, and failures end in the
//! same `fail_to_proxy` (the error is returned from `request_filter`), so both paths
//! answer alike.

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::protocols::http::v1::client::{http_req_header_to_wire, HttpSession};
use pingora::proxy::{ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use tokio::io::AsyncWriteExt;

use super::{Ctx, Gateway, UPSTREAM_IDLE_TIMEOUT};

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
    let (mut upstream, peer) = loop {
        ctx.attempts += 1;
        let peer = gateway.peer(gateway.choose_worker(ctx).await?);
        let (upstream, reused) = match gateway.connector.get_http_session(&peer).await {
            Ok(connected) => connected,
            Err(e) => {
                let e = gateway.fail_to_connect(session, &peer, ctx, e.into_up());
                if e.retry() {
                    continue;
                }
                return Err(e);
            }
        };
        let mut request = session.req_header().clone();
        request.set_version(http::Version::HTTP_11);
        for name in REQUEST_FIELDS_NOT_FORWARDED {
            request.remove_header(name);
        }
        request.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        gateway
            .upstream_request_filter(session, &mut request, ctx)
            .await?;
        match send(upstream, &peer, &request, &body, ctx).await {
            Ok(upstream) => break (upstream, peer),
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
        header.remove_header(name);
    }
    gateway
        .upstream_response_filter(session, &mut header, ctx)
        .await?;
    session
        .write_response_header(Box::new(header), false)
        .await
        .map_err(|e| e.into_down())?;
    while let Some(chunk) = upstream.read_body_bytes().await.map_err(|e| e.into_up())? {
        session
            .write_response_body(Some(chunk), false)
            .await
            .map_err(|e| e.into_down())?;
    }
    session
        .write_response_body(None, true)
        .await
        .map_err(|e| e.into_down())?;
    release(gateway, upstream, &peer).await;
    Ok(true)
}

/// Writes the request (head and body in one write when the body is small) and reads
/// the answer's header, with the peer's timeouts as Pingora applies them. The call's
/// `tool.call.accepted` and `tool.call.proxy.start` lines are written between the two,
/// while the worker works, rather than before the request leaves.
async fn send(
    upstream: HttpSession,
    peer: &HttpPeer,
    request: &RequestHeader,
    body: &[u8],
    ctx: &mut Ctx,
) -> Result<HttpSession> {
    let mut head = http_req_header_to_wire(request).ok_or_else(|| {
        Error::explain(
            InvalidHTTPHeader,
            "request-line contains forbidden delimiter bytes",
        )
    })?;
    let mut stream = upstream.into_inner();
    let write = async {
        if body.len() <= ONE_WRITE_LIMIT {
            head.extend_from_slice(body);
            stream.write_all(&head).await?;
        } else {
            stream.write_all(&head).await?;
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

/// Pools the connection when the answer was read to its end and it may be kept alive.
async fn release(gateway: &Gateway, mut upstream: HttpSession, peer: &HttpPeer) {
    if upstream.is_body_done() {
        gateway
            .connector
            .release_http_session(upstream, peer, Some(UPSTREAM_IDLE_TIMEOUT))
            .await;
    }
}
