//! How many REST calls one user may make on this node: the token bucket
//! of the command allowance (`command_budget`), one per user who called
//! lately. A client in a loop on, say, a history page would otherwise cost
//! PostgreSQL a read at each call; past its allowance a call is answered
//! 429 `rate_limited` and nothing it asked is done.
//!
//! Per node: a client whose calls spread over several gateways gets the
//! allowance of each. Unauthenticated calls are refused before they
//! count, and cost no database work.

use std::sync::atomic::{AtomicI64, Ordering};

use dashmap::DashMap;
use shared::model::Millis;

use crate::command_budget::{Allowance, CommandBudget};

/// How often the buckets that refilled are forgotten.
const FORGET_FULL_EVERY_MS: Millis = 10_000;

pub struct RestAllowance {
    allowance: Allowance,
    buckets: DashMap<String, CommandBudget>,
    forgot_full_at: AtomicI64,
}

impl RestAllowance {
    pub fn new(allowance: Allowance) -> Self {
        RestAllowance { allowance, buckets: DashMap::new(), forgot_full_at: AtomicI64::new(0) }
    }

    /// Takes one call's worth of `user`'s allowance; false when it is spent.
    pub fn take(&self, user: &str, now: Millis) -> bool {
        if self.allowance.per_second == 0 {
            return true;
        }
        self.forget_full(now);
        if let Some(mut bucket) = self.buckets.get_mut(user) {
            return bucket.take(self.allowance, now);
        }
        let mut bucket = self.buckets.entry(user.to_owned()).or_insert_with(|| CommandBudget::new(self.allowance, now));
        bucket.take(self.allowance, now)
    }

    /// Now and then, forgets the buckets that are full again, so that the
    /// map holds only the users calling lately: a bucket made anew is the
    /// same.
    fn forget_full(&self, now: Millis) {
        let last = self.forgot_full_at.load(Ordering::Relaxed);
        if now - last < FORGET_FULL_EVERY_MS
            || self.forgot_full_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        self.buckets.retain(|_, bucket| !bucket.is_full(self.allowance, now));
    }

    /// The users with a bucket kept.
    pub fn users_kept(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_A_SECOND: Allowance = Allowance { per_second: 2, burst: 3 };

    #[test]
    fn each_user_has_an_allowance_of_their_own() {
        let allowance = RestAllowance::new(TWO_A_SECOND);
        let taken = |user: &str, now| (0..5).filter(|_| allowance.take(user, now)).count();
        assert_eq!(taken("alice", 1_000), 3, "the burst");
        assert_eq!(taken("bob", 1_000), 3, "alice's calls take nothing of bob's");
        assert_eq!(taken("alice", 1_500), 1, "two a second");
    }

    #[test]
    fn buckets_full_again_are_forgotten() {
        let allowance = RestAllowance::new(TWO_A_SECOND);
        assert!(allowance.take("alice", 20_000));
        assert!(allowance.take("bob", 29_000));
        assert!(allowance.take("bob", 29_000));
        assert!((0..3).all(|_| allowance.take("dave", 29_600)));
        assert_eq!(allowance.users_kept(), 3);
        assert!(allowance.take("carol", 31_000), "a call a period after the last forgetting");
        // alice refilled long ago, bob (two calls down, two a second) by
        // 30,000; dave's bucket is 2.8 calls at 31,000, short of full; carol's is new.
        assert_eq!(allowance.users_kept(), 2);
        let dave = (0..3).filter(|_| allowance.take("dave", 31_000)).count();
        assert_eq!(dave, 2, "dave's bucket was kept, not made anew");
    }

    #[test]
    fn no_limit_keeps_nothing() {
        let allowance = RestAllowance::new(Allowance { per_second: 0, burst: 1 });
        assert!((0..100).all(|_| allowance.take("alice", 0)));
        assert_eq!(allowance.users_kept(), 0);
    }
}
