//! The HTTP server: the router (WebSocket and REST on one port) and the
//! serve loop with its orderly shutdown.

use std::future::Future;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tower_http::timeout::TimeoutLayer;

use crate::node::Node;

/// How many connections may wait to be accepted. A reconnect storm brings
/// every client of a node back at once; past the queue the kernel drops
/// handshakes, and each such client waits for a retransmission, 1, then
/// 3, then 7 seconds later. tokio's `bind` queues 1,024: 19,000 clients
/// storming one gateway overflowed it 16,000 to 19,000 times a storm
/// (docs/benchmarks-journal.md, tenth session). The kernel caps this at
/// `net.core.somaxconn` (4,096 by default), which operators raise for
/// nodes that hold many connections.
pub const LISTEN_BACKLOG: u32 = 65_535;

/// How long a REST request may take, from its headers to its answer (a
/// body read included): 408 past it. hyper bounds the headers (30 s) but
/// not the body, and a client that announced a body and never sent it held
/// its connection, a file and a call of its allowance for good: two tokens
/// filled a gateway's 300 files (found by a hostile-client audit). Every
/// handler answers within the store's 5 s deadline.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// hyper's read buffer per HTTP connection, which bounds a request's
/// headers (431 past it; hyper checks it before each read, so one read can
/// take the headers to about twice this). hyper's default, about 400 KB, let a client
/// that trickles headers it never ends hold that much for the 30 s hyper
/// gives them, before any token is checked: 500 such connections took
/// 250 MB (found by a hostile-client audit). A token is well under 1 KB;
/// bodies are read through the buffer in parts, whatever their size.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How long an HTTP connection's peer may take none of what it is sent
/// before the kernel drops the connection (`TCP_USER_TIMEOUT`, which also
/// bounds the probes of a peer that keeps its window shut). hyper has no
/// write timeout, and a client that asked for a large answer and never
/// read it held it in the gateway's memory for good: twelve unread history
/// pages of a 10,000-member group held 1 GB (found by a hostile-client
/// audit). A WebSocket sets it back to the system's default at its upgrade
/// (`client::tcp_halves`): its slow consumers are the outbound queue's.
pub const SEND_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a shutdown waits, once the node has stopped (its store closed),
/// for the HTTP requests still in progress to be answered and their
/// answers taken: REST was served throughout the drain, and one still
/// going now is stuck on its client.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// A listener on `address` with [`LISTEN_BACKLOG`].
pub fn listen(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // As `TcpListener::bind` does: a restarted node rebinds its port at once.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The whole router, for the binary and for tests.
pub fn app(node: Arc<Node>) -> Router {
    let router = Router::new()
        .route("/ws", get(crate::client::upgrade))
        .merge(crate::rest::routes())
        // Inside the JSON rewrite, so that its 408 is JSON too.
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(axum::middleware::map_response(crate::rest::framework_errors::as_json));
    // Outermost: a preflight is answered before routing, and every answer,
    // errors included, carries the headers a page needs to read it.
    let router = match &node.settings.cors_origins {
        Some(origins) => router.layer(crate::cors::layer(origins)),
        None => router,
    };
    router.with_state(node)
}

/// Serves `node` on `listener` until `shutdown` resolves, then shuts the
/// node down (see [`Node::shutdown`]) before the listener stops.
///
/// HTTP/1.1 served by hyper directly rather than through `axum::serve`:
/// axum's server sniffs each connection for HTTP/2 behind a wrapper type of
/// hyper-util's own, so an upgraded WebSocket could not be turned back into
/// its `TcpStream`, which the fan-out writes through (`write_through`).
/// Clients, probes and ingress controllers speak HTTP/1.1 to the gateway.
pub async fn run(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app(node.clone());
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: closing connections after their last replies");
        node.shutdown().await;
    };
    tokio::pin!(shutdown);
    let (stop, stopping) = watch::channel(false);
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    // Frames are small and latency-bound: no Nagle delay (an
                    // ack would otherwise wait for the client's delayed ACK,
                    // ~40 ms).
                    let _ = tcp.set_nodelay(true);
                    let _ = set_send_stall(&tcp, SEND_STALL);
                    connections.spawn(serve_http(tcp, app.clone(), stopping.clone()));
                }
                Err(e) => accept_failed(e).await,
            },
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// One HTTP connection until it ends, or is upgraded, or the server stops
/// (requests in progress finish first).
async fn serve_http(tcp: TcpStream, app: Router, mut stopping: watch::Receiver<bool>) {
    // With a timer, hyper closes a connection that takes over 30 s to send a
    // request's headers (idle keep-alive too); without one it never would.
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app))
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stopping.wait_for(|stopped| *stopped) => connection.as_mut().graceful_shutdown(),
    }
    // A request in progress finishes, but a client that does not read its
    // answer would hold the process past its drain for as long as it
    // liked: dropped, it is cut off.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
}

/// Sets how long `tcp`'s peer may take nothing before the kernel drops the
/// connection; zero for the system's default.
pub fn set_send_stall(tcp: &TcpStream, stall: std::time::Duration) -> nix::Result<()> {
    let ms = u32::try_from(stall.as_millis()).unwrap_or(u32::MAX);
    nix::sys::socket::setsockopt(tcp, nix::sys::socket::sockopt::TcpUserTimeout, &ms)
}

/// A failed accept: a client that gave up is nothing; anything else, most
/// likely the process's file limit (`EMFILE`), waits a second for
/// connections to close rather than spinning, as hyper's server did.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}
