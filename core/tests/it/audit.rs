//! The audit writer against a real Redis: what arrives within the flush window goes in
//! one pipeline, and every entry reaches the stream.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mcp_core::audit::{self, AuditArgs, Entry};
use tokio_util::sync::CancellationToken;

fn entry(i: usize) -> Entry {
    Entry {
        ts: 1,
        request_id: format!("req-{i}"),
        server: "s".into(),
        tool: "t".into(),
        transport: "call".into(),
        status: "ok".into(),
        ..Entry::default()
    }
}

async fn written(sink: &audit::Sink, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.stats().written.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} written",
            sink.stats().written.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn entries_of_one_flush_window_go_in_one_pipeline() {
    let (_redis, registry) = crate::setup();
    let shutdown = CancellationToken::new();
    let args = AuditArgs {
        audit_flush_ms: 300,
        ..AuditArgs::default()
    };
    let sink = audit::start(registry.clone(), &args, shutdown.clone());
    for i in 0..50 {
        sink.record(entry(i));
    }
    written(&sink, 50).await;
    assert_eq!(sink.stats().batches.load(Ordering::Relaxed), 1);
    let page = audit::page(&registry, &audit::Filter::default(), None, 100, 1000)
        .await
        .expect("page");
    assert_eq!(page.entries.len(), 50);
    shutdown.cancel();
}

#[tokio::test]
async fn with_no_flush_window_each_entry_is_written_at_once() {
    let (_redis, registry) = crate::setup();
    let shutdown = CancellationToken::new();
    let args = AuditArgs {
        audit_flush_ms: 0,
        ..AuditArgs::default()
    };
    let sink = audit::start(registry, &args, shutdown.clone());
    for i in 0..3 {
        sink.record(entry(i));
        written(&sink, i as u64 + 1).await;
    }
    assert_eq!(sink.stats().batches.load(Ordering::Relaxed), 3);
    shutdown.cancel();
}

#[tokio::test]
async fn a_shutdown_during_the_window_still_writes_the_batch() {
    let (_redis, registry) = crate::setup();
    let shutdown = CancellationToken::new();
    let args = AuditArgs {
        audit_flush_ms: 10_000,
        ..AuditArgs::default()
    };
    let sink = audit::start(registry, &args, shutdown.clone());
    for i in 0..5 {
        sink.record(entry(i));
    }
    let started = Instant::now();
    shutdown.cancel();
    written(&sink, 5).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the window was not cut short"
    );
}
