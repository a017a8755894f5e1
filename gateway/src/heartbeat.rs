//! Heartbeat deadlines (PROTOCOL.md 6). One sweeper task per node checks
//! every connection's last ping, instead of a timer per connection, which
//! would cost memory and wake-ups on every ping. A sweep of 19,000
//! connections runs about 70 instructions and one cache miss each: four a
//! second cost an idle gateway about 0.3 % of a core (measured against a
//! sweep ten times rarer, docs/benchmarks-journal.md, twenty-fourth
//! session), too little for a timing wheel to pay for itself.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use shared::clock::now_ms;
use shared::protocol::close;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// Whether a connection last pinged at `last_ping` is past its deadline.
pub fn expired(last_ping: i64, now: i64, timeout_ms: u64) -> bool {
    now.saturating_sub(last_ping) > timeout_ms as i64
}

/// How often to sweep: a twentieth of the timeout, between 50 and 250 ms,
/// so a dead connection closes at most that much after its deadline. The
/// promise is `offline` within the timeout plus one second, and the
/// announcement after the close needs part of that second when thousands
/// expire together.
pub fn sweep_interval(timeout_ms: u64) -> Duration {
    Duration::from_millis((timeout_ms / 20).clamp(50, 250))
}

/// How late a sweep must be to tell that this process stopped running in
/// between (paused, starved of CPU, its VM frozen).
const STALL_MS: i64 = 1_000;

pub async fn sweep(hub: Arc<Hub>, timeout_ms: u64, stop: CancellationToken) {
    let interval = sweep_interval(timeout_ms);
    let mut sweeps = Sweeps::new(interval, now_ms());
    shared::periodic::every(interval, stop, || {
        let now = now_ms();
        if sweeps.may_close(now) {
            hub.for_each_connection(|c| {
                if expired(c.last_ping(), now, timeout_ms) && c.close(close::HEARTBEAT_TIMEOUT) {
                    metrics::counter!("chat_heartbeat_timeouts_total").increment(1);
                }
            });
        }
        std::future::ready(ControlFlow::Continue(()))
    })
    .await
}

/// When the sweeps ran, to tell one that follows a stall of this process.
struct Sweeps {
    interval_ms: i64,
    last: i64,
    skipped: bool,
}

impl Sweeps {
    fn new(interval: Duration, now: i64) -> Self {
        Sweeps { interval_ms: interval.as_millis() as i64, last: now, skipped: false }
    }

    /// Whether the sweep at `now` may close connections. Not the first
    /// after a stall: the clients' pings of the meantime wait unread in
    /// their sockets, and closing on them punished clients for the
    /// server's stall (all of a gateway's, 2 ms after it carried on, in an
    /// audit); the readers take them before the next sweep. Never two
    /// sweeps in a row, so that a node overloaded for good still closes
    /// dead connections.
    fn may_close(&mut self, now: i64) -> bool {
        let late = now - self.last > self.interval_ms + STALL_MS;
        self.last = now;
        self.skipped = late && !self.skipped;
        !self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_exclusive_of_the_timeout_itself() {
        assert!(!expired(1_000, 21_000, 20_000));
        assert!(expired(1_000, 21_001, 20_000));
        assert!(!expired(5_000, 1_000, 20_000), "a clock step back never expires");
    }

    #[test]
    fn the_first_sweep_after_a_stall_closes_nothing_and_the_next_one_does() {
        let mut sweeps = Sweeps::new(Duration::from_millis(250), 0);
        assert!(sweeps.may_close(250));
        assert!(sweeps.may_close(1_400), "late by less than the stall bound");
        assert!(!sweeps.may_close(9_400), "after a stall");
        assert!(sweeps.may_close(9_650));
        assert!(!sweeps.may_close(12_000));
        assert!(sweeps.may_close(14_000), "late again, but never two skipped in a row");
    }

    #[test]
    fn sweep_interval_is_bounded() {
        assert_eq!(sweep_interval(20_000), Duration::from_millis(250));
        assert_eq!(sweep_interval(300), Duration::from_millis(50));
        assert_eq!(sweep_interval(2_000), Duration::from_millis(100));
    }
}
