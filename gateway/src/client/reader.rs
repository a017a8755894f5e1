//! The connection's reader: takes the client's frames one at a time, which
//! keeps each sender's commands in order, and answers or hands on each.

use std::future::Future;
use std::sync::Arc;

use fastwebsockets::{Frame, OpCode, WebSocketError};
use shared::bus::{BusError, CommandEnvelope, Event, Origin};
use shared::clock::now_ms;
use shared::config::MAX_FRAME_BYTES;
use shared::error::{ErrorCode, Refusal};
use shared::log_gate::LogGate;
use shared::model::ChatId;
use shared::protocol::close;
use shared::protocol::native::inbound::{self, Ref, Request};
use shared::protocol::native::outbound as render;
use shared::store::{within, Membership};
use tokio::net::tcp::OwnedReadHalf;

use crate::command_budget::CommandBudget;
use crate::command_order::CommandOrder;
use crate::handle::ClientHandle;
use crate::node::{Node, STORE_DEADLINE};
use crate::outbound::Outbound;
use crate::outbound_queue::QueueLimits;
use crate::reassembly::{Message, Reassembly, Violation};

use super::token_expired;

/// A `sync` counts as one command, and one more for each this many chats
/// it names.
const SYNC_CHATS_PER_COMMAND: usize = 100;

/// Whether a text frame is a `sync` (a cheap look before full parsing).
fn is_sync(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(payload).is_ok_and(|v| v["type"] == "sync")
}

pub(super) type ReadHalf = fastwebsockets::WebSocketRead<OwnedReadHalf>;

pub(super) struct Reader<'a> {
    pub(super) node: &'a Arc<Node>,
    pub(super) handle: &'a Arc<ClientHandle>,
    pub(super) fragments: Reassembly,
    pub(super) budget: CommandBudget,
    pub(super) order: CommandOrder,
    /// No frame read yet: live events are held until the first one (see
    /// `outbound`).
    pub(super) first_frame: bool,
    /// Numbers this connection's commands for their unique ids.
    pub(super) sequence: u64,
    /// The `exp` of the connection's token (seconds): the first frame
    /// read after it closes the connection (PROTOCOL.md 1, `exp` is
    /// enforced). Checked as frames come rather than by the heartbeat's
    /// sweep, which would need the four bytes on every connection's handle
    /// that its size class has no room for; a client pings at least every
    /// 10 s, and one that stops is closed by the heartbeat anyway.
    pub(super) token_expires_at: u64,
}

impl Reader<'_> {
    pub(super) async fn run(mut self, mut read: ReadHalf) {
        // Auto-pong and auto-close are off, so nothing is ever obligated.
        let mut no_obligations = |_: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };
        let handle = self.handle;
        loop {
            let frame = tokio::select! {
                biased;
                // Closed, or shutdown: stop taking commands, let the writer
                // finish.
                _ = std::future::poll_fn(|cx| handle.poll_stop_for_reader(cx)) => {
                    if self.order.is_holding() && !handle.is_closed() {
                        // Boxed: rare, as above.
                        Box::pin(self.refuse_held()).await;
                    }
                    return;
                }
                // Commands held for order go once those before them are
                // answered (`command_order`). The read this drops may be
                // mid-frame: what it read stays in the read half's buffer.
                _ = std::future::poll_fn(|cx| handle.poll_settled_for_reader(cx)), if self.order.is_holding() => {
                    // Boxed: rare, and a connection's task is as large as
                    // its largest wait.
                    Box::pin(self.submit_released()).await;
                    continue;
                }
                frame = read.read_frame(&mut no_obligations) => frame,
            };
            let frame = match frame {
                // A close is answered as a close, expired or not.
                Ok(frame) if frame.opcode != OpCode::Close && token_expired(self.token_expires_at, now_ms()) => {
                    self.handle.close(close::TOKEN_EXPIRED);
                    return;
                }
                Ok(frame) => frame,
                Err(WebSocketError::FrameTooLarge) => {
                    self.handle.close(close::MESSAGE_TOO_BIG);
                    return;
                }
                Err(WebSocketError::UnexpectedEOF) | Err(WebSocketError::IoError(_)) => {
                    self.handle.close(close::NORMAL);
                    return;
                }
                Err(WebSocketError::InvalidUTF8) => {
                    self.handle.close(close::INVALID_PAYLOAD);
                    return;
                }
                Err(_) => {
                    self.handle.close(close::PROTOCOL_ERROR);
                    return;
                }
            };
            if self.first_frame {
                self.first_frame = false;
                if !(frame.opcode == OpCode::Text && frame.fin && is_sync(&frame.payload)) {
                    // Not a sync: live events flow from now on.
                    self.reply(Outbound::Release).await;
                }
            }
            match frame.opcode {
                OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                    match self.fragments.push(frame.opcode, frame.fin, &frame.payload, MAX_FRAME_BYTES) {
                        Ok(Message::Text(text)) => self.on_text(&text).await,
                        Ok(Message::Binary) => {
                            let refusal =
                                Refusal::bad_request("binary frames are not part of the protocol; send JSON text");
                            self.reply_text("error", render::error(&None, &refusal, None)).await;
                        }
                        Ok(Message::Unfinished) => {}
                        Err(Violation::TooLarge) => {
                            self.handle.close(close::MESSAGE_TOO_BIG);
                            return;
                        }
                        Err(Violation::OutOfSequence) => {
                            self.handle.close(close::PROTOCOL_ERROR);
                            return;
                        }
                        Err(Violation::NotUtf8) => {
                            self.handle.close(close::INVALID_PAYLOAD);
                            return;
                        }
                    }
                }
                OpCode::Ping => {
                    self.handle.touch(now_ms());
                    let _ = self.handle.pong_from_reader(frame.payload.to_vec().into_boxed_slice()).await;
                }
                OpCode::Pong => {}
                OpCode::Close => {
                    let code = close::reply_to(&frame.payload);
                    let reason = if code == close::NORMAL { "" } else { "bad close frame" };
                    self.reply(Outbound::Close(code, reason)).await;
                    return;
                }
            }
        }
    }

    /// Queues a reply owed to this client, waiting for room: a client that
    /// pipelines commands without reading only slows itself.
    pub(super) async fn reply(&self, item: Outbound) {
        let _ = self.handle.push_wait(item).await;
    }

    /// A text reply, written at once if nothing is queued before it.
    async fn reply_text(&self, kind: &'static str, frame: bytes::Bytes) {
        let _ = self.handle.reply_from_reader(kind, frame).await;
    }

    pub(super) async fn refuse(&self, reference: &Ref, refusal: &Refusal, chat: Option<ChatId>) {
        self.reply_text("error", render::error(reference, refusal, chat)).await;
    }

    async fn on_text(&mut self, text: &[u8]) {
        let limits = inbound::Limits { max_text_bytes: self.node.settings.max_message_bytes };
        let (reference, request) = match inbound::parse(text, limits) {
            Ok(parsed) => parsed,
            Err((reference, refusal)) => {
                metrics::counter!("chat_frames_in_total", "type" => "invalid").increment(1);
                return self.refuse(&reference, &refusal, None).await;
            }
        };
        let now = now_ms();
        let allowance = self.node.settings.command_allowance();
        let cost = match &request {
            Request::Ping | Request::Typing { .. } => 0,
            // A sync's reads grow with the chats it names (up to 10,000).
            Request::Sync { since } => 1 + (since.len() / SYNC_CHATS_PER_COMMAND) as u32,
            Request::Command(_) => 1,
        };
        if cost > 0 && !self.budget.take_many(allowance, now, cost) {
            return self.refuse_rate_limited(&reference, request.label()).await;
        }
        match request {
            Request::Ping => {
                metrics::counter!("chat_frames_in_total", "type" => "ping").increment(1);
                self.handle.touch(now);
                self.reply_text("pong", render::pong(&reference, now)).await;
            }
            Request::Command(command) => {
                let label = command.label();
                metrics::counter!("chat_frames_in_total", "type" => label).increment(1);
                // Read off `command`, not the envelope: a local once
                // borrowed keeps its room in the connection's task across
                // every later wait, and the envelope is the larger.
                let lane = self.node.commands.lane_of(command.chat_id());
                self.sequence += 1;
                let envelope = CommandEnvelope {
                    // The connection number's low half, the part that
                    // counts: the high half is the same for every
                    // connection of this process (`node.rs`) and would only
                    // lengthen the key the workers store every command
                    // under. So ids stay as long as before the numbers
                    // started at random.
                    id: format!("{}-{}-{}", self.node.incarnation, self.handle.id as u32, self.sequence),
                    origin: Origin { node: self.node.id.clone(), connection: self.handle.id, sequence: self.sequence },
                    user: self.handle.user.to_string(),
                    reference: reference.clone(),
                    command,
                    received_at: now,
                };
                let in_flight = self.handle.commands_in_flight();
                if self.order.may_submit(lane, in_flight) {
                    self.submit(envelope, &reference).await;
                } else if self.order.hold(lane, envelope, self.held_limits()) {
                    metrics::counter!("chat_commands_held_total").increment(1);
                } else {
                    metrics::counter!("chat_commands_rate_limited_total", "type" => label).increment(1);
                    let refusal = Refusal::new(
                        ErrorCode::RateLimited,
                        "too many commands wait for earlier ones, of other chats, to be applied; resend after their acks",
                    );
                    self.refuse(&reference, &refusal, None).await;
                }
            }
            Request::Typing { chat_id } => {
                metrics::counter!("chat_frames_in_total", "type" => "typing").increment(1);
                // Boxed, as is `sync`: a connection's task is as large as
                // its largest state, and these two, rarer than commands and
                // pings, were the largest (about 600 bytes each).
                Box::pin(self.typing(&reference, chat_id)).await;
            }
            Request::Sync { since } => {
                metrics::counter!("chat_frames_in_total", "type" => "sync").increment(1);
                Box::pin(self.sync(reference, since)).await;
            }
        }
    }

    /// What may wait for earlier commands: as many commands and bytes as
    /// may wait to be written to the connection (`OUTBOUND_QUEUE`,
    /// `OUTBOUND_BYTES`).
    fn held_limits(&self) -> QueueLimits {
        let settings = &self.node.settings;
        QueueLimits { items: settings.outbound_queue as u32, bytes: settings.outbound_bytes }
    }

    async fn submit_released(&mut self) {
        let released = self.order.release();
        for envelope in released {
            let reference = envelope.reference.clone();
            self.submit(envelope, &reference).await;
        }
    }

    /// A drain stopped the reader while commands were held for order
    /// (read, never handed on): each is answered before the connection's
    /// 1012, so that the client knows it was not applied rather than
    /// guessing from a missing reply.
    async fn refuse_held(&mut self) {
        let refusal = Refusal::new(
            ErrorCode::Internal,
            "the server is restarting; the command was not applied; resend it after reconnecting",
        );
        while self.order.is_holding() {
            for envelope in self.order.release() {
                self.refuse(&envelope.reference, &refusal, None).await;
            }
        }
    }

    /// Hands a command to the workers; a queue that refuses it is told to
    /// the client (under `reference`, the command's), whose command then was
    /// not applied.
    ///
    /// Not an `async fn`: that would keep the envelope in its own state
    /// beside the queue's future holding it, and every connection's task is
    /// as large as this state (`CommandQueue::submit` says more).
    fn submit<'s>(&'s self, envelope: CommandEnvelope, reference: &'s Ref) -> impl Future<Output = ()> + 's {
        self.handle.command_submitted(envelope.origin.sequence);
        // The reader reads no ping while the command waits (for room in a
        // full in-process queue, or for Redis's answer): that wait is the
        // server's, not the client's silence.
        let queued = self.node.commands.submit(envelope, || self.handle.deadline_paused_owned());
        async move {
            if let Err(e) = queued.await {
                // Boxed, as the refusal's wait is rare.
                Box::pin(self.not_queued(reference, e)).await;
            }
        }
    }

    async fn not_queued(&self, reference: &Ref, e: BusError) {
        self.handle.command_settled();
        // A closed queue is this process stopping (standalone's in-process
        // queue, or Redis's at shutdown), not a Redis failure to alert on.
        if matches!(e, BusError::Unavailable(_)) {
            metrics::counter!("chat_redis_errors_total", "op" => "submit").increment(1);
        }
        // A full shard refuses every command to it: counted, and its
        // backlog shown by a gauge, rather than logged one by one. Other
        // refusals come in runs too (an outage): a line per interval.
        static NOT_ACCEPTED: LogGate = LogGate::new(5_000);
        if !matches!(e, BusError::Backlogged(_)) {
            if let Some(held_back) = NOT_ACCEPTED.pass(now_ms()) {
                tracing::warn!(error = %e, held_back, "command not accepted");
            }
        }
        // Only a closed queue or a full shard is sure to have taken nothing:
        // Redis may have appended a command whose answer timed out or whose
        // connection broke after sending it, and a worker then applies it.
        let message = match e {
            BusError::Closed => "the command could not be queued; retry",
            BusError::Unavailable(_) => {
                "the command queue did not answer; the command may have been applied; resending it is safe"
            }
            BusError::Backlogged(_) => {
                metrics::counter!("chat_commands_refused_backlog_total").increment(1);
                "the server is behind on this chat's commands; the command was not applied; resend it later"
            }
        };
        let refusal = Refusal::new(ErrorCode::Internal, message);
        self.refuse(reference, &refusal, None).await;
    }

    /// Refuses a frame of type `label` past the connection's allowance.
    async fn refuse_rate_limited(&self, reference: &Ref, label: &'static str) {
        metrics::counter!("chat_commands_rate_limited_total", "type" => label).increment(1);
        let allowance = self.node.settings.command_allowance();
        let refusal = Refusal::new(
            ErrorCode::RateLimited,
            format!(
                "more than {} commands a second (bursts of {}); slow down, then resend",
                allowance.per_second, allowance.burst
            ),
        );
        self.refuse(reference, &refusal, None).await
    }

    async fn typing(&mut self, reference: &Ref, chat: ChatId) {
        let user = &self.handle.user;
        let member = match self.node.hub.user(user) {
            Some(local) if local.is_member(chat) => Some(local),
            _ => None,
        };
        let Some(local) = member else {
            // Not subscribed here: either not a member or not loaded yet;
            // the store decides which error applies. That costs a query,
            // so it counts against the command allowance: a client typing
            // into chats it is not in would otherwise query unthrottled.
            if !self.budget.take(self.node.settings.command_allowance(), now_ms()) {
                return self.refuse_rate_limited(reference, "typing").await;
            }
            let user = &self.handle.user;
            let refusal = match within(STORE_DEADLINE, self.node.store.membership(chat, user)).await {
                // A member whose chat list here has not caught up yet.
                Ok(Membership::Member) => {
                    let _ = self.node.broker.publish(Event::Typing { chat, user: user.to_string() }).await;
                    return;
                }
                Ok(other) => other.require().err().unwrap_or_else(Refusal::internal),
                Err(_) => {
                    metrics::counter!("chat_database_errors_total").increment(1);
                    Refusal::internal()
                }
            };
            return self.refuse(reference, &refusal, None).await;
        };
        if !local.typing_allowed(chat, std::time::Instant::now()) {
            return;
        }
        // A notice forwarded costs a command of the allowance, dropped
        // silently past it like a throttled one: once a second and chat is
        // nothing to a person, but a user in thousands of chats could
        // otherwise have every one of them told each second.
        if !self.budget.take(self.node.settings.command_allowance(), now_ms()) {
            metrics::counter!("chat_commands_rate_limited_total", "type" => "typing").increment(1);
            return;
        }
        let _ = self.node.broker.publish(Event::Typing { chat, user: user.to_string() }).await;
    }
}
