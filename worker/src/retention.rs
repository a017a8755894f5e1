//! The store's housekeeping: pruning the event log to the retention
//! window, and purging the histories of deleted chats.

use std::ops::ControlFlow;
use std::time::Duration;

use shared::clock::now_ms;
use shared::store::{Retention, Store, PURGE_STEP};
use tokio_util::sync::CancellationToken;

/// Prunes and purges every `every` until `stop` is cancelled. A prune or
/// purge in progress then stops where it is: the step in progress rolls
/// back, the steps done stay done, and the next process's first round
/// goes on from there.
pub async fn run(store: Store, retention: Retention, every: Duration, stop: CancellationToken) {
    let store = &store;
    shared::periodic::every_until_stopped(every, stop, move || async move {
        let started = std::time::Instant::now();
        match store.prune(retention, now_ms(), PURGE_STEP).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, took = ?started.elapsed(), "pruned events outside the retention window"),
            Err(e) => tracing::warn!(error = %e, "pruning the event log failed; will retry"),
        }
        match store.purge_deleted_chats(PURGE_STEP).await {
            Ok(purged) => {
                for p in purged {
                    let deleted_ago_ms = now_ms().saturating_sub(p.deleted_at);
                    tracing::info!(chat = p.chat, rows = p.rows, took = ?p.took, deleted_ago_ms, "purged a deleted chat's history");
                }
            }
            Err(e) => tracing::warn!(error = %e, "purging deleted chats failed; will retry"),
        }
        ControlFlow::Continue(())
    })
    .await
}
