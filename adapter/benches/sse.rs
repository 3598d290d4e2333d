//! Benchmark of the SSE parser on one large streamed event: `cargo bench -p mcp-adapter
//! --bench sse`. A 1 MiB and a 4 MiB event, each fed in 1 KiB and in 16 KiB chunks (as
//! a network hands them over); time per MiB should not grow with the event's size (the
//! parser looks at each byte once). A measurement, never an assertion.

use std::time::Instant;

use mcp_adapter::sse::Parser;

fn main() {
    for mib in [1usize, 4] {
        let payload = "x".repeat(mib << 20);
        let stream = format!("event: output.delta\ndata: {payload}\n\n");
        for chunk in [1024usize, 16 * 1024] {
            let rounds = 20;
            let started = Instant::now();
            let mut dispatched = 0usize;
            for _ in 0..rounds {
                let mut parser = Parser::new();
                for piece in stream.as_bytes().chunks(chunk) {
                    parser
                        .feed(piece, |event| dispatched += event.data.len())
                        .expect("no cap set");
                }
            }
            let per_round = started.elapsed() / rounds;
            assert_eq!(dispatched, rounds as usize * (mib << 20));
            let per_mib_ms = per_round.as_secs_f64() * 1000.0 / mib as f64;
            println!(
                "sse: {mib} MiB event in {chunk}-byte chunks: {:.2} ms ({per_mib_ms:.2} ms per MiB, {:.0} MiB/s)",
                per_round.as_secs_f64() * 1000.0,
                mib as f64 / per_round.as_secs_f64()
            );
        }
    }
}
