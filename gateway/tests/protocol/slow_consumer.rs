//! A client that does not read is closed as a slow consumer (4001) once
//! `OUTBOUND_QUEUE` frames or `OUTBOUND_BYTES` bytes wait for it, and
//! nobody else waits for it (docs/protocol.md; PROTOCOL.md leaves it to the
//! server).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::common::TestServer;

/// Bob stops reading while alice sends 400 messages of 16 KiB, more than
/// his socket's buffers hold; his queue holds at most 8 frames. He must be
/// closed as slow while alice's sends all go through, and what he did get
/// must be whole, in order, from the first message on.
#[tokio::test]
async fn a_member_who_does_not_read_is_closed_as_slow_and_the_sender_goes_on() {
    let server = TestServer::start_with(|s| s.outbound_queue = 8).await;
    closed_as_slow_while_alice_sends(&server, 400).await;
}

/// The same with room for a million frames but 256 KiB: bob is closed by
/// the bytes queued for him, which his writer would copy, not by their
/// count. Without that bound, 64 KiB messages held gigabytes for a hundred
/// such connections of one account.
#[tokio::test]
async fn a_member_who_does_not_read_is_closed_by_the_bytes_queued_for_him() {
    let server = TestServer::start_with(|s| {
        s.outbound_queue = 1_000_000;
        s.outbound_bytes = 256 * 1024;
    })
    .await;
    closed_as_slow_while_alice_sends(&server, 1_000).await;
}

async fn closed_as_slow_while_alice_sends(server: &TestServer, messages: i64) {
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    // A first frame, so that bob's connection no longer holds live events.
    bob.drain().await;
    let body = "x".repeat(16_384);
    for i in 1..=messages {
        alice.send_message(chat, &format!("c{i}"), &body).await;
    }

    let mut received = 0;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), bob.ws.next()).await.expect("bob's connection ends") {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).expect("whole JSON frames");
                if frame["type"] == "new" {
                    received += 1;
                    assert_eq!(frame["messageId"], received, "in order, none missing");
                }
            }
            Some(Ok(Message::Close(close))) => break close.map(|c| u16::from(c.code)),
            Some(Ok(_)) => {}
            // The writer resets a closed connection whose socket takes no
            // bytes for half a second; bob read too late to see the close.
            Some(Err(_)) | None => break None,
        }
    };
    assert!(received < messages, "bob was cut off ({received} of {messages}, close {ended:?})");
    assert!(ended.is_none() || ended == Some(4001), "closed as slow, not otherwise: {ended:?}");
    let metrics = reqwest::get(server.url("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("chat_connections_closed_total{reason=\"slow\"} ") && !line.ends_with(" 0")),
        "the close is counted as slow:\n{metrics}"
    );
}
