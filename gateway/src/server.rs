//! The HTTP server: the router (WebSocket and REST on one port) and the
//! serve loop with its orderly shutdown.

use std::future::Future;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::node::Node;

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
