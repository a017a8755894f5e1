//! The worker process in a cluster: holds a fair share of the shard leases
//! and runs a [`ShardConsumer`] per owned shard, unless its database does
//! not answer while another worker's does ([`crate::stand_aside`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use shared::bus::group_info::workers_group;
use shared::bus::keys::{Keys, GROUP};
use shared::bus::redis::RedisBroker;
use shared::bus::redis_connection::RedisConnection;
use shared::health::Health;
use shared::store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::group_commit::{GroupCommit, Hold};
use crate::lease::{fair_share, preference, surplus, RELEASE, RENEW};
use crate::processor::Processor;
use crate::stand_aside::{StandAside, Turn};
use crate::stray_entries::{claim_for, oldest_pending, StrayWatch};
use crate::stream::ShardConsumer;
use crate::stream_trim::trim_applied;

pub struct Worker {
    pub id: String,
    pub keys: Keys,
    pub redis_url: String,
    pub lease_ttl_ms: u64,
    /// See [`crate::group_commit::Hold`].
    pub commit_hold: Hold,
    pub store: Store,
    pub redis: RedisConnection,
    /// Whether the database answered lately ([`Health::watch`]).
    pub health: Arc<Health>,
    /// `UNREACHABLE_GRACE_MS`: how long the database must fail every check
    /// before the worker stands aside, and answer before it comes back.
    pub unreachable_grace_ms: u64,
}

struct Owned {
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// Asks the consumer to read its backlog once more
    /// ([`crate::stray_entries`]).
    reread_backlog: Arc<AtomicBool>,
    strays: StrayWatch,
}

impl Worker {
    /// Runs until `stop`; then stops its consumers (each finishes and
    /// acknowledges its batch in hand) and releases its leases so another
    /// worker takes over at once rather than after the TTL.
    pub async fn run(self, stop: CancellationToken) {
        let broker = RedisBroker::new(&self.redis_url, self.redis.clone(), self.keys.clone());
        let processor = Processor::with_redelivery(self.store.clone());
        let mut committer = GroupCommit::start(processor.clone(), self.commit_hold);
        let mut owned: BTreeMap<u32, Owned> = BTreeMap::new();
        let mut ticker = tokio::time::interval(self.round());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(worker = %self.id, shards = self.keys.shards(), "worker started");
        // Shown from the start, so that a first re-read is an increase.
        metrics::counter!("chat_stream_backlog_rereads_total").absolute(0);
        let mut stand = StandAside::new(self.unreachable_grace_ms);
        // From the last lease round: when another live worker's database
        // last answered it (ms since the epoch).
        let mut others_answered_at = 0;
        loop {
            // Stop first: after a slow round the next tick is due at once,
            // and a stopping worker should not start another (see
            // `shared::periodic`).
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let failing_ms = self.health.database_failing_for_ms();
            // Another worker reaches its database if it answered after
            // this one's stopped answering: a value read a round ago, or
            // written before an outage that took every worker's, does not
            // count (older releases wrote 1, which never does).
            let failing_since = self.health.database_failing_since_ms();
            let others_reach = failing_since > 0 && others_answered_at > failing_since;
            let turn = stand.turn(failing_ms, self.health.database_answering_for_ms(), others_reach);
            match turn {
                Turn::SteppingAside => {
                    tracing::warn!(
                        worker = %self.id,
                        shards = owned.len(),
                        failing_ms,
                        "the database does not answer, and another worker's does: giving the shards up to the \
                         workers that reach it"
                    );
                    // Consumers waiting on the committer get their answer
                    // (`Stopped`) at once, and its transaction is dropped:
                    // left running it would wait out the store's deadline.
                    for consumer in owned.values() {
                        consumer.stop.cancel();
                    }
                    committer.abandon();
                    committer = GroupCommit::start(processor.clone(), self.commit_hold);
                }
                Turn::HoldingAlone => tracing::warn!(
                    worker = %self.id,
                    failing_ms,
                    "the database does not answer, nor does any other worker's: keeping the shards"
                ),
                Turn::Rejoining => {
                    tracing::info!(worker = %self.id, "the database answers again; taking a share of the shards")
                }
                Turn::Holding | Turn::Aside => {}
            }
            if matches!(turn, Turn::SteppingAside | Turn::Aside) {
                // A batch in hand waits for a database that does not answer:
                // it is abandoned, pending, for the next owner to apply.
                let until = tokio::time::Instant::now() + self.round();
                if let Err(e) = self.leave(&mut owned, Some(until)).await {
                    metrics::counter!("chat_redis_errors_total", "op" => "lease").increment(1);
                    tracing::warn!(error = %e, "could not leave the live workers; the liveness key lapses by itself");
                }
            } else {
                match self.rebalance(&mut owned, &processor, &committer, &broker).await {
                    Ok(answered_at) => others_answered_at = answered_at,
                    Err(e) => {
                        metrics::counter!("chat_redis_errors_total", "op" => "lease").increment(1);
                        tracing::warn!(error = %e, "lease round failed; keeping current shards");
                    }
                }
            }
            metrics::gauge!("chat_worker_owned_shards").set(owned.len() as f64);
            self.report_streams(&mut owned).await;
        }
        // Each consumer finishes the batch in hand before its lease goes.
        let _ = self.leave(&mut owned, None).await;
        tracing::info!(worker = %self.id, "worker stopped; shards released");
    }

    /// A lease round's period: a third of the lease's TTL.
    fn round(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms / 3)
    }

    /// Gives every shard up and leaves the live workers, whose fair shares
    /// then cover its shards. The consumers are stopped all at once, and
    /// each lease is released as its consumer finishes the batch in hand,
    /// or at `until`.
    async fn leave(
        &self,
        owned: &mut BTreeMap<u32, Owned>,
        until: Option<tokio::time::Instant>,
    ) -> redis::RedisResult<()> {
        for consumer in owned.values() {
            consumer.stop.cancel();
        }
        let shards: Vec<u32> = owned.keys().copied().collect();
        for shard in shards {
            self.give_up(owned, shard, until).await;
        }
        let mut redis = self.redis.clone();
        let _: () = redis.del(self.keys.worker_alive(&self.id)).await?;
        redis.srem(self.keys.workers(), &self.id).await
    }

    /// One lease round. Returns when another live worker's database last
    /// answered it (ms since the epoch; 0 for none).
    async fn rebalance(
        &self,
        owned: &mut BTreeMap<u32, Owned>,
        processor: &Processor,
        committer: &GroupCommit,
        broker: &RedisBroker,
    ) -> redis::RedisResult<i64> {
        let mut redis = self.redis.clone();
        let ttl = self.lease_ttl_ms;
        // The liveness key's value: when this worker's database last
        // answered it (older releases wrote 1).
        let _: () = redis
            .set_options(
                self.keys.worker_alive(&self.id),
                self.health.database_answered_at_ms(),
                redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ttl)),
            )
            .await?;
        let _: () = redis.sadd(self.keys.workers(), &self.id).await?;
        let workers: Vec<String> = redis.smembers(self.keys.workers()).await?;
        let mut live = 0;
        let mut others_answered_at = 0;
        for worker in workers {
            let answered_at: Option<String> = redis.get(self.keys.worker_alive(&worker)).await?;
            match answered_at {
                Some(answered_at) => {
                    live += 1;
                    if worker != self.id {
                        others_answered_at = others_answered_at.max(answered_at.parse().unwrap_or(0));
                    }
                }
                None => {
                    // Only the worker whose removal took it out says so:
                    // the others find it gone.
                    let removed: i64 = redis.srem(self.keys.workers(), &worker).await?;
                    if removed > 0 && worker != self.id {
                        metrics::counter!("chat_workers_lapsed_total").increment(1);
                        tracing::warn!(
                            worker = %worker,
                            "a worker stopped renewing its liveness without leaving (killed, or stalled past \
                             the lease); the shards it held are taken over as their leases lapse"
                        );
                    }
                }
            }
        }
        // Renew what we hold; a lease found lost means another worker owns
        // the shard now: stop consuming it.
        let renew = redis::Script::new(RENEW);
        let held: Vec<u32> = owned.keys().copied().collect();
        for shard in held {
            let renewed: i64 =
                renew.key(self.keys.shard_lease(shard)).arg(&self.id).arg(ttl).invoke_async(&mut redis).await?;
            if renewed == 0 {
                tracing::warn!(shard, "lease lost");
                if let Some(lost) = owned.remove(&shard) {
                    lost.stop.cancel();
                }
            }
        }
        let target = fair_share(self.keys.shards(), live);
        let owned_set: BTreeSet<u32> = owned.keys().copied().collect();
        for shard in surplus(&owned_set, target) {
            self.give_up(owned, shard, None).await;
        }
        for shard in preference(&self.id, self.keys.shards()) {
            if owned.len() >= target {
                break;
            }
            if owned.contains_key(&shard) {
                continue;
            }
            let taken: Option<String> = redis::cmd("SET")
                .arg(self.keys.shard_lease(shard))
                .arg(&self.id)
                .arg("NX")
                .arg("PX")
                .arg(ttl)
                .query_async(&mut redis)
                .await?;
            if taken.is_some() {
                let stop = CancellationToken::new();
                let reread_backlog = Arc::new(AtomicBool::new(false));
                let consumer = ShardConsumer {
                    shard,
                    worker: self.id.clone(),
                    keys: self.keys.clone(),
                    processor: processor.clone(),
                    committer: committer.clone(),
                    broker: broker.clone(),
                    commands: self.redis.clone(),
                    redis_url: self.redis_url.clone(),
                    reread_backlog: reread_backlog.clone(),
                };
                let task = tokio::spawn(consumer.run(stop.clone()));
                owned.insert(shard, Owned { stop, task, reread_backlog, strays: StrayWatch::default() });
            }
        }
        Ok(others_answered_at)
    }

    /// Trims what the streams this worker owns no longer need
    /// ([`crate::stream_trim`]), has their consumers read again what was
    /// handed out past them ([`crate::stray_entries`]), then reports their
    /// length, pending entries and consumer lag; a shard it gave up reads 0
    /// here, so sums over workers count each stream once.
    async fn report_streams(&self, owned: &mut BTreeMap<u32, Owned>) {
        let mut redis = self.redis.clone();
        // The round renews the leases: past a sixth of their TTL, each
        // stream gets one trim call at most, and the rest waits a round.
        let trim_until = Instant::now() + Duration::from_millis(self.lease_ttl_ms / 6);
        for shard in 0..self.keys.shards() {
            let label = shard.to_string();
            let Some(consumer) = owned.get_mut(&shard) else {
                for name in ["chat_stream_length", "chat_stream_pending", "chat_stream_lag"] {
                    metrics::gauge!(name, "shard" => label.clone()).set(0.0);
                }
                continue;
            };
            let stream = self.keys.command_stream(shard);
            if let Err(e) = trim_applied(&mut redis, &stream, GROUP, trim_until).await {
                // A stream whose group its consumer has yet to create has
                // nothing applied to trim.
                if e.code() != Some("NOGROUP") {
                    metrics::counter!("chat_redis_errors_total", "op" => "trim").increment(1);
                    tracing::warn!(error = %e, shard, "could not trim the applied commands off the stream");
                }
            }
            let mut request = redis::pipe();
            request.ignore_errors();
            request.xlen(&stream).cmd("XINFO").arg("GROUPS").arg(&stream).cmd("XPENDING").arg(&stream).arg(GROUP);
            let replies: Vec<redis::Value> = request.query_async(&mut redis).await.unwrap_or_default();
            let reply = |at: usize| replies.get(at).unwrap_or(&redis::Value::Nil);
            let (length, groups, pending) = (reply(0), reply(1), reply(2));
            let oldest = oldest_pending(pending);
            if consumer.strays.still_pending(oldest.clone()) {
                let consumer_name = self.keys.shard_consumer(shard);
                if let Err(e) = claim_for(&mut redis, &stream, &consumer_name, self.round()).await {
                    metrics::counter!("chat_redis_errors_total", "op" => "claim").increment(1);
                    tracing::warn!(error = %e, shard, "could not claim the shard's stray entries");
                }
                consumer.reread_backlog.store(true, Ordering::Relaxed);
                metrics::counter!("chat_stream_backlog_rereads_total").increment(1);
                let entry = oldest.as_deref().unwrap_or_default();
                if consumer.strays.first_report() {
                    tracing::warn!(
                        shard,
                        entry,
                        "an entry has stayed pending for a lease round (astray, or in a batch retrying the \
                         store); the shard's backlog is read again"
                    );
                } else {
                    tracing::debug!(shard, entry, "the same entry is still pending; the backlog is read again");
                }
            }
            let group = workers_group(groups);
            let number = |field: &str| group.as_ref().and_then(|g| g.count(field)).unwrap_or(0) as f64;
            let length = if let redis::Value::Int(n) = length { *n } else { 0 };
            metrics::gauge!("chat_stream_length", "shard" => label.clone()).set(length as f64);
            metrics::gauge!("chat_stream_pending", "shard" => label.clone()).set(number("pending"));
            metrics::gauge!("chat_stream_lag", "shard" => label).set(number("lag"));
        }
    }

    /// Stops consuming `shard` (after its batch in hand, or at `until`) and
    /// releases it. A consumer cut short leaves its batch pending, and the
    /// next owner applies it once, as after a kill.
    async fn give_up(&self, owned: &mut BTreeMap<u32, Owned>, shard: u32, until: Option<tokio::time::Instant>) {
        let Some(Owned { stop, mut task, .. }) = owned.remove(&shard) else { return };
        stop.cancel();
        match until {
            None => {
                let _ = task.await;
            }
            Some(until) => {
                if tokio::time::timeout_at(until, &mut task).await.is_err() {
                    task.abort();
                    let _ = task.await;
                }
            }
        }
        let mut redis = self.redis.clone();
        let released: Result<i64, _> =
            redis::Script::new(RELEASE).key(self.keys.shard_lease(shard)).arg(&self.id).invoke_async(&mut redis).await;
        if let Err(e) = released {
            tracing::warn!(error = %e, shard, "could not release the lease; it expires by itself");
        }
    }
}
