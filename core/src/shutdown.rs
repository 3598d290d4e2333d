//! Owns how a binary learns it must stop: SIGTERM or SIGINT cancels the process's root
//! `CancellationToken`; every long task holds a child token.

use tokio_util::sync::CancellationToken;

/// Resolves on the first SIGTERM or SIGINT.
pub async fn signalled() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A root token cancelled by the first SIGTERM or SIGINT (logged as `process.shutdown`).
pub fn root_token() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        signalled().await;
        tracing::info!(event = "process.shutdown", reason = "signal");
        cancel.cancel();
    });
    token
}
