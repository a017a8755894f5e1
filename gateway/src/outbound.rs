//! What travels from the node to one connection's writer, and the writer's
//! per-chat cursor that keeps each connection's view of a chat gap-free,
//! duplicate-free and in `id` order across live delivery and `sync` replay.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use shared::model::{ChatId, EventId};

/// A rendered chat event with its chat and id.
pub type RenderedEvent = (ChatId, EventId, Bytes);

/// One item of a connection's bounded outbound queue.
#[derive(Debug)]
pub enum Outbound {
    /// Any frame that is not a persisted chat event (replies, presence...).
    Frame(Bytes),
    /// A persisted chat event, already rendered; shared by every recipient.
    Event {
        chat: ChatId,
        id: EventId,
        frame: Bytes,
    },
    /// A `sync` for these chats begins: hold their live events until the
    /// replay is written, so that replay and live events interleave in order.
    SyncBegin(Vec<(ChatId, EventId)>),
    /// Replayed events of one chat, ascending.
    Replay(Vec<RenderedEvent>),
    /// The `sync` replay is complete: write its ack, then the held events.
    /// `synced` are the chats replayed (with the client's `since`), `all`
    /// every chat the sync named, refused ones included.
    SyncEnd {
        reference: Option<serde_json::Value>,
        synced: Vec<(ChatId, EventId)>,
        all: Vec<ChatId>,
    },
    /// Reply to a WebSocket Ping.
    Pong(Bytes),
    /// Write what is queued before this, then close with this code.
    Close(u16, &'static str),
}

/// The writer's memory of what it sent, per chat. Empty for a connection
/// that received nothing yet, so idle connections cost nothing here.
#[derive(Debug, Default)]
pub struct Cursors {
    sent: HashMap<ChatId, EventId>,
    holding: HashSet<ChatId>,
    held: Vec<RenderedEvent>,
}

impl Cursors {
    /// Whether to write event `id` of `chat` now. Events at or below what
    /// was already sent are duplicates (a replay overlapping live delivery).
    pub fn admit(&mut self, chat: ChatId, id: EventId) -> bool {
        let sent = self.sent.entry(chat).or_insert(0);
        if id <= *sent {
            return false;
        }
        *sent = id;
        true
    }

    /// True (and the event kept for later) when `chat` is being synced.
    pub fn hold(&mut self, chat: ChatId, id: EventId, frame: &Bytes) -> bool {
        if self.holding.contains(&chat) {
            self.held.push((chat, id, frame.clone()));
            return true;
        }
        false
    }

    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Starts holding the synced chats. The client has seen each up to its
    /// `since`, so nothing at or below it is written again.
    pub fn begin_sync(&mut self, since: &[(ChatId, EventId)]) {
        for &(chat, from) in since {
            self.holding.insert(chat);
            let sent = self.sent.entry(chat).or_insert(0);
            *sent = (*sent).max(from);
        }
    }

    /// Ends the sync of `all`: the last id sent per chat of `synced` (at
    /// least the client's `since`), and the held events to write next.
    pub fn end_sync(
        &mut self,
        all: &[ChatId],
        synced: &[(ChatId, EventId)],
    ) -> (Vec<(ChatId, EventId)>, Vec<RenderedEvent>) {
        let synced = synced
            .iter()
            .map(|&(chat, from)| (chat, self.sent.get(&chat).copied().unwrap_or(from)))
            .collect();
        for chat in all {
            self.holding.remove(chat);
        }
        let (release, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(c, _, _)| !self.holding.contains(c));
        self.held = keep;
        (synced, release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Bytes {
        Bytes::from_static(b"x")
    }

    #[test]
    fn live_events_are_written_once_in_order() {
        let mut c = Cursors::default();
        assert!(c.admit(1, 5));
        assert!(!c.admit(1, 5), "duplicate");
        assert!(!c.admit(1, 4), "older than sent");
        assert!(c.admit(1, 6));
        assert!(c.admit(2, 1), "chats are independent");
    }

    #[test]
    fn sync_holds_live_events_and_releases_them_after_the_replay() {
        let mut c = Cursors::default();
        assert!(c.admit(1, 3), "live before the sync");
        c.begin_sync(&[(1, 0)]);
        assert!(c.hold(1, 7, &b()), "live during the sync is held");
        assert!(!c.hold(2, 1, &b()), "other chats flow");
        // Replay from since=0: 1..=3 were sent live already, 4..=7 are new.
        let written: Vec<_> = (1..=7).filter(|id| c.admit(1, *id)).collect();
        assert_eq!(written, vec![4, 5, 6, 7]);
        let (synced, release) = c.end_sync(&[1], &[(1, 0)]);
        assert_eq!(synced, vec![(1, 7)]);
        assert_eq!(release.len(), 1);
        assert!(
            !c.admit(1, release[0].1),
            "the held copy of 7 is a duplicate now"
        );
        assert_eq!(c.held_len(), 0);
    }

    #[test]
    fn nothing_at_or_below_since_is_written_again() {
        let mut c = Cursors::default();
        c.begin_sync(&[(1, 10)]);
        assert!(!c.admit(1, 10));
        assert!(c.admit(1, 11));
        assert_eq!(c.end_sync(&[1], &[(1, 10)]).0, vec![(1, 11)]);
    }
}
