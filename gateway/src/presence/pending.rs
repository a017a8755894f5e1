//! Presence transitions waiting to be announced, oldest first.
//!
//! A transition met by its opposite before it went out (a connection that
//! dropped and came back) cancels with it, so co-members hear of neither.
//! The announcer takes a batch at a time and leaves the rest here, where
//! they can still cancel: taking everything at once meant that in a
//! reconnect storm of 19,000 users in 20 chats each, every returning
//! user's `offline` went out over some 25 s, and their `online` only
//! after it, while they were connected again all along.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use shared::model::{ChatId, Millis};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub online: bool,
    pub at: Millis,
    /// The user's chats, when this node knew them as the transition
    /// happened; otherwise the announcer reads them from the store.
    pub chats: Option<Arc<[ChatId]>>,
    /// Orders it against transitions other gateways announce for the user
    /// (`Event::Presence`).
    pub seq: u64,
    /// The number of the user's transition just before this one, when
    /// known: a waiting opposite cancels with this one only if it is that
    /// transition. Otherwise another gateway announced a change in between
    /// (the user came back on it and left again), and co-members must hear
    /// this one.
    pub follows: Option<u64>,
}

#[derive(Default)]
pub struct PendingTransitions {
    /// Each waiting user's transition and its place in the queue.
    by_user: HashMap<String, (Transition, u64)>,
    /// Waiting users by place, oldest first.
    queue: BTreeMap<u64, String>,
    next: u64,
}

impl PendingTransitions {
    pub fn record(&mut self, user: &str, transition: Transition) {
        match self.by_user.get_mut(user) {
            // Decided before the one waiting, though recorded after it (two
            // connections' changes, or a recount, finishing out of order):
            // the waiting one is the later state. Standalone numbers all 0.
            Some((waiting, _)) if transition.seq < waiting.seq => {}
            Some((waiting, place))
                if waiting.online != transition.online && transition.follows == Some(waiting.seq) =>
            {
                let place = *place;
                self.by_user.remove(user);
                self.queue.remove(&place);
            }
            // A later state (the same again, confirmed late, or its
            // opposite with another gateway's changes in between) goes out
            // instead: it keeps the place, and the chats known with the
            // first.
            Some((waiting, _)) => {
                let chats = transition.chats.or_else(|| waiting.chats.take());
                *waiting = Transition { chats, ..transition };
            }
            None => {
                self.by_user.insert(user.to_owned(), (transition, self.next));
                self.queue.insert(self.next, user.to_owned());
                self.next += 1;
            }
        }
    }

    /// The oldest `most` transitions, taken out.
    pub fn take(&mut self, most: usize) -> Vec<(String, Transition)> {
        let mut taken = Vec::with_capacity(most.min(self.queue.len()));
        while taken.len() < most {
            let Some((_, user)) = self.queue.pop_first() else { break };
            if let Some((transition, _)) = self.by_user.remove(&user) {
                taken.push((user, transition));
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn went(online: bool, at: Millis) -> Transition {
        Transition { online, at, chats: None, seq: 0, follows: Some(0) }
    }

    #[test]
    fn batches_come_oldest_first_and_opposites_left_waiting_cancel() {
        let mut pending = PendingTransitions::default();
        for n in 0..5 {
            pending.record(&format!("u{n}"), went(false, n));
        }
        let first = pending.take(2);
        assert_eq!(first, vec![("u0".to_string(), went(false, 0)), ("u1".to_string(), went(false, 1))]);
        // u1's offline went out, so its return must be told; u3's did not.
        pending.record("u1", went(true, 10));
        pending.record("u3", went(true, 11));
        pending.record("u4", went(false, 12));
        let rest = pending.take(10);
        assert_eq!(
            rest,
            vec![
                ("u2".to_string(), went(false, 2)),
                ("u4".to_string(), went(false, 12)),
                ("u1".to_string(), went(true, 10))
            ]
        );
        assert!(pending.take(10).is_empty());
    }

    /// A late confirmation (Redis's retry telling) knows no chats; the
    /// chats known when the transition happened still go out with it.
    #[test]
    fn a_repeated_transition_keeps_the_chats_first_known() {
        let mut pending = PendingTransitions::default();
        let chats: Arc<[ChatId]> = Arc::from([7, 9]);
        pending.record("u0", Transition { chats: Some(chats.clone()), ..went(true, 1) });
        pending.record("u0", went(true, 2));
        assert_eq!(pending.take(10), vec![("u0".to_string(), Transition { chats: Some(chats), ..went(true, 2) })]);
    }

    /// In a cluster: u0 went offline here (10), came back on another
    /// gateway and left it again (11, 12, announced there), and is back
    /// here (13). Cancelling 10 with 13 would leave co-members with 12's
    /// `offline`; 13 goes out instead. u1's return follows its departure
    /// directly, so the two cancel.
    #[test]
    fn an_opposite_cancels_only_the_transition_it_follows() {
        let mut pending = PendingTransitions::default();
        let decided = |online, seq, follows| Transition { online, at: seq as Millis, chats: None, seq, follows };
        pending.record("u0", decided(false, 10, Some(9)));
        pending.record("u1", decided(false, 20, Some(19)));
        pending.record("u0", decided(true, 13, Some(12)));
        pending.record("u1", decided(true, 21, Some(20)));
        assert_eq!(pending.take(10), vec![("u0".to_string(), decided(true, 13, Some(12)))]);
        // A transition decided before the waiting one, recorded after it,
        // changes nothing.
        pending.record("u3", decided(true, 41, Some(40)));
        pending.record("u3", decided(false, 40, Some(39)));
        assert_eq!(pending.take(10), vec![("u3".to_string(), decided(true, 41, Some(40)))]);
        // Nor does an opposite of unknown lineage (a reaping's) cancel.
        pending.record("u2", decided(true, 30, Some(29)));
        pending.record("u2", decided(false, 31, None));
        assert_eq!(pending.take(10), vec![("u2".to_string(), decided(false, 31, None))]);
    }
}
