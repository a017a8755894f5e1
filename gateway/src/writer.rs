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
use std::io::IoSlice;
use std::sync::Arc;
use std::task::Poll;

use fastwebsockets::{Frame, OpCode, Payload};
use shared::clock::now_ms;
use shared::protocol::close;
use shared::protocol::native::outbound as render;

use crate::frame_metrics;
use crate::handle::ClientHandle;
use crate::outbound::{Cursors, Framed, Outbound, RenderedEvent, CONNECT_HOLD};
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
pub async fn write_loop(handle: &ClientHandle, socket: Arc<Socket>, hold_limit: usize) {
    handle.attach_socket(socket.clone());
    let mut state = Writer { handle, out: Vec::new(), hold_limit };
    let hold_until = tokio::time::Instant::now() + CONNECT_HOLD;
    // A connection holds all live events from its connect until released,
    // never again after: once it stops, the writer stops asking, which
    // would take the lock at every wake-up.
    let mut holding = true;
    loop {
        if holding {
            holding = handle.write_state().cursors.is_holding_all();
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
            Ok(Step::Continue) => {}
            Ok(Step::Finished) => {
                handle.write_state().detach();
                return;
            }
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
    /// A close frame was encoded: flush and stop.
    Finished,
}

/// What an item needs once encoded ([`Writer::step`]).
enum Encoded {
    Continue,
    /// A close frame: flush and stop.
    Close,
    /// Nothing yet: a frame with a shared end, written from where it is
    /// shared ([`Writer::spliced`]).
    Spliced(Arc<Framed>),
}

struct Writer<'a> {
    handle: &'a ClientHandle,
    /// Frames encoded since the last write.
    out: Vec<u8>,
    hold_limit: usize,
}

impl Writer<'_> {
    /// Encodes `items` and writes them, in pieces of about [`FLUSH_BYTES`].
    /// Stops early once the connection is closed: the rest is skipped.
    async fn write(&mut self, mut items: VecDeque<Outbound>, socket: &Socket) -> std::io::Result<Step> {
        while let Some(item) = items.pop_front() {
            match self.step(item) {
                Encoded::Continue => {}
                Encoded::Close => {
                    self.flush(socket).await?;
                    return Ok(Step::Finished);
                }
                // A closed connection skips what is queued; this frame,
                // the size of a group's member list, is not begun.
                Encoded::Spliced(_) if self.handle.is_closed() => return Ok(Step::Continue),
                Encoded::Spliced(frame) => {
                    // Boxed: every connection's task holds this future's
                    // state, which the write inline grew by 176 bytes.
                    Box::pin(self.spliced(frame, socket)).await?;
                    if self.handle.is_closed() {
                        return Ok(Step::Continue);
                    }
                }
            }
            if self.out.len() >= FLUSH_BYTES {
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
            Outbound::Frame(frame) if frame.shared_end.is_some() => return Encoded::Spliced(frame),
            Outbound::Frame(frame) => self.text(frame.kind, &frame.bytes),
            Outbound::Event(event) => self.live(&mut handle.write_state().cursors, event),
            Outbound::SyncBegin(chats) => handle.write_state().cursors.begin_sync(&chats),
            Outbound::Release => {
                let released = handle.write_state().cursors.release();
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

    fn live(&mut self, cursors: &mut Cursors, event: Arc<RenderedEvent>) {
        if cursors.hold(&event) {
            if cursors.held_len() > self.hold_limit {
                self.held_too_many(cursors);
            }
            return;
        }
        if cursors.admit(event.chat, event.id) {
            self.text(event.kind, &event.frame);
            frame_metrics::delivered_after(now_ms().saturating_sub(event.stored_at));
        }
    }

    fn held_too_many(&mut self, cursors: &mut Cursors) {
        if cursors.is_holding_all() {
            // Waiting for a first frame is not worth more than this.
            let released = cursors.release();
            self.replay_with(cursors, released);
        } else if self.handle.close(close::SLOW_CONSUMER) {
            metrics::counter!("chat_slow_consumer_disconnects_total").increment(1);
        }
    }

    fn replay(&mut self, events: Vec<Arc<RenderedEvent>>) {
        let handle = self.handle;
        self.replay_with(&mut handle.write_state().cursors, events);
    }

    fn replay_with(&mut self, cursors: &mut Cursors, events: Vec<Arc<RenderedEvent>>) {
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

    /// Writes `frame`: its head, then its shared end from where it is
    /// shared, not copied here first. Every member of a large group is sent
    /// the same member list, and 10,000 writers each holding a 140 kB copy
    /// while their sockets were full held 1.8 GB at once.
    async fn spliced(&mut self, frame: Arc<Framed>, socket: &Socket) -> std::io::Result<()> {
        let shared_end = frame.shared_end.as_deref().unwrap_or_default();
        frame_metrics::frame_out(frame.kind);
        append_text_head(&mut self.out, frame.bytes.len() + shared_end.len());
        self.out.extend_from_slice(&frame.bytes);
        // What was encoded before, this head, and the end, in one call.
        let out = std::mem::take(&mut self.out);
        let mut parts = [IoSlice::new(&out), IoSlice::new(shared_end)];
        let mut rest = &mut parts[..];
        while !rest.is_empty() {
            match socket.try_write_vectored(rest) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(written) => IoSlice::advance_slices(&mut rest, written),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.writable(socket).await?,
                Err(e) => return Err(e),
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
            match socket.try_write(rest) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(written) => rest = &rest[written..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.writable(socket).await?,
                Err(e) => return Err(e),
            }
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

fn close_text(code: u16) -> &'static str {
    match code {
        close::HEARTBEAT_TIMEOUT => "heartbeat timeout",
        close::SLOW_CONSUMER => "slow consumer",
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
