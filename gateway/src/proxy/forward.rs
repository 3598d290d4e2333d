//! Owns sending a validated body that Pingora cannot send itself. The gateway reads a
//! checked body whole in `request_filter`, so that it is validated before a worker is
//! woken, waited for or connected to; Pingora then replays it to the worker from its
//! retry buffer, which holds 64 KiB (`BODY_BUF_LIMIT` of pingora-core): past that it
//! sends nothing at all. Such a body is sent from here over a connection of our own, and
//! the answer streamed back. The `ProxyHttp` hooks of the Pingora path (header rewrites,
//! retry decisions) are called, not copied, and failures end in the same `fail_to_proxy`
//! (the error is returned from `request_filter`), so both paths answer alike.

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::proxy::{ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;

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
        let (mut upstream, reused) = match gateway.connector.get_http_session(&peer).await {
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
        match send(&mut upstream, request, &body).await {
            Ok(()) => break (upstream, peer),
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

/// Writes the request and reads the answer's header.
async fn send(upstream: &mut HttpSession, request: RequestHeader, body: &[u8]) -> Result<()> {
    upstream.write_request_header(Box::new(request)).await?;
    upstream.write_body(body).await?;
    upstream.finish_body().await?;
    upstream.read_response().await?;
    Ok(())
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
