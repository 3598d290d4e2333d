//! One HTTP/1.1 exchange over a bare TCP socket, read by read: for tests about how
//! many writes a response took, which a client library hides.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends a POST of `body` (JSON) to `path` at `addr` (`host:port`) and returns each
/// read's bytes, as text, until the response is complete (its Content-Length, or the
/// chunked terminator), with when each arrived after the send. Panics on a connection
/// failure, on an early close and after 20 s.
pub async fn post_reads(addr: &str, path: &str, body: &str) -> Vec<(Duration, String)> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let sent = Instant::now();
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut reads = Vec::new();
    let mut whole = String::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !message_complete(&whole) {
        let n = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf))
            .await
            .expect("the response within 20 s")
            .expect("read");
        assert!(n > 0, "the server closed early after {whole:?}");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        whole.push_str(&text);
        reads.push((sent.elapsed(), text));
    }
    reads
}

/// The status and body of `GET {path}` at `addr` (`host:port`), or `None` when nothing
/// answers within 2 s: for waiting until a server is up, with no HTTP client.
pub async fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.ok()?;
        let mut whole = Vec::new();
        tcp.read_to_end(&mut whole).await.ok()?;
        let text = String::from_utf8_lossy(&whole).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

/// Whether `text` holds a whole HTTP/1.1 message (a response, or a request for a test
/// that plays the server): a sized body all there, or a chunked one with its terminator.
pub fn message_complete(text: &str) -> bool {
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    match length {
        Some(length) => body.len() >= length,
        None => body.ends_with("0\r\n\r\n"),
    }
}

/// Reads from `stream` until one whole HTTP/1.1 message has arrived (how a test that
/// plays the server reads each request of a client that sends one at a time); `None`
/// when the peer closed or failed first.
pub async fn read_message(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<String> {
    let mut text = String::new();
    let mut chunk = [0u8; 4096];
    while !message_complete(&text) {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&chunk[..n])),
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::message_complete;

    #[test]
    fn a_message_is_complete_at_its_length_or_its_terminator() {
        assert!(!message_complete(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n"
        ));
        assert!(!message_complete(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc"
        ));
        assert!(message_complete(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde"
        ));
        let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n";
        assert!(!message_complete(chunked));
        assert!(message_complete(&format!("{chunked}0\r\n\r\n")));
    }
}
