//! Presence (PROTOCOL.md 6): a user is online while they have at least one
//! connection. Connection counts change on the connection path; a single
//! announcer task turns changes into `online`/`offline` events for everyone
//! who shares a chat with the user.
//!
//! The announcer works from "dirty" users rather than a queue of
//! transitions: it compares each dirty user's current state with what it
//! last announced. That keeps its input bounded by the number of users,
//! makes the events' order follow the real state even when a connect and a
//! disconnect race, and coalesces a flapping connection into nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use shared::bus::{Broker, Event};
use shared::clock::now_ms;
use shared::model::{Millis, PresenceView};
use shared::store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Presence {
    /// Open connections per user (in standalone, on the only node).
    connections: DashMap<String, usize>,
    /// When each user's last connection closed, while not yet persisted.
    last_seen: DashMap<String, Millis>,
    dirty: Mutex<HashSet<String>>,
    wake: Notify,
}

impl Presence {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn connected(&self, user: &str) {
        *self.connections.entry(user.to_owned()).or_insert(0) += 1;
        self.mark_dirty(user);
    }

    pub fn disconnected(&self, user: &str) {
        let gone = self
            .connections
            .remove_if_mut(user, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            })
            .is_some();
        if gone {
            self.last_seen.insert(user.to_owned(), now_ms());
        }
        self.mark_dirty(user);
    }

    pub fn is_online(&self, user: &str) -> bool {
        self.connections.contains_key(user)
    }

    pub fn online_users(&self) -> usize {
        self.connections.len()
    }

    fn mark_dirty(&self, user: &str) {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.to_owned());
        self.wake.notify_one();
    }

    /// `GET /v1/presence`: an online user was last seen now.
    pub async fn view(
        &self,
        store: &Store,
        users: &[String],
    ) -> Result<Vec<PresenceView>, shared::store::StoreError> {
        let mut views = Vec::with_capacity(users.len());
        for user in users {
            let online = self.is_online(user);
            let last_seen = if online {
                Some(now_ms())
            } else {
                match self.last_seen.get(user).map(|t| *t) {
                    Some(t) => Some(t),
                    None => store.last_seen(user).await?,
                }
            };
            views.push(PresenceView {
                user_id: user.clone(),
                online,
                last_seen,
            });
        }
        Ok(views)
    }

    /// The announcer. Runs until `stop`; then announces what is left, so
    /// that the users of a node shutting down go offline.
    pub async fn announce(self: Arc<Self>, store: Store, broker: Broker, stop: CancellationToken) {
        let mut announced: HashMap<String, bool> = HashMap::new();
        loop {
            let stopping = tokio::select! {
                _ = self.wake.notified() => false,
                _ = stop.cancelled() => true,
            };
            let dirty: Vec<String> = self
                .dirty
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
                .collect();
            for user in dirty {
                let online = self.is_online(&user);
                if announced.get(&user).copied().unwrap_or(false) == online {
                    continue;
                }
                let last_seen = self.last_seen.get(&user).map(|t| *t).unwrap_or_else(now_ms);
                if online {
                    announced.insert(user.clone(), true);
                } else {
                    announced.remove(&user);
                    if let Err(e) = store.set_last_seen(&user, last_seen).await {
                        tracing::warn!(error = %e, "could not persist last seen");
                    } else {
                        self.last_seen.remove_if(&user, |_, t| *t == last_seen);
                    }
                }
                let recipients = match store.co_members(&user).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "presence not announced: co-members unavailable");
                        continue;
                    }
                };
                if recipients.is_empty() {
                    continue;
                }
                let event = Event::Presence {
                    user,
                    online,
                    last_seen,
                    recipients: recipients.into(),
                };
                if let Err(e) = broker.publish(event).await {
                    tracing::warn!(error = %e, "presence not announced");
                }
            }
            if stopping {
                return;
            }
        }
    }
}
