//! The cap on one user's open connections on a node (`USER_CONNECTIONS`).
//!
//! Each connection carries its own command allowance, `sync` and queues,
//! so a token opening connections without bound would multiply them. A
//! slot is taken when the upgrade is accepted, before the connection's
//! setup waits for anything, and given back when the connection's task
//! ends: counting registered connections instead let a burst of parallel
//! upgrades all pass the check while they waited to register.

use std::sync::Arc;

use dashmap::DashMap;

pub struct UserSlots {
    /// At most this many slots per user; 0 for no limit (nothing counted).
    limit: usize,
    taken: DashMap<String, usize>,
}

/// One connection's slot, given back when dropped.
pub struct Slot {
    slots: Option<Arc<UserSlots>>,
    user: String,
}

impl UserSlots {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(UserSlots { limit, taken: DashMap::new() })
    }

    /// A slot for `user`, or `None` if they hold `limit` already.
    pub fn take(self: &Arc<Self>, user: &str) -> Option<Slot> {
        if self.limit == 0 {
            return Some(Slot { slots: None, user: String::new() });
        }
        let mut taken = self.taken.entry(user.to_owned()).or_insert(0);
        if *taken >= self.limit {
            return None;
        }
        *taken += 1;
        Some(Slot { slots: Some(self.clone()), user: user.to_owned() })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // As `Presence::disconnected` counts a user's connections down: one
        // lock of the map, and the user forgotten at zero.
        if let Some(slots) = &self.slots {
            slots.taken.remove_if_mut(&self.user, |_, taken| {
                *taken = taken.saturating_sub(1);
                *taken == 0
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_the_limit_and_a_slot_given_back_is_free_again() {
        let slots = UserSlots::new(2);
        let first = slots.take("alice").expect("first");
        let _second = slots.take("alice").expect("second");
        assert!(slots.take("alice").is_none(), "past the limit");
        assert!(slots.take("bob").is_some(), "bob's are his own");
        drop(first);
        assert!(slots.take("alice").is_some(), "given back");
        assert!(slots.taken.get("bob").is_none(), "a user with none left is forgotten");
    }

    #[test]
    fn no_limit_counts_nothing() {
        let slots = UserSlots::new(0);
        let held: Vec<Slot> = (0..1000).map(|_| slots.take("alice").expect("slot")).collect();
        assert!(slots.taken.is_empty());
        drop(held);
    }
}
