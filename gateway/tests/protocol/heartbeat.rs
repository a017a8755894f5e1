//! PROTOCOL.md 6: heartbeats. A silent client is closed with 4000 and its
//! co-members learn it went offline.

use std::time::Duration;

use serde_json::json;

use crate::common::{Ended, TestServer};

#[tokio::test]
async fn a_silent_client_is_closed_with_4000_and_goes_offline() {
    let server = TestServer::start_with(|s| s.heartbeat_timeout_ms = 300).await;
    server.group("alice", &["bob"]).await;
    let mut bob = server.connect("bob").await;
    let mut silent = server.connect("alice").await;
    assert_eq!(bob.recv_type("online").await["userId"], "alice");
    // bob keeps pinging while alice stays silent.
    let keep_alive = async {
        loop {
            let frame = bob.recv_type_or_ping().await;
            if frame["type"] == "offline" {
                return frame;
            }
        }
    };
    let (ended, offline) = tokio::join!(silent.ended(), keep_alive);
    assert_eq!(ended, Ended::Closed(4000));
    assert_eq!(offline["userId"], "alice");
}

#[tokio::test]
async fn pinging_keeps_a_connection_open_past_the_timeout() {
    let server = TestServer::start_with(|s| s.heartbeat_timeout_ms = 300).await;
    let mut alice = server.connect("alice").await;
    // Pace pings well inside the timeout for three timeouts' worth.
    for _ in 0..9 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        alice.send(json!({"type": "ping"})).await;
        assert_eq!(alice.recv().await["type"], "pong");
    }
}
