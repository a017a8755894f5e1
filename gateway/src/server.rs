//! The HTTP server: the router (WebSocket and REST on one port) and the
//! serve loop with its orderly shutdown.

use std::future::Future;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio::net::{TcpListener, TcpSocket};

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
    Router::new().route("/ws", get(crate::client::upgrade)).merge(crate::rest::routes()).with_state(node)
}

/// Serves `node` on `listener` until `shutdown` resolves, then shuts the
/// node down (see [`Node::shutdown`]) before the listener stops.
pub async fn run(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let draining = node.clone();
    // Frames are small and latency-bound: no Nagle delay (an ack would
    // otherwise wait for the client's delayed ACK, ~40 ms).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app(node))
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: closing connections after their last replies");
            draining.shutdown().await;
        })
        .await
}
