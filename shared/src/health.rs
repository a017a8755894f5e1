//! Readiness: a process is ready while the database (and Redis, in a
//! cluster) answered within the last `grace`. A checker task pings them
//! every second; a blip shorter than the grace does not flap readiness, an
//! outage longer than it takes the process out of rotation.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::redis_connection::RedisConnection;
use crate::clock::now_ms;
use crate::store::Store;

pub const DEFAULT_UNREACHABLE_GRACE_MS: u64 = 10_000;
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A ping unanswered this long failed. Unbounded, a ping sent to a
/// database that went silent would wait until TCP gave up, minutes after
/// the database was back, and readiness would stay 503 all that time.
const PING_LIMIT: Duration = Duration::from_secs(2);

pub struct Health {
    grace_ms: i64,
    database_ok_at: AtomicI64,
    /// Since when every check of the database failed, or 0 while the last
    /// one answered; and the reverse. For a state held over several checks
    /// (a worker standing aside, and back), where one answer among misses,
    /// or a check that ran late, must not count.
    database_failing_since: AtomicI64,
    database_answering_since: AtomicI64,
    /// `None`-like: `i64::MAX` when there is no Redis to check.
    redis_ok_at: AtomicI64,
    stopping: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub stopping: bool,
    pub database: bool,
    pub redis: bool,
}

impl Readiness {
    /// The HTTP status and JSON body of `/readyz`.
    pub fn response(&self) -> (u16, serde_json::Value) {
        let status = if self.ready { 200 } else { 503 };
        let body = serde_json::json!({
            "ready": self.ready, "stopping": self.stopping, "database": self.database, "redis": self.redis,
        });
        (status, body)
    }
}

impl Health {
    pub fn new(grace_ms: u64, with_redis: bool) -> Arc<Self> {
        let now = now_ms();
        Arc::new(Health {
            grace_ms: grace_ms as i64,
            database_ok_at: AtomicI64::new(now),
            database_failing_since: AtomicI64::new(0),
            database_answering_since: AtomicI64::new(now),
            redis_ok_at: AtomicI64::new(if with_redis { now } else { i64::MAX }),
            stopping: AtomicBool::new(false),
        })
    }

    /// From now on the process is not ready (draining or stopping).
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub fn readiness(&self) -> Readiness {
        let now = now_ms();
        let fresh = |at: &AtomicI64| {
            let at = at.load(Ordering::Acquire);
            at == i64::MAX || now.saturating_sub(at) <= self.grace_ms
        };
        let database = fresh(&self.database_ok_at);
        let redis = fresh(&self.redis_ok_at);
        let stopping = self.stopping.load(Ordering::Acquire);
        Readiness { ready: !stopping && database && redis, stopping, database, redis }
    }

    /// Pings the store (and Redis) every second until `stop`; a check in
    /// progress when `stop` comes is dropped, since nothing waits for its
    /// answer any more.
    pub async fn watch(self: Arc<Self>, store: Store, redis: Option<RedisConnection>, stop: CancellationToken) {
        crate::periodic::every_until_stopped(CHECK_EVERY, stop, || {
            let (health, store, redis) = (self.clone(), store.clone(), redis.clone());
            async move {
                health.check(&store, redis).await;
                ControlFlow::Continue(())
            }
        })
        .await
    }

    /// How long every check of the database has failed (0 while the last
    /// one answered).
    pub fn database_failing_for_ms(&self) -> i64 {
        since(&self.database_failing_since)
    }

    /// When the first of the checks failing in a row began (ms since the
    /// epoch), or 0 while the last one answered.
    pub fn database_failing_since_ms(&self) -> i64 {
        self.database_failing_since.load(Ordering::Acquire)
    }

    /// When the last check the database answered began (ms since the
    /// epoch; the process's start before the first check).
    pub fn database_answered_at_ms(&self) -> i64 {
        self.database_ok_at.load(Ordering::Acquire)
    }

    /// How long every check of the database has answered (0 while the last
    /// one failed).
    pub fn database_answering_for_ms(&self) -> i64 {
        since(&self.database_answering_since)
    }

    async fn check(&self, store: &Store, redis: Option<RedisConnection>) {
        // Timed from its start: a ping into a silent path fails only at
        // its 2 s limit, and the outage began before it was sent.
        let started = now_ms();
        let answered = store.ping_within(PING_LIMIT).await;
        let failing_since = self.database_failing_since.load(Ordering::Acquire);
        self.database_checked(answered, started);
        // One line when an outage starts, with its cause, and one when it
        // ends: the store's own errors say "pool timed out" (found carried
        // for many sessions as a runtime error that hides its cause).
        match (answered, failing_since) {
            (false, 0) => {
                let store = store.clone();
                tokio::spawn(async move {
                    let cause = store.why_unreachable().await.unwrap_or_else(|| "it takes new connections".into());
                    tracing::warn!(%cause, "the database does not answer its health check");
                });
            }
            (true, since) if since > 0 => {
                tracing::info!(after_ms = started.saturating_sub(since), "the database answers its health check again");
            }
            _ => {}
        }
        if let Some(mut redis) = redis {
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut redis).await;
            if pong.is_ok() {
                self.redis_ok_at.store(now_ms(), Ordering::Release);
            }
        }
    }

    fn database_checked(&self, answered: bool, now: i64) {
        let (this, other) = if answered {
            self.database_ok_at.store(now, Ordering::Release);
            (&self.database_answering_since, &self.database_failing_since)
        } else {
            (&self.database_failing_since, &self.database_answering_since)
        };
        let _ = this.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        other.store(0, Ordering::Release);
    }
}

fn since(at: &AtomicI64) -> i64 {
    match at.load(Ordering::Acquire) {
        0 => 0,
        at => now_ms().saturating_sub(at).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failed_or_answered_checks_is_timed_from_its_first() {
        let health = Health::new(1_000, false);
        assert!(health.database_answering_for_ms() >= 1, "answering from the start");
        health.database_checked(false, now_ms() - 5_000);
        health.database_checked(false, now_ms() - 1_000);
        assert_eq!(health.database_answering_for_ms(), 0);
        assert!(health.database_failing_for_ms() >= 5_000, "from the first miss, not the last");
        health.database_checked(true, now_ms());
        assert_eq!(health.database_failing_for_ms(), 0, "one answer ends the run");
        assert!(health.database_answering_for_ms() >= 1);
    }

    #[test]
    fn readiness_follows_stopping_and_staleness() {
        let health = Health::new(1_000, true);
        assert!(health.readiness().ready);
        health.redis_ok_at.store(now_ms() - 5_000, Ordering::Release);
        assert_eq!(health.readiness(), Readiness { ready: false, stopping: false, database: true, redis: false });
        let standalone = Health::new(1_000, false);
        standalone.stopping();
        assert_eq!(standalone.readiness(), Readiness { ready: false, stopping: true, database: true, redis: true });
    }
}
