//! One connection's writer: drains its outbound queue onto the socket.
//!
//! Everything queued when the writer wakes is encoded into one buffer and
//! written with one `write`: under load a connection's frames share a
//! syscall (and the kernel's per-write loopback or TCP work) instead of
//! paying one each, and an idle connection keeps no write buffer at all.
//! fastwebsockets encodes each frame's header; the socket is written here
//! because its writer has no way to write several frames at once. While
//! the writer is idle the fan-out may write the socket itself
//! (`write_through`); the writer goes idle only under the connection's
//! lock, once its queue is empty.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Poll;

use fastwebsockets::{Frame, OpCode, Payload};
use shared::clock::now_ms;
use shared::protocol::close;
use shared::protocol::native::outbound as render;

use crate::frame_metrics;
use crate::handle::ClientHandle;
use crate::outbound::{Cursors, Framed, Outbound, RenderedEvent, CONNECT_HOLD};
use crate::outbound_queue::QueueLimits;
use crate::write_through::Socket;

/// A wake-up's frames are written once they reach this many bytes, so a
/// long queue or a large `sync` replay goes out in bounded pieces.
const FLUSH_BYTES: usize = 64 * 1024;

/// How long a closed connection's writer waits for a client whose socket
/// takes no bytes, to finish the frame it began and send the close frame,
/// before resetting the connection. Short, because a heartbeat close's
/// `offline` waits for it and is owed within the timeout plus one second
/// (PROTOCOL.md 6); a client that reads at all makes room much sooner.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs until the connection closes: writes the close frame last.
pub async fn write_loop(handle: &ClientHandle, socket: Arc<Socket>) {
    handle.attach_socket(socket.clone());
    let mut state = Writer { handle, out: Vec::new(), pending: None };
    let hold_until = tokio::time::Instant::now() + CONNECT_HOLD;
    // A connection holds all live events from its connect until released,
    // never again after: once it stops, the writer stops asking, which
    // would take the lock at every wake-up. A first `sync` stops the
    // timer: its `ack` ends the hold, and other chats' events released at
    // the second came before it, where protocol.md puts them after.
    let mut holding = true;
    loop {
        if holding {
            holding = handle.write_state().cursors.waits_for_first_frame();
        }
        let items = tokio::select! {
            biased;
            _ = std::future::poll_fn(|cx| handle.poll_closed_for_writer(cx)) => break,
            items = std::future::poll_fn(|cx| handle.poll_queued(cx)) => items,
            _ = tokio::time::sleep_until(hold_until), if holding => {
                // Queued like any item, so that the fan-out, which may be
                // writing while the writer waits, sees the writer busy.
                let _ = handle.push(Outbound::Release);
                continue;
            }
        };
        match state.write(items, &socket).await {
            Ok(Step::Finished) => {
                handle.write_state().detach();
                return;
            }
            Ok(Step::Continue) => {}
            Err(_) => {
                handle.close(close::NORMAL);
                reset(&socket);
                handle.write_state().detach();
                return;
            }
        }
    }
    state.close();
    if state.flush(&socket).await.is_err() {
        reset(&socket);
    }
    handle.write_state().detach();
}

#[derive(PartialEq)]
enum Step {
    Continue,
    /// A close frame was written: stop.
    Finished,
}

/// What an item needs once encoded ([`Writer::step`]). Without a payload,
/// and compared rather than matched in `write` (see there).
#[derive(PartialEq)]
enum Encoded {
    Continue,
    /// A close frame: flush and stop.
    Close,
    /// A frame with a shared end was begun: flush, which writes the end
    /// (`Writer::pending`).
    Flush,
}

struct Writer<'a> {
    handle: &'a ClientHandle,
    /// Frames encoded since the last write.
    out: Vec<u8>,
    /// A frame whose head ends `out` and whose shared end the next flush
    /// writes from where it is shared, not copied into `out`: every member
    /// of a large group is sent the same member list, and 10,000 writers
    /// each holding a 140 kB copy while their sockets were full held 1.8 GB
    /// at once.
    pending: Option<Arc<Framed>>,
}

impl Writer<'_> {
    /// Encodes `items` and writes them, in pieces of about [`FLUSH_BYTES`].
    /// Stops early once the connection is closed: the rest is skipped.
    async fn write(&mut self, mut items: VecDeque<Outbound>, socket: &Socket) -> std::io::Result<Step> {
        while let Some(item) = items.pop_front() {
            // The step is compared (and has no payload), so that no temporary of it
            // is held across the awaits: every connection's task holds this
            // future's state, and 16 bytes more (408 rather than 392) took
            // an idle connection from 4.3 to 4.8 KiB resident, the task
            // landing in a larger size class.
            let encoded = self.step(item);
            if encoded == Encoded::Close {
                self.flush(socket).await?;
                return Ok(Step::Finished);
            }
            if encoded == Encoded::Flush || self.out.len() >= FLUSH_BYTES {
                self.flush(socket).await?;
                if self.handle.is_closed() {
                    return Ok(Step::Continue);
                }
            }
        }
        self.flush(socket).await?;
        Ok(Step::Continue)
    }

    fn step(&mut self, item: Outbound) -> Encoded {
        let handle = self.handle;
        match item {
            // A closed connection's writer stops at its next flush; a frame
            // the size of a group's member list is not begun before it.
            Outbound::Frame(frame) if frame.shared_end.is_some() => {
                if handle.is_closed() {
                    return Encoded::Continue;
                }
                self.begin_spliced(frame);
                return Encoded::Flush;
            }
            Outbound::Frame(frame) => self.text(frame.kind, &frame.bytes),
            Outbound::Left(frame, chat) => {
                handle.write_state().cursors.forget(chat);
                return self.step(Outbound::Frame(frame));
            }
            Outbound::Event(event) => {
                // The queue's limits, read here rather than kept in every
                // connection's writer.
                let mut state = handle.write_state();
                let limits = state.queue.limits();
                self.live(&mut state.cursors, limits, event);
            }
            Outbound::SyncBegin(chats) => handle.write_state().cursors.begin_sync(&chats),
            Outbound::Release => {
                let released = handle.write_state().cursors.release();
                self.replay(released);
            }
            Outbound::CatchUpEnd(chat) => {
                let released = handle.write_state().cursors.end_catch_up(chat);
                self.replay(released);
            }
            // The page goes (and with it its `taken`) once encoded.
            Outbound::Replay(page) => self.replay(page.events),
            Outbound::SyncEnd(end) => {
                let (synced, release) = handle.write_state().cursors.end_sync(&end.all, &end.synced);
                self.text("ack", &render::ack_synced(&end.reference, &synced));
                self.replay(release);
            }
            Outbound::Pong(payload) => self.encode(Frame::pong(Payload::Borrowed(&payload))),
            Outbound::Rest(bytes) => self.out.extend_from_slice(&bytes),
            Outbound::Close(code, reason) => {
                self.encode(Frame::close(code, reason.as_bytes()));
                self.handle.close(code);
                return Encoded::Close;
            }
        }
        Encoded::Continue
    }

    /// The connection is closing: what is queued is skipped, except a frame
    /// the fan-out began writing, which must be finished first.
    fn close(&mut self) {
        if let Some(begun) = self.handle.take_begun_for_close() {
            self.out.extend_from_slice(&begun);
        }
        let code = self.handle.close_code().unwrap_or(close::NORMAL);
        self.encode(Frame::close(code, close_text(code).as_bytes()));
    }

    /// `hold_limits`: the most events, and bytes of them, held back for a
    /// running `sync`. (Events reach the writer only once the connect hold
    /// has been released: the fan-out holds those itself.)
    fn live(&mut self, cursors: &mut Cursors, hold_limits: QueueLimits, event: Arc<RenderedEvent>) {
        if cursors.hold(&event) {
            // Bounded in bytes too, or a client that syncs and does not read
            // had 1,024 frames of 64 KB encoded for it at the release.
            if cursors.held_past(hold_limits) {
                self.held_too_many();
            }
            return;
        }
        if cursors.admit(event.chat, event.id) {
            self.text(event.kind, &event.frame);
            frame_metrics::delivered_after(now_ms().saturating_sub(event.stored_at));
        }
    }

    /// A `sync`'s hold past its bound: the client is not keeping up.
    fn held_too_many(&mut self) {
        if self.handle.close(close::SLOW_CONSUMER) {
            metrics::counter!("chat_slow_consumer_disconnects_total").increment(1);
        }
    }

    fn replay(&mut self, events: Vec<Arc<RenderedEvent>>) {
        let handle = self.handle;
        let cursors = &mut handle.write_state().cursors;
        for event in events {
            if cursors.admit(event.chat, event.id) {
                self.text(event.kind, &event.frame);
            }
        }
    }

    fn text(&mut self, kind: &'static str, payload: &[u8]) {
        frame_metrics::frame_out(kind);
        self.encode(Frame::text(Payload::Borrowed(payload)));
    }

    fn encode(&mut self, frame: Frame<'_>) {
        append_frame(&mut self.out, frame);
    }

    /// Encodes `frame`'s head; its shared end is left to the flush that
    /// follows (`pending`).
    fn begin_spliced(&mut self, frame: Arc<Framed>) {
        let end_len = frame.shared_end.as_ref().map_or(0, |end| end.len());
        frame_metrics::frame_out(frame.kind);
        append_text_head(&mut self.out, frame.bytes.len() + end_len);
        self.out.extend_from_slice(&frame.bytes);
        self.pending = Some(frame);
    }

    /// Writes the pending frame's shared end ([`Writer::pending`]), what
    /// is encoded having been written. Boxed by its caller: inline, it grew
    /// every connection's task.
    async fn write_pending(&self, frame: Arc<Framed>, socket: &Socket) -> std::io::Result<()> {
        let mut rest = frame.shared_end.as_deref().unwrap_or_default();
        while !rest.is_empty() {
            match try_write(socket, rest)? {
                Some(written) => rest = &rest[written..],
                None => self.writable(socket).await?,
            }
        }
        Ok(())
    }

    /// Writes what is encoded, then lets the buffer go: a connection between
    /// bursts holds no write memory.
    async fn flush(&mut self, socket: &Socket) -> std::io::Result<()> {
        let out = std::mem::take(&mut self.out);
        let mut rest = &out[..];
        while !rest.is_empty() {
            match try_write(socket, rest)? {
                Some(written) => rest = &rest[written..],
                None => self.writable(socket).await?,
            }
        }
        drop(out);
        if let Some(frame) = self.pending.take() {
            Box::pin(self.write_pending(frame, socket)).await?;
        }
        Ok(())
    }

    /// Waits until the socket takes bytes again. A client that stopped
    /// reading can keep its socket full for as long as its TCP answers,
    /// which would hold the connection, and its `offline`, past a heartbeat
    /// or slow-consumer close: once the connection is closed, the wait ends
    /// after [`CLOSE_GRACE`].
    async fn writable(&self, socket: &Socket) -> std::io::Result<()> {
        let handle = self.handle;
        // Readiness is polled rather than awaited through tokio's
        // `writable()`, and both waits share one `poll_fn`: whatever this
        // future holds is stored in every connection's task.
        let ready_or_closed = std::future::poll_fn(|cx| match socket.as_ref().poll_write_ready(cx) {
            Poll::Ready(ready) => Poll::Ready(Some(ready)),
            Poll::Pending => handle.poll_closed_for_writer(cx).map(|()| None),
        });
        if let Some(ready) = ready_or_closed.await {
            return ready;
        }
        // Boxed: only a closed connection that is stuck pays for a timer.
        let ready = std::future::poll_fn(|cx| socket.as_ref().poll_write_ready(cx));
        match Box::pin(tokio::time::timeout(CLOSE_GRACE, ready)).await {
            Ok(ready) => ready,
            Err(_) => {
                metrics::counter!("chat_connections_reset_total").increment(1);
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client takes no bytes"))
            }
        }
    }
}

/// Writes what the socket takes of `bytes` now: how much, or `None` if it
/// takes nothing until it is writable again.
fn try_write(socket: &Socket, bytes: &[u8]) -> std::io::Result<Option<usize>> {
    match socket.try_write(bytes) {
        Ok(0) => Err(std::io::ErrorKind::WriteZero.into()),
        Ok(written) => Ok(Some(written)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Resets a connection the writer gave up on: whatever its socket still
/// holds for the client would otherwise stay in the kernel, retried for as
/// long as the client's TCP answers.
fn reset(socket: &Socket) {
    let _ = socket.as_ref().set_zero_linger();
}

/// Appends `frame`, encoded, to `out`: the writer's buffer, or the bytes the
/// fan-out defers (`write_through`).
pub fn append_frame(out: &mut Vec<u8>, mut frame: Frame<'_>) {
    // The longest server header: 2 bytes, 8 of length, no mask.
    let mut head = [0u8; 10];
    let size = frame.fmt_head(&mut head);
    // Room for the whole frame at once: the first frame of a wake-up then
    // costs one allocation, not one for its head and another for its
    // payload.
    out.reserve(size + frame.payload.len());
    out.extend_from_slice(&head[..size]);
    out.extend_from_slice(&frame.payload);
}

/// Appends the head of a text frame of `len` bytes whose payload follows
/// in parts (`Framed::shared_end`). fastwebsockets formats a head only
/// from a payload it holds whole, so this one is written here, as RFC 6455
/// 5.2 has a server's: FIN and the opcode, then the length in 7 bits, or
/// 126 and 16 bits, or 127 and 64 bits, and no mask.
fn append_text_head(out: &mut Vec<u8>, len: usize) {
    out.push(0x80 | OpCode::Text as u8);
    match len {
        0..=125 => out.push(len as u8),
        126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

pub(crate) fn close_text(code: u16) -> &'static str {
    match code {
        close::HEARTBEAT_TIMEOUT => "heartbeat timeout",
        close::SLOW_CONSUMER => "slow consumer",
        close::TOKEN_EXPIRED => "token expired",
        close::CHATS_CHANGED => "chats changed; reconnect",
        close::MESSAGE_TOO_BIG => "frame too large",
        close::GOING_AWAY => "server going away",
        close::SERVICE_RESTART => "server restarting; reconnect",
        close::PROTOCOL_ERROR => "protocol error",
        close::INVALID_PAYLOAD => "invalid UTF-8",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Around each length where the head's form changes, the head written
    /// here is the one fastwebsockets writes, byte for byte.
    #[test]
    fn a_text_frame_s_head_is_encoded_as_fastwebsockets_does() {
        for len in [0, 1, 125, 126, 127, 0xFFFF, 0x1_0000, 200_000] {
            let payload: Vec<u8> = (0..len).map(|n| b'a' + (n % 26) as u8).collect();
            let mut whole = Vec::new();
            append_frame(&mut whole, Frame::text(Payload::Borrowed(&payload)));
            let mut parts = Vec::new();
            append_text_head(&mut parts, len);
            parts.extend_from_slice(&payload);
            assert!(parts == whole, "length {len}");
        }
    }
}
