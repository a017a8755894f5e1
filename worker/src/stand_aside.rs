//! When a worker gives its shards up because its database does not answer,
//! and when it takes a share again.
//!
//! Its lease rounds need Redis alone, so a worker cut off from PostgreSQL
//! used to keep renewing its leases, and its shards' chats stalled until
//! someone deleted it. Now it stands aside once every check of its
//! database has failed for `UNREACHABLE_GRACE_MS` (3 s at least), but only
//! while another live worker's database answers: when none does
//! (PostgreSQL restarting, or gone for everyone) nobody could do better,
//! and moving every shard at once, then back as the workers return, would
//! only add to the outage. It takes a share again once every check has
//! answered for as long: a path that answers now and then does not move
//! the cluster's shards back and forth.

/// The least time a worker's database must fail every check before it
/// stands aside, whatever `UNREACHABLE_GRACE_MS` says: the checks run
/// every second, and a bound near that would have one slow check move
/// its shards.
pub const AT_LEAST_MS: i64 = 3_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Holding a share of the shards, as usual.
    Holding,
    /// The database has failed for the bound, and no other live worker
    /// reaches its own: holding on (told once, then `Holding`).
    HoldingAlone,
    /// Give every shard up, abandon the batches in hand, leave the live
    /// workers.
    SteppingAside,
    /// Still aside: take no shard.
    Aside,
    /// The database has answered for the bound: take a share again.
    Rejoining,
}

#[derive(Debug)]
pub struct StandAside {
    after_ms: i64,
    aside: bool,
    told_alone: bool,
}

impl StandAside {
    pub fn new(grace_ms: u64) -> Self {
        StandAside { after_ms: (grace_ms as i64).max(AT_LEAST_MS), aside: false, told_alone: false }
    }

    /// This round's turn. `failing_ms` and `answering_ms`: how long every
    /// check of the database has failed, or answered (0 when the last did
    /// not); `others_reach`: another live worker's database answered its
    /// last check.
    pub fn turn(&mut self, failing_ms: i64, answering_ms: i64, others_reach: bool) -> Turn {
        if self.aside {
            if answering_ms >= self.after_ms {
                self.aside = false;
                return Turn::Rejoining;
            }
            return Turn::Aside;
        }
        if failing_ms < self.after_ms {
            self.told_alone = false;
            return Turn::Holding;
        }
        if others_reach {
            self.aside = true;
            self.told_alone = false;
            return Turn::SteppingAside;
        }
        if std::mem::replace(&mut self.told_alone, true) {
            Turn::Holding
        } else {
            Turn::HoldingAlone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_stands_aside_only_after_the_bound_and_only_for_one_that_reaches_the_database() {
        let mut stand = StandAside::new(10_000);
        assert_eq!(stand.turn(9_999, 0, true), Turn::Holding, "not yet");
        assert_eq!(stand.turn(10_000, 0, false), Turn::HoldingAlone, "no one could do better");
        assert_eq!(stand.turn(11_000, 0, false), Turn::Holding, "told once");
        assert_eq!(stand.turn(12_000, 0, true), Turn::SteppingAside);
        assert_eq!(stand.turn(13_000, 0, true), Turn::Aside);
    }

    #[test]
    fn it_takes_a_share_again_once_the_database_has_answered_for_the_bound() {
        let mut stand = StandAside::new(10_000);
        assert_eq!(stand.turn(10_000, 0, true), Turn::SteppingAside);
        assert_eq!(stand.turn(0, 9_999, true), Turn::Aside, "one answer among misses is not enough");
        assert_eq!(stand.turn(0, 10_000, false), Turn::Rejoining);
        assert_eq!(stand.turn(0, 11_000, true), Turn::Holding);
    }

    #[test]
    fn a_short_grace_still_waits_a_few_checks() {
        let mut stand = StandAside::new(0);
        assert_eq!(stand.turn(2_999, 0, true), Turn::Holding);
        assert_eq!(stand.turn(AT_LEAST_MS, 0, true), Turn::SteppingAside);
    }
}
