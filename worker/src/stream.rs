//! Consuming one shard's command stream: first the entries a previous owner
//! left pending, then new ones. Each batch is applied, then its outcome is
//! published and the batch acknowledged (XACK) in the request that reads
//! the next batch. A failure anywhere before the XACK leaves the entries
//! pending, and they are applied again, which the store recognises by
//! command id. Every read is fenced by the shard's lease
//! ([`crate::shard_read`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::bus::keys::{Keys, GROUP};
use shared::bus::redis::RedisBroker;
use shared::bus::redis_connection::RedisConnection;
use shared::bus::{CommandEnvelope, Event, ReplyAddress};
use shared::clock::now_ms;
use tokio_util::sync::CancellationToken;

use crate::group_commit::GroupCommit;
use crate::processor::Processor;
use crate::shard_read::{Read, ShardRead};

pub struct ShardConsumer {
    pub shard: u32,
    /// The worker, as its leases name it.
    pub worker: String,
    pub keys: Keys,
    pub processor: Processor,
    /// Applies the batches, with other shards' (see [`crate::group_commit`]).
    pub committer: GroupCommit,
    /// Names the channels of the events the consumer publishes.
    pub broker: RedisBroker,
    /// For group creation (never blocks).
    pub commands: RedisConnection,
    pub redis_url: String,
    /// Set by the worker's lease round when an entry was handed out past
    /// this consumer ([`crate::stray_entries`]).
    pub reread_backlog: Arc<AtomicBool>,
}

/// A batch applied whose events and XACK go out with the next read.
struct Unsent {
    events: Vec<Event>,
    ids: Vec<String>,
}

impl ShardConsumer {
    /// Runs until `stop`; a batch in hand is finished, published and
    /// acknowledged first, so stopping never leaves work half done.
    pub async fn run(self, stop: CancellationToken) {
        let stream = self.keys.command_stream(self.shard);
        let read = ShardRead::new(&self.keys, self.shard, &self.worker, self.processor.max_batch());
        // Blocking reads get a connection of their own: a BLOCK on the
        // shared multiplexed connection would stall everything behind it.
        let mut reader = loop {
            match shared::bus::redis::connect(&self.redis_url).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, shard = self.shard, "cannot connect to Redis; retrying");
                    if sleep_or_stop(Duration::from_secs(1), &stop).await {
                        return;
                    }
                }
            }
        };
        let mut backlog = true;
        let mut failures = 0u32;
        let mut unsent: Option<Unsent> = None;
        // The group's last delivered id, once known: only this worker
        // reads the shard, so its reads move it.
        let mut position: Option<String> = None;
        let mut wait = false;
        tracing::info!(shard = self.shard, "consuming");
        loop {
            let stopping = stop.is_cancelled();
            if stopping && unsent.is_none() {
                break;
            }
            // Read after the XACK of the batch in hand, in the same
            // request: the backlog then holds only what was handed out
            // past this consumer.
            if self.reread_backlog.swap(false, Ordering::Relaxed) {
                backlog = true;
                wait = false;
            }
            // One request: the last batch's events and replies, its XACK,
            // then the next read. Redis runs them in that order, so nothing
            // is acknowledged before its events went out, and the loop makes
            // one round trip per batch instead of three.
            let mut request = redis::pipe();
            let carries_batch = unsent.is_some();
            if let Some(batch) = unsent.take() {
                if let Err(e) = self.broker.add_publishes(&mut request, &batch.events) {
                    // Unacknowledged, the entries are read again.
                    tracing::error!(error = %e, shard = self.shard, "events could not be encoded; the batch will be read again");
                    backlog = true;
                    continue;
                }
                request.cmd("XACK").arg(&stream).arg(GROUP).arg(&batch.ids).ignore();
            }
            if stopping {
                let sent: Result<(), _> = request.query_async(&mut reader).await;
                if let Err(e) = sent {
                    metrics::counter!("chat_redis_errors_total", "op" => "publish").increment(1);
                    tracing::warn!(error = %e, shard = self.shard, "publishing the last batch failed; its entries stay pending for the shard's next owner");
                }
                break;
            }
            // After a read that found nothing, or a batch that emptied the
            // stream, the read waits for the next entry.
            let wait_after = if wait { position.as_deref() } else { None };
            read.add_to(&mut request, backlog, wait_after, !backlog && position.is_none());
            wait = false;
            let reply: Result<(i64, redis::Value), _> = if carries_batch {
                // Waited for even when stopping (at most a second): it
                // carries a batch's acknowledgement.
                request.query_async(&mut reader).await
            } else {
                // Abandoning a bare read at shutdown is safe: anything it
                // was handed stays pending for the shard and is read again
                // by the next owner.
                tokio::select! {
                    reply = request.query_async(&mut reader) => reply,
                    _ = stop.cancelled() => return,
                }
            };
            let entries = match reply.map(ShardRead::outcome) {
                Ok(Read::Entries(entries)) => entries,
                Ok(Read::NothingNew(known)) => {
                    if backlog {
                        backlog = false;
                    } else {
                        // Not asked for, the position may be behind (a
                        // wait from it would end at once): the next read
                        // asks for it.
                        position = known;
                        wait = true;
                    }
                    continue;
                }
                // Nothing was read: read again at once.
                Ok(Read::Interrupted) => continue,
                Ok(Read::LeaseLost) => {
                    // The worker's next lease round sees it too and forgets
                    // the shard.
                    tracing::warn!(shard = self.shard, "lease lost; stopped consuming the shard");
                    return;
                }
                Err(e) => {
                    // Redis may have handed out entries in a reply that was
                    // lost, and may not have run the XACK: both wait,
                    // pending, in the backlog.
                    backlog = true;
                    position = None;
                    if carries_batch {
                        metrics::counter!("chat_redis_errors_total", "op" => "publish").increment(1);
                    }
                    if answered_nogroup(&e) {
                        // New stream, or Redis restarted empty.
                        self.create_group(&stream).await;
                    } else {
                        metrics::counter!("chat_redis_errors_total", "op" => "xreadgroup").increment(1);
                        tracing::warn!(error = %e, shard = self.shard, "publishing or reading commands failed");
                        if sleep_or_stop(backoff(&mut failures), &stop).await {
                            return;
                        }
                    }
                    continue;
                }
            };
            if entries.is_empty() {
                backlog = false;
                continue;
            }
            if !backlog {
                position = entries.last().map(|entry| entry.id.clone());
                wait = entries.len() < self.processor.max_batch();
            }
            let mut ids = Vec::with_capacity(entries.len());
            let mut batch = Vec::with_capacity(entries.len());
            let mut unreadable = Vec::new();
            // Where a command's time goes between the gateway's XADD and its
            // reply (`chat_command_duration_seconds` on the gateway): waiting
            // in the stream, then its batch's transaction.
            let read_at = now_ms();
            // One registry look-up per batch, not per entry.
            let queue_wait = metrics::histogram!("chat_worker_queue_wait_seconds");
            for entry in &entries {
                if let Some(appended_at) = appended_at_ms(&entry.id) {
                    queue_wait.record(read_at.saturating_sub(appended_at).max(0) as f64 / 1000.0);
                }
                ids.push(entry.id.clone());
                let payload = entry.payload.as_deref();
                match payload.map(serde_json::from_str::<CommandEnvelope>) {
                    Some(Ok(envelope)) => batch.push(envelope),
                    // Not ours to fix: acknowledged so that it does not
                    // block the shard, and answered where it says whose it is.
                    _ => {
                        tracing::error!(id = %entry.id, "undecodable command entry skipped");
                        metrics::counter!("chat_worker_commands_total", "type" => "unreadable", "outcome" => "internal")
                            .increment(1);
                        if let Some(Ok(address)) = payload.map(serde_json::from_str::<ReplyAddress>) {
                            unreadable.push((batch.len(), address.unreadable()));
                        }
                    }
                }
            }
            // Entries read as new were never handed out before; once an
            // attempt failed, its commit may still have happened.
            let mut seen_before = backlog;
            let batch = Arc::new(batch);
            let applying = Instant::now();
            let results = loop {
                match self.committer.apply(Arc::clone(&batch), seen_before).await {
                    Ok(results) => break results,
                    Err(e) => {
                        seen_before = true;
                        tracing::warn!(error = %e, shard = self.shard, "store failed; retrying the batch");
                        // Unacknowledged entries stay pending for whoever
                        // owns the shard next.
                        if sleep_or_stop(backoff(&mut failures), &stop).await {
                            return;
                        }
                    }
                }
            };
            failures = 0;
            metrics::histogram!("chat_worker_stage_seconds", "stage" => "apply").record(applying.elapsed());
            unsent = Some(Unsent { events: Processor::outcome_events_among(&batch, results, unreadable), ids });
        }
    }

    async fn create_group(&self, stream: &str) {
        let mut commands = self.commands.clone();
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut commands)
            .await;
        if let Err(e) = created {
            if e.code() != Some("BUSYGROUP") {
                tracing::warn!(error = %e, "creating the consumer group failed");
            }
        }
    }
}

/// Whether Redis answered NOGROUP (no such stream or group), alone or as
/// one command of a pipeline or transaction.
fn answered_nogroup(e: &redis::RedisError) -> bool {
    e.clone().into_server_errors().is_some_and(|errors| errors.iter().any(|(_, error)| error.code() == "NOGROUP"))
}

/// The time Redis appended a stream entry: the first part of its id.
fn appended_at_ms(id: &str) -> Option<i64> {
    id.split('-').next()?.parse().ok()
}

fn backoff(failures: &mut u32) -> Duration {
    *failures = (*failures + 1).min(6);
    Duration::from_millis(50 << *failures)
}

/// Sleeps `duration`; true if `stop` fired meanwhile.
async fn sleep_or_stop(duration: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_entry_id_gives_the_time_redis_appended_it() {
        assert_eq!(super::appended_at_ms("1764772140123-7"), Some(1_764_772_140_123));
        assert_eq!(super::appended_at_ms("not-an-id"), None);
    }
}
