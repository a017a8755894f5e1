//! The node's grip on one connection: its bounded outbound queue, its close
//! signal and its heartbeat clock. The hub, the heartbeat sweeper and the
//! connection's own tasks share it.

use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU32, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::outbound::Outbound;

pub type ConnectionId = u64;

pub struct ClientHandle {
    pub id: ConnectionId,
    pub user: String,
    queue: mpsc::Sender<Outbound>,
    close_code: AtomicU16,
    closed: CancellationToken,
    /// The writer, woken by `close` (see [`ClientHandle::poll_closed_for_writer`]).
    writer: AtomicWaker,
    /// Milliseconds since the epoch of the last `ping` (or WebSocket Ping).
    last_ping: AtomicI64,
    /// Commands submitted whose reply has not come back yet.
    in_flight: AtomicU32,
    /// Cancelled when the node drains this connection: its reader stops
    /// taking commands, its writer carries on until the close.
    stop_reading: CancellationToken,
}

/// Why a frame could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The queue was full: the connection is being closed as slow.
    Slow,
    /// The connection is closing already.
    Closed,
}

impl ClientHandle {
    pub fn new(id: ConnectionId, user: String, queue: mpsc::Sender<Outbound>, now: i64) -> Self {
        ClientHandle {
            id,
            user,
            queue,
            close_code: AtomicU16::new(0),
            closed: CancellationToken::new(),
            writer: AtomicWaker::new(),
            last_ping: AtomicI64::new(now),
            in_flight: AtomicU32::new(0),
            stop_reading: CancellationToken::new(),
        }
    }

    pub fn command_submitted(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// A reply arrived, or the command was not accepted. Saturating: a
    /// redelivered command may be answered twice.
    pub fn command_settled(&self) {
        let _ = self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)));
    }

    pub fn commands_in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn stop_reading(&self) {
        self.stop_reading.cancel();
    }

    pub async fn reading_stopped(&self) {
        self.stop_reading.cancelled().await
    }

    /// Queues `item` without waiting. A full queue means the client does not
    /// read fast enough; it is disconnected as a slow consumer rather than
    /// allowed to hold memory or slow the fan-out to everyone else.
    pub fn push(&self, item: Outbound) -> Result<(), Rejected> {
        match self.queue.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.close(shared::protocol::close::SLOW_CONSUMER) {
                    metrics::counter!("chat_slow_consumer_disconnects_total").increment(1);
                }
                Err(Rejected::Slow)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Rejected::Closed),
        }
    }

    /// Queues `item`, waiting for room: for the connection's own replies,
    /// where waiting slows only this client.
    pub async fn push_wait(&self, item: Outbound) -> Result<(), Rejected> {
        tokio::select! {
            sent = self.queue.send(item) => sent.map_err(|_| Rejected::Closed),
            _ = self.closed.cancelled() => Err(Rejected::Closed),
        }
    }

    /// Closes the connection now with `code`, skipping whatever is queued.
    /// Only the first close counts; returns whether this one did.
    pub fn close(&self, code: u16) -> bool {
        let first = self.close_code.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if first {
            self.closed.cancel();
            self.writer.wake();
        }
        first
    }

    pub fn close_code(&self) -> Option<u16> {
        match self.close_code.load(Ordering::Acquire) {
            0 => None,
            code => Some(code),
        }
    }

    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Ready once the connection is closed, for its one writer, which asks
    /// at every wake-up (every delivery, under fan-out). Polling
    /// [`ClientHandle::closed`] locks the token's mutex and its `Notify`'s
    /// each time: 2 % of the machine's samples at 100,000 deliveries/s
    /// (docs/benchmarks.md). This is an atomic load and, when the waker is
    /// the same as last time, a compare-and-swap.
    pub fn poll_closed_for_writer(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before the check: a close in between still wakes us.
        self.writer.register(cx.waker());
        if self.close_code.load(Ordering::Acquire) != 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    pub fn touch(&self, now: i64) {
        self.last_ping.store(now, Ordering::Relaxed);
    }

    pub fn last_ping(&self) -> i64 {
        self.last_ping.load(Ordering::Relaxed)
    }
}
