//! The store's housekeeping: pruning the event log to the retention
//! window, and purging the histories of deleted chats.

use std::ops::ControlFlow;
use std::time::Duration;

use shared::clock::now_ms;
use shared::store::{Retention, Store, PURGE_STEP};
use tokio_util::sync::CancellationToken;

use crate::turns::Turns;

/// Prunes and purges every `every`, in the rounds that are this process's
/// `turns`, until `stop` is cancelled. A prune or purge in progress then
/// stops where it is: the step in progress rolls back, the steps done stay
/// done, and the next round goes on from there.
pub async fn run(store: Store, retention: Retention, every: Duration, turns: Turns, stop: CancellationToken) {
    let (store, turns) = (&store, &turns);
    shared::periodic::every_until_stopped(every, stop, move || async move {
        round(store, retention, turns).await;
        ControlFlow::Continue(())
    })
    .await
}

/// Whether a round ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    Ran,
    NotOurTurn,
}

/// One round of the housekeeping, if it is ours. Each task's outcome is
/// counted (`chat_housekeeping_rounds_total`), since a failing one only
/// shows later, as a database that grows: the `HousekeepingFailing` alert.
pub async fn round(store: &Store, retention: Retention, turns: &Turns) -> Round {
    if !turns.take().await {
        return Round::NotOurTurn;
    }
    let started = std::time::Instant::now();
    match store.prune(retention, now_ms(), PURGE_STEP).await {
        Ok(pruned) => {
            counted("prune", "done");
            metrics::counter!("chat_events_pruned_total").increment(pruned);
            if pruned > 0 {
                tracing::info!(events = pruned, took = ?started.elapsed(), "pruned events outside the retention window");
            }
        }
        Err(e) => {
            counted("prune", "failed");
            tracing::warn!(error = %e, "pruning the event log failed; will retry");
        }
    }
    match store.purge_deleted_chats(PURGE_STEP).await {
        Ok(purged) => {
            counted("purge", "done");
            for p in purged {
                metrics::counter!("chat_deleted_chats_purged_total").increment(1);
                metrics::counter!("chat_purged_rows_total").increment(p.rows);
                let deleted_ago_ms = now_ms().saturating_sub(p.deleted_at);
                tracing::info!(chat = p.chat, rows = p.rows, took = ?p.took, deleted_ago_ms, "purged a deleted chat's history");
            }
        }
        Err(e) => {
            counted("purge", "failed");
            tracing::warn!(error = %e, "purging deleted chats failed; will retry");
        }
    }
    turns.done().await;
    Round::Ran
}

fn counted(task: &'static str, outcome: &'static str) {
    metrics::counter!("chat_housekeeping_rounds_total", "task" => task, "outcome" => outcome).increment(1);
}
