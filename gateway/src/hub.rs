//! The hub: this node's connections, which local users are in which chat,
//! and the fan-out of events to them.
//!
//! Subscriptions are per local user, not per connection: a user's chats are
//! loaded once when their first connection on this node opens, and the node
//! subscribes to a chat (on the broker) when its first local member appears
//! and unsubscribes after the last one leaves.
//!
//! Lock order, to stay deadlock-free: a `chats` map shard, then a user's
//! `connections` mutex; or a `users` map shard, then that mutex. Nothing
//! takes a map shard while holding a user's mutex, and no lock is held
//! across an `.await`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dashmap::DashMap;
use shared::bus::{Broker, Event, EventSink};
use shared::model::{ChatAction, ChatId};
use shared::protocol::native::outbound as render;

use crate::handle::{ClientHandle, ConnectionId};
use crate::outbound::Outbound;

/// Typing is forwarded at most once per this interval per user and chat.
pub const TYPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

pub struct LocalUser {
    pub id: String,
    connections: Mutex<Vec<Arc<ClientHandle>>>,
    state: Mutex<UserState>,
}

#[derive(Default)]
struct UserState {
    chats: HashSet<ChatId>,
    /// Chats the user left while their chat list was loading; the load
    /// must not resubscribe them.
    left_while_loading: Option<HashSet<ChatId>>,
    last_typing: HashMap<ChatId, Instant>,
}

impl LocalUser {
    pub fn is_member(&self, chat: ChatId) -> bool {
        lock(&self.state).chats.contains(&chat)
    }

    /// Whether a typing notice for `chat` may go out now (one per interval).
    pub fn typing_allowed(&self, chat: ChatId, now: Instant) -> bool {
        let mut state = lock(&self.state);
        match state.last_typing.get(&chat) {
            Some(last) if now.duration_since(*last) < TYPING_INTERVAL => false,
            _ => {
                state.last_typing.insert(chat, now);
                true
            }
        }
    }

    fn each_connection(&self, mut f: impl FnMut(&Arc<ClientHandle>)) {
        for c in lock(&self.connections).iter() {
            f(c);
        }
    }
}

/// A std mutex, not a Tokio one: nothing awaits while it is held. A panic
/// elsewhere while holding it leaves data that is still consistent (every
/// critical section is a single insert or remove), so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Hub {
    broker: Broker,
    connections: DashMap<ConnectionId, Arc<ClientHandle>>,
    users: DashMap<String, Arc<LocalUser>>,
    chats: DashMap<ChatId, Vec<Arc<LocalUser>>>,
}

impl Hub {
    pub fn new(broker: Broker) -> Self {
        Hub {
            broker,
            connections: DashMap::new(),
            users: DashMap::new(),
            chats: DashMap::new(),
        }
    }

    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    pub fn user(&self, user: &str) -> Option<Arc<LocalUser>> {
        self.users.get(user).map(|u| u.clone())
    }

    /// Adds a connection. Returns its user and whether the user's chat list
    /// must be loaded (first connection of that user on this node); the
    /// caller then calls [`Hub::chats_loaded`].
    pub fn register(&self, handle: Arc<ClientHandle>) -> (Arc<LocalUser>, bool) {
        self.connections.insert(handle.id, handle.clone());
        let mut fresh = false;
        let user = self
            .users
            .entry(handle.user.clone())
            .or_insert_with(|| {
                fresh = true;
                self.broker.subscribe_user(&handle.user);
                Arc::new(LocalUser {
                    id: handle.user.clone(),
                    connections: Mutex::new(Vec::new()),
                    state: Mutex::new(UserState {
                        left_while_loading: Some(HashSet::new()),
                        ..Default::default()
                    }),
                })
            })
            .clone();
        lock(&user.connections).push(handle);
        (user, fresh)
    }

    /// The user's chats as loaded from the store: subscribe to them, except
    /// those left meanwhile.
    pub fn chats_loaded(&self, user: &Arc<LocalUser>, chats: impl IntoIterator<Item = ChatId>) {
        let joined: Vec<ChatId> = {
            let mut state = lock(&user.state);
            let left = state.left_while_loading.take().unwrap_or_default();
            chats
                .into_iter()
                .filter(|c| !left.contains(c) && state.chats.insert(*c))
                .collect()
        };
        for chat in joined {
            self.subscribe(user, chat);
        }
    }

    /// Removes a connection; drops the user's subscriptions with their last
    /// local connection. Returns true when that was the user's last one here.
    pub fn unregister(&self, handle: &ClientHandle) -> bool {
        self.connections.remove(&handle.id);
        let removed = self.users.remove_if(&handle.user, |_, user| {
            let mut connections = lock(&user.connections);
            connections.retain(|c| c.id != handle.id);
            connections.is_empty()
        });
        let Some((_, user)) = removed else {
            return false;
        };
        self.broker.unsubscribe_user(&user.id);
        let chats: Vec<ChatId> = lock(&user.state).chats.drain().collect();
        for chat in chats {
            self.unsubscribe(&user, chat);
        }
        true
    }

    fn subscribe(&self, user: &Arc<LocalUser>, chat: ChatId) {
        let mut subscribers = self.chats.entry(chat).or_default();
        if subscribers.is_empty() {
            self.broker.subscribe_chat(chat);
        }
        if !subscribers.iter().any(|u| Arc::ptr_eq(u, user)) {
            subscribers.push(user.clone());
        }
    }

    fn unsubscribe(&self, user: &Arc<LocalUser>, chat: ChatId) {
        let emptied = self
            .chats
            .remove_if_mut(&chat, |_, subscribers| {
                subscribers.retain(|u| !Arc::ptr_eq(u, user));
                subscribers.is_empty()
            })
            .is_some();
        if emptied {
            self.broker.unsubscribe_chat(chat);
        }
    }

    /// Every connection, for shutdown.
    pub fn handles(&self) -> Vec<Arc<ClientHandle>> {
        self.connections.iter().map(|c| c.value().clone()).collect()
    }

    /// Visits every connection without copying the set (the heartbeat
    /// sweep). `f` must not block.
    pub fn for_each_connection(&self, mut f: impl FnMut(&ClientHandle)) {
        for c in self.connections.iter() {
            f(c.value());
        }
    }

    fn fan_out_to_chat(
        &self,
        chat: ChatId,
        except_user: Option<&str>,
        item: impl Fn() -> Outbound,
    ) -> usize {
        let mut delivered = 0;
        if let Some(subscribers) = self.chats.get(&chat) {
            for user in subscribers
                .iter()
                .filter(|u| Some(u.id.as_str()) != except_user)
            {
                user.each_connection(|c| {
                    if c.push(item()).is_ok() {
                        delivered += 1;
                    }
                });
            }
        }
        delivered
    }

    fn to_user(&self, user: &str, frame: &bytes::Bytes) {
        if let Some(user) = self.users.get(user) {
            user.each_connection(|c| {
                let _ = c.push(Outbound::Frame(frame.clone()));
            });
        }
    }

    /// A chat appeared for or disappeared from `user`: follow it here.
    fn membership_changed(&self, user: &str, chat: ChatId, action: ChatAction) {
        let Some(local) = self.user(user) else { return };
        match action {
            ChatAction::Created => {
                let added = lock(&local.state).chats.insert(chat);
                if added {
                    self.subscribe(&local, chat);
                }
            }
            ChatAction::Deleted => {
                let removed = {
                    let mut state = lock(&local.state);
                    if let Some(left) = state.left_while_loading.as_mut() {
                        left.insert(chat);
                    }
                    state.chats.remove(&chat)
                };
                if removed {
                    self.unsubscribe(&local, chat);
                }
            }
            ChatAction::Updated => {}
        }
    }
}

impl EventSink for Hub {
    fn deliver(&self, event: Event) {
        match event {
            Event::Chat(event) => {
                // Rendered once; every recipient shares the bytes.
                let frame = render::chat_event(&event);
                let delivered = self.fan_out_to_chat(event.chat_id, None, || Outbound::Event {
                    chat: event.chat_id,
                    id: event.id,
                    frame: frame.clone(),
                });
                metrics::counter!("chat_fanout_deliveries_total").increment(delivered as u64);
            }
            Event::Typing { chat, user } => {
                let frame = render::typing(chat, &user);
                self.fan_out_to_chat(chat, Some(&user), || Outbound::Frame(frame.clone()));
            }
            Event::Presence {
                user,
                online,
                last_seen,
                recipients,
            } => {
                let frame = if online {
                    render::online(&user)
                } else {
                    render::offline(&user, last_seen)
                };
                for recipient in recipients.iter() {
                    self.to_user(recipient, &frame);
                }
            }
            Event::ChatList { user, action, chat } => {
                self.membership_changed(&user, chat.id, action);
                self.to_user(&user, &render::chats(action, &chat));
            }
            Event::Reply {
                origin,
                reference,
                result,
                received_at,
            } => {
                let Some(handle) = self.connections.get(&origin.connection).map(|c| c.clone())
                else {
                    return;
                };
                let frame = match &result {
                    Ok(applied) => render::ack(&reference, applied),
                    Err(refusal) => render::error(&reference, refusal, None),
                };
                let elapsed = shared::clock::now_ms() - received_at;
                metrics::histogram!("chat_command_duration_seconds")
                    .record(elapsed as f64 / 1000.0);
                let _ = handle.push(Outbound::Frame(frame));
            }
        }
    }
}
