//! Typing: ephemeral, to the other members only, at most once a second.

use serde_json::json;

use crate::common::TestServer;

#[tokio::test]
async fn typing_reaches_other_members_once_per_second() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    let mut alice_laptop = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    alice.send(json!({"type": "typing", "chatId": chat})).await;
    alice.send(json!({"type": "typing", "chatId": chat})).await;
    let typing = bob.recv_type("typing").await;
    assert_eq!(typing, json!({"type": "typing", "chatId": chat, "userId": "alice"}));
    let rest = bob.drain().await;
    assert!(rest.iter().all(|f| f["type"] != "typing"), "the second notice within a second is dropped: {rest:?}");
    assert!(alice_laptop.drain().await.iter().all(|f| f["type"] != "typing"), "not to the typist's own devices");
    let replies = alice.drain().await;
    assert!(
        replies.iter().all(|f| f["type"] != "ack" && f["type"] != "error"),
        "no reply owed for typing: {replies:?}"
    );

    let refused = alice.request(json!({"type": "typing", "chatId": 999})).await;
    assert_eq!(refused["code"], "not_found");
    let mut eve = server.connect("eve").await;
    assert_eq!(eve.request(json!({"type": "typing", "chatId": chat})).await["code"], "forbidden");
}

/// Typing into a chat the node does not know the user to be in asks the
/// store, so it counts against the command allowance; typing into one's
/// own chats counts only when forwarded, not when the once-a-second
/// throttle drops it.
#[tokio::test]
async fn typing_checked_against_the_store_counts_against_the_allowance() {
    let server = TestServer::start_with(|s| {
        s.command_rate = 1;
        s.command_burst = 3;
    })
    .await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    for _ in 0..5 {
        alice.send(json!({"type": "typing", "chatId": chat})).await;
    }
    assert_eq!(bob.recv_type("typing").await["userId"], "alice");
    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.push(alice.request(json!({"type": "typing", "chatId": 999})).await["code"].clone());
    }
    assert_eq!(codes[0], "not_found", "{codes:?}");
    assert!(codes.contains(&json!("rate_limited")), "ten store checks in a row meet the limit: {codes:?}");
}

/// A user in many chats cannot have all of them told every second: each
/// notice forwarded costs a command of the allowance, and past it notices
/// are dropped silently.
#[tokio::test]
async fn typing_into_many_chats_is_bounded_by_the_allowance() {
    let server = TestServer::start_with(|s| {
        s.command_rate = 1;
        s.command_burst = 3;
    })
    .await;
    let mut chats = Vec::new();
    for _ in 0..6 {
        chats.push(server.group("alice", &["bob"]).await);
    }
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    for chat in &chats {
        alice.send(json!({"type": "typing", "chatId": chat})).await;
    }
    let replies = alice.drain().await;
    assert!(replies.iter().all(|f| f["type"] != "error"), "dropped silently: {replies:?}");
    // alice's frames were all read before her barrier's pong, and what they
    // forwarded reached bob's queue before his.
    let told: Vec<_> = bob.drain().await.into_iter().filter(|f| f["type"] == "typing").collect();
    assert_eq!(told.len(), 3, "the burst's three, not six: {told:?}");
}
