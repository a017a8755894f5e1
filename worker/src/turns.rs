//! Whose turn the store's housekeeping is. Every worker runs it once a
//! minute, and it is safe for several to run at once (its deletes are
//! idempotent), but each round costs the database its bound queries
//! whether or not anything is left to delete: with twenty workers, twenty
//! scans of the chats a minute where one does. So in a cluster a worker
//! takes its turn by claiming a key in Redis for most of the period; the
//! others' rounds find it held and pass. The claim is renewed when the
//! round ends, so the next round starts that long after this one ended
//! rather than after it started, whoever runs it.
//!
//! Redis failing does not stop the housekeeping: a worker that cannot ask
//! runs its round, as before there were turns. A round that outlasts its
//! claim (a first prune of millions of events) may meet another worker's:
//! the cost is the duplicated bound queries, never a wrong delete.

use std::time::Duration;

use shared::bus::redis_connection::RedisConnection;

use crate::lease::RENEW;

pub enum Turns {
    /// Standalone: the one process's every round.
    Every,
    /// A cluster: the round of whichever worker claims the key first.
    Claimed(Claim),
}

pub struct Claim {
    redis: RedisConnection,
    key: String,
    holder: String,
    hold: Duration,
}

impl Claim {
    /// Turns claimed on `key` by `holder`, each held for `hold`: a little
    /// less than the period, so that the worker whose round came first
    /// keeps coming first and rounds do not drift apart by a whole period.
    pub fn new(redis: RedisConnection, key: String, holder: String, hold: Duration) -> Claim {
        Claim { redis, key, holder, hold }
    }
}

impl Turns {
    /// Whether this round is ours to run.
    pub async fn take(&self) -> bool {
        let Turns::Claimed(claim) = self else { return true };
        let mut redis = claim.redis.clone();
        let taken: Result<Option<String>, redis::RedisError> = redis::cmd("SET")
            .arg(&claim.key)
            .arg(&claim.holder)
            .arg("NX")
            .arg("PX")
            .arg(millis(claim.hold))
            .query_async(&mut redis)
            .await;
        match taken {
            Ok(answer) => answer.is_some(),
            Err(e) => {
                metrics::counter!("chat_redis_errors_total", "op" => "housekeeping").increment(1);
                tracing::warn!(error = %e, "could not claim the housekeeping's turn; running the round anyway");
                true
            }
        }
    }

    /// After a round: the claim holds for another `hold` from now, if it
    /// is still ours.
    pub async fn done(&self) {
        let Turns::Claimed(claim) = self else { return };
        let mut redis = claim.redis.clone();
        let renewed: Result<i64, redis::RedisError> = redis::Script::new(RENEW)
            .key(&claim.key)
            .arg(&claim.holder)
            .arg(millis(claim.hold))
            .invoke_async(&mut redis)
            .await;
        if let Err(e) = renewed {
            metrics::counter!("chat_redis_errors_total", "op" => "housekeeping").increment(1);
            tracing::warn!(error = %e, "could not renew the housekeeping's turn; another worker may take it sooner");
        }
    }
}

fn millis(hold: Duration) -> u64 {
    u64::try_from(hold.as_millis()).unwrap_or(u64::MAX).max(1)
}
