//! One simulated client: a WebSocket from a chosen source address, a
//! reader that measures what arrives, and a channel of frames to send.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nix::sys::socket::setsockopt;
use nix::sys::socket::sockopt::IpBindAddressNoPort;
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::incoming::Incoming;
use crate::outbox::Outbox;
use crate::seen::Seen;
use crate::state::{now_us, AgentState};

/// How a connection behaves.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub ping: bool,
    /// Mark delivered and read every message from others as it arrives.
    pub mark: bool,
}

/// What the agent can ask a connection to do.
#[derive(Debug)]
pub enum Order {
    Send(Value),
    /// Drop the connection (a storm, churn).
    Close,
    /// The run is over: count what never arrived ([`Seen::never_arrived`]),
    /// then close.
    Finish,
}

pub struct Connection {
    pub user: usize,
    /// From the TCP connect to the `welcome`.
    pub opened_in: Duration,
    /// When the server wrote the `welcome` (µs since the epoch), where its
    /// heartbeat deadline starts: the welcome's `serverTime`, kept between
    /// the connect and the welcome's arrival on this host's clock.
    pub welcomed_at_us: u64,
    /// When the TCP connect began (µs since the epoch): the server's
    /// heartbeat deadline cannot start before it.
    pub started_at_us: u64,
    pub orders: mpsc::Sender<Order>,
    /// Ends with what the next connection of the same client carries on
    /// from.
    pub served: tokio::task::JoinHandle<Leftover>,
}

/// What a connection leaves its client when it closes or drops.
#[derive(Default)]
pub struct Leftover {
    /// The sends the server had not answered, ready to send again
    /// ([`Outbox`]).
    pub retries: Vec<Value>,
    /// The event ids it received, from which the client's `sync` resumes.
    pub seen: Seen,
}

/// tungstenite zero-fills its whole read buffer (128 KiB by default) before
/// every read: at 20,000 deliveries/s that `memset` was an eighth of the
/// machine's CPU, taken from the server under test. Frames here are a few
/// hundred bytes, and a larger one still arrives whole over several reads.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}

/// Connects `user` to `url` from `source_ip`; returns once the welcome
/// arrived. `seen` is what the client held before (a reconnect), or
/// nothing.
#[allow(clippy::too_many_arguments)]
pub async fn open(
    url: &str,
    token: &str,
    source_ip: &str,
    user: usize,
    behaviour: Behaviour,
    state: Arc<AgentState>,
    mut seen: Seen,
) -> anyhow::Result<Connection> {
    let started = Instant::now();
    let started_at_us = now_us();
    // A server that accepts and then never answers (stopped, overloaded)
    // must fail the connection, not hang the run.
    let (ws, server_time_ms) = tokio::time::timeout(OPEN_BOUND, welcomed(url, token, source_ip))
        .await
        .map_err(|_| anyhow::anyhow!("not welcomed within {}s", OPEN_BOUND.as_secs()))??;
    let opened_in = started.elapsed();
    let arrived_at_us = now_us();
    // min then max, not clamp: a clock stepped back meanwhile leaves
    // `started_at_us` past `arrived_at_us`, where clamp panics.
    let welcomed_at_us = server_time_ms.map_or(arrived_at_us, |ms| (ms * 1000).min(arrived_at_us).max(started_at_us));
    let (orders, mut inbox) = mpsc::channel::<Order>(1024);
    let served = tokio::spawn(async move {
        let (mut tx, mut rx) = ws.split();
        let mut outbox = Outbox::default();
        // What the server's Close frame said, if one came: 1006 (RFC 6455
        // 7.1.5) when the connection ended without one, 1005 when it
        // carried no code.
        let mut close_code = None;
        let mut ping = tokio::time::interval(Duration::from_millis(state.ping_ms));
        ping.tick().await;
        loop {
            tokio::select! {
                frame = rx.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        let Some(frame) = Incoming::parse(&text) else { continue };
                        if let ("ack" | "error", Some(reference)) = (frame.kind.as_ref(), frame.reference.as_deref()) {
                            outbox.answered(reference);
                        }
                        let replies = state.observe(user, &frame, &mut seen, behaviour);
                        for reply in replies {
                            if tx.send(Message::text(reply.to_string())).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        close_code = Some(frame.map_or(1005, |f| u16::from(f.code)));
                    }
                    Some(Ok(_)) => {}
                    _ => {
                        state.disconnected(close_code.unwrap_or(1006));
                        return leftover(outbox, &mut inbox, seen);
                    }
                },
                order = inbox.recv() => match order {
                    Some(Order::Send(frame)) => {
                        outbox.sending(&frame);
                        if frame["type"] == "sync" {
                            for (chat, since) in frame["since"].as_object().into_iter().flatten() {
                                if let (Ok(chat), Some(since)) = (chat.parse(), since.as_i64()) {
                                    seen.synced_since(chat, since);
                                }
                            }
                        }
                        if tx.send(Message::text(frame.to_string())).await.is_err() {
                            state.disconnected(close_code.unwrap_or(1006));
                            return leftover(outbox, &mut inbox, seen);
                        }
                    }
                    Some(Order::Finish) => {
                        state.never_arrived(seen.never_arrived());
                        let _ = tx.send(Message::Close(None)).await;
                        return leftover(outbox, &mut inbox, seen);
                    }
                    Some(Order::Close) | None => {
                        let _ = tx.send(Message::Close(None)).await;
                        return leftover(outbox, &mut inbox, seen);
                    }
                },
                _ = ping.tick(), if behaviour.ping => {
                    let ping = if state.ws_pings {
                        Message::Ping(Default::default())
                    } else {
                        Message::text(json!({"type": "ping"}).to_string())
                    };
                    let _ = tx.send(ping).await;
                }
            }
        }
    });
    Ok(Connection { user, opened_in, welcomed_at_us, started_at_us, orders, served })
}

/// How long a connection may take from its TCP connect to its `welcome`.
const OPEN_BOUND: Duration = Duration::from_secs(30);

/// [`handshake`], then the server's `welcome`, with its `serverTime`.
async fn welcomed(url: &str, token: &str, source_ip: &str) -> anyhow::Result<(Socket, Option<u64>)> {
    let mut ws = handshake(url, token, source_ip).await?;
    match ws.next().await {
        Some(Ok(Message::Text(text))) if text.contains("\"welcome\"") => {
            let welcome: Value = serde_json::from_str(&text)?;
            Ok((ws, welcome["serverTime"].as_u64()))
        }
        other => anyhow::bail!("no welcome: {other:?}"),
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// The TCP connection from `source_ip` and the WebSocket upgrade.
async fn handshake(url: &str, token: &str, source_ip: &str) -> anyhow::Result<Socket> {
    let target = url.trim_start_matches("ws://").split('/').next().unwrap_or_default().to_owned();
    let server: SocketAddr =
        tokio::net::lookup_host(&target).await?.next().ok_or_else(|| anyhow::anyhow!("no address for {target}"))?;
    let socket = TcpSocket::new_v4()?;
    // Without it, bind() to a source address and port 0 reserves a port
    // by searching the bound ports of that address, which grows with every
    // connection the agent holds: in a storm of 19,000 reconnects that
    // search was nearly half of the agents' CPU, and the agents shared the
    // machine with the server they measured (docs/benchmarks-journal.md,
    // twenty-ninth session). connect() then picks the port, by 4-tuple.
    setsockopt(&socket, IpBindAddressNoPort, &true)?;
    socket.bind(format!("{source_ip}:0").parse()?)?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(format!("{url}?token={token}"), stream, Some(socket_config()))
            .await?;
    Ok(ws)
}

/// What the next connection carries on from. Its sends are the unanswered
/// ones and those still queued here, which were counted as sent.
fn leftover(mut outbox: Outbox, inbox: &mut mpsc::Receiver<Order>, seen: Seen) -> Leftover {
    while let Ok(order) = inbox.try_recv() {
        if let Order::Send(frame) = order {
            outbox.sending(&frame);
        }
    }
    Leftover { retries: outbox.into_retries(), seen }
}
