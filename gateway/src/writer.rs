//! One connection's writer: drains its outbound queue onto the socket.
//!
//! Everything queued when the writer wakes is encoded into one buffer and
//! written with one `write`: under load a connection's frames share a
//! syscall (and the kernel's per-write loopback or TCP work) instead of
//! paying one each, and an idle connection keeps no write buffer at all.
//! fastwebsockets encodes each frame's header; the socket is written here
//! because its writer has no way to write several frames at once.

use std::sync::Arc;

use fastwebsockets::{Frame, Payload};
use shared::clock::now_ms;
use shared::protocol::close;
use shared::protocol::native::outbound as render;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::frame_metrics;
use crate::handle::ClientHandle;
use crate::outbound::{Cursors, Outbound, RenderedEvent, CONNECT_HOLD};

pub type RawWrite = tokio::io::WriteHalf<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// A wake-up's frames are written once they reach this many bytes, so a
/// long queue or a large `sync` replay goes out in bounded pieces.
const FLUSH_BYTES: usize = 64 * 1024;

/// Runs until the connection closes: writes the close frame last.
pub async fn write_loop(
    handle: &ClientHandle,
    mut write: RawWrite,
    mut outbound: mpsc::Receiver<Outbound>,
    hold_limit: usize,
) {
    let mut state = Writer { handle, cursors: Cursors::on_connect(), out: Vec::new(), hold_limit };
    let hold_until = tokio::time::Instant::now() + CONNECT_HOLD;
    loop {
        let holding = state.cursors.is_holding_all();
        let item = tokio::select! {
            biased;
            _ = std::future::poll_fn(|cx| handle.poll_closed_for_writer(cx)) => {
                let code = handle.close_code().unwrap_or(close::NORMAL);
                state.encode(Frame::close(code, close_text(code).as_bytes()));
                let _ = state.flush(&mut write).await;
                return;
            }
            item = outbound.recv() => item,
            _ = tokio::time::sleep_until(hold_until), if holding => Some(Outbound::Release),
        };
        let Some(mut item) = item else { return };
        let finished = loop {
            if state.step(item) == Step::Finished {
                break true;
            }
            if state.out.len() >= FLUSH_BYTES {
                break false;
            }
            match outbound.try_recv() {
                Ok(next) => item = next,
                Err(_) => break false,
            }
        };
        if state.flush(&mut write).await.is_err() {
            handle.close(close::NORMAL);
            return;
        }
        if finished {
            return;
        }
    }
}

#[derive(PartialEq)]
enum Step {
    Continue,
    /// A close frame was encoded: flush and stop.
    Finished,
}

struct Writer<'a> {
    handle: &'a ClientHandle,
    cursors: Cursors,
    /// Frames encoded since the last write.
    out: Vec<u8>,
    hold_limit: usize,
}

impl Writer<'_> {
    fn step(&mut self, item: Outbound) -> Step {
        match item {
            Outbound::Frame(frame) => self.text(frame.kind, &frame.bytes),
            Outbound::Event(event) => self.live(event),
            Outbound::SyncBegin(chats) => self.cursors.begin_sync(&chats),
            Outbound::Release => {
                let released = self.cursors.release();
                self.replay(released);
            }
            Outbound::Replay(events) => self.replay(events),
            Outbound::SyncEnd(end) => {
                let (synced, release) = self.cursors.end_sync(&end.all, &end.synced);
                self.text("ack", &render::ack_synced(&end.reference, &synced));
                self.replay(release);
            }
            Outbound::Pong(payload) => self.encode(Frame::pong(Payload::Borrowed(&payload))),
            Outbound::Close(code, reason) => {
                self.encode(Frame::close(code, reason.as_bytes()));
                self.handle.close(code);
                return Step::Finished;
            }
        }
        Step::Continue
    }

    fn live(&mut self, event: Arc<RenderedEvent>) {
        if self.cursors.hold(&event) {
            if self.cursors.held_len() > self.hold_limit {
                self.held_too_many();
            }
            return;
        }
        if self.cursors.admit(event.chat, event.id) {
            self.text(event.kind, &event.frame);
            frame_metrics::delivered_after(now_ms().saturating_sub(event.stored_at));
        }
    }

    fn held_too_many(&mut self) {
        if self.cursors.is_holding_all() {
            // Waiting for a first frame is not worth more than this.
            let released = self.cursors.release();
            self.replay(released);
        } else if self.handle.close(close::SLOW_CONSUMER) {
            metrics::counter!("chat_slow_consumer_disconnects_total").increment(1);
        }
    }

    fn replay(&mut self, events: Vec<Arc<RenderedEvent>>) {
        for event in events {
            if self.cursors.admit(event.chat, event.id) {
                self.text(event.kind, &event.frame);
            }
        }
    }

    fn text(&mut self, kind: &'static str, payload: &[u8]) {
        frame_metrics::frame_out(kind);
        self.encode(Frame::text(Payload::Borrowed(payload)));
    }

    fn encode(&mut self, mut frame: Frame<'_>) {
        // The longest server header: 2 bytes, 8 of length, no mask.
        let mut head = [0u8; 10];
        let size = frame.fmt_head(&mut head);
        // Room for the whole frame at once: the first frame of a wake-up
        // then costs one allocation, not one for its head and another for
        // its payload.
        self.out.reserve(size + frame.payload.len());
        self.out.extend_from_slice(&head[..size]);
        self.out.extend_from_slice(&frame.payload);
    }

    /// Writes what is encoded, then lets the buffer go: a connection between
    /// bursts holds no write memory.
    async fn flush(&mut self, write: &mut RawWrite) -> std::io::Result<()> {
        let out = std::mem::take(&mut self.out);
        if out.is_empty() {
            return Ok(());
        }
        write.write_all(&out).await
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
        _ => "",
    }
}
