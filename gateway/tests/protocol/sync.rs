//! PROTOCOL.md 4: `sync` returns exactly what a reconnecting client missed.

use serde_json::{json, Value};
use shared::store::Retention;

use crate::common::TestServer;

#[tokio::test]
async fn sync_after_a_disconnect_returns_exactly_what_was_missed() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    alice.send_message(chat, "c1", "seen").await;
    let seen = bob.recv_type("new").await["id"].as_i64().expect("id");
    bob.close().await;

    alice.send_message(chat, "c2", "missed 1").await;
    alice.send_message(chat, "c3", "missed 2").await;
    assert_eq!(
        alice.request(json!({"type": "edit", "chatId": chat, "messageId": 2, "message": "missed 1 edited"})).await
            ["type"],
        "ack"
    );

    let mut bob = server.connect("bob").await;
    let reply = bob.request(json!({"type": "sync", "since": {chat.to_string(): seen}})).await;
    assert_eq!(reply["type"], "ack", "{reply}");
    assert_eq!(reply["synced"], json!({chat.to_string(): 4}));
    // The replay came before the ack; fetch it again from a third device to
    // check its content, in order, each once.
    let mut tablet = server.connect("bob").await;
    tablet.send(json!({"type": "sync", "ref": "s", "since": {chat.to_string(): seen}})).await;
    let mut replay = Vec::new();
    loop {
        let frame = tablet.recv().await;
        if frame["type"] == "ack" {
            break;
        }
        replay.push(frame);
    }
    let kinds: Vec<(i64, &str)> =
        replay.iter().map(|f| (f["id"].as_i64().expect("id"), f["type"].as_str().expect("type"))).collect();
    assert_eq!(kinds, vec![(2, "new"), (3, "new"), (4, "edit")]);
    assert_eq!(replay[0]["message"], "missed 1");
    assert_eq!(replay[2]["message"], "missed 1 edited");
}

#[tokio::test]
async fn sync_answers_gaps_and_refusals_per_chat() {
    let server = TestServer::start().await;
    let kept = server.group("alice", &["bob"]).await;
    let pruned = server.group("alice", &["bob"]).await;
    let foreign = server.group("carol", &["dave"]).await;
    let ahead = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    for i in 1..=5 {
        alice.send_message(pruned, &format!("p{i}"), "m").await;
    }
    alice.send_message(kept, "k1", "m").await;
    // Keep only the newest 2 events of busy chats, whatever their age.
    server
        .node
        .store
        .prune(Retention { max_age_ms: 0, max_events_per_chat: 2 }, shared::clock::now_ms() + 1, 1_000)
        .await
        .expect("prune");

    let mut bob = server.connect("bob").await;
    let since =
        json!({kept.to_string(): 0, pruned.to_string(): 1, foreign.to_string(): 0, "999": 0, ahead.to_string(): 7});
    bob.send(json!({"type": "sync", "ref": 1, "since": since})).await;
    let mut errors = Vec::new();
    let mut events = Vec::new();
    let ack = loop {
        let frame = bob.recv().await;
        match frame["type"].as_str() {
            Some("ack") => break frame,
            Some("error") => errors
                .push((frame["chatId"].as_i64().expect("chatId"), frame["code"].as_str().expect("code").to_owned())),
            _ => events.push(frame),
        }
    };
    errors.sort();
    let mut expected = vec![
        (pruned, "sync_gap".to_string()),
        (foreign, "forbidden".into()),
        (999, "not_found".into()),
        (ahead, "sync_gap".into()),
    ];
    expected.sort();
    assert_eq!(errors, expected);
    assert_eq!(ack["ref"], 1);
    assert_eq!(ack["synced"], json!({kept.to_string(): 1}));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["chatId"], kept);
}

#[tokio::test]
async fn a_sync_sent_first_during_live_traffic_gets_every_event_once_in_order() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    for i in 1..=20 {
        alice.send_message(chat, &format!("a{i}"), "before").await;
    }
    let mut bob = server.connect("bob").await;
    for i in 21..=40 {
        alice
            .send(json!({"type": "new", "chatId": chat, "clientMessageId": format!("a{i}"), "message": "during"}))
            .await;
    }
    bob.send(json!({"type": "sync", "ref": "s", "since": {chat.to_string(): 0}})).await;
    let mut ids = Vec::new();
    while ids.len() < 40 {
        let frame: Value = bob.recv().await;
        if frame["type"] == "new" {
            ids.push(frame["id"].as_i64().expect("id"));
        }
    }
    assert_eq!(ids, (1..=40).collect::<Vec<i64>>(), "every event once, in id order");
    assert!(bob.drain().await.iter().all(|f| f["type"] != "new"), "no duplicates later");
}

#[tokio::test]
async fn a_late_sync_fills_in_below_live_events_without_repeating_them() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    for i in 1..=5 {
        alice.send_message(chat, &format!("a{i}"), "old").await;
    }
    let mut bob = server.connect("bob").await;
    // Bob's first frame is not a sync: live delivery starts.
    bob.drain().await;
    alice.send_message(chat, "a6", "live").await;
    assert_eq!(bob.recv_type("new").await["id"], 6);
    let reply = bob.request(json!({"type": "sync", "since": {chat.to_string(): 2}})).await;
    assert_eq!(reply["synced"], json!({chat.to_string(): 6}));
    let mut tablet_view = Vec::new();
    // The replay came before the ack: re-run on a fresh connection to see
    // exactly what bob's sync wrote.
    let mut bob2 = server.connect("bob").await;
    bob2.drain().await;
    alice.send_message(chat, "a7", "live").await;
    assert_eq!(bob2.recv_type("new").await["id"], 7);
    bob2.send(json!({"type": "sync", "ref": "s", "since": {chat.to_string(): 2}})).await;
    loop {
        let frame = bob2.recv().await;
        if frame["type"] == "ack" {
            break;
        }
        if frame["type"] == "new" {
            tablet_view.push(frame["id"].as_i64().expect("id"));
        }
    }
    assert_eq!(tablet_view, vec![3, 4, 5, 6], "the missed ones, not 7 again");
}

/// A replay of several pages (500 events each): each page is queued once
/// the writer has taken the one before, and the client gets every event
/// once, in order, then the ack.
#[tokio::test]
async fn a_replay_of_several_pages_comes_whole_and_in_order() {
    const EVENTS: i64 = 1_234;
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    for i in 1..=EVENTS {
        alice
            .send(json!({"type": "new", "ref": i, "chatId": chat, "clientMessageId": format!("p{i}"), "message": "m"}))
            .await;
    }
    let mut acked = 0;
    while acked < EVENTS {
        if alice.recv().await["type"] == "ack" {
            acked += 1;
        }
    }
    let mut bob = server.connect("bob").await;
    bob.send(json!({"type": "sync", "ref": "all", "since": {chat.to_string(): 0}})).await;
    let mut ids = Vec::new();
    let ack = loop {
        let frame = bob.recv().await;
        if frame["type"] == "ack" {
            break frame;
        }
        if frame["type"] == "new" {
            ids.push(frame["id"].as_i64().expect("id"));
        }
    };
    assert_eq!(ack["synced"], json!({chat.to_string(): EVENTS}), "{ack}");
    assert_eq!(ids, (1..=EVENTS).collect::<Vec<_>>());
}

/// A client that knows no chats yet (a first start) still sends `sync`
/// first, with an empty `since`: it is acked with nothing synced, and the
/// chats' live events follow.
#[tokio::test]
async fn a_first_sync_naming_no_chats_is_acked_and_live_events_follow() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut bob = server.connect("bob").await;
    let reply = bob.request(json!({"type": "sync", "since": {}})).await;
    assert_eq!((reply["type"].as_str(), &reply["synced"]), (Some("ack"), &json!({})), "{reply}");
    let mut alice = server.connect("alice").await;
    alice.send_message(chat, "c1", "hello").await;
    let new = bob.recv_type("new").await;
    assert_eq!((&new["chatId"], &new["message"]), (&json!(chat), &json!("hello")), "{new}");
}

/// A connection forgets what it wrote of a chat the user left: added back
/// while the connection stays open, a `sync` of the chat from 0 replays
/// the events it wrote before the removal too (protocol.md 4). Kept, the
/// record of every chat a connection ever heard from stayed for its life.
#[tokio::test]
async fn a_member_added_back_syncs_on_the_same_connection_from_where_they_ask() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    alice.send_message(chat, "c1", "before").await;
    assert_eq!(bob.recv_type("new").await["message"], "before");

    let members = format!("/v1/chats/{chat}/members");
    let (status, _) = server.call("DELETE", "alice", &format!("{members}/bob"), None).await;
    assert_eq!(status, 204);
    assert_eq!(bob.recv_type("chats").await["action"], "deleted");
    alice.send_message(chat, "c2", "while out").await;
    let (status, _) = server.call("POST", "alice", &members, Some(json!({"userId": "bob"}))).await;
    assert_eq!(status, 204);
    assert_eq!(bob.recv_type("chats").await["action"], "created");

    bob.send(json!({"type": "sync", "ref": "s", "since": {chat.to_string(): 0}})).await;
    let mut replayed = Vec::new();
    loop {
        let frame = bob.recv().await;
        if frame["type"] == "ack" && frame["ref"] == "s" {
            break;
        }
        if frame["type"] == "new" {
            replayed.push(frame["message"].as_str().expect("text").to_owned());
        }
    }
    assert_eq!(replayed, ["before", "while out"], "every event after 0, the one written before the removal too");
}
