//! Presence across gateways, in Redis. Per user, a hash of node -> open
//! connections on that node; per node, the set of its users; per node, a
//! lease key with a TTL that the node renews. The scripts below change a
//! count and report the user's total atomically, so exactly one node sees
//! each 0->1 and 1->0 transition.
//!
//! A change whose answer is lost (a timeout, a dropped connection) may or
//! may not have happened. Each change therefore carries an id, and the
//! script records its answer under it: the node retries the change every
//! second until Redis answers, and a retry of a change that happened
//! returns the recorded answer instead of counting it again. Until a
//! retried connect arrives, a later disconnect may leave a node's count at
//! -1 for the user; totals are sums, and online means a total above 0.
//!
//! A node whose lease lapsed died without a word: any live node reaps it
//! (atomically, so only one does), dropping its counts and announcing
//! offline for the users left with none. If it had only stalled, it finds
//! itself forgotten when it comes back, writes its counts back and
//! announces online again those of them it still holds. A node restarting
//! under the same `NODE_ID` reaps its own previous entries before taking
//! connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use shared::bus::keys::Keys;
use shared::bus::redis_connection::RedisConnection;
use shared::clock::now_ms;
use shared::model::Millis;
use shared::sync::lock;
use tokio_util::sync::CancellationToken;

use super::Presence;

/// A node's lease lasts this long unless renewed; it is renewed every
/// second, and dead nodes are looked for every second, so a dead node's
/// users go offline within about this plus a second.
pub const NODE_LEASE: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_secs(1);
/// Answered changes' records cleared per command.
const FORGET_CHUNK: usize = 1_000;
/// Users' counts written back per round trip after Redis forgot the node.
const RESTORE_CHUNK: usize = 500;

/// Defines `total(key)`: a user's total over every node, the sum of the
/// counts under `key`. Totals are sums because a node's count may be -1
/// until a retried connect arrives.
macro_rules! lua_total {
    () => {
        "local function total(key)
  local sum = 0
  for _, v in ipairs(redis.call('HVALS', key)) do sum = sum + tonumber(v) end
  return sum
end
"
    };
}

/// Defines `next_seq(key)`: the number of a transition about to be
/// announced, above every one taken before it cluster-wide (scripts run one
/// at a time). Redis's clock in microseconds, or one more than the last
/// number when that is ahead, so that numbers keep rising after a Redis
/// restart that lost the key; gateways remember numbers for minutes
/// (`presence/order.rs`). `string.format`, because Lua would write the
/// number in exponent notation, losing its last digits.
macro_rules! lua_next_seq {
    () => {
        "local function next_seq(key)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
  local seq = redis.call('INCR', key)
  if seq < now then
    redis.call('SET', key, string.format('%d', now))
    seq = now
  end
  return seq
end
"
    };
}

/// KEYS: the user's counts, the node's user set, the node's change records,
/// the users the node's reaping announced offline (a connect here that
/// makes the user online announces it, so the write-back must not again),
/// the presence sequence.
/// ARGV: node, user, change id, +1 or -1.
/// Returns {the user's total right after this change, the total now, the
/// number to announce it under}: the totals the same for a change made
/// now, different for one retried after others; the number 0 for a change
/// made now that moved no total across zero.
const COUNT: &str = concat!(
    lua_total!(),
    lua_next_seq!(),
    r#"
local done = redis.call('HGET', KEYS[3], ARGV[3])
if done then return {tonumber(done), total(KEYS[1]), next_seq(KEYS[5])} end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], tonumber(ARGV[4]))
if n == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[2])
else
  redis.call('SADD', KEYS[2], ARGV[2])
end
local after = total(KEYS[1])
redis.call('HSET', KEYS[3], ARGV[3], after)
if after == 1 and tonumber(ARGV[4]) == 1 then redis.call('SREM', KEYS[4], ARGV[2]) end
local crossed = (after == 1 and tonumber(ARGV[4]) == 1) or (after == 0 and tonumber(ARGV[4]) == -1)
return {after, after, crossed and next_seq(KEYS[5]) or 0}
"#
);

/// KEYS: the node's user set, the node set, the node's lease, the node's
/// change records, the users its reaping announced offline, the presence
/// sequence.
/// ARGV: node, key prefix, "force" to reap even with a live lease (a node
/// clearing its own entries, which announces nothing it must take back).
/// Returns {the number to announce them under, the users left with no
/// connection anywhere}.
const REAP: &str = concat!(
    lua_total!(),
    lua_next_seq!(),
    r#"
local others = ARGV[3] ~= 'force'
if others and redis.call('EXISTS', KEYS[3]) == 1 then return {0, {}} end
local gone = {}
for _, user in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2] .. 'online:' .. user
  redis.call('HDEL', key, ARGV[1])
  if total(key) <= 0 then
    table.insert(gone, user)
    if others then redis.call('SADD', KEYS[5], user) end
  end
end
if others and #gone > 0 then redis.call('EXPIRE', KEYS[5], 86400) end
redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[4])
redis.call('SREM', KEYS[2], ARGV[1])
if #gone == 0 then return {0, gone} end
return {next_seq(KEYS[6]), gone}
"#
);

/// Re-asserts this node's count for one user after Redis lost it (a
/// restart, or a reaping after a stall). KEYS: the user's counts, the
/// node's user set, the users the node's reaping announced offline, the
/// presence sequence.
/// ARGV: node, user, count. Returns the number to announce the user online
/// again under, if it must be: its reaping announced it offline, and no
/// node (this one included) has announced it online since; 0 otherwise.
const RESTORE: &str = concat!(
    lua_total!(),
    lua_next_seq!(),
    r#"
local before = total(KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
if before <= 0 and total(KEYS[1]) > 0 and redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 1 then
  return next_seq(KEYS[4])
end
return 0
"#
);

pub struct ClusterPresence {
    redis: RedisConnection,
    keys: Keys,
    prefix: String,
    node: String,
    count: redis::Script,
    /// Held (shared) by every connection while it changes its counts, here
    /// and in Redis; held alone while the counts are written back.
    counting: tokio::sync::RwLock<()>,
    next_change: AtomicU64,
    /// Changes Redis answered, whose records the next round clears.
    answered: Mutex<Vec<u64>>,
    /// Changes whose answer was lost, in the order they were made; each
    /// round retries them until Redis answers.
    unanswered: Mutex<Vec<Unanswered>>,
}

struct Unanswered {
    change: u64,
    user: String,
    connect: bool,
    at: Millis,
}

impl ClusterPresence {
    pub fn new(redis: RedisConnection, keys: Keys, prefix: &str, node: &str) -> Self {
        ClusterPresence {
            redis,
            keys,
            prefix: prefix.to_owned(),
            node: node.to_owned(),
            count: redis::Script::new(COUNT),
            counting: tokio::sync::RwLock::new(()),
            next_change: AtomicU64::new(0),
            answered: Mutex::new(Vec::new()),
            unanswered: Mutex::new(Vec::new()),
        }
    }

    /// Applies (or, for a retried `change`, looks up) one connection's
    /// arrival or departure: the user's total right after it, and now, and
    /// the number to announce it under (see [`COUNT`]).
    async fn count(&self, user: &str, change: u64, connect: bool) -> redis::RedisResult<(i64, i64, u64)> {
        let mut redis = self.redis.clone();
        self.count
            .key(self.keys.online(user))
            .key(self.keys.node_users(&self.node))
            .key(self.keys.node_presence_ops(&self.node))
            .key(self.keys.node_reaped(&self.node))
            .key(self.keys.presence_seq())
            .arg(&self.node)
            .arg(user)
            .arg(change)
            .arg(if connect { 1 } else { -1 })
            .invoke_async(&mut redis)
            .await
    }

    /// Held while a connection changes its user's counts (see `counting`).
    pub async fn counting(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.counting.read().await
    }

    /// If this connection made the user online cluster-wide, the number to
    /// announce it under.
    pub async fn connected(&self, user: &str) -> Option<u64> {
        self.changed(user, true).await
    }

    /// If this disconnect made the user offline cluster-wide, the number to
    /// announce it under.
    pub async fn disconnected(&self, user: &str) -> Option<u64> {
        self.changed(user, false).await
    }

    /// Counts a connection in or out; if that moved the user's total across
    /// zero, the number to announce it under. A change whose answer is lost
    /// counts as no transition for now:
    /// [`ClusterPresence::retry_unanswered`] settles it.
    async fn changed(&self, user: &str, connect: bool) -> Option<u64> {
        let change = self.next_change.fetch_add(1, Ordering::Relaxed);
        match self.count(user, change, connect).await {
            Ok((after, _, seq)) => {
                lock(&self.answered).push(change);
                (after == if connect { 1 } else { 0 }).then_some(seq)
            }
            Err(e) => {
                metrics::counter!("chat_redis_errors_total", "op" => "presence").increment(1);
                tracing::warn!(error = %e, "presence change unanswered; retrying it every second");
                lock(&self.unanswered).push(Unanswered { change, user: user.to_owned(), connect, at: now_ms() });
                None
            }
        }
    }

    /// Retries the changes whose answer was lost, in order, and announces
    /// those that moved their user across zero, unless a later change
    /// already moved the user back (its announcement went out instead).
    /// What is announced is the user's state now, so under a number taken
    /// now.
    async fn retry_unanswered(&self, presence: &Presence) -> redis::RedisResult<()> {
        let waiting = std::mem::take(&mut *lock(&self.unanswered));
        let mut waiting = waiting.into_iter();
        while let Some(lost) = waiting.next() {
            match self.count(&lost.user, lost.change, lost.connect).await {
                Ok((after, now, seq)) => {
                    lock(&self.answered).push(lost.change);
                    let target = if lost.connect { 1 } else { 0 };
                    if after == target && (now > 0) == lost.connect {
                        presence.settled(&lost.user, lost.connect, lost.at, seq);
                    }
                }
                Err(e) => {
                    // Keep the order: this one first, then the rest, then
                    // whatever failed meanwhile.
                    let mut unanswered = lock(&self.unanswered);
                    let later = std::mem::take(&mut *unanswered);
                    unanswered.push(lost);
                    unanswered.extend(waiting);
                    unanswered.extend(later);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Clears the records of answered changes: no retry will ask for them.
    async fn forget_answered(&self) -> redis::RedisResult<()> {
        let answered = std::mem::take(&mut *lock(&self.answered));
        let mut redis = self.redis.clone();
        for (n, chunk) in answered.chunks(FORGET_CHUNK).enumerate() {
            let forgotten: redis::RedisResult<i64> = redis.hdel(self.keys.node_presence_ops(&self.node), chunk).await;
            if let Err(e) = forgotten {
                lock(&self.answered).extend_from_slice(&answered[n * FORGET_CHUNK..]);
                return Err(e);
            }
        }
        Ok(())
    }

    pub async fn is_online(&self, user: &str) -> bool {
        let mut redis = self.redis.clone();
        let counts: redis::RedisResult<Vec<i64>> = redis.hvals(self.keys.online(user)).await;
        counts.map(|counts| counts.iter().sum::<i64>() > 0).unwrap_or(false)
    }

    /// The users `node`'s reaping left offline, and the number to announce
    /// them under.
    async fn reap(&self, node: &str, force: bool) -> redis::RedisResult<(u64, Vec<String>)> {
        let mut redis = self.redis.clone();
        redis::Script::new(REAP)
            .key(self.keys.node_users(node))
            .key(self.keys.nodes())
            .key(self.keys.node_alive(node))
            .key(self.keys.node_presence_ops(node))
            .key(self.keys.node_reaped(node))
            .key(self.keys.presence_seq())
            .arg(node)
            .arg(&self.prefix)
            .arg(if force { "force" } else { "" })
            .invoke_async(&mut redis)
            .await
    }

    /// Clears what a previous process under this node's id left behind;
    /// returns the users that leaves offline, and the number to announce
    /// them under.
    pub async fn reap_previous_self(&self) -> redis::RedisResult<(u64, Vec<String>)> {
        let gone = self.reap(&self.node, true).await?;
        // A previous life's users were reaped with it; none is here now.
        let mut redis = self.redis.clone();
        let _: i64 = redis.del(self.keys.node_reaped(&self.node)).await?;
        Ok(gone)
    }

    /// Renews this node's lease and reaps dead nodes, every second, until
    /// `stop`; then gives the lease up, for the others to reap what is left.
    pub async fn run(self: Arc<Self>, presence: Arc<Presence>, stop: CancellationToken) {
        let (this, presence) = (&*self, &*presence);
        shared::periodic::every(TICK, stop, move || async move {
            if let Err(e) = this.tick(presence).await {
                metrics::counter!("chat_redis_errors_total", "op" => "presence").increment(1);
                tracing::warn!(error = %e, "presence lease round failed");
            }
            std::ops::ControlFlow::Continue(())
        })
        .await;
        // Leaving: give the lease up and leave the rest to the other
        // gateways, which reap this node at their next round as they would
        // a dead one's. Its users have normally disconnected by now and
        // there is nothing left to reap; but a disconnect whose count
        // never reached Redis in the drain (a timeout), or a connection
        // cut short at exit, leaves a user counted here, and only reaping
        // takes that count back and announces the user offline. Deleting
        // the node's user list here, as before, left such a user online
        // for good.
        let mut redis = self.redis.clone();
        let _: redis::RedisResult<()> = redis.del(self.keys.node_alive(&self.node)).await;
    }

    /// Replaces whatever Redis holds for this node with its local counts,
    /// and announces online again the users whose reaping (this node
    /// stalled past its lease) announced them offline. A write-back that
    /// fails part way is started over, and may announce some of them twice.
    async fn write_counts_back(&self, presence: &Presence) -> redis::RedisResult<()> {
        let mut redis = self.redis.clone();
        self.reap(&self.node, true).await?;
        let _: i64 = redis.sadd(self.keys.nodes(), &self.node).await?;
        let restore = redis::Script::new(RESTORE);
        let at = now_ms();
        let mut online_again = 0;
        for chunk in presence.local_counts().chunks(RESTORE_CHUNK) {
            let mut pipeline = redis::pipe();
            pipeline.load_script(&restore).ignore();
            for (user, count) in chunk {
                let mut invocation = restore.prepare_invoke();
                invocation
                    .key(self.keys.online(user))
                    .key(self.keys.node_users(&self.node))
                    .key(self.keys.node_reaped(&self.node))
                    .key(self.keys.presence_seq());
                invocation.arg(&self.node).arg(user).arg(*count);
                pipeline.invoke_script(&invocation);
            }
            let announce: Vec<u64> = pipeline.query_async(&mut redis).await?;
            for ((user, _), seq) in chunk.iter().zip(announce) {
                if seq != 0 {
                    presence.settled(user, true, at, seq);
                    online_again += 1;
                }
            }
        }
        let _: i64 = redis.del(self.keys.node_reaped(&self.node)).await?;
        if online_again > 0 {
            tracing::info!(users = online_again, "this gateway was reaped; its users announced online again");
        }
        Ok(())
    }

    async fn tick(&self, presence: &Presence) -> redis::RedisResult<()> {
        let mut redis = self.redis.clone();
        let _: () = redis
            .set_options(
                self.keys.node_alive(&self.node),
                1,
                redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(NODE_LEASE.as_millis() as u64)),
            )
            .await?;
        let added: i64 = redis.sadd(self.keys.nodes(), &self.node).await?;
        if added == 1 {
            // Redis forgot this node (it restarted empty, or reaped us after
            // a stall): put our users' counts back. No connection changes
            // its count meanwhile, or the count written back would miss it
            // or hold it twice. First clear what a change made since (a
            // departure counted after a reaping leaves -1): the counts
            // restored are the whole truth. Those it leaves offline have no
            // connection here and were announced offline by whoever reaped
            // us; those it brings back are announced online again.
            let _restoring = self.counting.write().await;
            if let Err(e) = self.write_counts_back(presence).await {
                // Forgotten again, so that the next round starts over.
                let _: redis::RedisResult<i64> = redis.srem(self.keys.nodes(), &self.node).await;
                return Err(e);
            }
            // The counts just restored include every change made so far,
            // and Redis lost the records of those answered or not.
            lock(&self.unanswered).clear();
            lock(&self.answered).clear();
        } else {
            self.retry_unanswered(presence).await?;
            self.forget_answered().await?;
        }
        let nodes: Vec<String> = redis.smembers(self.keys.nodes()).await?;
        for node in nodes.into_iter().filter(|n| *n != self.node) {
            let alive: bool = redis.exists(self.keys.node_alive(&node)).await?;
            if !alive {
                let (seq, gone) = self.reap(&node, false).await?;
                if !gone.is_empty() {
                    tracing::info!(node, users = gone.len(), "reaped a dead gateway");
                }
                presence.reaped(gone, seq);
            }
        }
        Ok(())
    }
}
