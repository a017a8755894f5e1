//! PROTOCOL.md 7: chats and membership, and their live effect.

use serde_json::{json, Value};

use crate::common::TestServer;

#[tokio::test]
async fn dialogs_are_created_once_and_members_hear_of_it() {
    let server = TestServer::start().await;
    let mut bob = server.connect("bob").await;
    let (status, chat) =
        server.call("POST", "alice", "/v1/chats", Some(json!({"type": "dialog", "members": ["bob"]}))).await;
    assert_eq!(status, 201, "{chat}");
    assert_eq!(chat["type"], "dialog");
    assert_eq!(chat["name"], "bob");
    assert_eq!(chat["members"], json!(["alice", "bob"]));
    assert_eq!(chat["lastMessageId"], 0);
    // No message yet: the fields the contract does not mark optional are
    // still there, typed; the author is absent.
    assert_eq!(
        (&chat["lastMessageText"], &chat["lastMessageStatus"], &chat["lastMessageAuthor"], &chat["lastEventId"]),
        (&json!(""), &json!("sent"), &json!(null), &json!(0))
    );
    assert!(chat["lastMessageTime"].as_i64().is_some_and(|t| t > 0), "the creation time: {chat}");
    assert_eq!((&chat["photoUrl"], &chat["missed"], &chat["isMine"]), (&json!(null), &json!(0), &json!(false)));
    let created = bob.recv_type("chats").await;
    assert_eq!(created["action"], "created");
    assert_eq!(created["chat"]["id"], chat["id"]);
    assert_eq!(created["chat"]["name"], "alice", "the dialog as bob sees it");

    let (status, conflict) =
        server.call("POST", "bob", "/v1/chats", Some(json!({"type": "dialog", "members": ["alice"]}))).await;
    assert_eq!(status, 409);
    assert_eq!(conflict["code"], "conflict");
    assert_eq!(conflict["chatId"], chat["id"]);

    let (status, list) = server.call("GET", "bob", "/v1/chats", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["chats"].as_array().expect("chats").len(), 1);
}

/// A creation retried under its `Idempotency-Key` (after a 503, a timeout
/// or a dropped connection) answers with the chat the first attempt
/// created, and announces it to the members again.
#[tokio::test]
async fn a_creation_retried_under_its_idempotency_key_answers_with_the_first_chat() {
    let server = TestServer::start().await;
    let mut bob = server.connect("bob").await;
    let body = json!({"type": "group", "name": "trip", "members": ["bob"]});
    let create = |key: &str| {
        let (body, key, server) = (body.clone(), key.to_owned(), &server);
        async move { server.call_with("POST", "alice", "/v1/chats", Some(body), &[("Idempotency-Key", &key)]).await }
    };
    let (status, first) = create("trip-1").await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(bob.recv_type("chats").await["chat"]["id"], first["id"]);

    let (status, retry) = create("trip-1").await;
    assert_eq!((status, &retry), (201, &first), "the same chat, as it is now");
    let announced = bob.recv_type("chats").await;
    assert_eq!((&announced["action"], &announced["chat"]["id"]), (&json!("created"), &first["id"]));
    let (_, list) = server.call("GET", "alice", "/v1/chats", None).await;
    assert_eq!(list["chats"].as_array().expect("chats").len(), 1, "{list}");

    let (status, other) = create("trip-2").await;
    assert_eq!(status, 201, "{other}");
    assert_ne!(other["id"], first["id"], "another key, another chat");

    let renamed = json!({"type": "group", "name": "another trip", "members": ["bob"]});
    let (status, reused) =
        server.call_with("POST", "alice", "/v1/chats", Some(renamed), &[("Idempotency-Key", "trip-1")]).await;
    assert_eq!((status, &reused["code"]), (409, &json!("conflict")), "a key reused for another chat: {reused}");
    assert!(reused.get("chatId").is_none(), "not the dialog conflict: {reused}");
    let (_, list) = server.call("GET", "alice", "/v1/chats", None).await;
    assert_eq!(list["chats"].as_array().expect("chats").len(), 2, "nothing created: {list}");

    for bad in ["", "with space", &"k".repeat(256)] {
        let (status, error) = create(bad).await;
        assert_eq!((status, &error["code"]), (400, &json!("bad_request")), "{bad:?}: {error}");
    }
}

#[tokio::test]
async fn chat_list_is_newest_activity_first() {
    let server = TestServer::start().await;
    let first = server.group("alice", &["bob"]).await;
    let second = server.group("alice", &["carol"]).await;
    let (_, list) = server.call("GET", "alice", "/v1/chats", None).await;
    assert_eq!(list["chats"][0]["id"], second);
    let mut alice = server.connect("alice").await;
    let ack = alice.send_message(first, "c1", "bump").await;
    let (_, list) = server.call("GET", "alice", "/v1/chats", None).await;
    let top = &list["chats"][0];
    assert_eq!(top["id"], first);
    assert_eq!((&top["lastMessageText"], &top["lastMessageAuthor"]), (&json!("bump"), &json!("alice")));
    assert_eq!(top["lastMessageTime"], ack["timestamp"]);
    assert_eq!((&top["isMine"], &top["lastMessageId"], &top["lastEventId"]), (&json!(true), &json!(1), &json!(1)));
    let mut bob = server.connect("bob").await;
    assert_eq!(bob.request(json!({"type": "read", "chatId": first, "messageId": 1})).await["type"], "ack");
    let (_, list) = server.call("GET", "alice", "/v1/chats", None).await;
    assert_eq!(list["chats"][0]["lastMessageStatus"], "read", "every other member read it");
    assert_eq!(list["chats"][0]["lastEventId"], 3, "the new, bob's dlvrd and read");
}

/// A list whose chats' members are more than one part reads (5,000: the
/// gateway reads and writes it a part at a time) is still the whole list,
/// in order, every chat with all its members.
#[tokio::test]
async fn a_chat_list_read_in_parts_is_whole_and_in_order() {
    let server = TestServer::start().await;
    let members: Vec<String> = (0..2_000).map(|n| format!("m{n:04}")).collect();
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let mut groups = Vec::new();
    for _ in 0..3 {
        groups.push(server.group("alice", &members).await);
    }
    let (_, dialog) =
        server.call("POST", "alice", "/v1/chats", Some(json!({"type": "dialog", "members": ["bob"]}))).await;
    let mut alice = server.connect("alice").await;
    alice.send_message(groups[0], "c1", "bump").await;

    let (status, list) = server.call("GET", "alice", "/v1/chats", None).await;
    assert_eq!(status, 200);
    let chats = list["chats"].as_array().expect("chats");
    let ids: Vec<&Value> = chats.iter().map(|c| &c["id"]).collect();
    assert_eq!(ids, [&json!(groups[0]), &dialog["id"], &json!(groups[2]), &json!(groups[1])]);
    let mut whole: Vec<&str> = members.clone();
    whole.push("alice");
    whole.sort();
    for chat in chats.iter().filter(|c| c["type"] == "group") {
        assert_eq!(chat["members"], json!(whole), "{}", chat["id"]);
    }
    assert_eq!(chats[0]["lastMessageText"], "bump");
    assert_eq!((&chats[1]["name"], &chats[1]["members"]), (&json!("bob"), &json!(["alice", "bob"])));
}

#[tokio::test]
async fn membership_changes_take_effect_live() {
    // One event per member.
    membership_changes_take_effect_live_with(0, 0).await;
}

/// The same in a group large enough for its changes to be announced in one
/// event for all members (`Event::ChatListToMany`): every connected member
/// is told, each the chat as they see it, and follows it or stops.
#[tokio::test]
async fn membership_changes_of_a_large_group_take_effect_live() {
    membership_changes_take_effect_live_with(150, 100).await;
}

/// A member who reads nothing while a large group changes gets every frame
/// whole once they read again. Those frames share the group's member list
/// and are written in parts (the member's head, then the list); 40 of some
/// 130 kB fill the socket, so the parts go out around a full socket.
#[tokio::test]
async fn a_large_group_s_frames_reach_a_member_who_paused_reading_whole() {
    let server = TestServer::start().await;
    let quiet: Vec<String> = (0..1000).map(|n| format!("{n:04}-{}", "q".repeat(120))).collect();
    let mut others = vec!["bob"];
    others.extend(quiet.iter().map(String::as_str));
    let chat = server.group("alice", &others).await;
    let mut bob = server.connect("bob").await;
    let members = format!("/v1/chats/{chat}/members");
    for _ in 0..20 {
        let (status, body) = server.call("POST", "alice", &members, Some(json!({"userId": "carol"}))).await;
        assert_eq!(status, 204, "{body}");
        let (status, body) = server.call("DELETE", "alice", &format!("{members}/carol"), None).await;
        assert_eq!(status, 204, "{body}");
    }
    for change in 0..40 {
        let frame = bob.recv_type("chats").await;
        let with_carol = change % 2 == 0;
        let count = frame["chat"]["members"].as_array().map(Vec::len);
        assert_eq!(count, Some(if with_carol { 1003 } else { 1002 }), "change {change}");
        // Sorted by bytes: the quiet thousand, alice, bob, carol.
        let last = if with_carol { "carol" } else { "bob" };
        assert_eq!(
            (&frame["chat"]["members"][1001], frame["chat"]["members"].as_array().and_then(|m| m.last())),
            (&json!("bob"), Some(&json!(last))),
            "change {change}"
        );
    }
}

/// Alice's group of bob, dave and `silent` more members who never connect
/// (named after all four, so the list is the four first), with
/// `SHARED_ANNOUNCE_FROM` at `shared_from`.
async fn membership_changes_take_effect_live_with(silent: usize, shared_from: usize) {
    let server = TestServer::start_with(|s| s.shared_announce_from = shared_from).await;
    let quiet: Vec<String> = (0..silent).map(|n| format!("quiet{n:04}")).collect();
    let members = |named: &[&str]| -> Value {
        let mut all: Vec<String> = named.iter().map(|m| m.to_string()).chain(quiet.iter().cloned()).collect();
        all.sort();
        json!(all)
    };
    let mut others = vec!["bob", "dave"];
    others.extend(quiet.iter().map(String::as_str));
    let chat = server.group("alice", &others).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let mut dave = server.connect("dave").await;

    let (status, _) =
        server.call("POST", "bob", &format!("/v1/chats/{chat}/members"), Some(json!({"userId": "carol"}))).await;
    assert_eq!(status, 204, "any member adds");
    let created = carol.recv_type("chats").await;
    assert_eq!(created["action"], "created");
    assert_eq!(created["chat"]["id"], chat);
    let updated = alice.recv_type("chats").await;
    assert_eq!(updated["action"], "updated");
    assert_eq!(updated["chat"]["members"], members(&["alice", "bob", "carol", "dave"]));

    alice.send_message(chat, "c1", "welcome carol").await;
    let new = carol.recv_type("new").await;
    assert_eq!(new["message"], "welcome carol");

    let (status, body) = server.call("DELETE", "bob", &format!("/v1/chats/{chat}/members/carol"), None).await;
    assert_eq!(status, 403, "only the creator removes others: {body}");
    let (status, _) = server.call("DELETE", "alice", &format!("/v1/chats/{chat}/members/carol"), None).await;
    assert_eq!(status, 204);
    let deleted = carol.recv_type("chats").await;
    assert_eq!(deleted["action"], "deleted");
    let updated = alice.recv_type("chats").await;
    assert_eq!(updated["action"], "updated", "the others hear of a removal");
    assert_eq!(updated["chat"]["members"], members(&["alice", "bob", "dave"]));
    let (status, _) = server.call("DELETE", "dave", &format!("/v1/chats/{chat}/members/dave"), None).await;
    assert_eq!(status, 204, "anyone leaves");
    assert_eq!(actions_until_deleted(&mut dave).await, ["updated", "updated", "deleted"]);
    let (status, body) = server.call("DELETE", "dave", &format!("/v1/chats/{chat}/members/dave"), None).await;
    assert_eq!((status, &body["code"]), (404, &json!("not_found")), "a leave retried is told it was done: {body}");
    let updated = alice.recv_type("chats").await;
    assert_eq!(updated["chat"]["members"], members(&["alice", "bob"]));
    // Each member's own view: bob has not read alice's message, alice
    // wrote it.
    let mut for_bob = Vec::new();
    for _ in 0..3 {
        for_bob.push(bob.recv_type("chats").await);
    }
    let actions: Vec<_> = for_bob.iter().map(|f| f["action"].clone()).collect();
    assert_eq!(actions, ["updated", "updated", "updated"], "carol added, carol removed, dave gone");
    let for_bob = &for_bob[2];
    assert_eq!((&for_bob["chat"]["missed"], &updated["chat"]["missed"]), (&json!(1), &json!(0)), "{for_bob}");
    assert_eq!((&for_bob["chat"]["isMine"], &updated["chat"]["isMine"]), (&json!(false), &json!(true)));
    alice.send_message(chat, "c2", "carol is gone").await;
    let after = carol.drain().await;
    assert!(after.iter().all(|f| f["type"] != "new"), "a removed member gets no more events: {after:?}");
    let refused = carol.request(json!({"type": "new", "chatId": chat, "clientMessageId": "x", "message": "hi"})).await;
    assert_eq!(refused["code"], "forbidden");

    let (status, _) = server.call("DELETE", "bob", &format!("/v1/chats/{chat}"), None).await;
    assert_eq!(status, 403, "only the creator deletes");
    let (status, _) = server.call("DELETE", "alice", &format!("/v1/chats/{chat}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(alice.recv_type("chats").await["action"], "deleted");
    assert_eq!(actions_until_deleted(&mut bob).await, ["deleted"], "every member hears, in order");
    let refused = alice.request(json!({"type": "new", "chatId": chat, "clientMessageId": "y", "message": "hi"})).await;
    assert_eq!(refused["code"], "not_found");
}

#[tokio::test]
async fn rest_errors_are_json_with_the_right_status() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let cases = [
        ("POST", "/v1/chats", Some(json!({"type": "channel"})), 400, "bad_request"),
        ("POST", "/v1/chats", Some(json!({"type": "group", "members": ["bob"]})), 400, "bad_request"),
        ("POST", "/v1/chats", Some(json!({"type": "dialog", "members": []})), 400, "bad_request"),
        ("GET", "/v1/chats/abc/messages", None, 400, "bad_request"),
        ("GET", "/v1/chats/999/messages", None, 404, "not_found"),
        ("GET", &format!("/v1/chats/{chat}/messages?limit=500"), None, 400, "bad_request"),
        ("GET", &format!("/v1/chats/{chat}/messages/1/receipts"), None, 404, "not_found"),
        ("POST", &format!("/v1/chats/{chat}/members"), Some(json!({"userId": "bob"})), 409, "conflict"),
        ("GET", "/v1/nothing", None, 404, "not_found"),
        ("GET", "/v1/presence", None, 400, "bad_request"),
        ("GET", "/v1/presence?users=bob,%00", None, 400, "bad_request"),
        ("DELETE", &format!("/v1/chats/{chat}/members/%00"), None, 400, "bad_request"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, error) = server.call(method, "alice", path, body).await;
        assert_eq!((got, error["code"].as_str()), (status, Some(code)), "{method} {path}: {error}");
    }
    let (status, error) = server.call("GET", "eve", &format!("/v1/chats/{chat}/messages"), None).await;
    assert_eq!((status, error["code"].as_str()), (403, Some("forbidden")));
    let (status, error) = server.call("DELETE", "eve", &format!("/v1/chats/{chat}/members/bob"), None).await;
    assert_eq!((status, error["code"].as_str()), (403, Some("forbidden")), "a stranger removes no one");
    let (status, error) = server.call("DELETE", "alice", "/v1/chats/999/members/bob", None).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("not_found")));
    let raw = reqwest::Client::new()
        .post(server.url("/v1/chats"))
        .bearer_auth(server.token("alice"))
        .body("{not json")
        .send()
        .await
        .expect("http");
    assert_eq!(raw.status(), 400);
}

/// The `action` of each `chats` frame `client` gets, up to a `deleted`.
async fn actions_until_deleted(client: &mut testkit::client::Client) -> Vec<String> {
    let mut actions = Vec::new();
    while actions.last().map(String::as_str) != Some("deleted") {
        actions.push(client.recv_type("chats").await["action"].as_str().unwrap_or("?").to_owned());
    }
    actions
}

/// Membership of a dialog is fixed: neither added to nor removed from.
#[tokio::test]
async fn a_dialog_s_members_do_not_change() {
    let server = TestServer::start().await;
    let (_, dialog) =
        server.call("POST", "alice", "/v1/chats", Some(json!({"type": "dialog", "members": ["bob"]}))).await;
    let id = &dialog["id"];
    let (status, body) =
        server.call("POST", "alice", &format!("/v1/chats/{id}/members"), Some(json!({"userId": "carol"}))).await;
    assert_eq!((status, &body["code"]), (400, &json!("bad_request")), "{body}");
    let (status, body) = server.call("DELETE", "alice", &format!("/v1/chats/{id}/members/bob"), None).await;
    assert_eq!((status, &body["code"]), (400, &json!("bad_request")), "{body}");
    let (_, list) = server.call("GET", "bob", "/v1/chats", None).await;
    assert_eq!(list["chats"][0]["members"], json!(["alice", "bob"]));
}

/// PROTOCOL.md 4: a member added to a chat while connected gets every
/// event committed after the `lastEventId` of their `created` frame, on
/// the connection they hold, once and in order, without a `sync`. Events
/// committed between the change being read and the node following the
/// chat for them used to be delivered to the others only (a protocol
/// audit: the first event after the add was missing in one add of six in
/// a busy chat). Each round adds carol to a group bob is writing to as
/// fast as his acks come back.
#[tokio::test]
async fn a_member_added_to_a_busy_chat_gets_every_event_after_the_frames_last_event_id() {
    let server = TestServer::start().await;
    let mut carol = server.connect("carol").await;
    for round in 0..10 {
        let chat = server.group("alice", &["bob"]).await;
        let mut bob = server.connect("bob").await;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let writer = tokio::spawn(async move {
            let mut sent = 0;
            loop {
                // In bursts, each read back, so that nothing queues up.
                for _ in 0..10 {
                    sent += 1;
                    let frame =
                        json!({"type": "new", "chatId": chat, "clientMessageId": format!("m{sent}"), "message": "x"});
                    bob.send(frame).await;
                }
                bob.drain().await;
                if *stopped.borrow_and_update() {
                    return bob.send_message(chat, "last", "last").await["messageId"].as_i64().expect("id");
                }
            }
        });
        // Some of bob's messages are in before carol is added.
        let mut watcher = server.connect("alice").await;
        while watcher.recv_type("new").await["chatId"] != chat {}
        let (status, body) =
            server.call("POST", "alice", &format!("/v1/chats/{chat}/members"), Some(json!({"userId": "carol"}))).await;
        assert_eq!(status, 204, "{body}");
        let created = loop {
            let frame = carol.recv_type("chats").await;
            if frame["chat"]["id"] == chat {
                break frame;
            }
        };
        let from = created["chat"]["lastEventId"].as_i64().expect("lastEventId");
        // More of them after.
        for _ in 0..20 {
            while watcher.recv_type("new").await["chatId"] != chat {}
        }
        stop.send(true).expect("writer runs");
        let last = writer.await.expect("writer");
        let mut ids = Vec::new();
        while ids.last() != Some(&last) {
            let frame = carol.recv().await;
            if frame["chatId"] == chat && frame["type"] == "new" {
                ids.push(frame["id"].as_i64().expect("id"));
            }
        }
        // Only `new` events in this chat: event ids are message ids.
        assert_eq!(ids, (from + 1..=last).collect::<Vec<_>>(), "round {round}: after {from}");
        watcher.close().await;
    }
}
