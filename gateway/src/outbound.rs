//! What travels from the node to one connection's writer, and the writer's
//! record of what it sent per chat, which keeps each connection's view of a
//! chat duplicate-free across live delivery and `sync` replay.
//!
//! A new connection starts out holding live chat events until the client's
//! first frame: if that frame is a `sync`, the replay comes first and the
//! held events after it, so a client that syncs on connect sees every chat
//! strictly in id order. Any other first frame (or a second without one)
//! releases them.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shared::model::{ChatId, EventId};

use crate::outbound_queue::QueueLimits;

/// How long a new connection holds live events waiting for a first frame.
pub const CONNECT_HOLD: Duration = Duration::from_secs(1);

/// A chat event rendered once and shared by its recipients, with what the
/// writer needs to order, deduplicate and measure it.
#[derive(Debug, Clone)]
pub struct RenderedEvent {
    pub chat: ChatId,
    pub id: EventId,
    /// The frame type, for metrics.
    pub kind: &'static str,
    /// When the event was stored, for the delivery latency.
    pub stored_at: i64,
    pub frame: Bytes,
}

/// A rendered frame that is not a chat event, with its type for metrics.
#[derive(Debug)]
pub struct Framed {
    pub kind: &'static str,
    pub bytes: Bytes,
    /// Written after `bytes`, in the same frame: a part that many
    /// connections' frames end with, held once. A large group's member
    /// list, in a `chats` frame to each member: 10,000 members' copies of
    /// 10,000 names are some 1.4 GB.
    pub shared_end: Option<Bytes>,
}

impl Framed {
    pub fn new(kind: &'static str, bytes: Bytes) -> Self {
        Framed { kind, bytes, shared_end: None }
    }

    /// A frame of `head`, then `shared_end`.
    pub fn spliced(kind: &'static str, head: Bytes, shared_end: Bytes) -> Self {
        Framed { kind, bytes: head, shared_end: Some(shared_end) }
    }
}

/// The end of a `sync`: see [`Outbound::SyncEnd`].
#[derive(Debug)]
pub struct SyncEnd {
    pub reference: Option<serde_json::Value>,
    pub synced: Vec<(ChatId, EventId)>,
    pub all: Vec<ChatId>,
}

/// A page of a `sync`'s replay, or of a catch-up (`hub::catch_up`).
/// Dropped once the writer has encoded it, which `taken` tells the reader
/// (or the catch-up): it queues the next page only then, so a client that
/// syncs a long history and does not read holds about two pages here, not
/// a queue full of them (`OUTBOUND_QUEUE` pages of up to 500 events each).
#[derive(Debug)]
pub struct ReplayPage {
    pub events: Vec<Arc<RenderedEvent>>,
    pub taken: tokio::sync::oneshot::Sender<()>,
}

/// One item of a connection's bounded outbound queue. Kept to 32 bytes
/// (payloads behind pointers): every item waiting takes a slot this size,
/// up to `OUTBOUND_QUEUE` of them for a client that reads slowly.
#[derive(Debug)]
pub enum Outbound {
    /// Any frame that is not a persisted chat event (replies, presence...);
    /// shared when several connections get the same one.
    Frame(Arc<Framed>),
    /// The `chats` frame telling the user they left this chat (removed, or
    /// the chat deleted): written, and the connection's record of the
    /// chat dropped ([`Cursors::forget`]). One item, so that leaving costs
    /// no more of the queue's bound than it did.
    Left(Arc<Framed>, ChatId),
    /// A persisted chat event, live; one allocation shared by every
    /// recipient of the fan-out.
    Event(Arc<RenderedEvent>),
    /// A `sync` for these chats begins: hold their live events until the
    /// replay is written, so that replay and live events interleave in order.
    SyncBegin(Vec<ChatId>),
    /// Replayed events, ascending per chat.
    Replay(Box<ReplayPage>),
    /// The `sync` replay is complete: write its ack, then the held events.
    /// `synced` are the chats replayed (with the client's `since`), `all`
    /// every chat the sync named, refused ones included.
    SyncEnd(Box<SyncEnd>),
    /// The client's first frame was not a `sync`: stop holding.
    Release,
    /// The replay of a chat the node began following for this connection
    /// late is written (`hub::catch_up`): release its held live events.
    CatchUpEnd(ChatId),
    /// Reply to a WebSocket Ping, with its payload.
    Pong(Box<[u8]>),
    /// Frames the fan-out encoded for this connection and did not write,
    /// all of them or the rest of a partial write (`write_through`):
    /// written first, as is.
    Rest(Box<[u8]>),
    /// Write what is queued before this, then close with this code.
    Close(u16, &'static str),
}

/// The ids written per chat, as disjoint ascending ranges (live delivery is
/// contiguous, so there are one or two), plus what is held back. Empty for a
/// connection that received nothing, so idle connections cost nothing.
///
/// The chats are kept sorted in one array and found by binary search: this
/// look-up runs for every delivery, and a hash map's (hashing the id, then
/// a control group and a bucket, each likely a cache miss on a connection
/// written to ten times a second) made it the largest function of ours in
/// the profile (docs/benchmarks-journal.md, sixteenth session). A new chat
/// is inserted in place, once per chat a connection hears from.
#[derive(Debug)]
pub struct Cursors {
    sent: Vec<(ChatId, Vec<(EventId, EventId)>)>,
    holding_all: bool,
    /// The connection's first frame was a `sync`, which ends the connect
    /// hold when it ends: the hold's one-second timer is off.
    first_frame_sync: bool,
    /// Only while a `sync` runs: boxed, so that every other connection
    /// carries one pointer for it (every connection has cursors).
    holds: Option<Box<Holds>>,
}

/// The chats whose live events wait for a `sync`'s replay, and the events.
#[derive(Debug, Default)]
struct Holds {
    /// Each chat held, with the number of running syncs that name it. A
    /// map: a sync may name 10,000 chats, and every live event of the
    /// connection is looked up here while it runs.
    holding: HashMap<ChatId, u32>,
    held: Vec<Arc<RenderedEvent>>,
    /// The held events' frames' bytes, which count against
    /// `OUTBOUND_BYTES` as queued ones do: released, they are encoded for
    /// this connection all at once.
    held_bytes: usize,
}

impl Outbound {
    pub fn frame(kind: &'static str, bytes: Bytes) -> Outbound {
        Outbound::Frame(Arc::new(Framed::new(kind, bytes)))
    }

    /// What this item counts against its queue's bytes (`OUTBOUND_BYTES`):
    /// its frames' payloads, which a connection that does not read keeps
    /// alive (shared ones) or holds a copy of (the rest of a write the
    /// fan-out began). A frame's shared end does not count: it is written
    /// from where it is shared, never copied, and a large group's member
    /// list would otherwise fill the bound in thirty changes. Replay pages
    /// count nothing: a `sync` has two queued at most (`client/sync.rs`).
    pub fn queued_bytes(&self) -> u32 {
        let bytes = match self {
            Outbound::Frame(framed) | Outbound::Left(framed, _) => framed.bytes.len(),
            Outbound::Event(event) => event.frame.len(),
            Outbound::Pong(payload) | Outbound::Rest(payload) => payload.len(),
            Outbound::SyncBegin(_)
            | Outbound::Replay(_)
            | Outbound::SyncEnd(_)
            | Outbound::Release
            | Outbound::CatchUpEnd(_)
            | Outbound::Close(..) => 0,
        };
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

impl Cursors {
    /// A new connection's cursors, holding everything until released.
    pub fn on_connect() -> Self {
        Cursors { sent: Vec::new(), holding_all: true, first_frame_sync: false, holds: None }
    }

    /// Whether to write event `id` of `chat` now (and record it as sent):
    /// false if this connection already wrote it.
    pub fn admit(&mut self, chat: ChatId, id: EventId) -> bool {
        let ranges = self.ranges_of(chat);
        // Live delivery: the next id after everything written so far.
        if let Some(last) = ranges.last_mut() {
            if last.1 + 1 == id {
                last.1 = id;
                return true;
            }
        }
        let at = ranges.partition_point(|&(_, hi)| hi < id);
        if at < ranges.len() && ranges[at].0 <= id {
            return false;
        }
        ranges.insert(at, (id, id));
        // Merge with the neighbours it touches.
        if at + 1 < ranges.len() && ranges[at + 1].0 == id + 1 {
            ranges[at].1 = ranges[at + 1].1;
            ranges.remove(at + 1);
        }
        if at > 0 && ranges[at - 1].1 + 1 == id {
            ranges[at - 1].1 = ranges[at].1;
            ranges.remove(at);
        }
        true
    }

    /// True (and the event kept for later) when `chat` is being held.
    pub fn hold(&mut self, event: &Arc<RenderedEvent>) -> bool {
        let holding_chat = self.holds.as_ref().is_some_and(|h| h.holding.contains_key(&event.chat));
        if self.holding_all || holding_chat {
            let holds = self.holds.get_or_insert_with(Box::default);
            holds.held.push(event.clone());
            holds.held_bytes += event.frame.len();
            return true;
        }
        false
    }

    pub fn is_holding_all(&self) -> bool {
        self.holding_all
    }

    /// Whether the connect hold waits for its one-second timer: it holds,
    /// and no first `sync` has begun (that ends the hold with its `ack`).
    pub fn waits_for_first_frame(&self) -> bool {
        self.holding_all && !self.first_frame_sync
    }

    /// Whether any chat's live events are being held.
    pub fn holds_any(&self) -> bool {
        self.holding_all || self.holds.as_ref().is_some_and(|h| !h.holding.is_empty())
    }

    pub fn held_len(&self) -> usize {
        self.holds.as_ref().map_or(0, |h| h.held.len())
    }

    pub fn held_bytes(&self) -> usize {
        self.holds.as_ref().map_or(0, |h| h.held_bytes)
    }

    /// Whether more events, or bytes of them, are held than `limits` allow
    /// (`OUTBOUND_QUEUE`, `OUTBOUND_BYTES`): released, they are encoded for
    /// the connection all at once.
    pub fn held_past(&self, limits: QueueLimits) -> bool {
        self.held_len() > limits.items as usize || self.held_bytes() > limits.bytes as usize
    }

    pub fn begin_sync(&mut self, chats: &[ChatId]) {
        self.first_frame_sync |= self.holding_all;
        self.hold_chats(chats);
    }

    /// Ends the sync of `all`: the last id sent per chat of `synced` (at
    /// least the client's `since`), and the held events to write next.
    pub fn end_sync(
        &mut self,
        all: &[ChatId],
        synced: &[(ChatId, EventId)],
    ) -> (Vec<(ChatId, EventId)>, Vec<Arc<RenderedEvent>>) {
        let synced = synced.iter().map(|&(chat, from)| (chat, self.last_sent(chat).max(from))).collect();
        self.unhold_chats(all);
        self.holding_all = false;
        (synced, self.take_released())
    }

    /// The node began following `chat` for this connection after it had
    /// delivered some of the chat's events to others (`hub::catch_up`):
    /// hold the chat's live events until those are replayed. Unlike a
    /// client's `sync`, this leaves the connect hold as it is.
    pub fn begin_catch_up(&mut self, chat: ChatId) {
        self.hold_chats(&[chat]);
    }

    /// The catch-up of `chat` is replayed: the held events to write next.
    /// None while the connect hold lasts, which releases them itself.
    pub fn end_catch_up(&mut self, chat: ChatId) -> Vec<Arc<RenderedEvent>> {
        self.unhold_chats(&[chat]);
        if self.holding_all {
            return Vec::new();
        }
        self.take_released()
    }

    /// One more sync or catch-up holds each of `chats`.
    fn hold_chats(&mut self, chats: &[ChatId]) {
        let holding = &mut self.holds.get_or_insert_with(Box::default).holding;
        for chat in chats {
            *holding.entry(*chat).or_default() += 1;
        }
    }

    /// One sync or catch-up of each of `chats` has ended; a chat none
    /// holds any more flows again.
    fn unhold_chats(&mut self, chats: &[ChatId]) {
        let Some(holds) = self.holds.as_mut() else { return };
        for chat in chats {
            if let Entry::Occupied(mut holders) = holds.holding.entry(*chat) {
                *holders.get_mut() -= 1;
                if *holders.get() == 0 {
                    holders.remove();
                }
            }
        }
    }

    /// Stops holding everything held since connect; returns it.
    pub fn release(&mut self) -> Vec<Arc<RenderedEvent>> {
        self.holding_all = false;
        self.take_released()
    }

    fn take_released(&mut self) -> Vec<Arc<RenderedEvent>> {
        let Some(holds) = self.holds.as_mut() else { return Vec::new() };
        let held = std::mem::take(&mut holds.held);
        let (release, keep): (Vec<_>, Vec<_>) = held.into_iter().partition(|e| !holds.holding.contains_key(&e.chat));
        holds.held = keep;
        holds.held_bytes = holds.held.iter().map(|e| e.frame.len()).sum();
        if holds.holding.is_empty() && holds.held.is_empty() {
            self.holds = None;
        }
        release
    }

    /// The user left `chat` (removed, or the chat deleted): drops what was
    /// written of it. Kept, the record of every chat a connection ever
    /// heard from stayed for the connection's life, about 150 bytes each
    /// (a soak audit: 12,000 chats created and deleted around 20 open
    /// connections took 35 MiB). Kept all the same while the connect hold
    /// lasts or a `sync` or catch-up holds the chat: events held then and
    /// released later could repeat ones written before.
    pub fn forget(&mut self, chat: ChatId) {
        let held = self.holds.as_ref().is_some_and(|h| h.holding.contains_key(&chat));
        if self.holding_all || held {
            return;
        }
        if let Ok(at) = self.sent.binary_search_by_key(&chat, |(c, _)| *c) {
            self.sent.remove(at);
            // A connection that was in many chats at once gives the room
            // back as it leaves them.
            if self.sent.capacity() > 4 * self.sent.len().max(4) {
                self.sent.shrink_to(2 * self.sent.len());
            }
        }
    }

    /// The highest id `h` such that this connection wrote every event of
    /// `chat` in `(from, h]`: `from` itself if it did not write `from + 1`.
    pub fn written_through(&self, chat: ChatId, from: EventId) -> EventId {
        let Ok(at) = self.sent.binary_search_by_key(&chat, |(c, _)| *c) else { return from };
        let ranges = &self.sent[at].1;
        match ranges.get(ranges.partition_point(|&(_, hi)| hi <= from)) {
            Some(&(lo, hi)) if lo <= from + 1 => hi,
            _ => from,
        }
    }

    fn last_sent(&self, chat: ChatId) -> EventId {
        match self.sent.binary_search_by_key(&chat, |(c, _)| *c) {
            Ok(at) => self.sent[at].1.last().map(|r| r.1).unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// The ranges written of `chat`, empty (and in place) if none yet.
    fn ranges_of(&mut self, chat: ChatId) -> &mut Vec<(EventId, EventId)> {
        let at = match self.sent.binary_search_by_key(&chat, |(c, _)| *c) {
            Ok(at) => at,
            Err(at) => {
                self.sent.insert(at, (chat, Vec::new()));
                at
            }
        };
        &mut self.sent[at].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(chat: ChatId, id: EventId) -> Arc<RenderedEvent> {
        Arc::new(RenderedEvent { chat, id, kind: "new", stored_at: 0, frame: Bytes::from_static(b"x") })
    }

    #[test]
    fn a_queue_item_stays_small() {
        assert!(std::mem::size_of::<Outbound>() <= 32, "{}", std::mem::size_of::<Outbound>());
    }

    fn live() -> Cursors {
        let mut c = Cursors::on_connect();
        c.release();
        c
    }

    #[test]
    fn each_event_is_written_once() {
        let mut c = live();
        assert!(c.admit(1, 5));
        assert!(!c.admit(1, 5), "duplicate");
        assert!(c.admit(1, 6));
        assert!(c.admit(1, 3), "an older event not yet sent is written");
        assert!(!c.admit(1, 3));
        assert!(c.admit(1, 4));
        assert!(!c.admit(1, 4));
        assert!(c.admit(2, 1), "chats are independent");
        assert_eq!(c.sent[0], (1, vec![(3, 6)]), "ranges merge");
        assert_eq!(c.sent[1], (2, vec![(1, 1)]), "chats in order");
    }

    #[test]
    fn what_was_written_without_a_gap_after_a_point_is_known() {
        let mut c = live();
        for id in [3, 4, 5, 6, 9, 10] {
            assert!(c.admit(1, id));
        }
        assert_eq!(c.written_through(1, 0), 0, "1 never written");
        assert_eq!(c.written_through(1, 2), 6);
        assert_eq!(c.written_through(1, 4), 6);
        assert_eq!(c.written_through(1, 6), 6, "7 never written");
        assert_eq!(c.written_through(1, 8), 10);
        assert_eq!(c.written_through(1, 10), 10);
        assert_eq!(c.written_through(1, 12), 12);
        assert_eq!(c.written_through(2, 5), 5, "a chat never heard from");
    }

    #[test]
    fn chats_heard_from_in_any_order_are_each_tracked_apart() {
        let mut c = live();
        let chats = [50, 3, 97, 1, 64, 3, 50, 2, 99, 1];
        for (round, &chat) in chats.iter().enumerate() {
            let id = round as EventId + 1;
            assert!(c.admit(chat, id), "chat {chat} event {id} is new");
            assert!(!c.admit(chat, id), "chat {chat} event {id} again");
        }
        let order: Vec<ChatId> = c.sent.iter().map(|(chat, _)| *chat).collect();
        assert_eq!(order, vec![1, 2, 3, 50, 64, 97, 99]);
        assert_eq!(c.last_sent(3), 6);
        assert_eq!(c.last_sent(1), 10);
        assert_eq!(c.last_sent(4), 0, "a chat never heard from");
    }

    /// A chat left is forgotten, and its room given back once many are:
    /// a connection that outlives thousands of chats does not keep them.
    #[test]
    fn a_chat_left_is_forgotten_and_many_give_their_room_back() {
        let mut c = live();
        for chat in 1..=1_000 {
            assert!(c.admit(chat, 1));
        }
        c.forget(7);
        assert_eq!(c.sent.len(), 999);
        assert!(c.admit(7, 1), "written again once forgotten: a new member's record");
        for chat in 1..=1_000 {
            c.forget(chat);
        }
        assert!(c.sent.is_empty());
        assert!(c.sent.capacity() <= 16, "the room went back: {}", c.sent.capacity());
        c.forget(5_000);
        assert!(c.sent.is_empty(), "a chat never heard from is nothing to forget");
    }

    /// Events held for a `sync`, or for the connect hold, are checked
    /// against the record when released: forgetting the chat then would
    /// let a held copy of an event written before through.
    #[test]
    fn a_chat_held_is_not_forgotten() {
        let mut c = live();
        assert!(c.admit(1, 5));
        c.begin_sync(&[1]);
        assert!(c.hold(&ev(1, 5)), "a live copy of 5 arrives while the sync runs");
        c.forget(1);
        let (_, release) = c.end_sync(&[1], &[(1, 4)]);
        assert!(!c.admit(1, release[0].id), "the held copy is still known as written");
        c.forget(1);
        assert!(c.admit(1, 5), "forgotten once no hold is left");

        let mut connecting = Cursors::on_connect();
        assert!(connecting.admit(2, 1));
        connecting.forget(2);
        assert!(!connecting.admit(2, 1), "not during the connect hold");
    }

    #[test]
    fn a_replay_after_live_delivery_fills_in_below_without_repeating() {
        let mut c = live();
        assert!(c.admit(1, 8), "live, before the sync arrived");
        assert!(c.admit(1, 9));
        c.begin_sync(&[1]);
        assert!(c.hold(&ev(1, 10)), "live during the sync is held");
        assert!(!c.hold(&ev(2, 1)), "other chats flow");
        let written: Vec<_> = (3..=10).filter(|id| c.admit(1, *id)).collect();
        assert_eq!(written, vec![3, 4, 5, 6, 7, 10], "nothing missed, nothing twice");
        let (synced, release) = c.end_sync(&[1], &[(1, 2)]);
        assert_eq!(synced, vec![(1, 10)]);
        assert_eq!(release.len(), 1);
        assert!(!c.admit(1, release[0].id), "the held copy of 10 is a duplicate now");
    }

    /// The one-second timer releases the connect hold only while no first
    /// frame came: a first `sync` ends the hold with its own `ack`.
    #[test]
    fn a_first_sync_stops_the_connect_holds_timer() {
        let mut c = Cursors::on_connect();
        assert!(c.waits_for_first_frame());
        c.begin_sync(&[]);
        assert!(c.is_holding_all() && !c.waits_for_first_frame(), "still held, for the sync's ack");
        let mut later = Cursors::on_connect();
        later.release();
        later.begin_sync(&[1]);
        assert!(!later.waits_for_first_frame());
    }

    #[test]
    fn a_new_connection_holds_until_its_first_frame() {
        let mut c = Cursors::on_connect();
        assert!(c.hold(&ev(1, 4)));
        assert!(c.hold(&ev(2, 9)));
        // The first frame is a sync of chat 1 from 2.
        c.begin_sync(&[1]);
        assert!(c.admit(1, 3));
        assert!(c.admit(1, 4));
        let (synced, release) = c.end_sync(&[1], &[(1, 2)]);
        assert_eq!(synced, vec![(1, 4)]);
        let written: Vec<_> = release.into_iter().filter(|e| c.admit(e.chat, e.id)).map(|e| (e.chat, e.id)).collect();
        assert_eq!(written, vec![(2, 9)], "chat 1's held 4 was replayed already; chat 2 flows after the ack");
        assert!(!c.is_holding_all());
    }

    /// A chat joined while connected: its live events wait for the replay
    /// of those the node delivered to others before, and then follow it.
    #[test]
    fn a_catch_up_holds_its_chat_until_it_ends() {
        let mut c = live();
        c.begin_catch_up(1);
        assert!(c.hold(&ev(1, 6)), "live in the chat caught up is held");
        assert!(!c.hold(&ev(2, 1)), "other chats flow");
        let replayed: Vec<_> = (3..=5).filter(|id| c.admit(1, *id)).collect();
        assert_eq!(replayed, vec![3, 4, 5]);
        let released: Vec<_> = c.end_catch_up(1).into_iter().map(|e| e.id).collect();
        assert_eq!(released, vec![6]);
        assert!(!c.holds_any(), "nothing held after");
    }

    /// Joined while the connect hold lasts: the catch-up's end leaves the
    /// connect hold (and its timer) alone, and the release takes the rest.
    #[test]
    fn a_catch_up_during_the_connect_hold_leaves_it_to_its_release() {
        let mut c = Cursors::on_connect();
        c.begin_catch_up(1);
        assert!(c.waits_for_first_frame(), "no first frame came");
        assert!(c.hold(&ev(1, 6)));
        assert!(c.hold(&ev(2, 9)));
        assert!(c.end_catch_up(1).is_empty(), "still the connect hold's");
        assert!(c.waits_for_first_frame());
        let released: Vec<_> = c.release().into_iter().map(|e| (e.chat, e.id)).collect();
        assert_eq!(released, vec![(1, 6), (2, 9)]);
    }

    /// A catch-up still running when the connect hold is released keeps
    /// its chat held; a client's `sync` of the chat meanwhile does too.
    #[test]
    fn a_catch_up_outlasting_a_release_or_a_sync_keeps_its_chat_held() {
        let mut c = Cursors::on_connect();
        c.begin_catch_up(1);
        assert!(c.hold(&ev(1, 6)));
        assert!(c.hold(&ev(2, 9)));
        let released: Vec<_> = c.release().into_iter().map(|e| (e.chat, e.id)).collect();
        assert_eq!(released, vec![(2, 9)], "chat 1 waits for its replay");
        c.begin_sync(&[1]);
        let (_, release) = c.end_sync(&[1], &[(1, 0)]);
        assert!(release.is_empty(), "the catch-up still holds chat 1");
        let released: Vec<_> = c.end_catch_up(1).into_iter().map(|e| e.id).collect();
        assert_eq!(released, vec![6]);
    }

    #[test]
    fn a_refused_sync_leaves_nothing_suppressed() {
        let mut c = live();
        c.begin_sync(&[1]);
        let (synced, release) = c.end_sync(&[1], &[]);
        assert!(synced.is_empty() && release.is_empty());
        assert!(c.admit(1, 1), "live events of the refused chat still flow");
    }
}
