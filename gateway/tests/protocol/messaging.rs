//! PROTOCOL.md 3 and 4: sending, editing, deleting; fan-out and order.

use serde_json::{json, Value};

use crate::common::TestServer;

#[tokio::test]
async fn every_connection_of_every_member_gets_the_message() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice_phone = server.connect("alice").await;
    let mut alice_laptop = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut eve = server.connect("eve").await;

    alice_phone
        .send(json!({"type": "new", "ref": "r1", "chatId": chat, "clientMessageId": "m1", "message": "hello", "attachments": [{"kind": "image"}]}))
        .await;
    // The sender's own connection gets both the ack and the event, in
    // either order.
    let (mut ack, mut own) = (None, None);
    while ack.is_none() || own.is_none() {
        let frame = alice_phone.recv().await;
        match frame["type"].as_str() {
            Some("ack") => ack = Some(frame),
            Some("new") => own = Some(frame),
            _ => {}
        }
    }
    let (ack, own) = (ack.expect("ack"), own.expect("event"));
    assert_eq!(ack["ref"], "r1");
    assert_eq!(ack["chatId"], chat);
    assert_eq!(ack["messageId"], 1);
    assert_eq!(ack["clientMessageId"], "m1");
    assert!(ack["timestamp"].is_i64());

    let mut events = vec![own];
    for client in [&mut alice_laptop, &mut bob] {
        events.push(client.recv_type("new").await);
    }
    for new in events {
        assert_eq!(new["id"], 1);
        assert_eq!(new["chatId"], chat);
        assert_eq!(new["userId"], "alice");
        assert_eq!(new["messageId"], 1);
        assert_eq!(new["clientMessageId"], "m1");
        assert_eq!(new["message"], "hello");
        assert_eq!(new["attachments"], json!([{"kind": "image"}]));
        assert_eq!(new["timestamp"], ack["timestamp"]);
    }
    assert!(eve.drain().await.is_empty(), "a non-member hears nothing");

    // Without attachments, the message has none: `[]`, in the event and in
    // the history.
    alice_phone.send_message(chat, "m2", "plain").await;
    let plain = bob.recv_type("new").await;
    assert_eq!((&plain["clientMessageId"], &plain["attachments"]), (&json!("m2"), &json!([])), "{plain}");
    let (_, history) = server.call("GET", "bob", &format!("/v1/chats/{chat}/messages"), None).await;
    assert_eq!(history["messages"][1]["attachments"], json!([]), "{history}");
}

#[tokio::test]
async fn a_retry_with_the_same_client_message_id_is_idempotent() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let first = alice.send_message(chat, "same", "once").await;
    bob.recv_type("new").await;
    let retry = alice.send_message(chat, "same", "once").await;
    assert_eq!(retry["messageId"], first["messageId"]);
    assert_eq!(retry["timestamp"], first["timestamp"]);
    assert!(bob.drain().await.iter().all(|f| f["type"] != "new"), "nothing new is broadcast");
    let (_, history) = server.call("GET", "bob", &format!("/v1/chats/{chat}/messages"), None).await;
    assert_eq!(history["messages"].as_array().expect("messages").len(), 1);
    // The same clientMessageId from another sender is another message.
    let mut bob_sends = bob;
    let other = bob_sends.send_message(chat, "same", "mine").await;
    assert_eq!(other["messageId"], 2);
}

#[tokio::test]
async fn fifty_pipelined_sends_keep_their_order() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    for i in 1..=50 {
        alice.send(json!({"type": "new", "ref": i, "chatId": chat, "clientMessageId": format!("c{i}"), "message": format!("m{i}")})).await;
    }
    let mut acks = Vec::new();
    while acks.len() < 50 {
        let frame = alice.recv().await;
        if frame["type"] == "ack" {
            acks.push(frame);
        }
    }
    for (i, ack) in acks.iter().enumerate() {
        assert_eq!(ack["ref"], i as i64 + 1, "acks in order");
        assert_eq!(ack["messageId"], i as i64 + 1, "messageIds follow the send order");
    }
    for i in 1..=50 {
        let new = bob.recv_type("new").await;
        assert_eq!((new["id"].as_i64(), new["messageId"].as_i64()), (Some(i), Some(i)));
        assert_eq!(new["message"], format!("m{i}"));
    }
}

/// Bob stops reading while 400 messages of 16 KiB (6.5 MB, more than his
/// socket's buffers hold) are sent. Deliveries the fan-out writes itself
/// then meet a full socket part-way through a frame, the frame's rest goes
/// to bob's writer, and everything after it queues behind (gateway
/// `write_through`). Once bob reads again, every event arrives whole, once,
/// in order.
#[tokio::test]
async fn a_member_who_stops_reading_later_gets_every_event_whole_once_in_order() {
    const MESSAGES: usize = 400;
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    // A first frame, so that bob's connection no longer holds live events.
    bob.drain().await;
    let body = |i: usize| format!("{i:05}").repeat(16_384 / 5);
    for i in 1..=MESSAGES {
        alice.send_message(chat, &format!("c{i}"), &body(i)).await;
    }
    for i in 1..=MESSAGES {
        let new = bob.recv_type("new").await;
        assert_eq!(new["messageId"], i as i64, "in order, none missing");
        assert!(new["message"].as_str() == Some(body(i).as_str()), "message {i} arrived whole");
    }
    assert!(bob.drain().await.iter().all(|frame| frame["type"] != "new"), "nothing twice");
}

#[tokio::test]
async fn edit_and_delete_follow_the_rules() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    alice.send_message(chat, "c1", "first").await;
    bob.recv_type("new").await;

    let edit = |text: &str| json!({"type": "edit", "chatId": chat, "messageId": 1, "message": text});
    let refused = bob.request(edit("not mine")).await;
    assert_eq!(refused["code"], "forbidden");
    let missing = alice.request(json!({"type": "edit", "chatId": chat, "messageId": 9, "message": "x"})).await;
    assert_eq!(missing["code"], "not_found");
    // Only a member edits or deletes, in a chat that exists (PROTOCOL.md 3).
    let (_, other) = server
        .call("POST", "carol", "/v1/chats", Some(json!({"type": "group", "name": "c", "members": ["dave"]})))
        .await;
    let other = other["id"].as_i64().expect("id");
    for (chat_id, code) in [(other, "forbidden"), (999_999, "not_found")] {
        let edit = json!({"type": "edit", "chatId": chat_id, "messageId": 1, "message": "x"});
        assert_eq!(alice.request(edit).await["code"], code, "edit in chat {chat_id}");
        let delete = json!({"type": "delete", "chatId": chat_id, "messageId": 1});
        assert_eq!(alice.request(delete).await["code"], code, "delete in chat {chat_id}");
    }
    let ack = alice.request(edit("fixed")).await;
    assert_eq!(ack["type"], "ack");
    let edited = bob.recv_type("edit").await;
    assert_eq!((edited["id"].as_i64(), edited["messageId"].as_i64()), (Some(2), Some(1)));
    assert_eq!(edited["message"], "fixed");
    assert_eq!(edited["attachments"], json!([]));
    // Resent (its ack lost, say): the same answer and no second event, so
    // the delete below takes the next id.
    let again = alice.request(edit("fixed")).await;
    assert_eq!((again["type"].as_str(), again["timestamp"].as_i64()), (Some("ack"), ack["timestamp"].as_i64()));

    let delete = json!({"type": "delete", "chatId": chat, "messageId": 1});
    assert_eq!(bob.request(delete.clone()).await["code"], "forbidden");
    assert_eq!(alice.request(delete.clone()).await["type"], "ack");
    let deleted = bob.recv_type("delete").await;
    assert_eq!((deleted["id"].as_i64(), deleted["messageId"].as_i64()), (Some(3), Some(1)));
    assert_eq!(deleted["userId"], "alice");
    assert_eq!(alice.request(edit("too late")).await["code"], "conflict");

    let (_, history) = server.call("GET", "bob", &format!("/v1/chats/{chat}/messages"), None).await;
    let message: &Value = &history["messages"][0];
    assert_eq!(message["deleted"], true);
    assert_eq!(message["message"], "");
    assert!(message["editedAt"].is_i64());
}

#[tokio::test]
async fn history_pages_ascend_and_respect_before_after_limit() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    for i in 1..=7 {
        alice.send_message(chat, &format!("c{i}"), &format!("m{i}")).await;
    }
    let ids = |body: &Value| -> Vec<i64> {
        body["messages"].as_array().expect("messages").iter().map(|m| m["messageId"].as_i64().expect("id")).collect()
    };
    let (_, page) = server.call("GET", "bob", &format!("/v1/chats/{chat}/messages?limit=3"), None).await;
    assert_eq!(ids(&page), vec![5, 6, 7], "the newest page, ascending");
    let (_, page) = server.call("GET", "bob", &format!("/v1/chats/{chat}/messages?before=5&limit=3"), None).await;
    assert_eq!(ids(&page), vec![2, 3, 4]);
    let (_, page) = server.call("GET", "bob", &format!("/v1/chats/{chat}/messages?after=2&limit=2"), None).await;
    assert_eq!(ids(&page), vec![3, 4]);
    let message = &page["messages"][0];
    assert_eq!(message["members"], json!(["alice", "bob"]));
    assert_eq!(message["status"], "sent");
    assert_eq!(message["clientMessageId"], "c3");
    // Both bounds: the newest messages between them, ascending.
    let (_, page) = server.call("GET", "bob", &format!("/v1/chats/{chat}/messages?after=2&before=7"), None).await;
    assert_eq!(ids(&page), vec![3, 4, 5, 6]);
    let (_, page) =
        server.call("GET", "bob", &format!("/v1/chats/{chat}/messages?after=2&before=7&limit=2"), None).await;
    assert_eq!(ids(&page), vec![5, 6]);
    // No limit: the newest 50.
    for i in 8..=60 {
        alice.send_message(chat, &format!("c{i}"), &format!("m{i}")).await;
    }
    let (_, page) = server.call("GET", "bob", &format!("/v1/chats/{chat}/messages"), None).await;
    assert_eq!(ids(&page), (11..=60).collect::<Vec<_>>(), "a default page of 50");
}

/// A page written out in several pieces (64 KiB each) arrives as one JSON
/// document, labelled as such, with every message in order.
#[tokio::test]
async fn a_history_page_larger_than_its_pieces_arrives_whole() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    let text = |i: usize| format!("{i:03} {}", "ü".repeat(2000));
    for i in 1..=60 {
        alice.send_message(chat, &format!("c{i}"), &text(i)).await;
    }
    let response = reqwest::Client::new()
        .get(server.url(&format!("/v1/chats/{chat}/messages?limit=200")))
        .bearer_auth(server.token("bob"))
        .send()
        .await
        .expect("http");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.bytes().await.expect("body");
    assert!(body.len() > 3 * 64 * 1024, "{} bytes: not several pieces", body.len());
    let page: Value = serde_json::from_slice(&body).expect("one JSON document");
    let texts: Vec<&str> =
        page["messages"].as_array().expect("messages").iter().map(|m| m["message"].as_str().expect("text")).collect();
    assert_eq!(texts, (1..=60).map(text).collect::<Vec<_>>());
}

/// Attachments nested as deep as allowed (32 levels) go through every copy
/// the system makes: stored, delivered, replayed by `sync`; one level more
/// is refused up front rather than stored beyond what can be read back.
#[tokio::test]
async fn the_deepest_attachments_allowed_are_delivered_and_replayed() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    let nested = |levels: usize| -> Value {
        let inner = format!("{}0{}", "[".repeat(levels - 2), "]".repeat(levels - 2));
        json!([{"a": serde_json::from_str::<Value>(&inner).expect("nested")}])
    };
    let send = |cid: &str, levels| json!({"type": "new", "chatId": chat, "clientMessageId": cid, "message": "deep", "attachments": nested(levels)});
    let too_deep = alice.request(send("c2", 33)).await;
    assert_eq!((&too_deep["type"], &too_deep["code"]), (&json!("error"), &json!("bad_request")), "{too_deep}");
    assert_eq!(alice.request(send("c1", 32)).await["type"], "ack");

    let mut bob = server.connect("bob").await;
    bob.send(json!({"type": "sync", "ref": "s", "since": {chat.to_string(): 0}})).await;
    let replayed = bob.recv_type("new").await;
    assert_eq!(replayed["attachments"], nested(32));
    assert_eq!(bob.recv_type("ack").await["synced"], json!({chat.to_string(): 1}));
}
