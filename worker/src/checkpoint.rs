//! Standalone's SQLite checkpoints, run beside the writer (see
//! `shared::store::Store::checkpoint`).

use std::ops::ControlFlow;
use std::time::Duration;

use shared::store::{Checkpointed, Store};
use tokio_util::sync::CancellationToken;

/// Checkpoints every `every` until `stop` is cancelled; returns at once on
/// a store that needs none.
pub async fn run(store: Store, every: Duration, stop: CancellationToken) {
    let store = &store;
    shared::periodic::every_until_stopped(every, stop, move || async move {
        match store.checkpoint().await {
            Ok(Some(Checkpointed::Ran { log_pages, copied_pages })) => {
                tracing::trace!(log_pages, copied_pages, "checkpoint");
                ControlFlow::Continue(())
            }
            Ok(Some(Checkpointed::NothingNew)) => ControlFlow::Continue(()),
            Ok(None) => ControlFlow::Break(()),
            Err(e) => {
                tracing::warn!(error = %e, "checkpointing the SQLite log failed; will retry");
                ControlFlow::Continue(())
            }
        }
    })
    .await
}
