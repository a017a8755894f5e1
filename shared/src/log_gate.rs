//! One log line per interval for an error that repeats request after
//! request: during a Redis outage every command fails the same way, and a
//! line for each buried the log (79 in 10 s from two senders). The
//! metrics still count every one.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

pub struct LogGate {
    every_ms: i64,
    /// When a line last passed (ms since the epoch); 0: never.
    passed_at: AtomicI64,
    held: AtomicU64,
}

impl LogGate {
    pub const fn new(every_ms: i64) -> Self {
        LogGate { every_ms, passed_at: AtomicI64::new(0), held: AtomicU64::new(0) }
    }

    /// `Some(held)`: log this one, saying `held` lines were held back since
    /// the last; `None`: hold it back.
    pub fn pass(&self, now_ms: i64) -> Option<u64> {
        let last = self.passed_at.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= self.every_ms;
        if due && self.passed_at.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::LogGate;

    #[test]
    fn one_line_passes_per_interval_and_says_how_many_were_held() {
        let gate = LogGate::new(5_000);
        assert_eq!(gate.pass(1_000), Some(0));
        assert_eq!(gate.pass(2_000), None);
        assert_eq!(gate.pass(5_999), None);
        assert_eq!(gate.pass(6_000), Some(2));
        assert_eq!(gate.pass(6_001), None);
    }
}
