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
//! Order holds: a chat lives in one shard, and each shard's batch stays
//! whole and in order within the merged one. A failure stays contained:
//! when a merged transaction fails, each batch in it is applied again on
//! its own, and a command whose data the database refuses is answered
//! `internal` without holding up the rest ([`Processor::apply_isolating`]).

use std::sync::Arc;

use shared::bus::CommandEnvelope;
use shared::store::StoreError;
use tokio::sync::{mpsc, oneshot};

use crate::processor::{Processor, Results};

/// A merged batch takes other shards' batches until it holds this many
/// batches' worth of commands.
const MERGED_BATCHES: usize = 4;

/// Hands batches to the worker's committer; cheap to clone, one per shard
/// consumer.
#[derive(Clone)]
pub struct GroupCommit {
    requests: mpsc::Sender<Request>,
}

struct Request {
    batch: Arc<Vec<CommandEnvelope>>,
    seen_before: bool,
    reply: oneshot::Sender<Result<Results, StoreError>>,
}

impl GroupCommit {
    /// Starts the committer; it stops once every handle is dropped.
    pub fn start(processor: Processor) -> GroupCommit {
        let (requests, queue) = mpsc::channel(64);
        tokio::spawn(commit(processor, queue));
        GroupCommit { requests }
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

async fn commit(processor: Processor, mut queue: mpsc::Receiver<Request>) {
    let most = processor.max_batch() * MERGED_BATCHES;
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
        if merged.len() == 1 {
            let request = merged.remove(0);
            let results = processor.apply_isolating(&request.batch, request.seen_before).await;
            let _ = request.reply.send(results);
            continue;
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
}
