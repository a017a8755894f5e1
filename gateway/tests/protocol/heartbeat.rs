//! PROTOCOL.md 6: heartbeats. A silent client is closed with 4000 and its
//! co-members learn it went offline.

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

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

/// A WebSocket Ping control frame counts as a heartbeat too (PROTOCOL.md
/// 6), and is answered with a Pong carrying its payload.
#[tokio::test]
async fn websocket_ping_frames_keep_a_connection_open_past_the_timeout() {
    let server = TestServer::start_with(|s| s.heartbeat_timeout_ms = 300).await;
    let mut alice = server.connect("alice").await;
    for n in 0..9u8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        alice.send_raw(Message::Ping(vec![n].into())).await;
        assert_eq!(alice.recv_pong().await, [n], "the Pong echoes the Ping");
    }
    alice.send(json!({"type": "ping", "ref": "still"})).await;
    assert_eq!(alice.recv().await["ref"], "still", "open after three timeouts' worth");
}

/// A phone that loses its network in a busy chat: alice stops reading
/// while 6.5 MB of events are sent to her (more than her socket's buffers
/// hold, so her connection's writer waits for room that never comes), then
/// stops pinging. Her heartbeat deadline must still end the connection, and
/// carol must still learn that she went offline, rather than alice staying
/// online until TCP gives up on her minutes later.
#[tokio::test]
async fn a_client_that_stops_reading_then_pinging_still_goes_offline() {
    const MESSAGES: usize = 400;
    let server = TestServer::start_with(|s| s.heartbeat_timeout_ms = 1_000).await;
    let busy = server.group("bob", &["alice"]).await;
    server.group("carol", &["alice"]).await;
    let mut carol = server.connect("carol").await;
    let mut bob = server.connect("bob").await;
    let mut alice = server.connect("alice").await;
    // A first frame, so that alice's connection no longer holds live events.
    alice.drain().await;

    let body = "x".repeat(16_384);
    let flood = async {
        for i in 1..=MESSAGES {
            // Both keep pinging through the flood; only bob reads.
            alice.send(json!({"type": "ping"})).await;
            bob.send(json!({"type": "ping"})).await;
            bob.send_message(busy, &format!("c{i}"), &body).await;
        }
    };
    let watch = async {
        loop {
            let frame = carol.recv_type_or_ping().await;
            if frame["type"] == "offline" && frame["userId"] == "alice" {
                return;
            }
        }
    };
    // Bounded: the deadline, a sweep, the close's grace and the
    // announcement take well under this.
    let flooded_then_offline = async { tokio::join!(flood, watch) };
    tokio::time::timeout(Duration::from_secs(30), flooded_then_offline)
        .await
        .expect("carol hears that alice went offline");
    let metrics = reqwest::get(server.url("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(
        metrics.lines().any(|line| line.starts_with("chat_connections_reset_total ") && !line.ends_with(" 0")),
        "the reset is counted:\n{metrics}"
    );
}

/// A client whose commands wait for room in the in-process command queue
/// (the embedded worker stalled on its database) is not read meanwhile:
/// its pings wait in the socket. That wait is the server's, not the
/// client's silence, and the heartbeat must not close it for it.
#[tokio::test]
async fn a_client_held_by_a_full_command_queue_is_not_closed_for_silence() {
    use sqlx::Connection;

    let server = TestServer::start_with(|s| {
        s.heartbeat_timeout_ms = 300;
        s.command_queue = 1;
    })
    .await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    // Another writer holds SQLite's write lock: the embedded worker's next
    // transaction waits for it (the store's busy timeout is 10 s).
    let url = format!("sqlite://{}/chat.db", server.dir.path().display());
    let mut writer = sqlx::SqliteConnection::connect(&url).await.expect("a second connection");
    sqlx::query("BEGIN IMMEDIATE").execute(&mut writer).await.expect("the write lock");
    // One command the worker holds, one in the queue, the rest at the
    // reader, which waits for room and reads nothing meanwhile.
    for i in 0..6 {
        alice
            .send(json!({"type": "new", "ref": i, "chatId": chat, "clientMessageId": format!("q{i}"), "message": "m"}))
            .await;
    }
    // Ten timeouts of pings the server cannot read yet.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        alice.send(json!({"type": "ping"})).await;
    }
    sqlx::query("ROLLBACK").execute(&mut writer).await.expect("the lock released");
    let mut acked = Vec::new();
    while acked.len() < 6 {
        let frame = alice.recv().await;
        assert!(["ack", "new", "pong"].contains(&frame["type"].as_str().unwrap_or_default()), "{frame}");
        if frame["type"] == "ack" {
            acked.push(frame["ref"].as_i64().expect("ref"));
        }
    }
    assert_eq!(acked, [0, 1, 2, 3, 4, 5]);
}
