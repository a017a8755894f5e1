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
//! announces online again those of them it still holds. Until then it
//! counts nothing in Redis (a departure would meet no count of its own
//! and could take a user online elsewhere to a total of 0); the count
//! written back holds such changes, and a user whose state they changed
//! is announced from the counts afterwards. A node restarting
//! under the same `NODE_ID` reaps its own previous entries before taking
//! connections.
//!
//! Each transition decided is recorded as its user's last, with its
//! number and time. That tells a node writing back whom co-members last
//! heard go offline, a node holding a transition not yet announced
//! whether its opposite came straight after it (`pending.rs`), and
//! `GET /v1/presence` on any node when an offline user left. A transition that may
//! never have reached co-members (its announcement failed, or its change
//! was unanswered when Redis forgot everything) is not retried as such, as
//! a later one may have gone out elsewhere: the user's state is announced
//! again from the counts instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use shared::bus::keys::Keys;
use shared::bus::redis_connection::RedisConnection;
use shared::bus::CHAT_LIST_FORM;
use shared::clock::now_ms;
use shared::model::Millis;
use shared::sync::lock;
use tokio_util::sync::CancellationToken;

use super::scripts::{COUNT, REAP, RECOUNT, RESTORE};
use super::Presence;
use crate::fleet_forms::{form_of, FleetForms};

/// A node's lease lasts this long unless renewed; it is renewed every
/// second, and dead nodes are looked for every second, so a dead node's
/// users go offline within about this plus a second.
pub const NODE_LEASE: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_secs(1);
/// Answered changes' records cleared per command.
const FORGET_CHUNK: usize = 1_000;
/// Users' counts written back per round trip after Redis forgot the node.
const RESTORE_CHUNK: usize = 500;

/// How a transition was decided in Redis: the number to announce it under,
/// the number of the user's transition just before it, and its time (for
/// an `offline`, the latest departure of any of the user's connections,
/// which a retried change may not be).
#[derive(Debug, Clone, Copy)]
pub struct Decided {
    pub seq: u64,
    pub follows: u64,
    pub at: Millis,
}

/// Why a node is reaped (see [`REAP`]).
#[derive(Clone, Copy)]
enum Reaping {
    Dead,
    Previous,
    Rewrite,
}

impl Reaping {
    fn arg(self) -> &'static str {
        match self {
            Reaping::Dead => "dead",
            Reaping::Previous => "previous",
            Reaping::Rewrite => "rewrite",
        }
    }
}

pub struct ClusterPresence {
    redis: RedisConnection,
    keys: Keys,
    prefix: String,
    node: String,
    /// Which shared-event form the live gateways read, as the last round
    /// found.
    forms: Arc<FleetForms>,
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
    /// Users whose state is to be announced again from their counts (see
    /// [`RECOUNT`]).
    recount: Mutex<HashMap<String, Recount>>,
}

/// A user's state to announce again.
#[derive(Clone, Copy)]
struct Recount {
    /// Not before this time.
    from: Millis,
    /// When the last change that may have gone unannounced happened: an
    /// `offline` found by the recount says the user was last seen then
    /// (rather than at the recount, seconds or minutes later).
    at: Millis,
    /// Announced only if not the state co-members last heard: every change
    /// to announce was one this node did not count, forgotten.
    only_if_changed: bool,
}

/// What came of counting a connection's arrival or departure.
enum Counted {
    /// Counted: the transition to announce, if any.
    Yes(Option<Decided>),
    /// Not counted: this node is forgotten until it writes its counts back.
    NotWhileForgotten,
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
            forms: Arc::new(FleetForms::unknown()),
            count: redis::Script::new(COUNT),
            counting: tokio::sync::RwLock::new(()),
            next_change: AtomicU64::new(0),
            answered: Mutex::new(Vec::new()),
            unanswered: Mutex::new(Vec::new()),
            recount: Mutex::new(HashMap::new()),
        }
    }

    /// Applies (or, for a retried `change`, looks up) one connection's
    /// arrival or departure: the transition to announce if any (see
    /// [`COUNT`], whose totals only its own retry logic needs).
    async fn count(&self, user: &str, change: u64, connect: bool, at: Millis) -> redis::RedisResult<Counted> {
        let mut redis = self.redis.clone();
        let (_after, _now, seq, follows, decided_at, forgotten): (i64, i64, u64, u64, Millis, u8) = self
            .count
            .key(self.keys.online(user))
            .key(self.keys.node_users(&self.node))
            .key(self.keys.node_presence_ops(&self.node))
            .key(self.keys.presence_last(user))
            .key(self.keys.presence_seq())
            .key(self.keys.nodes())
            .arg(&self.node)
            .arg(user)
            .arg(change)
            .arg(if connect { 1 } else { -1 })
            .arg(at)
            .invoke_async(&mut redis)
            .await?;
        if forgotten == 1 {
            return Ok(Counted::NotWhileForgotten);
        }
        Ok(Counted::Yes((seq != 0).then_some(Decided { seq, follows, at: decided_at })))
    }

    /// Held while a connection changes its user's counts (see `counting`).
    pub async fn counting(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.counting.read().await
    }

    /// If this connection, opened at `at`, made the user online
    /// cluster-wide, the transition to announce.
    pub async fn connected(&self, user: &str, at: Millis) -> Option<Decided> {
        self.changed(user, true, at).await
    }

    /// If this disconnect, at `at`, made the user offline cluster-wide, the
    /// transition to announce.
    pub async fn disconnected(&self, user: &str, at: Millis) -> Option<Decided> {
        self.changed(user, false, at).await
    }

    /// Counts a connection in or out; if that moved the user's total across
    /// zero, the transition to announce. A change whose answer is lost
    /// counts as no transition for now:
    /// [`ClusterPresence::retry_unanswered`] settles it.
    async fn changed(&self, user: &str, connect: bool, at: Millis) -> Option<Decided> {
        let change = self.next_change.fetch_add(1, Ordering::Relaxed);
        match self.count(user, change, connect, at).await {
            Ok(Counted::Yes(decided)) => {
                lock(&self.answered).push(change);
                decided
            }
            Ok(Counted::NotWhileForgotten) => {
                self.recount_once_back(user, at);
                None
            }
            Err(e) => {
                metrics::counter!("chat_redis_errors_total", "op" => "presence").increment(1);
                tracing::warn!(error = %e, "presence change unanswered; retrying it every second");
                lock(&self.unanswered).push(Unanswered { change, user: user.to_owned(), connect, at });
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
            match self.count(&lost.user, lost.change, lost.connect, lost.at).await {
                Ok(Counted::Yes(decided)) => {
                    lock(&self.answered).push(lost.change);
                    if let Some(decided) = decided {
                        presence.settled(&lost.user, lost.connect, decided.at, decided.seq, Some(decided.follows));
                    }
                }
                Ok(Counted::NotWhileForgotten) => self.recount_once_back(&lost.user, lost.at),
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

    /// Has `users`' state announced again from their counts at the first
    /// round from `from` on: their last transition, made at the time given
    /// with each, may never have reached co-members.
    pub fn recount(&self, users: impl IntoIterator<Item = (String, Millis)>, from: Millis) {
        for (user, at) in users {
            self.recount_user(user, Recount { from, at, only_if_changed: false });
        }
    }

    /// Has `user`'s state announced from the counts, if it is not what
    /// co-members last heard, once this node has written its counts back:
    /// a change of theirs made at `at` was not counted, this node being
    /// forgotten ([`COUNT`]). Not before the other gateways, which Redis
    /// may have forgotten too, have had time to write theirs back.
    fn recount_once_back(&self, user: &str, at: Millis) {
        let from = now_ms() + NODE_LEASE.as_millis() as Millis;
        self.recount_user(user.to_owned(), Recount { from, at, only_if_changed: true });
    }

    fn recount_user(&self, user: String, asked: Recount) {
        let mut recount = lock(&self.recount);
        let waiting = recount.entry(user).or_insert(asked);
        *waiting = Recount {
            from: waiting.from.min(asked.from),
            at: waiting.at.max(asked.at),
            only_if_changed: waiting.only_if_changed && asked.only_if_changed,
        };
    }

    /// Announces the state of the users whose recount is due. They are
    /// taken out first, so that a recount asked for meanwhile (another
    /// announcement failed) waits for the next round, and put back if
    /// Redis does not answer.
    async fn recount_due(&self, presence: &Presence) -> redis::RedisResult<()> {
        let now = now_ms();
        let due: Vec<(String, Recount)> = {
            let mut recount = lock(&self.recount);
            let users: Vec<String> =
                recount.iter().filter(|(_, r)| r.from <= now).map(|(user, _)| user.clone()).collect();
            users.into_iter().filter_map(|user| recount.remove(&user).map(|r| (user, r))).collect()
        };
        if due.is_empty() {
            return Ok(());
        }
        let script = redis::Script::new(RECOUNT);
        let mut announced = 0;
        for (n, chunk) in due.chunks(RESTORE_CHUNK).enumerate() {
            let states = self.per_user(&script, chunk, |invocation, (user, r)| {
                invocation.key(self.keys.online(user)).key(self.keys.presence_last(user)).key(self.keys.presence_seq());
                invocation.arg(r.at).arg(u8::from(r.only_if_changed));
            });
            let states: Vec<(u8, u64, u64, Millis)> = match states.await {
                Ok(states) => states,
                Err(e) => {
                    for (user, r) in &due[n * RESTORE_CHUNK..] {
                        self.recount_user(user.clone(), Recount { from: now, ..*r });
                    }
                    return Err(e);
                }
            };
            for ((user, _), (online, seq, follows, at)) in chunk.iter().zip(states) {
                if seq != 0 {
                    presence.settled(user, online == 1, at, seq, Some(follows));
                    announced += 1;
                }
            }
        }
        // A recount asked only in case a state changed may announce
        // nothing: after a stall, most of them.
        if announced > 0 {
            tracing::info!(users = announced, "presence announced again from the counts");
        }
        Ok(())
    }

    /// Runs `script` once per item of `items`, with the keys and arguments
    /// `invoke` gives it, in one round trip. The script is loaded first:
    /// Redis may have restarted empty since it last ran.
    async fn per_user<I, T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        items: &[I],
        invoke: impl Fn(&mut redis::ScriptInvocation<'_>, &I),
    ) -> redis::RedisResult<Vec<T>> {
        let mut pipeline = redis::pipe();
        pipeline.load_script(script).ignore();
        for item in items {
            let mut invocation = script.prepare_invoke();
            invoke(&mut invocation, item);
            pipeline.invoke_script(&invocation);
        }
        pipeline.query_async(&mut self.redis.clone()).await
    }

    /// Whether each of `users` has a connection anywhere and, for one who
    /// has none, when their last transition (an `offline`) happened if
    /// Redis still records it: in one round trip.
    pub async fn states_all(&self, users: &[String]) -> redis::RedisResult<Vec<(bool, Option<Millis>)>> {
        let mut pipeline = redis::pipe();
        for user in users {
            pipeline.hvals(self.keys.online(user));
            pipeline.cmd("HMGET").arg(self.keys.presence_last(user)).arg("o").arg("t");
        }
        let mut redis = self.redis.clone();
        let replies: Vec<redis::Value> = pipeline.query_async(&mut redis).await?;
        if replies.len() != 2 * users.len() {
            let answer = format!("{} replies for {} users", replies.len(), users.len());
            return Err((redis::ErrorKind::UnexpectedReturnType, "presence states", answer).into());
        }
        let mut replies = replies.into_iter();
        let mut states = Vec::with_capacity(users.len());
        while let (Some(counts), Some(last)) = (replies.next(), replies.next()) {
            let counts: Vec<i64> = redis::from_redis_value(counts)?;
            // A record this code did not write is no time at all, rather
            // than a failed request.
            let (direction, at): (Option<u8>, Option<Millis>) = redis::from_redis_value(last).unwrap_or((None, None));
            let online = counts.iter().sum::<i64>() > 0;
            states.push((online, at.filter(|_| !online && direction == Some(0))));
        }
        Ok(states)
    }

    /// The users `node`'s reaping left offline, and the number to announce
    /// them under.
    async fn reap(&self, node: &str, reaping: Reaping, at: Millis) -> redis::RedisResult<(u64, Vec<String>)> {
        let mut redis = self.redis.clone();
        redis::Script::new(REAP)
            .key(self.keys.node_users(node))
            .key(self.keys.nodes())
            .key(self.keys.node_alive(node))
            .key(self.keys.node_presence_ops(node))
            .key(self.keys.presence_seq())
            .arg(node)
            .arg(&self.prefix)
            .arg(reaping.arg())
            .arg(at)
            .invoke_async(&mut redis)
            .await
    }

    /// Clears what a previous process under this node's id left behind,
    /// at `at`; returns the users that leaves offline, and the number to
    /// announce them under.
    pub async fn reap_previous_self(&self, at: Millis) -> redis::RedisResult<(u64, Vec<String>)> {
        self.reap(&self.node, Reaping::Previous, at).await
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
    /// and announces online again the users it brings back whom co-members
    /// last heard go offline (this node's reaping, as it stalled past its
    /// lease, announced them so). A write-back that fails part way is
    /// started over, and may announce some of them twice.
    async fn write_counts_back(&self, presence: &Presence) -> redis::RedisResult<()> {
        let mut redis = self.redis.clone();
        self.reap(&self.node, Reaping::Rewrite, now_ms()).await?;
        let _: i64 = redis.sadd(self.keys.nodes(), &self.node).await?;
        let restore = redis::Script::new(RESTORE);
        let at = now_ms();
        let mut online_again = 0;
        for chunk in presence.local_counts().chunks(RESTORE_CHUNK) {
            let announce: Vec<(u64, u64)> = self
                .per_user(&restore, chunk, |invocation, (user, count)| {
                    invocation
                        .key(self.keys.online(user))
                        .key(self.keys.node_users(&self.node))
                        .key(self.keys.presence_last(user))
                        .key(self.keys.presence_seq());
                    invocation.arg(&self.node).arg(user).arg(*count).arg(at);
                })
                .await?;
            for ((user, _), (seq, follows)) in chunk.iter().zip(announce) {
                if seq != 0 {
                    presence.settled(user, true, at, seq, Some(follows));
                    online_again += 1;
                }
            }
        }
        if online_again > 0 {
            tracing::info!(users = online_again, "this gateway was forgotten; its users announced online again");
        }
        Ok(())
    }

    pub fn fleet_forms(&self) -> Arc<FleetForms> {
        self.forms.clone()
    }

    /// The other nodes Redis knows, each with its liveness key's value
    /// (`None`: its lease lapsed).
    async fn other_nodes(&self, redis: &mut RedisConnection) -> redis::RedisResult<Vec<(String, Option<String>)>> {
        let nodes: Vec<String> = redis.smembers(self.keys.nodes()).await?;
        let others: Vec<String> = nodes.into_iter().filter(|n| *n != self.node).collect();
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = others.iter().map(|node| self.keys.node_alive(node)).collect();
        let alive: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(redis).await?;
        Ok(others.into_iter().zip(alive).collect())
    }

    /// One lease round: renews this node's lease, writes its counts back
    /// if Redis forgot them, and reaps dead nodes. Run every second, and
    /// once before the node serves, so that it starts knowing the other
    /// gateways' forms.
    pub async fn tick(&self, presence: &Presence) -> redis::RedisResult<()> {
        let mut redis = self.redis.clone();
        let _: () = redis
            .set_options(
                self.keys.node_alive(&self.node),
                CHAT_LIST_FORM,
                redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(NODE_LEASE.as_millis() as u64)),
            )
            .await?;
        // Joined to the node set by the write-back only, under the lock
        // that keeps connections from counting: counted between a join
        // and the write-back, a departure would meet no count of this
        // node's and leave -1 (`COUNT`).
        let known: bool = redis.sismember(self.keys.nodes(), &self.node).await?;
        // The other nodes' keys first, so that a failure in the presence
        // work below does not leave the forms they read unread (an older
        // gateway's arrival unseen); an observation goes stale by itself.
        let others = self.other_nodes(&mut redis).await?;
        let forms = others.iter().filter_map(|(_, alive)| alive.as_deref());
        // A live node's key names the form it reads (`fleet_forms`).
        self.forms.observed(forms.map(form_of).fold(CHAT_LIST_FORM, u32::min), now_ms());
        if !known {
            // Redis forgot this node (it restarted empty, or reaped us after
            // a stall), or it is starting: put our users' counts back. No
            // connection changes its count meanwhile, or the count written
            // back would miss it or hold it twice. First clear whatever
            // Redis still holds of this node's: the counts restored are
            // the whole truth.
            let _restoring = self.counting.write().await;
            if let Err(e) = self.write_counts_back(presence).await {
                // Forgotten again, so that the next round starts over.
                let _: redis::RedisResult<i64> = redis.srem(self.keys.nodes(), &self.node).await;
                return Err(e);
            }
            // The counts just restored include every change made so far,
            // and Redis lost the records of those answered or not. But a
            // change still unanswered may have moved its user across zero,
            // unannounced: a user who connected while Redis was away, or
            // left then for good. Their state is announced from the counts
            // once the other gateways, which Redis may have forgotten too,
            // have had time to write theirs back.
            let unanswered = std::mem::take(&mut *lock(&self.unanswered));
            let from = now_ms() + NODE_LEASE.as_millis() as Millis;
            self.recount(unanswered.into_iter().map(|lost| (lost.user, lost.at)), from);
            lock(&self.answered).clear();
        } else {
            self.retry_unanswered(presence).await?;
            self.forget_answered().await?;
        }
        self.recount_due(presence).await?;
        // Read at the round's start: one that came back since is not
        // reaped, as the script looks again.
        for (node, alive) in others {
            if alive.is_none() {
                let at = now_ms();
                let (seq, gone) = self.reap(&node, Reaping::Dead, at).await?;
                if !gone.is_empty() {
                    tracing::info!(node, users = gone.len(), "reaped a dead gateway");
                }
                presence.reaped(gone, seq, at);
            }
        }
        Ok(())
    }
}
