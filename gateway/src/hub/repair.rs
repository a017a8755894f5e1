//! Membership re-read after the broker reconnects, or after a user's
//! channel went live only once their chats were loaded.
//!
//! The hub learns which chats a local user follows from their chat list,
//! loaded when their first connection opens, and from then on only from
//! `chats` events on the user's channel or the `chatlists` channel. An event published while this
//! node was not listening (Redis restarted, the subscription dropped) is
//! gone, and with it the change: a removed member would go on receiving
//! the chat's events here, an added one would receive none. So after a
//! reconnect every loaded user's chats are read again and the hub follows
//! what the store says; and so are one user's, whose chats were loaded
//! before Redis confirmed their channel.
//!
//! A `chats` event applied while a user's list is being read wins: the
//! read may predate it. Such a user is read again, a few times at most.
//! One heard from the reconnect until a minute after the read is checked
//! against the store first, as after a first load (`hub::overtaken`).
//! The `chats` frame owed for a repaired membership carries a view of the
//! chat this node cannot rebuild (a removed member's last one, or a
//! deleted chat's), and a client keeps its chat list from those frames
//! while connected: left unsaid, a removal or an addition stayed unknown
//! to the open connection until its next reconnect. So the user's
//! connections here are closed with 4003 (`CHATS_CHANGED`), after what is
//! queued for them, and the client's reconnect reads the chat list.

use std::collections::HashMap;
use std::sync::Arc;

use shared::model::ChatId;
use shared::protocol::close;
use shared::store::within;
use shared::sync::lock;

use super::{Hub, LocalUser, Start};
use crate::node::STORE_DEADLINE;

/// Users whose chats one statement reads.
const USERS_PER_READ: usize = 256;
/// Reads of a user whose membership kept changing while it was read.
const PASSES: usize = 3;
/// How long a single user's repair waits for their channel to be live.
const SUBSCRIBED_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Hub {
    /// Re-reads every loaded local user's chats and follows what the store
    /// says.
    pub(super) fn repair_memberships(self: &Arc<Self>) {
        let users: Vec<Arc<LocalUser>> = self.users.iter().map(|u| u.value().clone()).collect();
        // A change heard from now on, before the read as after it, may
        // have been overtaken by one announced while the node was not
        // listening: checked (`hub::overtaken`), not sent as it comes.
        let now = std::time::Instant::now();
        for user in &users {
            lock(&user.state).loaded_at = Some(now);
        }
        let hub = self.clone();
        tokio::spawn(async move { hub.repair(users).await });
    }

    /// Once Redis confirms `user`'s channel, reads their chats again and
    /// follows what the store says: for a user whose chats were loaded
    /// before the channel was live (setup could not wait for it), since a
    /// change published in between reached neither. Users whose channels
    /// go live together (the subscription came back after an outage that
    /// thousands connected through) are read together, as many per
    /// statement as a whole node's repair reads.
    pub fn repair_once_subscribed(self: &Arc<Self>, user: Arc<LocalUser>) {
        let hub = self.clone();
        tokio::spawn(async move {
            // Still not live after the wait: the listener is reconnecting,
            // and its reconnect reads every loaded user's chats again.
            if !hub.broker.user_subscribed_eventually(&user.id, SUBSCRIBED_WAIT).await {
                return;
            }
            lock(&hub.awaiting_repair).push(user);
            let _one_at_a_time = hub.repairing.lock().await;
            // Whoever gets the lock first takes every user queued by then.
            let users = std::mem::take(&mut *lock(&hub.awaiting_repair));
            if !users.is_empty() {
                hub.repair_in_passes(users).await;
            }
        });
    }

    /// Repairs `users`, and again those whose membership changed while
    /// read, a few passes at most. One repair runs at a time; another asked
    /// for meanwhile runs after it.
    pub(super) async fn repair(&self, users: Vec<Arc<LocalUser>>) {
        let _one_at_a_time = self.repairing.lock().await;
        self.repair_in_passes(users).await;
    }

    /// [`Hub::repair`], with the lock held.
    async fn repair_in_passes(&self, mut users: Vec<Arc<LocalUser>>) {
        for _ in 0..PASSES {
            let mut moved = Vec::new();
            for part in users.chunks(USERS_PER_READ) {
                moved.extend(self.repair_part(part).await);
            }
            if moved.is_empty() {
                return;
            }
            users = moved;
        }
        tracing::warn!(users = users.len(), "memberships kept changing while re-read; left as they are");
    }

    /// Repairs `users`; returns those whose membership changed while read.
    async fn repair_part(&self, users: &[Arc<LocalUser>]) -> Vec<Arc<LocalUser>> {
        let before: Vec<Option<u32>> = users.iter().map(|u| lock(&u.state).loaded_changes()).collect();
        let names: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
        let stored = match within(STORE_DEADLINE, self.store.chats_of_users(&names)).await {
            Ok(stored) => stored,
            Err(e) => {
                metrics::counter!("chat_database_errors_total").increment(1);
                tracing::warn!(error = %e, users = users.len(), "could not re-read memberships after a reconnect");
                return Vec::new();
            }
        };
        let mut moved = Vec::new();
        for (user, before) in users.iter().zip(before) {
            // Still loading (its load reads the store now), or gone.
            let Some(before) = before else { continue };
            if !self.users.get(&user.id).is_some_and(|u| Arc::ptr_eq(&u, user)) {
                continue;
            }
            let stored: HashMap<ChatId, i64> = stored.get(&user.id).into_iter().flatten().copied().collect();
            let (followed, dropped) = {
                let mut state = lock(&user.state);
                if state.loaded_changes() != Some(before) {
                    moved.push(user.clone());
                    continue;
                }
                let dropped: Vec<ChatId> = state.chats.iter().filter(|c| !stored.contains_key(c)).copied().collect();
                let followed: Vec<(ChatId, i64)> =
                    stored.iter().filter(|(c, _)| !state.chats.contains(c)).map(|(c, e)| (*c, *e)).collect();
                for chat in &dropped {
                    state.chats.remove(chat);
                }
                state.chats.extend(followed.iter().map(|(c, _)| *c));
                // A change announced while this node was not listening is
                // in this read, and an earlier one heard from now on may
                // have been overtaken by it: checked, as after a first
                // load (`hub::overtaken`).
                state.loaded_at = Some(std::time::Instant::now());
                (followed, dropped)
            };
            // Outside the user's lock: the hub's lock order takes a chat's
            // map shard first.
            for chat in &dropped {
                self.unsubscribe(user, *chat);
            }
            for (chat, last_event_id) in &followed {
                self.subscribe(user, *chat, *last_event_id, Start::CatchUp);
            }
            if !followed.is_empty() || !dropped.is_empty() {
                metrics::counter!("chat_memberships_repaired_total", "change" => "followed")
                    .increment(followed.len() as u64);
                metrics::counter!("chat_memberships_repaired_total", "change" => "dropped")
                    .increment(dropped.len() as u64);
                tracing::info!(
                    user = user.id,
                    followed = followed.len(),
                    dropped = dropped.len(),
                    "memberships repaired after a reconnect; closing the user's connections here (4003)"
                );
                user.close_after_queued(close::CHATS_CHANGED);
            }
        }
        moved
    }
}
