//! The node's grip on one connection: its bounded outbound queue, what its
//! writer shares with the fan-out, its close signal and its heartbeat
//! clock. The hub, the heartbeat sweeper and the connection's own tasks
//! share it.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use shared::clock::now_ms;

use crate::outbound::{Outbound, RenderedEvent};
use crate::outbound_queue::{Pushed, QueueLimits};
use crate::owed_replies::{Arrival, OwedReplies};
use crate::write_through::{Deferred, FanOutBatch, Held, Socket, WriteState, Written};

pub type ConnectionId = u64;

pub struct ClientHandle {
    pub id: ConnectionId,
    /// A `Box<str>`, not a `String`: 8 bytes fewer keep the handle in
    /// the allocator's 256-byte size class (`owed_replies`).
    pub user: Box<str>,
    /// Taken by whoever queues or writes (see `write_through`); held for
    /// a queue push or one non-blocking write, never across an await.
    write: Mutex<WriteState>,
    /// 0 while open; the close code once closed.
    close_code: AtomicU16,
    /// The connection's writer and its reader (which also makes
    /// `push_wait`'s waits), woken by `close` and `stop_reading`: how they
    /// learn of either without a lock (see
    /// [`ClientHandle::poll_closed_for_writer`]). The writer is woken too
    /// when something is queued while it waits, the reader when a full
    /// queue is emptied.
    writer: AtomicWaker,
    reader: AtomicWaker,
    /// Milliseconds since the epoch of the last `ping` (or WebSocket Ping),
    /// or of the moment the connection was served; `NOT_SERVED_YET` before
    /// that and while the deadline is paused.
    last_ping: AtomicI64,
    /// The replies the connection's commands are owed.
    replies: OwedReplies,
    /// Set when the node drains this connection: its reader stops taking
    /// commands, its writer carries on until the close.
    reading_stopped: AtomicBool,
}

/// A connection being set up has no heartbeat deadline: the server reads
/// nothing from it yet, and its client owes a first ping only an interval
/// after the welcome, which is written once setup is done (the same value
/// stands in while the deadline is paused). Later than any clock reading,
/// so never past a deadline (`heartbeat::expired`).
const NOT_SERVED_YET: i64 = i64::MAX;

/// Why a frame could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The queue was full: the connection is being closed as slow.
    Slow,
    /// The connection is closing already.
    Closed,
}

impl ClientHandle {
    /// `queue_limits`: how many items, and bytes of them, may wait for the
    /// writer before the connection is closed as a slow consumer.
    pub fn new(id: ConnectionId, user: String, queue_limits: QueueLimits) -> Self {
        ClientHandle {
            id,
            user: user.into_boxed_str(),
            write: Mutex::new(WriteState::on_connect(queue_limits)),
            close_code: AtomicU16::new(0),
            writer: AtomicWaker::new(),
            reader: AtomicWaker::new(),
            last_ping: AtomicI64::new(NOT_SERVED_YET),
            replies: OwedReplies::default(),
            reading_stopped: AtomicBool::new(false),
        }
    }

    /// Command `sequence` (its number on this connection) was handed to
    /// the queue.
    pub fn command_submitted(&self, sequence: u64) {
        self.replies.submitted(sequence);
    }

    /// A reply to command `sequence` arrived: whether it goes to the
    /// client (not if it repeats one given, see `owed_replies`).
    pub fn reply_arrived(&self, sequence: u64) -> bool {
        match self.replies.arrived(sequence) {
            Arrival::Owed => {
                self.command_settled();
                true
            }
            Arrival::Forgotten => true,
            Arrival::Repeat => false,
        }
    }

    /// A command was answered, or not accepted. The last one answered
    /// wakes the reader, which may hold commands until then
    /// (`command_order`).
    pub fn command_settled(&self) {
        if self.replies.settle() {
            self.reader.wake();
        }
    }

    /// Replies may have been lost (the broker reconnected): waiting for them
    /// would hold this connection's next commands for good.
    pub fn settle_all(&self) {
        if self.replies.forget() {
            self.reader.wake();
        }
    }

    /// Ready once no command of this connection is unanswered.
    pub fn poll_settled_for_reader(&self, cx: &mut Context<'_>) -> Poll<()> {
        ready_when(&self.reader, cx, || self.commands_in_flight() == 0)
    }

    pub fn commands_in_flight(&self) -> u32 {
        self.replies.in_flight()
    }

    pub fn stop_reading(&self) {
        self.reading_stopped.store(true, Ordering::Release);
        self.reader.wake();
    }

    /// The writer's and the fan-out's shared state. A panic elsewhere while
    /// it was held leaves nothing half-changed that matters more than the
    /// connection, so a poisoned lock is used as is.
    pub fn write_state(&self) -> MutexGuard<'_, WriteState> {
        self.write.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fills in the welcome whose place was queued first: until the writer
    /// starts, after the connection's setup, it is still there. Nothing if
    /// it is not (the connection closed meanwhile, and a closing writer
    /// skips what is queued).
    pub fn fill_welcome(&self, welcome: bytes::Bytes) {
        let mut state = self.write_state();
        if matches!(state.queue.front(), Some(Outbound::Frame(framed)) if framed.kind == "welcome") {
            state.queue.replace_front(Outbound::frame("welcome", welcome));
        }
    }

    /// Gives the fan-out the socket to write through.
    pub fn attach_socket(&self, socket: Arc<Socket>) {
        self.write_state().attach(socket);
    }

    /// Delivers a live chat event: held while the connection waits for its
    /// first frame; deferred, to be written when `batch` ends, if the writer
    /// is idle and the batch has room; queued for the writer otherwise (see
    /// `write_through`).
    pub fn deliver(self: &Arc<Self>, event: &Arc<RenderedEvent>, batch: &mut FanOutBatch) -> Result<(), Rejected> {
        if self.is_closed() {
            return Err(Rejected::Closed);
        }
        let mut state = self.write_state();
        match state.hold_while_connecting(event) {
            Held::Kept => Ok(()),
            Held::PastBound => self.queue_locked(&mut state, Outbound::Release),
            Held::No => self.defer_or_queue_locked(
                &mut state,
                batch,
                |state| state.defer(event),
                || Outbound::Event(event.clone()),
            ),
        }
    }

    /// Delivers the reply to one of this connection's commands the same
    /// way, so that an ack does not wake the connection's task either.
    pub fn reply(self: &Arc<Self>, kind: &'static str, frame: bytes::Bytes, batch: &mut FanOutBatch) {
        let _ = self.defer_or_queue(
            batch,
            |state| state.defer_reply(kind, &frame),
            || Outbound::frame(kind, frame.clone()),
        );
    }

    fn defer_or_queue(
        self: &Arc<Self>,
        batch: &mut FanOutBatch,
        defer: impl FnOnce(&mut WriteState) -> Deferred,
        item: impl FnOnce() -> Outbound,
    ) -> Result<(), Rejected> {
        self.defer_or_queue_locked(&mut self.write_state(), batch, defer, item)
    }

    fn defer_or_queue_locked(
        self: &Arc<Self>,
        state: &mut WriteState,
        batch: &mut FanOutBatch,
        defer: impl FnOnce(&mut WriteState) -> Deferred,
        item: impl FnOnce() -> Outbound,
    ) -> Result<(), Rejected> {
        // A connection already in the batch takes more frames past its bound.
        let deferred = if batch.has_room() || state.has_deferred() { defer(state) } else { Deferred::Queue };
        match deferred {
            Deferred::Encoded { first } => {
                if first {
                    batch.deferred_to(self);
                }
                Ok(())
            }
            Deferred::Duplicate => Ok(()),
            Deferred::Queue => self.queue_locked(state, item()),
        }
    }

    /// Writes what the fan-out deferred to this connection, unless
    /// something queued since took it along.
    pub fn write_deferred(&self) {
        let mut state = self.write_state();
        match state.write_deferred() {
            Written::Whole => {}
            Written::Rest(rest) => {
                let _ = self.queue_locked(&mut state, rest);
            }
            Written::Failed => {
                drop(state);
                self.close(shared::protocol::close::NORMAL);
            }
        }
    }

    /// Queues `item` without waiting. A full queue means the client does not
    /// read fast enough; it is disconnected as a slow consumer rather than
    /// allowed to hold memory or slow the fan-out to everyone else.
    pub fn push(&self, item: Outbound) -> Result<(), Rejected> {
        let mut state = self.write_state();
        self.queue_locked(&mut state, item)
    }

    /// Queues under the write lock, so that the fan-out, which takes it
    /// too, sees the writer busy and queues behind this item.
    fn queue_locked(&self, state: &mut WriteState, item: Outbound) -> Result<(), Rejected> {
        // The fan-out's deferred frames were delivered first: they go first.
        if let Some(deferred) = state.take_deferred() {
            self.try_queue(state, deferred)?;
        }
        self.try_queue(state, item)
    }

    fn try_queue(&self, state: &mut WriteState, item: Outbound) -> Result<(), Rejected> {
        state.queueing(&item);
        match state.queue.push(item) {
            Pushed::Queued => {
                if !state.writer_busy {
                    // The writer waits for the queue (see `poll_queued`).
                    state.writer_busy = true;
                    self.writer.wake();
                }
                Ok(())
            }
            Pushed::Full => {
                if self.close(shared::protocol::close::SLOW_CONSUMER) {
                    metrics::counter!("chat_slow_consumer_disconnects_total").increment(1);
                }
                Err(Rejected::Slow)
            }
            Pushed::Ended => Err(Rejected::Closed),
        }
    }

    /// A text reply of the connection's own reader (a pong, an error):
    /// written straight to the socket when the writer is idle, as the
    /// fan-out writes events (see `write_through`); queued otherwise,
    /// waiting for room. Queued while the writer idles, it would wake the
    /// connection's task from inside that task's own poll, and the task
    /// (reader and writer, joined) would be polled once more to write it.
    /// Written at once, an idle gateway's pings cost 7 % less CPU, with the
    /// same system calls (docs/benchmarks-journal.md, twenty-second
    /// session).
    pub async fn reply_from_reader(&self, kind: &'static str, frame: bytes::Bytes) -> Result<(), Rejected> {
        match self.write_if_idle(|state| state.defer_reply(kind, &frame)) {
            Some(written) => written,
            None => self.push_wait(Outbound::frame(kind, frame)).await,
        }
    }

    /// The pong owed to a WebSocket Ping, the same way.
    pub async fn pong_from_reader(&self, payload: Box<[u8]>) -> Result<(), Rejected> {
        match self.write_if_idle(|state| state.defer_control_pong(&payload)) {
            Some(written) => written,
            None => self.push_wait(Outbound::Pong(payload)).await,
        }
    }

    /// Encodes with `defer` and writes at once, or `None` if the writer
    /// must take it.
    fn write_if_idle(&self, defer: impl FnOnce(&mut WriteState) -> Deferred) -> Option<Result<(), Rejected>> {
        let encoded = matches!(defer(&mut self.write_state()), Deferred::Encoded { .. });
        if !encoded {
            return None;
        }
        // With anything the fan-out deferred to this connection before it.
        self.write_deferred();
        Some(if self.is_closed() { Err(Rejected::Closed) } else { Ok(()) })
    }

    /// Queues `item`, waiting for room: for the connection's own replies,
    /// made by its reader, where waiting slows only this client.
    pub async fn push_wait(&self, item: Outbound) -> Result<(), Rejected> {
        {
            let mut state = self.write_state();
            if !state.queue.is_full() {
                return self.queue_locked(&mut state, item);
            }
        }
        // Room now is the rule; the wait for it is boxed, so that the reader
        // (and with it every connection's task) does not carry the wait's
        // state while it never waits.
        Box::pin(self.wait_for_room(item)).await
    }

    async fn wait_for_room(&self, item: Outbound) -> Result<(), Rejected> {
        let mut item = Some(item);
        std::future::poll_fn(|cx| {
            // Registered before the checks: `poll_queued` emptying the
            // queue in between still wakes us.
            self.reader.register(cx.waker());
            if self.is_closed() {
                return Poll::Ready(Err(Rejected::Closed));
            }
            let mut state = self.write_state();
            if state.queue.is_full() {
                return Poll::Pending;
            }
            Poll::Ready(item.take().map_or(Ok(()), |item| self.queue_locked(&mut state, item)))
        })
        .await
    }

    /// For the connection's one writer: everything queued, once there is
    /// something. Finding the queue empty, the writer goes idle: from then
    /// on the fan-out may write the socket itself, and the next item
    /// queued wakes it.
    pub fn poll_queued(&self, cx: &mut Context<'_>) -> Poll<VecDeque<Outbound>> {
        // Registered before the check, as in `ready_when`.
        self.writer.register(cx.waker());
        let mut state = self.write_state();
        let was_full = state.queue.is_full();
        // Asking again means the writer wrote what it took: room for more.
        let items = state.queue.take_all();
        state.writer_busy = !items.is_empty();
        drop(state);
        if was_full {
            self.reader.wake();
        }
        if items.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(items)
        }
    }

    /// For a closing writer: takes the socket back from the fan-out, and
    /// returns the frames it began writing or deferred, if any. They are
    /// always the queue's first item, queued only while nothing else was,
    /// and a frame begun must be finished before the close frame.
    pub fn take_begun_for_close(&self) -> Option<Box<[u8]>> {
        let mut state = self.write_state();
        state.writer_busy = true;
        match state.queue.take_front() {
            Some(Outbound::Rest(bytes)) => Some(bytes),
            _ => None,
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

    /// Stops the heartbeat's clock while the reader waits on the server's
    /// own work for this client (a `sync`'s reads from the store): it reads
    /// nothing meanwhile, so the client's pings wait in the socket, and
    /// that wait is not the client's silence. The silence before still
    /// counts when the clock runs again, as the guard drops.
    pub fn deadline_paused(&self) -> DeadlinePause<&Self> {
        DeadlinePause::start(self)
    }

    /// As [`deadline_paused`](Self::deadline_paused), for a wait held by a
    /// future that outlives the reader's borrow: a command's hand-off to
    /// the queue (`CommandQueue::submit`).
    pub fn deadline_paused_owned(self: &Arc<Self>) -> DeadlinePause<Arc<Self>> {
        DeadlinePause::start(self.clone())
    }

    pub fn last_ping(&self) -> i64 {
        self.last_ping.load(Ordering::Relaxed)
    }
}

/// See [`ClientHandle::deadline_paused`].
pub struct DeadlinePause<H: Deref<Target = ClientHandle>> {
    handle: H,
    silent_for: i64,
}

impl<H: Deref<Target = ClientHandle>> DeadlinePause<H> {
    fn start(handle: H) -> Self {
        let silent_for = now_ms().saturating_sub(handle.last_ping()).max(0);
        handle.last_ping.store(NOT_SERVED_YET, Ordering::Relaxed);
        DeadlinePause { handle, silent_for }
    }
}

impl<H: Deref<Target = ClientHandle>> Drop for DeadlinePause<H> {
    fn drop(&mut self) {
        self.handle.touch(now_ms() - self.silent_for);
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

#[cfg(test)]
mod tests {
    use axum::body::Bytes;
    use futures_util::FutureExt;

    use super::*;

    fn kinds(items: VecDeque<Outbound>) -> Vec<&'static str> {
        items
            .into_iter()
            .map(|item| match item {
                Outbound::Frame(framed) => framed.kind,
                _ => "other",
            })
            .collect()
    }

    async fn queued(handle: &ClientHandle) -> Vec<&'static str> {
        kinds(std::future::poll_fn(|cx| handle.poll_queued(cx)).await)
    }

    /// The welcome rendered after setup takes the place queued for it,
    /// ahead of what was queued meanwhile; with no welcome in front,
    /// nothing changes.
    #[tokio::test]
    async fn a_filled_welcome_takes_its_place_ahead_of_what_came_since() {
        let handle = ClientHandle::new(1, "u".into(), QueueLimits::items(8));
        assert_eq!(handle.push(Outbound::frame("welcome", Bytes::from_static(b"old"))), Ok(()));
        assert_eq!(handle.push(Outbound::frame("online", Bytes::from_static(b"{}"))), Ok(()));
        handle.fill_welcome(Bytes::from_static(b"new"));
        let items = std::future::poll_fn(|cx| handle.poll_queued(cx)).await;
        let frames: Vec<(&str, &[u8])> = items
            .iter()
            .filter_map(|item| match item {
                Outbound::Frame(framed) => Some((framed.kind, &framed.bytes[..])),
                _ => None,
            })
            .collect();
        assert_eq!(frames, [("welcome", &b"new"[..]), ("online", &b"{}"[..])]);
        assert_eq!(handle.push(Outbound::frame("online", Bytes::from_static(b"{}"))), Ok(()));
        handle.fill_welcome(Bytes::from_static(b"late"));
        assert_eq!(queued(&handle).await, ["online"]);
    }

    /// Every connection carries its handle in an `Arc`, 16 bytes more:
    /// within mimalloc's 256-byte size class, not the next (320).
    #[test]
    fn the_handle_keeps_its_size_class() {
        let size = std::mem::size_of::<ClientHandle>();
        assert!(size + 16 <= 256, "{size} bytes");
    }

    /// A reply queues at once while there is room; with the queue full it
    /// waits, and is queued behind what was there once the writer has
    /// written it; a close ends the wait.
    #[tokio::test]
    async fn a_reply_waits_for_room_and_a_close_ends_the_wait() {
        let handle = ClientHandle::new(1, "u".into(), QueueLimits::items(1));
        let reply = |kind| Outbound::frame(kind, Bytes::from_static(b"{}"));
        assert_eq!(handle.push_wait(reply("first")).now_or_never(), Some(Ok(())));
        let mut waiting = Box::pin(handle.push_wait(reply("second")));
        assert!((&mut waiting).now_or_never().is_none(), "queued into a full queue");
        assert_eq!(queued(&handle).await, ["first"]);
        assert!((&mut waiting).now_or_never().is_none(), "queued while the writer writes the first");
        assert!(Box::pin(queued(&handle)).now_or_never().is_none(), "the writer finds nothing more");
        assert_eq!(waiting.await, Ok(()));
        let mut stuck = Box::pin(handle.push_wait(reply("third")));
        assert!((&mut stuck).now_or_never().is_none(), "queued into a full queue");
        handle.close(shared::protocol::close::GOING_AWAY);
        assert_eq!(stuck.await, Err(Rejected::Closed));
        assert_eq!(queued(&handle).await, ["second"]);
    }

    /// The writer, finding nothing queued, goes idle and waits; the next
    /// item queued marks it busy and wakes it. Once it has ended, nothing
    /// more is queued.
    #[tokio::test]
    async fn an_idle_writer_is_woken_by_the_next_item_and_an_ended_one_takes_none() {
        let handle = ClientHandle::new(1, "u".into(), QueueLimits::items(8));
        assert_eq!(handle.push(Outbound::frame("welcome", Bytes::from_static(b"{}"))), Ok(()));
        assert_eq!(queued(&handle).await, ["welcome"]);
        let mut waiting = Box::pin(queued(&handle));
        assert!((&mut waiting).now_or_never().is_none(), "nothing is queued");
        assert!(!handle.write_state().writer_busy, "a waiting writer is idle");
        assert_eq!(handle.push(Outbound::frame("online", Bytes::from_static(b"{}"))), Ok(()));
        assert!(handle.write_state().writer_busy);
        assert_eq!(waiting.await, ["online"]);
        handle.write_state().detach();
        assert_eq!(handle.push(Outbound::frame("late", Bytes::from_static(b"{}"))), Err(Rejected::Closed));
    }

    #[test]
    fn a_paused_deadline_keeps_the_silence_before_and_not_the_pause() {
        let handle = ClientHandle::new(1, "u".into(), QueueLimits::items(1));
        handle.touch(now_ms() - 5_000);
        let paused = handle.deadline_paused();
        let much_later = now_ms() + 3_600_000;
        assert!(!crate::heartbeat::expired(handle.last_ping(), much_later, 20_000), "no deadline while paused");
        drop(paused);
        let silent = now_ms() - handle.last_ping();
        assert!((5_000..6_000).contains(&silent), "the 5 s before the pause still count: {silent} ms");
    }
}
