//! How many commands one connection may send: a token bucket of `burst`
//! commands refilled at `per_second`. A client in a loop would otherwise
//! take the worker's time from everyone else's commands; past its
//! allowance a command is refused with `rate_limited` and not applied, so
//! the client knows to slow down and resend. Pings are never counted (they
//! keep the connection alive) and typing has its own limit per chat. The
//! REST allowance (`rest::allowance`) keeps the same bucket per user.

use shared::model::Millis;

/// The allowance every connection of a node gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Commands a second, sustained; 0 for no limit.
    pub per_second: u32,
    /// Commands that may come at once after a quiet spell.
    pub burst: u32,
}

/// One connection's bucket.
#[derive(Debug)]
pub struct CommandBudget {
    /// Commands that may be sent now, in thousandths.
    available_milli: u64,
    refilled_at: Millis,
}

impl CommandBudget {
    /// A full bucket: a new connection may send its first burst at once
    /// (a reconnecting client resending what was not acknowledged).
    pub fn new(allowance: Allowance, now: Millis) -> Self {
        CommandBudget { available_milli: u64::from(allowance.burst) * 1000, refilled_at: now }
    }

    /// Whether the bucket is full again by `now`: one made anew would be
    /// the same.
    pub fn is_full(&self, allowance: Allowance, now: Millis) -> bool {
        self.available_by(allowance, now) >= u64::from(allowance.burst) * 1000
    }

    /// What may be taken at `now`, in thousandths. A clock stepped back
    /// refills nothing, and takes nothing away.
    fn available_by(&self, allowance: Allowance, now: Millis) -> u64 {
        let elapsed_ms = u64::try_from(now.saturating_sub(self.refilled_at)).unwrap_or(0);
        let refill = elapsed_ms.saturating_mul(u64::from(allowance.per_second));
        self.available_milli.saturating_add(refill).min(u64::from(allowance.burst) * 1000)
    }

    /// Takes one command's worth; false when the allowance is spent.
    pub fn take(&mut self, allowance: Allowance, now: Millis) -> bool {
        self.take_many(allowance, now, 1)
    }

    /// Takes `commands` commands' worth at once, or nothing; false when
    /// the allowance has less. More than a burst costs a burst, so that
    /// the largest request is still possible from a full bucket.
    pub fn take_many(&mut self, allowance: Allowance, now: Millis, commands: u32) -> bool {
        if allowance.per_second == 0 {
            return true;
        }
        let cost = u64::from(commands.min(allowance.burst).max(1)) * 1000;
        self.available_milli = self.available_by(allowance, now);
        self.refilled_at = self.refilled_at.max(now);
        if self.available_milli < cost {
            return false;
        }
        self.available_milli -= cost;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_A_SECOND: Allowance = Allowance { per_second: 5, burst: 3 };

    fn taken(budget: &mut CommandBudget, allowance: Allowance, now: Millis, tries: usize) -> usize {
        (0..tries).filter(|_| budget.take(allowance, now)).count()
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut budget = CommandBudget::new(FIVE_A_SECOND, 1_000);
        assert_eq!(taken(&mut budget, FIVE_A_SECOND, 1_000, 10), 3, "the burst");
        assert_eq!(taken(&mut budget, FIVE_A_SECOND, 1_199, 10), 0, "not yet a whole command");
        assert_eq!(taken(&mut budget, FIVE_A_SECOND, 1_200, 10), 1, "one each 200 ms");
        assert_eq!(taken(&mut budget, FIVE_A_SECOND, 1_600, 10), 2);
        assert_eq!(taken(&mut budget, FIVE_A_SECOND, 60_000, 10), 3, "a quiet spell refills the burst, no more");
    }

    #[test]
    fn fractions_of_a_command_carry_over() {
        let mut budget = CommandBudget::new(FIVE_A_SECOND, 0);
        assert_eq!(taken(&mut budget, FIVE_A_SECOND, 0, 3), 3);
        let sent: usize = (1..=10).map(|step| taken(&mut budget, FIVE_A_SECOND, step * 100, 1)).sum();
        assert_eq!(sent, 5, "a second in steps of 100 ms carries five");
    }

    #[test]
    fn a_request_worth_several_commands_takes_them_all_or_none() {
        let mut budget = CommandBudget::new(FIVE_A_SECOND, 0);
        assert!(budget.take_many(FIVE_A_SECOND, 0, 2));
        assert!(!budget.take_many(FIVE_A_SECOND, 0, 2), "one left");
        assert!(budget.take(FIVE_A_SECOND, 0), "and it is still there");
        assert!(!budget.take(FIVE_A_SECOND, 0));
        assert!(budget.take_many(FIVE_A_SECOND, 1_000, 50), "more than a burst costs a burst");
        assert!(!budget.take(FIVE_A_SECOND, 1_000));
    }

    #[test]
    fn no_limit_and_a_clock_stepped_back() {
        let unlimited = Allowance { per_second: 0, burst: 0 };
        let mut budget = CommandBudget::new(unlimited, 0);
        assert_eq!(taken(&mut budget, unlimited, 0, 10_000), 10_000);
        let mut budget = CommandBudget::new(FIVE_A_SECOND, 10_000);
        assert_eq!(taken(&mut budget, FIVE_A_SECOND, 5_000, 10), 3, "back in time: the burst, no refill");
        assert_eq!(taken(&mut budget, FIVE_A_SECOND, 10_199, 10), 0, "refills from the latest time seen");
        assert_eq!(taken(&mut budget, FIVE_A_SECOND, 10_200, 10), 1);
    }
}
