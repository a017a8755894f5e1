//! One WebSocket connection: authentication before the upgrade, then a
//! reader and a writer.
//!
//! The reader owns the socket's read half and handles the client's frames
//! one at a time, which keeps each sender's commands in order. It drops a
//! read in progress when commands it holds are released; the vendored
//! `read_frame` is cancel-safe for that (vendor/fastwebsockets/PATCHED.md;
//! upstream's is not). The
//! writer (`writer`) owns the write half and drains the connection's bounded
//! outbound queue; close replies go through it too. The reader's other
//! replies (`pong`, `error`, and WebSocket pongs) are written at once while
//! nothing is queued (`ClientHandle::reply_from_reader`). Both run in the
//! connection's one task, joined, so a connection costs one task.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use fastwebsockets::upgrade::{IncomingUpgrade, UpgradeFut};
use fastwebsockets::{Frame, OpCode, Role, WebSocketError};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use shared::bus::{BusError, CommandEnvelope, Event, Origin};
use shared::clock::now_ms;
use shared::config::MAX_FRAME_BYTES;
use shared::error::{ErrorCode, Refusal};
use shared::log_gate::LogGate;
use shared::model::{ChatId, EventId};
use shared::protocol::close;
use shared::protocol::native::inbound::{self, Ref, Request};
use shared::protocol::native::outbound as render;
use shared::store::{within, BoundsRequest, Membership, PageRequest};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::command_budget::CommandBudget;
use crate::command_order::CommandOrder;
use crate::handle::ClientHandle;
use crate::hub::ChatsLoad;
use crate::node::{Node, STORE_DEADLINE};
use crate::outbound::{Outbound, ReplayPage, SyncEnd};
use crate::reassembly::{Message, Reassembly, Violation};
use crate::rest::auth::{bearer_token, ApiError};
use crate::writer::write_loop;

/// A `sync` counts as one command, and one more for each this many chats
/// it names.
const SYNC_CHATS_PER_COMMAND: usize = 100;
/// How long a user's second connection waits for the first one to load
/// the user's chats.
const LOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a connection's setup waits for Redis to confirm its user's
/// channel (not at all while the subscription is not listening): Redis's
/// own response timeout.
const SUBSCRIBE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// `GET /ws`. A missing or bad token is answered 401 before any upgrade;
/// so is a query the token cannot be read from (say, two `token`s).
pub async fn upgrade(
    State(node): State<Arc<Node>>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
    ws: Result<IncomingUpgrade, axum::http::StatusCode>,
) -> Response {
    let authenticated = match (bearer_token(&headers), &query) {
        (Some(token), _) => node.authenticate(Some(token)),
        (None, Ok(Query(query))) => node.authenticate(query.token.as_deref()),
        (None, Err(rejection)) => {
            Err(ApiError::unauthorized(&format!("malformed token query: {}", rejection.body_text())))
        }
    };
    let identity = match authenticated {
        Ok(identity) => identity,
        Err(e) => {
            metrics::counter!("chat_connections_closed_total", "reason" => "auth_failed").increment(1);
            return e.into_response();
        }
    };
    if node.is_draining() {
        return ApiError::unavailable("the node is shutting down").into_response();
    }
    let Ok(ws) = ws else {
        return ApiError::from(Refusal::bad_request("expected a WebSocket upgrade request")).into_response();
    };
    // Held until the connection's task ends (`user_slots`).
    let Some(slot) = node.user_slots.take(&identity.user) else {
        metrics::counter!("chat_connections_closed_total", "reason" => "user_limit").increment(1);
        let limit = node.user_slots.limit();
        let message = format!("{limit} connections of this user are open on this node already; close one first");
        return ApiError::from(Refusal::new(ErrorCode::RateLimited, message)).into_response();
    };
    let (response, socket) = match ws.upgrade() {
        Ok(upgraded) => upgraded,
        Err(_) => return ApiError::from(Refusal::bad_request("bad WebSocket upgrade")).into_response(),
    };
    let id = node.next_connection.fetch_add(1, Ordering::Relaxed);
    let handle = Arc::new(ClientHandle::new(id, identity.user, node.settings.outbound_queue));
    let task_node = node.clone();
    node.connections.spawn(async move {
        if let Err(e) = serve(task_node, handle, identity.expires_at, socket).await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        drop(slot);
    });
    response.into_response()
}

/// Serves `handle`'s connection, opened with a token valid through second
/// `token_expires_at`.
async fn serve(
    node: Arc<Node>,
    handle: Arc<ClientHandle>,
    token_expires_at: u64,
    socket: UpgradeFut,
) -> Result<(), WebSocketError> {
    // fastwebsockets reads frames; the writer and the fan-out write the
    // socket themselves (see `writer`, `write_through`), so fastwebsockets'
    // write half gets a sink.
    let (read, write) = tcp_halves(socket.await?.into_inner().into_inner())?;
    let (mut read, _) = fastwebsockets::after_handshake_split(read, tokio::io::sink(), Role::Server);
    read.set_auto_pong(false);
    read.set_auto_close(false);
    // A frame of exactly the limit is allowed; the check is "len >= max".
    read.set_max_message_size(MAX_FRAME_BYTES + 1);

    let user = &handle.user;
    // The welcome is the first frame: its place is taken before the hub
    // can queue anything else for this connection, and it is rendered once
    // setup is done (below). Nothing is written before then.
    let _ = handle.push(Outbound::frame("welcome", bytes::Bytes::new()));
    let setup = node.setup_permits.acquire().await;
    let (local, fresh) = node.hub.register(handle.clone());
    metrics::gauge!("chat_open_connections").increment(1.0);
    metrics::counter!("chat_connections_opened_total").increment(1);
    // Subscribe before reading, so that a command the client sends right
    // after the welcome is followed by its own event on this connection.
    if fresh {
        // The user's channel first, then their chats: a membership change
        // published in between would otherwise be in neither. Without the
        // subscription listening, or past the wait, the chats are loaded
        // anyway and read again once the channel is live.
        let live = node.broker.user_subscribed(user, SUBSCRIBE_WAIT).await;
        match node.chat_lists.of(user).await {
            Ok(chats) => {
                node.hub.chats_loaded(&local, chats);
                if !live {
                    node.hub.repair_once_subscribed(local.clone());
                }
            }
            Err(e) => {
                metrics::counter!("chat_database_errors_total").increment(1);
                tracing::warn!(error = %e, "could not load the user's chats; closing the user's connections");
                local.loading_failed(close::GOING_AWAY);
            }
        }
    } else if local.wait_loaded(LOAD_WAIT).await == ChatsLoad::Failed {
        // Another connection of this user loaded the chats, and failed.
        handle.close(close::GOING_AWAY);
    }
    node.presence.connected(user, local.chat_ids()).await;
    drop(setup);
    // The welcome's serverTime is the server's clock as the client reads
    // it, and the setup above can take seconds: rendered now, in its place.
    let welcome = render::welcome(user, &handle.id.to_string(), &node.id, node.settings.heartbeat_timeout_ms, now_ms());
    handle.fill_welcome(welcome);
    // The heartbeat's clock starts now, not at the upgrade: until here the
    // server read nothing and wrote no welcome. Counted from the upgrade,
    // a storm of users in 20 chats, whose welcomes took 12 s to come,
    // closed most of them for silence while they pinged as asked.
    handle.touch(now_ms());

    let reader = Reader {
        node: &node,
        handle: &handle,
        fragments: Reassembly::default(),
        budget: CommandBudget::new(node.settings.command_allowance(), now_ms()),
        order: CommandOrder::default(),
        first_frame: true,
        sequence: 0,
        token_expires_at,
    };
    tokio::join!(reader.run(read), write_loop(&handle, Arc::new(write)));

    let chats = node.hub.unregister(&handle);
    let teardown = node.setup_permits.acquire().await;
    node.presence.disconnected(user, chats).await;
    drop(teardown);
    metrics::gauge!("chat_open_connections").decrement(1.0);
    metrics::counter!("chat_connections_closed_total", "reason" => close_reason(handle.close_code())).increment(1);
    Ok(())
}

/// The upgraded connection's TCP socket in two halves: the write half for
/// `&self` writes from the writer and the fan-out.
///
/// A client must wait for the handshake's answer before sending frames (RFC
/// 6455, 4.1), so hyper has read nothing past the upgrade request; one that
/// did not wait is refused here rather than every connection carrying a
/// buffer for it.
fn tcp_halves(upgraded: Upgraded) -> Result<(OwnedReadHalf, OwnedWriteHalf), WebSocketError> {
    let parts = upgraded
        .downcast::<TokioIo<TcpStream>>()
        .map_err(|_| WebSocketError::IoError(std::io::Error::other("the upgraded connection is not a TCP stream")))?;
    if !parts.read_buf.is_empty() {
        return Err(WebSocketError::IoError(std::io::Error::other(
            "the client sent data before the WebSocket handshake's answer",
        )));
    }
    Ok(parts.io.into_inner().into_split())
}

/// Whether a token valid through second `exp` has expired at `now`
/// (milliseconds), as a new connection's check would find it.
fn token_expired(exp: u64, now: i64) -> bool {
    u64::try_from(now.div_euclid(1000)).is_ok_and(|second| second > exp)
}

/// Whether a text frame is a `sync` (a cheap look before full parsing).
fn is_sync(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(payload).is_ok_and(|v| v["type"] == "sync")
}

fn close_reason(code: Option<u16>) -> &'static str {
    match code {
        Some(close::HEARTBEAT_TIMEOUT) => "heartbeat",
        Some(close::SLOW_CONSUMER) => "slow",
        Some(close::TOKEN_EXPIRED) => "token_expired",
        Some(close::SERVICE_RESTART) | Some(close::GOING_AWAY) => "drain",
        Some(close::MESSAGE_TOO_BIG) => "too_big",
        Some(close::PROTOCOL_ERROR) | Some(close::INVALID_PAYLOAD) => "protocol_error",
        _ => "normal",
    }
}

type ReadHalf = fastwebsockets::WebSocketRead<OwnedReadHalf>;

struct Reader<'a> {
    node: &'a Arc<Node>,
    handle: &'a Arc<ClientHandle>,
    fragments: Reassembly,
    budget: CommandBudget,
    order: CommandOrder,
    /// No frame read yet: live events are held until the first one (see
    /// `outbound`).
    first_frame: bool,
    /// Numbers this connection's commands for their unique ids.
    sequence: u64,
    /// The `exp` of the connection's token (seconds): the first frame
    /// read after it closes the connection (PROTOCOL.md 1, `exp` is
    /// enforced). Checked as frames come rather than by the heartbeat's
    /// sweep, which would need the four bytes on every connection's handle
    /// that its size class has no room for; a client pings at least every
    /// 10 s, and one that stops is closed by the heartbeat anyway.
    token_expires_at: u64,
}

impl Reader<'_> {
    async fn run(mut self, mut read: ReadHalf) {
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
                    self.reply(Outbound::Close(close::NORMAL, "")).await;
                    return;
                }
            }
        }
    }

    /// Queues a reply owed to this client, waiting for room: a client that
    /// pipelines commands without reading only slows itself.
    async fn reply(&self, item: Outbound) {
        let _ = self.handle.push_wait(item).await;
    }

    /// A text reply, written at once if nothing is queued before it.
    async fn reply_text(&self, kind: &'static str, frame: bytes::Bytes) {
        let _ = self.handle.reply_from_reader(kind, frame).await;
    }

    async fn refuse(&self, reference: &Ref, refusal: &Refusal, chat: Option<ChatId>) {
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
                } else if self.order.hold(lane, envelope, self.node.settings.outbound_queue) {
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
        if local.typing_allowed(chat, std::time::Instant::now()) {
            let _ = self.node.broker.publish(Event::Typing { chat, user: user.to_string() }).await;
        }
    }

    /// Replays what the client missed (PROTOCOL.md 4). The writer holds live
    /// events of these chats from `SyncBegin` to `SyncEnd`, then drops what
    /// the replay already covered, so the client sees each event once, in
    /// order.
    async fn sync(&self, reference: Ref, since: Vec<(ChatId, EventId)>) {
        self.reply(Outbound::SyncBegin(since.iter().map(|(chat, _)| *chat).collect())).await;
        // In a storm of users in 20 chats the reads queued for over 20 s:
        // counted, that closed clients that pinged.
        let bounds = {
            let _store_wait = self.handle.deadline_paused();
            self.node
                .sync_pages
                .bounds(BoundsRequest { user: self.handle.user.to_string(), since: since.clone() })
                .await
        };
        let bounds = bounds.unwrap_or_else(|e| {
            metrics::counter!("chat_database_errors_total").increment(1);
            tracing::warn!(error = %e, "sync read failed");
            vec![Err(Refusal::internal()); since.len()]
        });
        let mut synced = Vec::with_capacity(since.len());
        for (&(chat, from), bound) in since.iter().zip(bounds) {
            // Replay up to where the log stood when the bounds were read;
            // live delivery carries on from there.
            match bound {
                Ok(end) if end == from => synced.push((chat, from)),
                Ok(end) => {
                    if self.replay(&reference, chat, from, end).await {
                        synced.push((chat, from));
                    }
                }
                Err(refusal) => self.refuse(&reference, &refusal, Some(chat)).await,
            }
        }
        let all = since.into_iter().map(|(chat, _)| chat).collect();
        self.reply(Outbound::SyncEnd(Box::new(SyncEnd { reference, synced, all }))).await;
    }

    /// Replays `chat`'s events in `(from, end]`, page by page; false (and
    /// the client told why) if a page could not be read, or (untold) if
    /// the connection closed meanwhile.
    async fn replay(&self, reference: &Ref, chat: ChatId, from: EventId, end: EventId) -> bool {
        let mut cursor = from;
        let mut previous: Option<tokio::sync::oneshot::Receiver<()>> = None;
        loop {
            // The next page is read once the writer has taken the one
            // before (`ReplayPage`): a client that does not read stops the
            // replay here, with two pages at most held for it.
            if let Some(taken) = previous.take() {
                let _ = taken.await;
                if self.handle.is_closed() {
                    return false;
                }
            }
            // What this connection already wrote is not read again: a
            // second sync of a chat (or a sync after live events) costs
            // only what is new, not the whole log with nothing written.
            cursor = self.handle.write_state().cursors.written_through(chat, cursor);
            if cursor >= end {
                return true;
            }
            let request = PageRequest { chat, user: self.handle.user.to_string(), since: cursor };
            let read = {
                let _store_wait = self.handle.deadline_paused();
                self.node.sync_pages.page(request).await
            };
            let page = match read {
                Ok(Ok(page)) => page,
                Ok(Err(refusal)) => {
                    self.refuse(reference, &refusal, Some(chat)).await;
                    return false;
                }
                Err(e) => {
                    metrics::counter!("chat_database_errors_total").increment(1);
                    tracing::warn!(error = %e, "sync read failed");
                    self.refuse(reference, &Refusal::internal(), Some(chat)).await;
                    return false;
                }
            };
            let Some(last) = page.events.last().map(|e| e.id) else { return true };
            let frames =
                page.events.iter().filter(|e| e.id <= end).map(|e| Arc::new(crate::hub::render_event(e))).collect();
            let (taken, is_taken) = tokio::sync::oneshot::channel();
            self.reply(Outbound::Replay(Box::new(ReplayPage { events: frames, taken }))).await;
            previous = Some(is_taken);
            cursor = last;
            if cursor >= end {
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_token_is_valid_through_its_exp_second() {
        assert!(!super::token_expired(1_000, 1_000_999));
        assert!(super::token_expired(1_000, 1_001_000));
        assert!(!super::token_expired(1_000, -5), "a clock before the epoch expires nothing");
    }
}
