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
//! batch's last-seen times, one looks up their chats, and one round trip
//! publishes, so that crowds coming and going (a heartbeat sweep, a
//! reconnect storm) are announced as fast as they arrive.

pub mod cluster;
mod pending;

use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use shared::bus::{Broker, Event};
use shared::clock::now_ms;
use shared::model::{Millis, PresenceView};
use shared::store::{within, Store};
use shared::sync::lock;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::node::STORE_DEADLINE;
use pending::{PendingTransitions, Transition};

/// The most users announced per statement: bounds one chat query's answer
/// (this many users times their chats) and one publish.
const ANNOUNCE_BATCH: usize = 256;

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

    pub async fn connected(&self, user: &str) {
        let _counting = self.counting().await;
        let first_here = {
            let mut count = self.local.entry(user.to_owned()).or_insert(0);
            *count += 1;
            *count == 1
        };
        let first = match &self.cluster {
            None => first_here,
            Some(cluster) => cluster.connected(user).await,
        };
        if first {
            self.transition(user, true, now_ms());
        }
    }

    pub async fn disconnected(&self, user: &str) {
        let _counting = self.counting().await;
        let last_here = self
            .local
            .remove_if_mut(user, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            })
            .is_some();
        let last = match &self.cluster {
            None => last_here,
            Some(cluster) => cluster.disconnected(user).await,
        };
        if last {
            let at = now_ms();
            self.last_seen.insert(user.to_owned(), at);
            self.transition(user, false, at);
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

    /// A transition Redis confirmed late: the answer to the change that
    /// made it was lost, and its retry told.
    pub fn settled(&self, user: &str, online: bool, at: Millis) {
        if !online {
            self.last_seen.insert(user.to_owned(), at);
        }
        self.transition(user, online, at);
    }

    /// Users whose last connection was on a node that died.
    pub fn reaped(&self, users: Vec<String>) {
        let at = now_ms();
        for user in users {
            self.settled(&user, false, at);
        }
    }

    pub fn local_online_users(&self) -> usize {
        self.local.len()
    }

    pub fn local_counts(&self) -> Vec<(String, usize)> {
        self.local.iter().map(|e| (e.key().clone(), *e.value())).collect()
    }

    async fn is_online(&self, user: &str) -> bool {
        match &self.cluster {
            None => self.local.contains_key(user),
            Some(cluster) => cluster.is_online(user).await,
        }
    }

    fn transition(&self, user: &str, online: bool, at: Millis) {
        lock(&self.pending).record(user, Transition { online, at });
        self.wake.notify_one();
    }

    /// `GET /v1/presence`: an online user was last seen now.
    pub async fn view(&self, store: &Store, users: &[String]) -> Result<Vec<PresenceView>, shared::store::StoreError> {
        let mut views = Vec::with_capacity(users.len());
        for user in users {
            let online = self.is_online(user).await;
            let last_seen = if online {
                Some(now_ms())
            } else {
                match self.last_seen.get(user).map(|t| *t) {
                    Some(t) => Some(t),
                    None => within(STORE_DEADLINE, store.last_seen(user)).await?,
                }
            };
            views.push(PresenceView { user_id: user.clone(), online, last_seen });
        }
        Ok(views)
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

    /// Persists the batch's last-seen times, looks up who to tell and
    /// publishes: three statements or round trips for the whole batch.
    async fn announce_batch(&self, store: &Store, broker: &Broker, batch: &[(String, Transition)]) {
        let gone: Vec<(&str, Millis)> =
            batch.iter().filter(|(_, t)| !t.online).map(|(user, t)| (user.as_str(), t.at)).collect();
        match within(STORE_DEADLINE, store.set_last_seen_all(&gone)).await {
            Ok(()) => {
                for (user, at) in &gone {
                    self.last_seen.remove_if(*user, |_, t| t == at);
                }
            }
            Err(e) => tracing::warn!(error = %e, users = gone.len(), "could not persist last seen"),
        }
        let users: Vec<&str> = batch.iter().map(|(user, _)| user.as_str()).collect();
        let mut chats = match within(STORE_DEADLINE, store.chat_ids_of_users(&users)).await {
            Ok(chats) => chats,
            Err(e) => {
                tracing::warn!(error = %e, users = users.len(), "presence not announced: chats unavailable");
                return;
            }
        };
        let events: Vec<Event> = batch
            .iter()
            .filter_map(|(user, transition)| {
                let chats = chats.remove(user.as_str())?;
                Some(Event::Presence {
                    user: user.clone(),
                    online: transition.online,
                    last_seen: transition.at,
                    chats: chats.into(),
                })
            })
            .collect();
        if let Err(e) = broker.publish_all(events).await {
            tracing::warn!(error = %e, users = users.len(), "presence not announced");
        }
    }
}
