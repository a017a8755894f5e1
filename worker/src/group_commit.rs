//! One transaction for the batches of all of a worker's shards that are
//! waiting at the same moment (group commit).
//!
//! Why: a worker consumes each shard it owns in a loop of its own (8 of the
//! 16 shards each, with 2 workers), and below saturation each loop's batch
//! holds one or two commands: at 2,000 msg/s the cluster committed about
//! 1,400 transactions a second, and PostgreSQL spent its share of the
//! machine on the fixed costs of statements and commits. The same cluster
//! with 2 shards instead of 16 (one loop per worker, so larger batches)
//! used a third less of PostgreSQL's CPU (docs/benchmarks-journal.md). Merging the
//! loops' batches gets that while keeping the shards that let more workers
//! share the load.
//!
//! When configured ([`Hold`], `GROUP_COMMIT_HOLD_US`), the committer also
//! waits a little under load for more batches before a small transaction:
//! at 2,000 msg/s it found about 1.4 commands waiting per transaction, and
//! each statement cost PostgreSQL about 200 µs of CPU beyond its execution
//! (commit, log flush, protocol). Holding for 500 µs cut PostgreSQL's CPU
//! by 29–36 % and the gateways' and workers' by 11–15 %, for about 1.5 ms
//! more at the median and up to 3 ms at the p99 in every setting measured
//! (docs/benchmarks-journal.md, thirteenth session). Off by default: the
//! tail is what this gateway is chosen for. Idle, nothing waits: the hold
//! applies only while commits follow each other closely.
//!
//! Order holds: a chat lives in one shard, and each shard's batch stays
//! whole and in order within the merged one. A failure stays contained:
//! when a merged transaction fails, each batch in it is applied again on
//! its own, and a command whose data the database refuses is answered
//! `internal` without holding up the rest ([`Processor::apply_isolating`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::bus::CommandEnvelope;
use shared::store::StoreError;
use tokio::sync::{mpsc, oneshot};

use crate::processor::{Processor, Results};

/// A merged batch takes other shards' batches until it holds this many
/// batches' worth of commands.
const MERGED_BATCHES: usize = 4;

/// How long the committer waits for more batches before committing a
/// small transaction.
#[derive(Debug, Clone, Copy)]
pub struct Hold {
    /// At most this long; zero never waits.
    pub wait: Duration,
    /// Only while busy: the previous commit ended less than this ago.
    pub busy_within: Duration,
    /// Only until the transaction holds this many commands.
    pub enough: usize,
}

impl Hold {
    pub const NONE: Hold = Hold { wait: Duration::ZERO, busy_within: Duration::ZERO, enough: 0 };

    /// Waits up to `wait` while commits come within 5 ms of each other, for
    /// up to 8 commands: beyond that a statement's fixed cost is shared
    /// enough, and a lull means no more are coming soon.
    pub fn up_to(wait: Duration) -> Hold {
        Hold { wait, busy_within: Duration::from_millis(5), enough: 8 }
    }

    fn applies(&self, commands: usize, since_last_commit: Option<Duration>) -> bool {
        !self.wait.is_zero() && commands < self.enough && since_last_commit.is_some_and(|d| d < self.busy_within)
    }
}

/// Hands batches to the worker's committer; cheap to clone, one per shard
/// consumer.
#[derive(Clone)]
pub struct GroupCommit {
    requests: mpsc::Sender<Request>,
    committer: tokio::task::AbortHandle,
}

struct Request {
    batch: Arc<Vec<CommandEnvelope>>,
    seen_before: bool,
    reply: oneshot::Sender<Result<Results, StoreError>>,
}

impl GroupCommit {
    /// Starts the committer; it stops once every handle is dropped.
    pub fn start(processor: Processor, hold: Hold) -> GroupCommit {
        let (requests, queue) = mpsc::channel(64);
        let committer = tokio::spawn(commit(processor, hold, queue)).abort_handle();
        GroupCommit { requests, committer }
    }

    /// Drops the transaction in progress and everything queued, answering
    /// [`StoreError::Stopped`]: for a worker that gave its shards up because
    /// the database stopped answering. Left running, the committer would
    /// wait out the store's deadline on each batch, and a worker taking
    /// shards again would queue behind it. A transaction dropped may still
    /// commit, as one past its deadline may: the next owner re-applies its
    /// commands, which the store recognises.
    pub fn abandon(&self) {
        self.committer.abort();
    }

    /// Applies `batch` as [`Processor::apply_isolating`] does, possibly in one
    /// transaction with other shards' batches.
    pub async fn apply(&self, batch: Arc<Vec<CommandEnvelope>>, seen_before: bool) -> Result<Results, StoreError> {
        let (reply, answer) = oneshot::channel();
        if self.requests.send(Request { batch, seen_before, reply }).await.is_err() {
            return Err(StoreError::Stopped);
        }
        answer.await.unwrap_or(Err(StoreError::Stopped))
    }
}

async fn commit(processor: Processor, hold: Hold, mut queue: mpsc::Receiver<Request>) {
    let most = processor.max_batch() * MERGED_BATCHES;
    let mut last_commit: Option<Instant> = None;
    while let Some(first) = queue.recv().await {
        let mut commands = first.batch.len();
        let mut merged = vec![first];
        // Shard loops whose reads just returned queue their batches first.
        tokio::task::yield_now().await;
        while commands < most {
            match queue.try_recv() {
                Ok(request) => {
                    commands += request.batch.len();
                    merged.push(request);
                }
                Err(_) => break,
            }
        }
        if hold.applies(commands, last_commit.map(|at| at.elapsed())) {
            let until = tokio::time::Instant::now() + hold.wait;
            while commands < hold.enough {
                match tokio::time::timeout_at(until, queue.recv()).await {
                    Ok(Some(request)) => {
                        commands += request.batch.len();
                        merged.push(request);
                    }
                    _ => break,
                }
            }
        }
        apply_merged(&processor, merged).await;
        last_commit = Some(Instant::now());
    }
}

/// Applies the requests' batches in one transaction and answers each.
async fn apply_merged(processor: &Processor, mut merged: Vec<Request>) {
    if merged.len() == 1 {
        let request = merged.remove(0);
        let results = processor.apply_isolating(&request.batch, request.seen_before).await;
        let _ = request.reply.send(results);
        return;
    }
    let batches: Vec<&[CommandEnvelope]> = merged.iter().map(|r| r.batch.as_slice()).collect();
    let seen_before = merged.iter().any(|r| r.seen_before);
    match processor.apply_together(&batches, seen_before).await {
        Ok(results) => {
            let mut results = results.into_iter();
            for request in merged {
                let own: Results = results.by_ref().take(request.batch.len()).collect();
                let _ = request.reply.send(Ok(own));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, batches = merged.len(), "a merged batch failed; applying each on its own");
            // Nothing of it is committed, unless the commit itself
            // went unanswered: each is applied as possibly seen.
            for request in merged {
                let results = processor.apply_isolating(&request.batch, true).await;
                let _ = request.reply.send(results);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_applies_only_to_a_small_transaction_while_commits_follow_closely() {
        let hold = Hold::up_to(Duration::from_micros(500));
        let busy = Some(Duration::from_millis(1));
        assert!(hold.applies(1, busy));
        assert!(hold.applies(7, busy));
        assert!(!hold.applies(8, busy), "enough commands to share the statement");
        assert!(!hold.applies(1, Some(Duration::from_millis(50))), "a lull: none are coming soon");
        assert!(!hold.applies(1, None), "the first transaction");
        assert!(!Hold::NONE.applies(1, busy));
        assert!(!Hold::up_to(Duration::ZERO).applies(1, busy));
    }
}
