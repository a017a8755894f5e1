//! Consuming one shard's command stream: first the entries a previous owner
//! left pending, then new ones; each batch is applied, its outcome
//! published, and only then acknowledged (XACK). A failure anywhere before
//! the XACK leaves the entries pending, and they are applied again, which
//! the store recognises by command id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::streams::StreamReadReply;
use shared::bus::keys::{Keys, GROUP};
use shared::bus::CommandEnvelope;
use shared::clock::now_ms;
use tokio_util::sync::CancellationToken;

use crate::group_commit::GroupCommit;
use crate::processor::Processor;

/// How long one read waits for new entries before checking `stop`.
const BLOCK_MS: u64 = 1_000;

pub struct ShardConsumer {
    pub shard: u32,
    pub keys: Keys,
    pub processor: Processor,
    /// Applies the batches, with other shards' (see [`crate::group_commit`]).
    pub committer: GroupCommit,
    /// For XACK and group creation (never blocks).
    pub commands: ConnectionManager,
    pub redis_url: String,
}

impl ShardConsumer {
    /// Runs until `stop`; a batch in hand is finished and acknowledged
    /// first, so stopping never leaves work half done.
    pub async fn run(self, stop: CancellationToken) {
        let stream = self.keys.command_stream(self.shard);
        let consumer = self.keys.shard_consumer(self.shard);
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
        tracing::info!(shard = self.shard, "consuming");
        while !stop.is_cancelled() {
            let from = if backlog { "0" } else { ">" };
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP").arg(GROUP).arg(&consumer).arg("COUNT").arg(self.processor.max_batch());
            if !backlog {
                read.arg("BLOCK").arg(BLOCK_MS);
            }
            read.arg("STREAMS").arg(&stream).arg(from);
            // Abandoning a read at shutdown is safe: anything it was handed
            // stays pending for the shard and is read again by the next owner.
            let reply: Result<Option<StreamReadReply>, _> = tokio::select! {
                reply = read.query_async(&mut reader) => reply,
                _ = stop.cancelled() => return,
            };
            let entries = match reply {
                Ok(reply) => {
                    reply.map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>()).unwrap_or_default()
                }
                Err(e) => {
                    if e.code() == Some("NOGROUP") {
                        // New stream, or Redis restarted empty.
                        self.create_group(&stream).await;
                    } else {
                        // Redis may have handed out entries in a reply that
                        // was lost: they wait, pending, in the backlog.
                        backlog = true;
                        metrics::counter!("chat_redis_errors_total", "op" => "xreadgroup").increment(1);
                        tracing::warn!(error = %e, shard = self.shard, "reading commands failed");
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
            let mut ids = Vec::with_capacity(entries.len());
            let mut batch = Vec::with_capacity(entries.len());
            // Where a command's time goes between the gateway's XADD and its
            // reply (`chat_command_duration_seconds` on the gateway): waiting
            // in the stream, then each stage of its batch.
            let read_at = now_ms();
            // One registry look-up per batch, not per entry.
            let queue_wait = metrics::histogram!("chat_worker_queue_wait_seconds");
            for entry in &entries {
                if let Some(appended_at) = appended_at_ms(&entry.id) {
                    queue_wait.record(read_at.saturating_sub(appended_at).max(0) as f64 / 1000.0);
                }
                ids.push(entry.id.clone());
                let payload: Option<String> = entry.get("c");
                match payload.as_deref().map(serde_json::from_str::<CommandEnvelope>) {
                    Some(Ok(envelope)) => batch.push(envelope),
                    // Not ours to fix: acknowledge so it does not block the shard.
                    _ => tracing::error!(id = %entry.id, "undecodable command entry skipped"),
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
            let publishing = Instant::now();
            metrics::histogram!("chat_worker_stage_seconds", "stage" => "apply").record(publishing - applying);
            if !self.processor.publish_outcomes(&batch, results).await {
                // Re-read the pending entries: their redelivery publishes again.
                backlog = true;
                continue;
            }
            let acking = Instant::now();
            metrics::histogram!("chat_worker_stage_seconds", "stage" => "publish").record(acking - publishing);
            let mut commands = self.commands.clone();
            let acked: Result<i64, _> =
                redis::cmd("XACK").arg(&stream).arg(GROUP).arg(&ids).query_async(&mut commands).await;
            metrics::histogram!("chat_worker_stage_seconds", "stage" => "ack").record(acking.elapsed());
            if let Err(e) = acked {
                metrics::counter!("chat_redis_errors_total", "op" => "xack").increment(1);
                tracing::warn!(error = %e, shard = self.shard, "acknowledging failed; entries will be redelivered");
                backlog = true;
            }
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
        _ = tokio::time::sleep(duration) => false,
        _ = stop.cancelled() => true,
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
