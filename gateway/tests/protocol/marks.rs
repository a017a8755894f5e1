//! PROTOCOL.md 5: delivered and read marks, by range, and what REST shows.

use serde_json::json;

use crate::common::TestServer;

#[tokio::test]
async fn range_marking_moves_marks_and_changes_the_rest_views() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob", "carol"]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    for i in 1..=10 {
        alice.send_message(chat, &format!("c{i}"), "m").await;
    }

    let dlvrd = |m: i64| json!({"type": "dlvrd", "chatId": chat, "messageId": m});
    let read = |m: i64| json!({"type": "read", "chatId": chat, "messageId": m});
    assert_eq!(bob.request(dlvrd(5)).await["type"], "ack");
    let event = alice.recv_type("dlvrd").await;
    assert_eq!(
        (event["userId"].as_str(), event["messageId"].as_i64(), event["id"].as_i64()),
        (Some("bob"), Some(5), Some(11))
    );
    let delivered_at = event["timestamp"].as_i64().expect("timestamp");

    // Reading 8 before it was delivered marks both, with one timestamp.
    assert_eq!(bob.request(read(8)).await["type"], "ack");
    let d = alice.recv_type("dlvrd").await;
    let r = alice.recv_type("read").await;
    assert_eq!((d["messageId"].as_i64(), d["id"].as_i64()), (Some(8), Some(12)));
    assert_eq!((r["messageId"].as_i64(), r["id"].as_i64()), (Some(8), Some(13)));
    assert_eq!(d["timestamp"], r["timestamp"]);
    let read_at = r["timestamp"].as_i64().expect("timestamp");

    // At or below the mark: acked, nothing broadcast.
    assert_eq!(bob.request(dlvrd(3)).await["type"], "ack");
    assert_eq!(bob.request(read(8)).await["type"], "ack");
    let quiet = alice.drain().await;
    assert!(quiet.iter().all(|f| f["type"] != "dlvrd" && f["type"] != "read"), "{quiet:?}");

    // Out of range: refused, nothing marked.
    assert_eq!(bob.request(read(11)).await["code"], "bad_request");
    assert_eq!(bob.request(read(0)).await["code"], "bad_request");

    let (_, receipts) = server.call("GET", "alice", &format!("/v1/chats/{chat}/messages/4/receipts"), None).await;
    let bob_receipt =
        receipts["receipts"].as_array().expect("receipts").iter().find(|r| r["userId"] == "bob").cloned().expect("bob");
    assert_eq!(bob_receipt, json!({"userId": "bob", "deliveredAt": delivered_at, "readAt": read_at}));
    let (_, receipts) = server.call("GET", "alice", &format!("/v1/chats/{chat}/messages/7/receipts"), None).await;
    assert!(receipts["receipts"]
        .as_array()
        .expect("receipts")
        .contains(&json!({"userId": "bob", "deliveredAt": read_at, "readAt": read_at})));
    assert!(receipts["receipts"]
        .as_array()
        .expect("receipts")
        .contains(&json!({"userId": "carol", "deliveredAt": null, "readAt": null})));

    let (_, history) = server.call("GET", "alice", &format!("/v1/chats/{chat}/messages"), None).await;
    let m = &history["messages"];
    assert_eq!(m[3]["readMembers"], json!(["bob"]));
    assert_eq!(m[3]["status"], "sent", "carol has not got it yet");
    assert_eq!(m[8]["deliveredMembers"], json!([]));

    let mut carol = server.connect("carol").await;
    assert_eq!(carol.request(read(10)).await["type"], "ack");
    let (_, history) = server.call("GET", "alice", &format!("/v1/chats/{chat}/messages"), None).await;
    let m = &history["messages"];
    assert_eq!(m[3]["status"], "read", "both others read 4");
    assert_eq!(m[8]["status"], "sent", "bob does not have 9");
    assert_eq!(bob.request(dlvrd(10)).await["type"], "ack");
    let (_, history) = server.call("GET", "alice", &format!("/v1/chats/{chat}/messages"), None).await;
    assert_eq!(history["messages"][9]["status"], "dlvrd");

    let (_, chats) = server.call("GET", "bob", "/v1/chats", None).await;
    assert_eq!(chats["chats"][0]["missed"], 2, "bob read up to 8 of 10");
    assert_eq!(chats["chats"][0]["lastMessageStatus"], "dlvrd");
    let (_, chats) = server.call("GET", "carol", "/v1/chats", None).await;
    assert_eq!(chats["chats"][0]["missed"], 0);
}

/// Marks in a chat that does not exist are `not_found`, in another's chat
/// `forbidden`, and move nothing.
#[tokio::test]
async fn marks_outside_ones_chats_are_refused() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    alice.send_message(chat, "c1", "m").await;
    let mut eve = server.connect("eve").await;
    for kind in ["dlvrd", "read"] {
        let foreign = eve.request(json!({"type": kind, "chatId": chat, "messageId": 1})).await;
        assert_eq!((&foreign["type"], &foreign["code"]), (&json!("error"), &json!("forbidden")), "{foreign}");
        let unknown = eve.request(json!({"type": kind, "chatId": 999, "messageId": 1})).await;
        assert_eq!((&unknown["type"], &unknown["code"]), (&json!("error"), &json!("not_found")), "{unknown}");
    }
    let (_, receipts) = server.call("GET", "alice", &format!("/v1/chats/{chat}/messages/1/receipts"), None).await;
    assert_eq!(receipts["receipts"], json!([{"userId": "bob", "deliveredAt": null, "readAt": null}]), "{receipts}");
    assert!(alice.drain().await.iter().all(|f| f["type"] != "dlvrd" && f["type"] != "read"), "no mark events");
}
