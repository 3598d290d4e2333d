//! Test support for MCP Hub (a dev-dependency, and the benchmark hubs of `loadtest/`): a real `redis-server` on a free
//! port (and a Sentinel set-up or a 3-node Cluster of them), child processes that are killed with their whole process group when the test
//! ends (even when it fails), free ports, unique key prefixes, and deadline-based waits.
//! The mock REST API binary (`mcp-mock-api`) lives here too.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod hub;
pub mod mock_api;
pub mod process;
pub mod python;
pub mod raw_http;
pub mod redis_server;
pub mod sentinel;
pub mod wait;

pub use cluster::RedisCluster;
pub use mock_api::MockApi;
pub use process::{bin_path, kill_processes_with_arg, ChildProcess};
pub use redis_server::RedisServer;
pub use sentinel::SentinelSetup;
pub use wait::{wait_until, wait_until_async};

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    // The kernel may hand the same ephemeral port out again as soon as it is released:
    // two ports asked for one after the other (a listener and its metrics listener)
    // then collide. Ports this process already handed out are never handed out again.
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding 127.0.0.1:0");
        if given.insert(port) {
            return port;
        }
    }
}

/// Ports in a block of [`port_block`].
pub const PORT_BLOCK: u16 = 100;

/// The first port of a block of [`PORT_BLOCK`] ports (a supervisor's worker range) that
/// no other caller in this process gets: the tests of one binary run in parallel, and
/// random ranges overlapped (with 28 tests among 400 random blocks, most runs had two
/// tests sharing one). Blocks lie below the kernel's ephemeral range (32768 up), so no
/// client socket or [`free_port`] takes them either; the first block is chosen at
/// random so that two test binaries run at once are unlikely to meet.
pub fn port_block() -> u16 {
    port_range(PORT_BLOCK)
}

/// The first port of `count` consecutive ports made of whole blocks of [`port_block`],
/// given to no other caller in this process.
pub fn port_range(count: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const BLOCKS: u16 = 120;
    static NEXT: AtomicU16 = AtomicU16::new(u16::MAX);
    let seed = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761)) as u16;
    let _ = NEXT.compare_exchange(u16::MAX, seed % BLOCKS, Ordering::SeqCst, Ordering::SeqCst);
    let blocks = count.div_ceil(PORT_BLOCK).clamp(1, BLOCKS);
    // Blocks past the end wrap to the start, in one piece.
    let taken = NEXT
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |next| {
            let start = if next % BLOCKS + blocks > BLOCKS {
                0
            } else {
                next % BLOCKS
            };
            Some(start + blocks)
        })
        .unwrap_or(0);
    let start = if taken % BLOCKS + blocks > BLOCKS {
        0
    } else {
        taken % BLOCKS
    };
    FIRST + start * PORT_BLOCK
}

/// A key prefix no other test uses, so tests can share a Redis and run in parallel.
pub fn unique_prefix() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    #[test]
    fn port_blocks_never_overlap_within_a_process() {
        let mut blocks: Vec<u16> = (0..100).map(|_| super::port_block()).collect();
        blocks.sort_unstable();
        for pair in blocks.windows(2) {
            assert!(pair[1] - pair[0] >= super::PORT_BLOCK, "{pair:?}");
        }
        assert!(blocks
            .iter()
            .all(|b| *b >= 20_000 && b + super::PORT_BLOCK <= 32_768));
    }

    #[test]
    fn free_ports_never_repeat_within_a_process() {
        // 1000 draws from the ~28,000 ephemeral ports repeat some port almost surely
        // (about 18 pairs expected) unless free_port prevents it.
        let ports: Vec<u16> = (0..1000).map(|_| super::free_port()).collect();
        let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
