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
            Some((waiting, place)) if waiting.online != transition.online => {
                let place = *place;
                self.by_user.remove(user);
                self.queue.remove(&place);
            }
            // The same again (a late confirmation): it keeps its place,
            // and the chats known with the first.
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
        Transition { online, at, chats: None, seq: 0 }
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
        pending.record("u0", Transition { online: true, at: 1, chats: Some(chats.clone()), seq: 0 });
        pending.record("u0", went(true, 2));
        assert_eq!(
            pending.take(10),
            vec![("u0".to_string(), Transition { online: true, at: 2, chats: Some(chats), seq: 0 })]
        );
    }
}
