//! Live chat events, and the replies to a connection's commands, written
//! by the fan-out straight onto the connection's socket when its writer
//! has nothing queued.
//!
//! Why: handing each delivery to the connection's task costs a queue push,
//! a wake-up (often of a parked runtime thread, through its `eventfd`) and
//! a poll of the task, on top of the write itself. On this machine that is
//! a quarter to a third more than the write alone (`loadtest floor`, with
//! and without `--via-tasks`; docs/benchmarks-journal.md). A fan-out that
//! finds the writer idle encodes the frame into the connection's deferred
//! bytes, and once the batch of events it is delivering is done writes
//! each such connection's bytes with one non-blocking call: the task is not
//! woken at all, and a connection that gets several events of a batch
//! (receipts: a message's marks from every member) gets them in one write.
//!
//! Order is kept by one rule: the socket is written either by the fan-out,
//! while nothing is queued and the writer is not writing, or by the writer.
//! Anything queued (a reply, a presence frame, a `sync`'s replay) goes in
//! behind the connection's deferred bytes and marks the writer busy under
//! the same lock, so later events queue behind it until the writer has
//! written everything and finds its queue empty. A write the socket takes
//! only in part hands the rest to the writer as the first item of its
//! queue. Events a new connection holds until its first frame are held
//! here, under the same lock, until a release is queued
//! ([`WriteState::hold_while_connecting`]); events of a chat held for a
//! `sync` go through the writer, which owns that logic.

use std::io::ErrorKind;
use std::sync::Arc;

use fastwebsockets::{Frame, Payload};
use shared::clock::now_ms;

use crate::frame_metrics;
use crate::handle::ClientHandle;
use crate::outbound::{Cursors, Outbound, RenderedEvent};
use crate::outbound_queue::{OutboundQueue, QueueLimits};
use crate::writer::append_frame;

/// How many connections the fan-out writes itself per batch of events; the
/// rest are queued for their writers.
///
/// Why a bound: the fan-out runs on one thread (in standalone the embedded
/// worker's, which also runs every SQLite statement), while writers run on
/// every connection thread and, when they fall behind, write all that
/// waits in one call. At 20,000 deliveries/s in groups of 10 a batch holds
/// two commands on average and 99.6 % hold at most four, 40 deliveries;
/// near saturation (100,000/s) batches hold 38 on average, and writing all
/// of them through made that one thread the bottleneck: p99 153 and 160 ms
/// against 42 and 43 with every delivery queued (docs/benchmarks-journal.md,
/// seventeenth session).
pub const WRITES_THROUGH_PER_BATCH: usize = 64;

/// Bytes the fan-out encodes for one connection in a batch; past them the
/// connection's frames are queued for its writer, where they count
/// against `OUTBOUND_BYTES`. A batch carries up to 4,096 commands: encoded
/// all, a client that does not read held a copy of every message of the
/// batch, a hundred megabytes at most sizes, past any limit of the queue's
/// (found by a hostile-client audit). A few hundred frames of the usual
/// sizes fit.
const DEFERRED_BYTES: usize = 256 * 1024;

/// The write half of a connection's socket, shared by its writer and the
/// fan-out (both write through `&self`, one at a time by the rule above).
pub type Socket = tokio::net::tcp::OwnedWriteHalf;

/// What the fan-out and the connection's writer share, under one lock.
pub struct WriteState {
    /// What this connection was written per chat, and what is held back.
    pub cursors: Cursors,
    /// What the writer has yet to write.
    pub queue: OutboundQueue,
    /// Something is queued for the writer, or the writer is writing: the
    /// fan-out must queue too. While it is false the writer waits for the
    /// queue, and whoever queues wakes it.
    pub writer_busy: bool,
    /// The end of the connect hold (`Outbound::Release` or a first
    /// `sync`'s `SyncEnd`) is queued: live events queue behind it from now
    /// on, not held ahead of what was queued after it.
    release_queued: bool,
    /// None until the connection is set up, and again once its writer ended.
    socket: Option<Arc<Socket>>,
    /// Frames the fan-out encoded during its current batch, written when
    /// the batch ends (or queued ahead of anything queued before that).
    /// Empty, without an allocation, between batches.
    deferred: Vec<u8>,
}

/// What became of an event offered to [`WriteState::defer`].
pub enum Deferred {
    /// Encoded; the connection's first of this batch when `first`.
    Encoded { first: bool },
    /// This connection had it already.
    Duplicate,
    /// The writer must take it: queue it.
    Queue,
}

/// What became of a live event offered to
/// [`WriteState::hold_while_connecting`].
#[derive(Debug, PartialEq, Eq)]
pub enum Held {
    /// Not held: the connection's connect hold is over.
    No,
    /// Held, for the writer to release.
    Kept,
    /// Held, and the hold is past its bound: queue `Outbound::Release`.
    PastBound,
}

/// What became of a connection's deferred bytes when written.
pub enum Written {
    /// All of them, or there were none.
    Whole,
    /// The writer must finish: queue this item.
    Rest(Outbound),
    /// The socket refused the write: the connection is gone.
    Failed,
}

impl WriteState {
    /// A new connection's state: busy until its welcome is written.
    pub fn on_connect(limits: QueueLimits) -> Self {
        WriteState {
            cursors: Cursors::on_connect(),
            queue: OutboundQueue::new(limits),
            writer_busy: true,
            release_queued: false,
            socket: None,
            deferred: Vec::new(),
        }
    }

    pub fn attach(&mut self, socket: Arc<Socket>) {
        self.socket = Some(socket);
    }

    /// The writer has ended: nothing writes the socket any more, and what
    /// is queued is dropped.
    pub fn detach(&mut self) {
        self.socket = None;
        self.writer_busy = true;
        self.deferred = Vec::new();
        self.queue.end();
    }

    /// Encodes `event` into the deferred bytes if the writer is idle and
    /// its chat is not held.
    pub fn defer(&mut self, event: &RenderedEvent) -> Deferred {
        if !self.writer_idle() || self.cursors.holds_any() {
            return Deferred::Queue;
        }
        if !self.cursors.admit(event.chat, event.id) {
            return Deferred::Duplicate;
        }
        frame_metrics::delivered_after(now_ms().saturating_sub(event.stored_at));
        self.encode(event.kind, &event.frame)
    }

    /// A connection waiting for its first frame holds its live events (see
    /// `outbound`). The fan-out holds them itself, under the lock, where it
    /// used to queue them for the writer to hold: a burst larger than the
    /// queue's bound, arriving before the writer ran (or while it was still
    /// setting up), then closed a client that read promptly with 4001,
    /// where the hold's bound is meant to release what it holds (found by
    /// a client developer's audit). Past that bound a release is queued;
    /// once one is queued, by anyone, events queue behind it, so none is
    /// written ahead of a frame queued after the release (the ack of the
    /// first command, a `chats` frame announcing the event's chat).
    pub fn hold_while_connecting(&mut self, event: &Arc<RenderedEvent>) -> Held {
        if !self.cursors.is_holding_all() || self.release_queued {
            return Held::No;
        }
        self.cursors.hold(event);
        if self.cursors.held_past(self.queue.limits()) {
            return Held::PastBound;
        }
        Held::Kept
    }

    /// Notes what `item`, about to be queued, means for the connect hold.
    pub fn queueing(&mut self, item: &Outbound) {
        if matches!(item, Outbound::Release | Outbound::SyncEnd(_)) {
            self.release_queued = true;
        }
    }

    /// Encodes a reply into the deferred bytes if the writer is idle.
    /// Replies are never held, so a `sync` in progress does not matter.
    pub fn defer_reply(&mut self, kind: &'static str, frame: &[u8]) -> Deferred {
        if !self.writer_idle() {
            return Deferred::Queue;
        }
        self.encode(kind, frame)
    }

    /// Encodes the pong owed to a WebSocket Ping if the writer is idle.
    pub fn defer_control_pong(&mut self, payload: &[u8]) -> Deferred {
        if !self.writer_idle() {
            return Deferred::Queue;
        }
        self.append(Frame::pong(Payload::Borrowed(payload)))
    }

    /// The rule that lets anyone but the writer write the socket, while
    /// what it deferred in this batch is below its bound.
    fn writer_idle(&self) -> bool {
        self.socket.is_some() && !self.writer_busy && self.deferred.len() < DEFERRED_BYTES
    }

    fn encode(&mut self, kind: &'static str, payload: &[u8]) -> Deferred {
        frame_metrics::frame_out(kind);
        self.append(Frame::text(Payload::Borrowed(payload)))
    }

    fn append(&mut self, frame: Frame<'_>) -> Deferred {
        let first = self.deferred.is_empty();
        append_frame(&mut self.deferred, frame);
        Deferred::Encoded { first }
    }

    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// The deferred bytes, for the queue ahead of an item being queued.
    pub fn take_deferred(&mut self) -> Option<Outbound> {
        if self.deferred.is_empty() {
            return None;
        }
        Some(Outbound::Rest(std::mem::take(&mut self.deferred).into_boxed_slice()))
    }

    /// Writes the deferred bytes with one non-blocking call.
    pub fn write_deferred(&mut self) -> Written {
        if self.writer_busy {
            // Only a closing writer takes the socket back while frames are
            // deferred: they must not follow its close frame.
            return self.take_deferred().map_or(Written::Whole, Written::Rest);
        }
        let deferred = std::mem::take(&mut self.deferred);
        let Some(socket) = self.socket.as_ref().filter(|_| !deferred.is_empty()) else { return Written::Whole };
        match socket.try_write(&deferred) {
            Ok(written) if written == deferred.len() => Written::Whole,
            Ok(written) => Written::Rest(Outbound::Rest(deferred[written..].into())),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Written::Rest(Outbound::Rest(deferred.into_boxed_slice())),
            Err(_) => Written::Failed,
        }
    }
}

/// One batch of the fan-out: the connections it deferred frames to, which
/// are written when it ends (dropped), and how many more it may take.
#[derive(Default)]
pub struct FanOutBatch {
    deferred_to: Vec<Arc<ClientHandle>>,
}

impl FanOutBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the fan-out may defer to one more connection.
    pub fn has_room(&self) -> bool {
        self.deferred_to.len() < WRITES_THROUGH_PER_BATCH
    }

    pub fn deferred_to(&mut self, connection: &Arc<ClientHandle>) {
        self.deferred_to.push(connection.clone());
    }
}

impl Drop for FanOutBatch {
    fn drop(&mut self) {
        for connection in self.deferred_to.drain(..) {
            connection.write_deferred();
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn event(id: i64) -> Arc<RenderedEvent> {
        Arc::new(RenderedEvent { chat: 1, id, kind: "new", stored_at: 0, frame: Bytes::from_static(b"{}") })
    }

    /// Bound of two: the third event is past it, and once a release is
    /// queued nothing more is held (it queues behind the release); a frame
    /// queued meanwhile does not end the hold.
    #[test]
    fn the_connect_hold_holds_up_to_its_bound_then_lets_events_queue_behind_the_release() {
        let mut state = WriteState::on_connect(QueueLimits { items: 2, bytes: 1 << 20 });
        let held: Vec<Held> = (1..=3).map(|id| state.hold_while_connecting(&event(id))).collect();
        assert_eq!(held, [Held::Kept, Held::Kept, Held::PastBound]);
        state.queueing(&Outbound::frame("online", Bytes::from_static(b"{}")));
        assert_eq!(state.hold_while_connecting(&event(4)), Held::PastBound, "still holding");
        state.queueing(&Outbound::Release);
        assert_eq!(state.hold_while_connecting(&event(5)), Held::No);
        assert_eq!(state.cursors.release().len(), 4, "what was held, for the writer");
    }

    #[test]
    fn the_connect_hold_counts_bytes_too() {
        let mut state = WriteState::on_connect(QueueLimits { items: 100, bytes: 3 });
        let held: Vec<Held> = (1..=2).map(|id| state.hold_while_connecting(&event(id))).collect();
        assert_eq!(held, [Held::Kept, Held::PastBound]);
    }
}
