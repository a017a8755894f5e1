//! Heartbeat deadlines (PROTOCOL.md 6). One sweeper task per node checks
//! every connection's last ping, instead of a timer per connection, which
//! would cost memory and wake-ups on every ping. A sweep of 19,000
//! connections runs about 70 instructions and one cache miss each: four a
//! second cost an idle gateway about 0.3 % of a core (measured against a
//! sweep ten times rarer, docs/benchmarks-journal.md, twenty-fourth
//! session), too little for a timing wheel to pay for itself.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
const STALL: Duration = Duration::from_secs(1);

pub async fn sweep(hub: Arc<Hub>, timeout_ms: u64, stop: CancellationToken) {
    let interval = sweep_interval(timeout_ms);
    let mut sweeps = Sweeps::new(interval, Duration::from_millis(timeout_ms), Instant::now());
    shared::periodic::every(interval, stop, || {
        let judged_at = now_ms() - sweeps.stalled_ms(Instant::now());
        hub.for_each_connection(|c| {
            if expired(c.last_ping(), judged_at, timeout_ms) && c.close(close::HEARTBEAT_TIMEOUT) {
                metrics::counter!("chat_heartbeat_timeouts_total").increment(1);
            }
        });
        std::future::ready(ControlFlow::Continue(()))
    })
    .await
}

/// When the sweeps ran, to tell those that follow a stall of this process.
/// A monotonic clock: a step of the wall clock is no stall.
struct Sweeps {
    interval: Duration,
    timeout: Duration,
    last: Instant,
    /// The last stall's length, and until when it is not held against
    /// anyone.
    stalled: Duration,
    forgiven_until: Instant,
}

impl Sweeps {
    fn new(interval: Duration, timeout: Duration, now: Instant) -> Self {
        Sweeps { interval, timeout, last: now, stalled: Duration::ZERO, forgiven_until: now }
    }

    /// How much earlier than `now` the sweep at `now` judges deadlines.
    /// After this process stalled, its clients' pings of the meantime wait
    /// unread in their sockets, and closing on them punished the clients
    /// for the server's stall (all of a gateway's, 2 ms after it carried
    /// on, in an audit). The readers take them as the runtime gets round
    /// to them, which on a node of many connections can take longer than a
    /// sweep; so for a whole timeout after a stall, deadlines are moved by
    /// its length. A connection already dead before it is still closed.
    fn stalled_ms(&mut self, now: Instant) -> i64 {
        let since_last = now.saturating_duration_since(self.last);
        self.last = now;
        if since_last > self.interval + STALL {
            self.stalled = since_last - self.interval;
            self.forgiven_until = now + self.timeout;
        }
        if now < self.forgiven_until {
            self.stalled.as_millis() as i64
        } else {
            0
        }
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
    fn deadlines_move_by_a_stall_for_a_timeout_after_it() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut sweeps = Sweeps::new(Duration::from_millis(250), Duration::from_millis(20_000), start);
        assert_eq!(sweeps.stalled_ms(at(250)), 0);
        assert_eq!(sweeps.stalled_ms(at(1_400)), 0, "late by less than a stall");
        assert_eq!(sweeps.stalled_ms(at(9_400)), 7_750, "after a stall of 8 s, less the sweep's own interval");
        for ms in (9_650..29_400).step_by(250) {
            assert_eq!(sweeps.stalled_ms(at(ms)), 7_750, "within a timeout of the stall, at {ms}");
        }
        assert_eq!(sweeps.stalled_ms(at(29_400)), 0, "a timeout after it, deadlines are as they were");
    }

    #[test]
    fn sweep_interval_is_bounded() {
        assert_eq!(sweep_interval(20_000), Duration::from_millis(250));
        assert_eq!(sweep_interval(300), Duration::from_millis(50));
        assert_eq!(sweep_interval(2_000), Duration::from_millis(100));
    }
}
