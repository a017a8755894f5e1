//! Periodic pruning of the event log to the retention window.

use std::ops::ControlFlow;
use std::time::Duration;

use shared::clock::now_ms;
use shared::store::{Retention, Store};
use tokio_util::sync::CancellationToken;

/// Prunes every `every` until `stop` is cancelled. A prune in progress
/// then stops where it is (the chat being pruned rolls back); the next
/// process's first prune goes on from there.
pub async fn run(store: Store, retention: Retention, every: Duration, stop: CancellationToken) {
    let store = &store;
    shared::periodic::every_until_stopped(every, stop, move || async move {
        match store.prune(retention, now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "pruned events outside the retention window"),
            Err(e) => tracing::warn!(error = %e, "pruning the event log failed; will retry"),
        }
        ControlFlow::Continue(())
    })
    .await
}
