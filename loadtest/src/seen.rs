//! Telling, per chat and connection, a duplicate from an out-of-order
//! event from a `sync` filling in, without remembering every id.
//!
//! A chat's event ids are consecutive, so what a connection has seen is
//! the span from the lowest to the newest id it received, minus the gaps
//! that jumps left. Only the gaps are kept, as ranges: a run where every
//! event arrives in order keeps nothing, and a check is a map lookup.

use std::collections::{BTreeMap, HashMap};

/// What an arriving event id turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The next one, or the first seen in the chat.
    InOrder,
    /// Seen before on this connection.
    Duplicate,
    /// Beyond the next one: the ids between are missing for now.
    OutOfOrder,
    /// One that was missing (below the newest or below the first seen):
    /// what a `sync` replay does under live delivery, which the protocol
    /// allows.
    FilledIn,
    /// Beyond the next one while a `sync` of the chat is unanswered: live
    /// events the connection stopped holding (its first frame came more
    /// than a second after the welcome) overtaking the replay, which the
    /// protocol allows. The ids between are missing until the replay
    /// brings them.
    AheadOfReplay,
}

#[derive(Default)]
pub struct Seen {
    chats: HashMap<i64, Chat>,
    /// Chats this connection asked to `sync` from an id: every later id
    /// must arrive, including those below the first one it happened to see.
    synced_from: HashMap<i64, i64>,
    /// Whether a `sync` is sent and not yet answered.
    syncing: bool,
}

struct Chat {
    lowest: i64,
    newest: i64,
    /// Ids between `lowest` and `newest` not received: start -> end,
    /// inclusive, disjoint.
    missing: BTreeMap<i64, i64>,
}

impl Seen {
    pub fn arrive(&mut self, chat: i64, id: i64) -> Arrival {
        let Some(seen) = self.chats.get_mut(&chat) else {
            self.chats.insert(chat, Chat { lowest: id, newest: id, missing: BTreeMap::new() });
            return Arrival::InOrder;
        };
        if id == seen.newest + 1 {
            seen.newest = id;
            Arrival::InOrder
        } else if id > seen.newest {
            seen.missing.insert(seen.newest + 1, id - 1);
            seen.newest = id;
            if self.replaying(chat) {
                Arrival::AheadOfReplay
            } else {
                Arrival::OutOfOrder
            }
        } else if id < seen.lowest {
            if id + 1 < seen.lowest {
                seen.missing.insert(id + 1, seen.lowest - 1);
            }
            seen.lowest = id;
            Arrival::FilledIn
        } else if seen.take_missing(id) {
            Arrival::FilledIn
        } else {
            Arrival::Duplicate
        }
    }
}

impl Seen {
    /// The connection sent `sync` with `since` for `chat`: every id above it
    /// is owed (PROTOCOL.md: a reconnecting client gets exactly what it
    /// missed).
    pub fn synced_since(&mut self, chat: i64, since: i64) {
        self.synced_from.insert(chat, since + 1);
        self.syncing = true;
    }

    /// Whether a `sync` of `chat` is sent and not yet answered.
    pub fn replaying(&self, chat: i64) -> bool {
        self.syncing && self.synced_from.contains_key(&chat)
    }

    /// The `sync`'s `ack` came: the replay is complete.
    pub fn sync_answered(&mut self) {
        self.syncing = false;
    }

    /// Where a `sync` of `chat` on a new connection starts: the newest id
    /// seen, 0 if none. A gap below it is not asked for again: the run
    /// already counts it (out of order, and never arrived if it stays),
    /// and asking would replay the ids seen after it as duplicates.
    pub fn resume_from(&self, chat: i64) -> i64 {
        self.chats.get(&chat).map_or(0, |seen| seen.newest)
    }

    /// How many ids this connection will never have: the gaps left between
    /// the first and the newest it saw in each chat, and, in a chat it
    /// synced, those between the sync's start and the first it saw. Ids
    /// newer than the newest seen are not counted: they may be on their
    /// way.
    pub fn never_arrived(&self) -> u64 {
        self.chats
            .iter()
            .map(|(chat, seen)| {
                let gaps: i64 = seen.missing.iter().map(|(start, end)| end - start + 1).sum();
                let before_first = self.synced_from.get(chat).map_or(0, |&from| (seen.lowest - from).max(0));
                (gaps + before_first) as u64
            })
            .sum()
    }
}

impl Chat {
    /// Removes `id` from the gaps; false if it was not missing.
    fn take_missing(&mut self, id: i64) -> bool {
        let Some((&start, &end)) = self.missing.range(..=id).next_back() else { return false };
        if end < id {
            return false;
        }
        self.missing.remove(&start);
        if start < id {
            self.missing.insert(start, id - 1);
        }
        if id < end {
            self.missing.insert(id + 1, end);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{Arrival::*, Seen};

    fn arrivals(ids: &[i64]) -> Vec<super::Arrival> {
        let mut seen = Seen::default();
        ids.iter().map(|&id| seen.arrive(7, id)).collect()
    }

    #[test]
    fn consecutive_ids_are_in_order_and_a_repeat_is_a_duplicate() {
        assert_eq!(arrivals(&[3, 4, 5, 4, 3, 5]), [InOrder, InOrder, InOrder, Duplicate, Duplicate, Duplicate]);
    }

    #[test]
    fn a_jump_is_out_of_order_and_each_skipped_id_fills_in_once() {
        assert_eq!(
            arrivals(&[1, 5, 3, 2, 4, 3, 6, 1]),
            [InOrder, OutOfOrder, FilledIn, FilledIn, FilledIn, Duplicate, InOrder, Duplicate]
        );
    }

    #[test]
    fn ids_below_the_first_seen_fill_in_once() {
        // Live delivery of 10 came before the sync replay of 1..9.
        assert_eq!(
            arrivals(&[10, 1, 5, 9, 5, 1, 10, 11]),
            [InOrder, FilledIn, FilledIn, FilledIn, Duplicate, Duplicate, Duplicate, InOrder]
        );
    }

    #[test]
    fn what_never_arrived_is_the_gaps_left_and_what_a_sync_owed_below_the_first_seen() {
        let mut seen = Seen::default();
        for id in [1, 2, 5, 9, 3] {
            seen.arrive(1, id);
        }
        // Chat 1: 4 and 6..=8 missing; 10 and later may still come.
        assert_eq!(seen.never_arrived(), 4);
        seen.synced_since(2, 0);
        for id in [4, 5] {
            seen.arrive(2, id);
        }
        // Chat 2: synced from the start, so 1..=3 are owed too.
        assert_eq!(seen.never_arrived(), 7);
        for id in [1, 2, 3, 4, 6, 7, 8] {
            seen.arrive(if id <= 3 { 2 } else { 1 }, id);
        }
        assert_eq!(seen.never_arrived(), 0);
    }

    #[test]
    fn a_connection_that_comes_back_resumes_after_the_newest_it_saw() {
        let mut seen = Seen::default();
        for id in [4, 5, 6] {
            seen.arrive(1, id);
        }
        assert_eq!((seen.resume_from(1), seen.resume_from(2)), (6, 0));
        seen.synced_since(1, 6);
        // Live 9 overtook the replay of 7 and 8 (the connect hold ran out).
        assert_eq!([seen.arrive(1, 9), seen.arrive(1, 7)], [AheadOfReplay, FilledIn]);
        assert_eq!(seen.never_arrived(), 1, "8 is still owed");
        seen.arrive(1, 8);
        seen.sync_answered();
        assert_eq!([seen.arrive(1, 6), seen.arrive(1, 11)], [Duplicate, OutOfOrder]);
    }

    #[test]
    fn chats_are_apart() {
        let mut seen = Seen::default();
        assert_eq!(
            [seen.arrive(1, 1), seen.arrive(2, 1), seen.arrive(1, 2), seen.arrive(2, 1)],
            [InOrder, InOrder, InOrder, Duplicate]
        );
    }
}
