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

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use fastwebsockets::upgrade::{IncomingUpgrade, UpgradeFut};
use fastwebsockets::{Role, WebSocketError};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use shared::clock::now_ms;
use shared::config::MAX_FRAME_BYTES;
use shared::error::{ErrorCode, Refusal};
use shared::protocol::close;
use shared::protocol::native::outbound as render;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::command_budget::CommandBudget;
use crate::command_order::CommandOrder;
use crate::handle::ClientHandle;
use crate::hub::ChatsLoad;
use crate::node::Node;
use crate::outbound::Outbound;
use crate::outbound_queue::QueueLimits;
use crate::reassembly::Reassembly;
use crate::rest::auth::{bearer_token, ApiError};
use crate::writer::write_loop;

mod reader;
mod sync;

use reader::Reader;

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
    // An upgrade is a call of the user's REST allowance: a connection
    // costs more than most calls (the user's chats loaded, presence
    // announced to their co-members when it is their first here, and again
    // when it closes), and a client reconnecting in a loop would otherwise
    // cost them without bound.
    if !node.rest_allowance.take(&identity.user, now_ms()) {
        metrics::counter!("chat_rest_rate_limited_total").increment(1);
        metrics::counter!("chat_connections_closed_total", "reason" => "rate_limited").increment(1);
        return ApiError::past_allowance("too many connections and calls; wait a moment, then retry").into_response();
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
    let limits = QueueLimits { items: node.settings.outbound_queue as u32, bytes: node.settings.outbound_bytes };
    let handle = Arc::new(ClientHandle::new(id, identity.user, limits));
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
    let tcp = parts.io.into_inner();
    // REST's bound on a peer that takes nothing (`server::SEND_STALL`) is
    // not a WebSocket's: a client whose window stays shut is closed as a
    // slow consumer or for its heartbeat, with a close code, as before.
    let _ = crate::server::set_send_stall(&tcp, std::time::Duration::ZERO);
    Ok(tcp.into_split())
}

/// Whether a token valid through second `exp` has expired at `now`
/// (milliseconds), as a new connection's check would find it.
fn token_expired(exp: u64, now: i64) -> bool {
    u64::try_from(now.div_euclid(1000)).is_ok_and(|second| second > exp)
}

fn close_reason(code: Option<u16>) -> &'static str {
    match code {
        Some(close::HEARTBEAT_TIMEOUT) => "heartbeat",
        Some(close::SLOW_CONSUMER) => "slow",
        Some(close::TOKEN_EXPIRED) => "token_expired",
        Some(close::CHATS_CHANGED) => "chats_changed",
        Some(close::SERVICE_RESTART) | Some(close::GOING_AWAY) => "drain",
        Some(close::MESSAGE_TOO_BIG) => "too_big",
        Some(close::PROTOCOL_ERROR) | Some(close::INVALID_PAYLOAD) => "protocol_error",
        _ => "normal",
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
