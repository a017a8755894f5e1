//! The node's grip on one connection: its bounded outbound queue, its close
//! signal and its heartbeat clock. The hub, the heartbeat sweeper and the
//! connection's own tasks share it.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU16, AtomicU32, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::mpsc;

use crate::outbound::Outbound;

pub type ConnectionId = u64;

pub struct ClientHandle {
    pub id: ConnectionId,
    pub user: String,
    queue: mpsc::Sender<Outbound>,
    /// 0 while open; the close code once closed.
    close_code: AtomicU16,
    /// The connection's writer and its reader (which also makes
    /// `push_wait`'s waits), woken by `close` and `stop_reading`: how they
    /// learn of either without a lock (see
    /// [`ClientHandle::poll_closed_for_writer`]).
    writer: AtomicWaker,
    reader: AtomicWaker,
    /// Milliseconds since the epoch of the last `ping` (or WebSocket Ping).
    last_ping: AtomicI64,
    /// Commands submitted whose reply has not come back yet.
    in_flight: AtomicU32,
    /// Set when the node drains this connection: its reader stops taking
    /// commands, its writer carries on until the close.
    reading_stopped: AtomicBool,
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
            writer: AtomicWaker::new(),
            reader: AtomicWaker::new(),
            last_ping: AtomicI64::new(now),
            in_flight: AtomicU32::new(0),
            reading_stopped: AtomicBool::new(false),
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
        self.reading_stopped.store(true, Ordering::Release);
        self.reader.wake();
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
    /// made by its reader, where waiting slows only this client.
    pub async fn push_wait(&self, item: Outbound) -> Result<(), Rejected> {
        tokio::select! {
            sent = self.queue.send(item) => sent.map_err(|_| Rejected::Closed),
            _ = std::future::poll_fn(|cx| ready_when(&self.reader, cx, || self.is_closed())) => Err(Rejected::Closed),
        }
    }

    /// Closes the connection now with `code`, skipping whatever is queued.
    /// Only the first close counts; returns whether this one did.
    pub fn close(&self, code: u16) -> bool {
        let first = self.close_code.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if first {
            self.writer.wake();
            self.reader.wake();
        }
        first
    }

    pub fn close_code(&self) -> Option<u16> {
        match self.close_code.load(Ordering::Acquire) {
            0 => None,
            code => Some(code),
        }
    }

    /// Ready once the connection is closed, for its one writer, which asks
    /// at every wake-up (every delivery, under fan-out). A wait on a
    /// `CancellationToken` locked its mutex and its `Notify`'s at each poll:
    /// 2 % of the machine's samples at 100,000 deliveries/s
    /// (docs/benchmarks-journal.md). This is an atomic load and, when the waker is
    /// the same as last time, a compare-and-swap.
    pub fn poll_closed_for_writer(&self, cx: &mut Context<'_>) -> Poll<()> {
        ready_when(&self.writer, cx, || self.is_closed())
    }

    /// Ready once the connection is closed or draining, for its one reader.
    /// The reader runs in the writer's task (`client.rs` joins them), so it
    /// is polled at every delivery too.
    pub fn poll_stop_for_reader(&self, cx: &mut Context<'_>) -> Poll<()> {
        ready_when(&self.reader, cx, || self.is_closed() || self.reading_stopped.load(Ordering::Acquire))
    }

    pub fn is_closed(&self) -> bool {
        self.close_code().is_some()
    }

    pub fn touch(&self, now: i64) {
        self.last_ping.store(now, Ordering::Relaxed);
    }

    pub fn last_ping(&self) -> i64 {
        self.last_ping.load(Ordering::Relaxed)
    }
}

/// Ready once `done()`; otherwise `cx`'s task is woken through `waker`.
fn ready_when(waker: &AtomicWaker, cx: &mut Context<'_>, done: impl Fn() -> bool) -> Poll<()> {
    // Registered before the check: a change in between still wakes us.
    waker.register(cx.waker());
    if done() {
        Poll::Ready(())
    } else {
        Poll::Pending
    }
}
