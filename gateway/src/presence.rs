//! Presence (PROTOCOL.md 6): a user is online while they have at least one
//! connection anywhere. Connection counts change on the connection path;
//! whoever moves a user's count from 0 to 1 (or 1 to 0) announces `online`
//! (or `offline`) to everyone who shares a chat with the user: the event
//! names the user's chats, and each node tells the members it holds.
//!
//! Standalone counts in memory. A cluster counts in Redis ([`cluster`]),
//! where each node also holds a lease, and a node whose lease lapsed (it
//! died without a word) is reaped by the others: its users' counts drop
//! and those who went to zero are announced offline.
//!
//! Announcements go through one task per node, from a map of pending
//! transitions rather than a queue: a transition cancelled by its opposite
//! before it went out (a flapping connection) is dropped, so the input is
//! bounded by the number of users and order follows the real state. The
//! task takes what is pending in batches: one statement records the
//! batch's last-seen times, one looks up the chats of users this node did
//! not know them for, and one round trip publishes, so that crowds coming
//! and going (a heartbeat sweep, a reconnect storm) are announced as fast
//! as they arrive.
//!
//! A transition made by a connection here carries its user's chats as the
//! hub holds them (loaded as the first connection opened, kept up to date
//! by membership events): in a reconnect storm of users in 20 chats each,
//! reading them again for every `offline` and `online` was most of the
//! announcer's time and hundreds of thousands of rows for the database.
//! Transitions this node learns of otherwise (a late confirmation, a dead
//! node's users) are looked up.

pub mod cluster;
pub mod order;
mod pending;
mod scripts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use shared::bus::{Broker, Event};
use shared::clock::now_ms;
use shared::model::{ChatId, Millis, PresenceView};
use shared::store::{within, PresenceChange, Store};
use shared::sync::lock;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::fleet_forms::FleetForms;
use crate::node::STORE_DEADLINE;
use cluster::Decided;
use pending::{PendingTransitions, Transition};

/// Standalone's announcements are numbered 0: one announcer, this node's,
/// makes them all, in order (see `Event::Presence`), so each transition
/// follows the one before it here; and made at `at`, as the node saw it.
fn standalone(at: Millis) -> Decided {
    Decided { seq: 0, follows: 0, at }
}

/// The most users announced per statement: bounds one chat query's answer
/// (this many users times their chats) and one publish.
const ANNOUNCE_BATCH: usize = 256;

/// Why `GET /v1/presence` could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("presence counts unavailable: {0}")]
    Counts(redis::RedisError),
    #[error(transparent)]
    Store(shared::store::StoreError),
}

pub struct Presence {
    /// This node's open connections per user.
    local: DashMap<String, usize>,
    /// When each user's last connection closed, until persisted.
    last_seen: DashMap<String, Millis>,
    cluster: Option<Arc<cluster::ClusterPresence>>,
    pending: Mutex<PendingTransitions>,
    wake: Notify,
}

impl Presence {
    pub fn standalone() -> Arc<Self> {
        Arc::new(Self::with(None))
    }

    pub fn clustered_with(cluster: Arc<cluster::ClusterPresence>) -> Arc<Self> {
        Arc::new(Self::with(Some(cluster)))
    }

    fn with(cluster: Option<Arc<cluster::ClusterPresence>>) -> Self {
        Presence {
            local: DashMap::new(),
            last_seen: DashMap::new(),
            cluster,
            pending: Mutex::new(PendingTransitions::default()),
            wake: Notify::new(),
        }
    }

    /// A connection of `user` opened here; `chats` are the user's chats if
    /// this node has them loaded.
    pub async fn connected(&self, user: &str, chats: Option<Arc<[ChatId]>>) {
        let _counting = self.counting().await;
        let first_here = {
            let mut count = self.local.entry(user.to_owned()).or_insert(0);
            *count += 1;
            *count == 1
        };
        let at = now_ms();
        let first = match &self.cluster {
            None => first_here.then(|| standalone(at)),
            Some(cluster) => cluster.connected(user, at).await,
        };
        if let Some(decided) = first {
            let (seq, follows, at) = (decided.seq, Some(decided.follows), decided.at);
            self.transition(user, Transition { online: true, at, chats, seq, follows });
        }
    }

    /// A connection of `user` closed here; `chats` are the user's chats if
    /// it was their last one here and the chats were loaded.
    pub async fn disconnected(&self, user: &str, chats: Option<Arc<[ChatId]>>) {
        let _counting = self.counting().await;
        let last_here = self
            .local
            .remove_if_mut(user, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            })
            .is_some();
        let at = now_ms();
        let last = match &self.cluster {
            None => last_here.then(|| standalone(at)),
            Some(cluster) => cluster.disconnected(user, at).await,
        };
        if let Some(decided) = last {
            let (seq, follows, at) = (decided.seq, Some(decided.follows), decided.at);
            self.last_seen.insert(user.to_owned(), at);
            self.transition(user, Transition { online: false, at, chats, seq, follows });
        }
    }

    /// In a cluster, keeps the counts from being written back to Redis
    /// while this connection changes them here and there.
    async fn counting(&self) -> Option<tokio::sync::RwLockReadGuard<'_, ()>> {
        match &self.cluster {
            Some(cluster) => Some(cluster.counting().await),
            None => None,
        }
    }

    /// A transition Redis decided other than as a connection here came or
    /// went: confirmed late (the answer to the change that made it was
    /// lost, and its retry told), or announced again. `follows`: the
    /// number of the user's transition before it, if known.
    pub fn settled(&self, user: &str, online: bool, at: Millis, seq: u64, follows: Option<u64>) {
        if !online {
            self.last_seen.insert(user.to_owned(), at);
        }
        self.transition(user, Transition { online, at, chats: None, seq, follows });
    }

    /// Users whose last connection was on a node that died, reaped at `at`.
    pub fn reaped(&self, users: Vec<String>, seq: u64, at: Millis) {
        for user in users {
            self.settled(&user, false, at, seq, None);
        }
    }

    /// Whether every live gateway reads the shared `chats` event's form:
    /// in a cluster as the lease round finds it; standalone, this process
    /// is the fleet.
    pub fn fleet_forms(&self) -> Arc<FleetForms> {
        match &self.cluster {
            Some(cluster) => cluster.fleet_forms(),
            None => Arc::new(FleetForms::standalone()),
        }
    }

    pub fn local_online_users(&self) -> usize {
        self.local.len()
    }

    pub fn local_counts(&self) -> Vec<(String, usize)> {
        self.local.iter().map(|e| (e.key().clone(), *e.value())).collect()
    }

    fn transition(&self, user: &str, transition: Transition) {
        lock(&self.pending).record(user, transition);
        self.wake.notify_one();
    }

    /// `GET /v1/presence`: an online user was last seen now, an offline one
    /// at the latest of the times known for their last departure: Redis's
    /// record of the user's last transition (made by whichever gateway saw
    /// them go, before it stores the time), this node's times not yet
    /// stored, the store's. One round trip to Redis and one statement.
    pub async fn view(&self, store: &Store, users: &[String]) -> Result<Vec<PresenceView>, ViewError> {
        let states: Vec<(bool, Option<Millis>)> = match &self.cluster {
            None => users.iter().map(|user| (self.local.contains_key(user), None)).collect(),
            Some(cluster) => cluster.states_all(users).await.map_err(ViewError::Counts)?,
        };
        let held: Vec<Option<Millis>> = users.iter().map(|user| self.last_seen.get(user).map(|t| *t)).collect();
        let offline: Vec<&str> =
            users.iter().zip(&states).filter(|(_, (online, _))| !online).map(|(user, _)| user.as_str()).collect();
        let stored = within(STORE_DEADLINE, store.last_seen_all(&offline)).await.map_err(ViewError::Store)?;
        let now = now_ms();
        let views = users.iter().zip(states).zip(held).map(|((user, (online, departed)), held)| {
            let last_seen = if online { Some(now) } else { departed.max(held).max(stored.get(user).copied()) };
            PresenceView { user_id: user.clone(), online, last_seen }
        });
        Ok(views.collect())
    }

    /// The announcer. Runs until `stop`, then announces what is left. A
    /// stopping node abandons it if that takes too long (with the database
    /// silent, each batch waits for the store twice, one batch after
    /// another; see `node::BACKGROUND_STOP_LIMIT`).
    pub async fn announce(self: Arc<Self>, store: Store, broker: Broker, stop: CancellationToken) {
        loop {
            let stopping = tokio::select! {
                _ = self.wake.notified() => false,
                _ = stop.cancelled() => true,
            };
            // A batch at a time: what waits can still cancel (pending.rs).
            loop {
                let batch = lock(&self.pending).take(ANNOUNCE_BATCH);
                if batch.is_empty() {
                    break;
                }
                self.announce_batch(&store, &broker, &batch).await;
            }
            if stopping {
                return;
            }
        }
    }

    /// Persists the batch's last-seen times (and standalone, who came
    /// online), looks up who to tell where the transition did not bring
    /// it, and publishes: at most three statements or round trips for the
    /// whole batch. Users whose chats cannot be read are not announced;
    /// the rest still are.
    async fn announce_batch(&self, store: &Store, broker: &Broker, batch: &[(String, Transition)]) {
        // Standalone's record of who is online outlives a process that
        // dies without closing its connections (`Store::settle_left_online`);
        // a cluster's is in Redis.
        let standalone = self.cluster.is_none();
        let changes: Vec<PresenceChange> = batch
            .iter()
            .filter(|(_, t)| !t.online || standalone)
            .map(|(user, t)| PresenceChange { user, at: t.at, online: t.online })
            .collect();
        match within(STORE_DEADLINE, store.record_presence_all(&changes)).await {
            Ok(()) => {
                for gone in changes.iter().filter(|c| !c.online) {
                    self.last_seen.remove_if(gone.user, |_, t| *t == gone.at);
                }
            }
            Err(e) => {
                metrics::counter!("chat_database_errors_total").increment(1);
                tracing::warn!(error = %e, users = changes.len(), "could not persist last seen")
            }
        }
        let unknown: Vec<&(String, Transition)> = batch.iter().filter(|(_, t)| t.chats.is_none()).collect();
        let mut read = HashMap::new();
        if !unknown.is_empty() {
            let users: Vec<&str> = unknown.iter().map(|(user, _)| user.as_str()).collect();
            match within(STORE_DEADLINE, store.chat_ids_of_users(&users)).await {
                Ok(chats) => read = chats,
                Err(e) => {
                    metrics::counter!("chat_database_errors_total").increment(1);
                    tracing::warn!(error = %e, users = users.len(), "presence not announced: chats unavailable");
                    self.announce_again(unknown);
                }
            }
        }
        let mut events = Vec::with_capacity(batch.len());
        let mut announced = Vec::with_capacity(batch.len());
        for entry @ (user, transition) in batch {
            let chats: Arc<[ChatId]> = match &transition.chats {
                Some(known) => known.clone(),
                None => match read.remove(user.as_str()) {
                    Some(read) => read.into(),
                    None => continue,
                },
            };
            // A user in no chat has no one to tell.
            if chats.is_empty() {
                continue;
            }
            announced.push(entry);
            events.push(Event::Presence {
                user: user.clone(),
                online: transition.online,
                last_seen: transition.at,
                chats,
                seq: transition.seq,
            });
        }
        match broker.publish_presence(events).await {
            Ok(()) => {
                // How far announcements run behind the connections: the
                // one presence figure users notice.
                let now = now_ms();
                let delay = metrics::histogram!("chat_presence_delay_seconds");
                for (_, transition) in announced {
                    delay.record(now.saturating_sub(transition.at).max(0) as f64 / 1000.0);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, users = announced.len(), "presence not announced");
                self.announce_again(announced);
            }
        }
    }

    /// In a cluster, has these users' state announced again at the next
    /// lease round: their transition did not go out, and a later one of
    /// theirs may have, on another node, so it cannot just be retried.
    /// Standalone has no such later one; what it fails to announce stays
    /// unannounced.
    fn announce_again<'a>(&self, transitions: impl IntoIterator<Item = &'a (String, Transition)>) {
        if let Some(cluster) = &self.cluster {
            cluster.recount(transitions.into_iter().map(|(user, t)| (user.clone(), t.at)), now_ms());
        }
    }
}
