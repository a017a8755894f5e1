//! The hub: this node's connections, which local users are in which chat,
//! and the fan-out of events to them.
//!
//! Subscriptions are per local user, not per connection: a user's chats are
//! loaded once when their first connection on this node opens, and the node
//! subscribes to a chat (on the broker) when its first local member appears
//! and unsubscribes after the last one leaves.
//!
//! Each chat's events are delivered in id order, once: the hub keeps the
//! last id it delivered per chat and fills gaps from the store (see
//! [`crate::ordering`]), so events lost between a worker and this node (a
//! Redis reconnect, a worker dying between commit and publish) are still
//! delivered, in place (`hub::delivery`, `hub::gap_fill`). Events reach the hub through
//! `hub::sink`.
//!
//! Lock order, to stay deadlock-free: a `chats` map shard, then a user's
//! `connections` or `state` mutex (one at a time); or a `users` map
//! shard, then the `connections` mutex; the presence numbers'
//! (`latest_presence`) mutex comes before all of these. Nothing takes a map shard while
//! holding a user's mutex, and no lock is held across an `.await`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use shared::bus::Broker;
use shared::model::{ChatAction, ChatId, EventId, UserId};
use shared::protocol::native::outbound as render;
use shared::store::Store;
use shared::sync::lock;

use crate::handle::{ClientHandle, ConnectionId};
use crate::latest::Latest;
use crate::member_checks::MemberChecks;
use crate::outbound::{Framed, Outbound};
use crate::presence::order::LatestPresence;

mod catch_up;
mod delivery;
mod gap_fill;
mod overtaken;
mod presence_reread;
mod repair;
mod sink;

pub use delivery::render_event;
pub use sink::HubSink;

/// Where a user's delivery of a chat starts when the node begins following
/// it for them ([`Hub::subscribe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// From what arrives next: the user's connections are opening, and
    /// their clients `sync` what they miss (PROTOCOL.md 4).
    Live,
    /// From the chat's `lastEventId` as announced to the user.
    CatchUp,
}

/// Typing is forwarded at most once per this interval per user and chat.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(1);

pub struct LocalUser {
    pub id: String,
    connections: Mutex<Vec<Arc<ClientHandle>>>,
    state: Mutex<UserState>,
    /// How loading the user's chats went: a second connection opening
    /// meanwhile waits for it before reading.
    loaded: tokio::sync::watch::Sender<ChatsLoad>,
}

/// Where loading a user's chat list on this node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatsLoad {
    Loading,
    Loaded,
    /// The load failed: every connection of the user here is closed (the
    /// chats are followed per user, so one left open would follow none of
    /// them), and the next connection once they are gone loads again.
    Failed,
}

#[derive(Default)]
struct UserState {
    chats: HashSet<ChatId>,
    /// `chats` events applied: a re-read of the user's chats started
    /// before one of them must not undo it (`repair`). Compared for a
    /// change across one read, so wrapping is harmless; 32 bits leave room
    /// for `closed` in the same word.
    membership_changes: u32,
    /// The user's last connection here closed: the chats were unsubscribed,
    /// and none is subscribed for this user again (`Hub::subscribe`).
    closed: bool,
    /// Chats the user left while their chat list was loading; the load
    /// must not resubscribe them. `None` once the list is loaded.
    left_while_loading: Option<HashSet<ChatId>>,
    /// When the list was last read: loaded, read again by a repair, or
    /// about to be (the subscription reconnected). Changes heard until a
    /// while after may have been overtaken (`hub::overtaken`).
    loaded_at: Option<Instant>,
    last_typing: HashMap<ChatId, Instant>,
}

impl UserState {
    /// `membership_changes` once the chats are loaded; `None` before.
    fn loaded_changes(&self) -> Option<u32> {
        self.left_while_loading.is_none().then_some(self.membership_changes)
    }
}

impl LocalUser {
    /// Waits (up to `limit`) until the user's chats are subscribed here,
    /// or their loading failed; `Loading` when `limit` passed first (the
    /// load still subscribes them when it ends).
    pub async fn wait_loaded(&self, limit: Duration) -> ChatsLoad {
        let mut loaded = self.loaded.subscribe();
        let _ = tokio::time::timeout(limit, loaded.wait_for(|l| *l != ChatsLoad::Loading)).await;
        let outcome = *loaded.borrow();
        outcome
    }

    /// Loading failed: closes every connection of the user here with
    /// `code`, and those still waiting for the load close too.
    pub fn loading_failed(&self, code: u16) {
        self.loaded.send_replace(ChatsLoad::Failed);
        self.each_connection(|c| {
            c.close(code);
        });
    }

    /// The user's chats as this node follows them, once they are loaded
    /// (`None` while loading, or if loading failed).
    pub fn chat_ids(&self) -> Option<Arc<[ChatId]>> {
        let state = lock(&self.state);
        state.left_while_loading.is_none().then(|| state.chats.iter().copied().collect())
    }

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

    /// Closes every connection of the user here with `code`, each once the
    /// frames queued before it are written.
    fn close_after_queued(&self, code: u16) {
        self.each_connection(|c| {
            // Refused: the connection is closing already, with its own code.
            let _ = c.push(Outbound::Close(code, crate::writer::close_text(code)));
        });
    }

    fn each_connection(&self, mut f: impl FnMut(&Arc<ClientHandle>)) {
        for c in lock(&self.connections).iter() {
            f(c);
        }
    }
}

/// A chat with local members: who they are and how far delivery got.
///
/// A node holds one per chat with a local member, so where users are in
/// many chats these outnumber connections (20 chats a user, each member
/// on a different gateway, is 20 per connection). Hence the rarely used
/// gap queue boxed, 40 bytes instead of 56, and room for one member at
/// first, not a `Vec`'s four.
#[derive(Default)]
struct ChatEntry {
    users: Vec<Arc<LocalUser>>,
    last_event_id: EventId,
    /// While a gap is being filled from the store, later events wait here.
    /// Boxed: 8 bytes in every entry, for what exists only while a gap is
    /// filled.
    filling: Option<Box<gap_fill::Waiting>>,
}

impl ChatEntry {
    fn add(&mut self, user: &Arc<LocalUser>) {
        if !self.users.iter().any(|u| Arc::ptr_eq(u, user)) {
            // Room for one at first: in a fleet, most chats have one or two
            // members on a node. Past that the `Vec` doubles; a slice
            // rebuilt at its exact size at every join (tried) clones every
            // member each time, quadratic in a large chat.
            if self.users.capacity() == 0 {
                self.users.reserve_exact(1);
            }
            self.users.push(user.clone());
        }
    }

    fn remove(&mut self, user: &Arc<LocalUser>) {
        self.users.retain(|u| !Arc::ptr_eq(u, user));
    }
}

pub struct Hub {
    broker: Broker,
    store: Store,
    /// Checks membership changes that may have been overtaken
    /// (`hub::overtaken`).
    member_checks: MemberChecks,
    connections: DashMap<ConnectionId, Arc<ClientHandle>>,
    users: DashMap<String, Arc<LocalUser>>,
    chats: DashMap<ChatId, ChatEntry>,
    latest_presence: LatestPresence,
    /// The membership version last applied per (user, chat): changes made
    /// through two gateways are published in no particular order, and a
    /// removal arriving after the re-add that followed it would leave a
    /// member unsubscribed from their chat.
    latest_membership: Latest<(String, ChatId)>,
    /// Held by the membership re-read after a reconnect, one at a time.
    repairing: tokio::sync::Mutex<()>,
    /// Users whose channel went live only once their chats were loaded,
    /// to read again together by the next repair (`hub::repair`).
    awaiting_repair: Mutex<Vec<Arc<LocalUser>>>,
}

impl Hub {
    pub fn new(broker: Broker, store: Store) -> Arc<Self> {
        Arc::new(Hub {
            broker,
            member_checks: MemberChecks::start(store.clone()),
            store,
            connections: DashMap::new(),
            users: DashMap::new(),
            chats: DashMap::new(),
            latest_presence: LatestPresence::new(),
            latest_membership: Latest::new(),
            repairing: tokio::sync::Mutex::new(()),
            awaiting_repair: Mutex::default(),
        })
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
        let entry = self.users.entry(handle.user.to_string()).or_insert_with(|| {
            fresh = true;
            self.broker.subscribe_user(&handle.user);
            Arc::new(LocalUser {
                id: handle.user.to_string(),
                connections: Mutex::new(Vec::new()),
                state: Mutex::new(UserState { left_while_loading: Some(HashSet::new()), ..Default::default() }),
                loaded: tokio::sync::watch::Sender::new(ChatsLoad::Loading),
            })
        });
        // Added while the map shard is held: `unregister` decides "last
        // connection, remove the user" under the same shard lock, so a
        // reconnect racing a disconnect never lands on a removed user.
        lock(&entry.connections).push(handle);
        let user = entry.clone();
        drop(entry);
        (user, fresh)
    }

    /// The user's chats (with their last event id) as loaded from the
    /// store: subscribe to them, except those left meanwhile.
    pub fn chats_loaded(&self, user: &Arc<LocalUser>, chats: impl IntoIterator<Item = (ChatId, EventId)>) {
        let joined: Vec<(ChatId, EventId)> = {
            let mut state = lock(&user.state);
            let left = state.left_while_loading.take().unwrap_or_default();
            state.loaded_at = Some(Instant::now());
            chats.into_iter().filter(|(c, _)| !left.contains(c) && state.chats.insert(*c)).collect()
        };
        for (chat, last_event_id) in joined {
            self.subscribe(user, chat, last_event_id, Start::Live);
        }
        user.loaded.send_replace(ChatsLoad::Loaded);
    }

    /// Removes a connection; drops the user's subscriptions with their last
    /// local connection. Returns the user's chats when that was their last
    /// one here and the chats had been loaded.
    pub fn unregister(&self, handle: &ClientHandle) -> Option<Arc<[ChatId]>> {
        self.connections.remove(&handle.id);
        // The broker is told under the map's shard lock, like `register`
        // tells it, so a reconnect racing this cannot end unsubscribed.
        let removed = self.users.remove_if(&*handle.user, |_, user| {
            let mut connections = lock(&user.connections);
            connections.retain(|c| c.id != handle.id);
            let last = connections.is_empty();
            if last {
                self.broker.unsubscribe_user(&user.id);
            }
            last
        });
        let (_, user) = removed?;
        let (chats, loaded): (Arc<[ChatId]>, bool) = {
            let mut state = lock(&user.state);
            state.closed = true;
            (state.chats.drain().collect(), state.left_while_loading.is_none())
        };
        for chat in chats.iter() {
            self.unsubscribe(&user, *chat);
        }
        loaded.then_some(chats)
    }

    /// `last_event_id` is where delivery starts if the node had no local
    /// member of `chat` yet.
    ///
    /// Every caller records the chat among the user's first, then comes
    /// here without the user's lock. A user whose last connection closed
    /// meanwhile has had their chats unsubscribed (or closed before the
    /// chat was recorded), and a chat they left meanwhile was unsubscribed
    /// for them; added now, they would stay in the chat's entry for good,
    /// holding the node's subscription to it. So, under the chat's shard
    /// lock (which `unsubscribe` takes too), neither is subscribed.
    ///
    /// `Start::CatchUp`: the user joined the chat while connected, and the
    /// events of it this node delivered to others after `last_event_id`
    /// are replayed to their connections first (`hub::catch_up`).
    fn subscribe(&self, user: &Arc<LocalUser>, chat: ChatId, last_event_id: EventId, start: Start) {
        let entry = self.chats.entry(chat);
        let state = lock(&user.state);
        if state.closed || !state.chats.contains(&chat) {
            return;
        }
        drop(state);
        let mut entry = entry.or_insert_with(|| ChatEntry { last_event_id, ..Default::default() });
        if entry.users.is_empty() {
            self.broker.subscribe_chat(chat);
        }
        let behind = start == Start::CatchUp
            && entry.last_event_id > last_event_id
            && !entry.users.iter().any(|u| Arc::ptr_eq(u, user));
        if !behind {
            entry.add(user);
            return;
        }
        // Held before the user is in the entry: the next event fanned out
        // to them is held behind the replay.
        let connections: Vec<Arc<ClientHandle>> = lock(&user.connections).clone();
        for connection in &connections {
            connection.write_state().cursors.begin_catch_up(chat);
        }
        entry.add(user);
        let upto = entry.last_event_id;
        drop(entry);
        tokio::spawn(catch_up::catch_up(self.store.clone(), connections, chat, last_event_id, upto));
    }

    fn unsubscribe(&self, user: &Arc<LocalUser>, chat: ChatId) {
        // The broker is told under the chat's shard lock, as `subscribe`
        // does, so the two never reach it in the wrong order.
        self.chats.remove_if_mut(&chat, |_, entry| {
            entry.remove(user);
            let last = entry.users.is_empty();
            if last {
                self.broker.unsubscribe_chat(chat);
            }
            last
        });
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

    fn typing(&self, chat: ChatId, typist: &str) {
        let Some(entry) = self.chats.get(&chat) else { return };
        let frame = Arc::new(Framed::new("typing", render::typing(chat, typist)));
        for user in entry.users.iter().filter(|u| u.id != typist) {
            user.each_connection(|c| {
                let _ = c.push(Outbound::Frame(frame.clone()));
            });
        }
    }

    /// Tells every local member of `chats` but `user` once per connection,
    /// however many of the chats they share. Only members whose chats are
    /// loaded here are in a chat's entry; a connection's welcome is written
    /// only after its user's chats are, so no client can tell the
    /// difference.
    fn to_co_members(&self, user: &str, chats: &[ChatId], frame: &Arc<Framed>) {
        let mut told: HashSet<*const LocalUser> = HashSet::new();
        for chat in chats {
            let Some(entry) = self.chats.get(chat) else { continue };
            for member in entry.users.iter().filter(|m| m.id != user) {
                if told.insert(Arc::as_ptr(member)) {
                    member.each_connection(|c| {
                        let _ = c.push(Outbound::Frame(frame.clone()));
                    });
                }
            }
        }
    }

    /// `chat` (whose last event is `last_event_id`) appeared, changed or
    /// disappeared for `user`, as of membership `version`: unless a later
    /// change was applied already, follow it here and tell the user's
    /// connections the frame `render` makes of the action shown. One heard
    /// just after the user's chats were read may have been overtaken, and
    /// is checked first.
    ///
    /// The frame is made only for a user held here: standalone hears every
    /// member's `chats` event, and rendering each (the chat's whole member
    /// list) for members not connected was most of a large group's
    /// membership change.
    fn chat_list_changed(
        self: &Arc<Self>,
        user: UserId,
        (chat, last_event_id): (ChatId, EventId),
        action: ChatAction,
        version: i64,
        render: impl FnOnce(ChatAction) -> Framed + Send + 'static,
    ) {
        let key = (user, chat);
        if !self.latest_membership.is_current(&key, version.max(0) as u64) {
            return;
        }
        let Some(local) = self.user(&key.0) else { return };
        if local.may_be_overtaken(chat, action, Instant::now()) {
            return self.apply_if_stored(local, (chat, last_event_id), action, version, render);
        }
        self.apply_membership_change(&local, (chat, last_event_id), action, render);
    }

    /// Follows a change [`Hub::chat_list_changed`] let through, and tells
    /// the user: the frame comes before the chat's events, which start once
    /// it is followed, and after the last of them, which stop before.
    fn apply_membership_change(
        &self,
        local: &Arc<LocalUser>,
        (chat, last_event_id): (ChatId, EventId),
        action: ChatAction,
        render: impl FnOnce(ChatAction) -> Framed,
    ) {
        let (shown, follow) = self.membership_changed(local, chat, action);
        let frame = Arc::new(render(shown));
        local.each_connection(|c| {
            let item = match shown {
                ChatAction::Deleted => Outbound::Left(frame.clone(), chat),
                ChatAction::Created | ChatAction::Updated => Outbound::Frame(frame.clone()),
            };
            let _ = c.push(item);
        });
        if follow {
            self.subscribe(local, chat, last_event_id, Start::CatchUp);
        }
    }

    /// A chat appeared for or disappeared from `local`: records it, and
    /// stops following a chat they left. Returns the action to show the
    /// user, and whether the chat is now to be followed. An `updated` chat
    /// is one they are a member of; if this node does not follow it for
    /// them, its `created` was overtaken (a later change published sooner,
    /// then the `created` dropped as older), so it is followed and shown as
    /// created.
    fn membership_changed(&self, local: &Arc<LocalUser>, chat: ChatId, action: ChatAction) -> (ChatAction, bool) {
        let mut state = lock(&local.state);
        state.membership_changes = state.membership_changes.wrapping_add(1);
        match action {
            ChatAction::Created | ChatAction::Updated => {
                if state.chats.insert(chat) {
                    return (ChatAction::Created, true);
                }
            }
            ChatAction::Deleted => {
                if let Some(left) = state.left_while_loading.as_mut() {
                    left.insert(chat);
                }
                let removed = state.chats.remove(&chat);
                // Released first: the hub's lock order takes a chat's map
                // shard before a user's lock.
                drop(state);
                if removed {
                    self.unsubscribe(local, chat);
                }
            }
        }
        (action, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> Arc<LocalUser> {
        Arc::new(LocalUser {
            id: id.to_owned(),
            connections: Mutex::default(),
            state: Mutex::default(),
            loaded: tokio::sync::watch::Sender::new(ChatsLoad::Loading),
        })
    }

    fn members(entry: &ChatEntry) -> Vec<&str> {
        entry.users.iter().map(|u| u.id.as_str()).collect()
    }

    /// A user whose last connection closed, or who left the chat, between
    /// the chat being recorded as theirs and its subscription, or whose last
    /// connection closed before a change on its way recorded it, is not
    /// subscribed: they would stay in the chat's entry, and the node
    /// subscribed to it, for good.
    #[tokio::test]
    async fn a_chat_is_not_subscribed_for_a_user_gone_or_gone_from_it_meanwhile() {
        let (_dir, store) = crate::test_store::sqlite_store().await;
        let hub = Hub::new(Broker::Memory(shared::bus::memory::MemoryBroker::default()), store);
        let handle = Arc::new(ClientHandle::new(1, "alice".into(), crate::outbound_queue::QueueLimits::items(64)));
        let (alice, _) = hub.register(handle.clone());
        hub.chats_loaded(&alice, []);

        let (_, follow) = hub.membership_changed(&alice, 7, ChatAction::Created);
        assert!(follow);
        hub.membership_changed(&alice, 7, ChatAction::Deleted);
        hub.subscribe(&alice, 7, 0, Start::Live);
        assert!(!hub.chats.contains_key(&7), "left meanwhile");

        let (_, follow) = hub.membership_changed(&alice, 8, ChatAction::Created);
        assert!(follow);
        hub.subscribe(&alice, 8, 0, Start::Live);
        assert_eq!(hub.chats.get(&8).map(|e| members(&e).len()), Some(1), "followed");
        let (_, follow) = hub.membership_changed(&alice, 9, ChatAction::Created);
        assert!(follow);
        hub.unregister(&handle);
        hub.subscribe(&alice, 9, 0, Start::Live);
        assert!(!hub.chats.contains_key(&8) && !hub.chats.contains_key(&9), "gone meanwhile");
        // Gone before the chat was recorded: the change was on its way.
        let (_, follow) = hub.membership_changed(&alice, 10, ChatAction::Created);
        assert!(follow);
        hub.subscribe(&alice, 10, 0, Start::Live);
        assert!(!hub.chats.contains_key(&10), "gone before");
    }

    /// 240 bytes, 256 with its `Arc`'s counts: the allocator's 256-byte
    /// class, one per user held. A field more moves it to the next (320).
    #[test]
    fn a_local_user_stays_in_its_allocation_class() {
        assert_eq!(std::mem::size_of::<LocalUser>(), 240);
    }

    #[test]
    fn a_chat_entry_stays_small() {
        assert_eq!(std::mem::size_of::<ChatEntry>(), 40);
    }

    #[test]
    fn a_member_is_held_once_until_it_leaves() {
        let (a, b) = (user("a"), user("b"));
        let mut entry = ChatEntry::default();
        entry.add(&a);
        entry.add(&b);
        entry.add(&a);
        assert_eq!(members(&entry), ["a", "b"]);
        entry.remove(&a);
        entry.remove(&a);
        assert_eq!(members(&entry), ["b"]);
        entry.remove(&b);
        assert!(entry.users.is_empty());
    }
}
