//! PROTOCOL.md 6: online/offline once per connection, multi-device.

use serde_json::{json, Value};

use crate::common::TestServer;

fn presence_frames(frames: &[Value]) -> Vec<&Value> {
    frames.iter().filter(|f| f["type"] == "online" || f["type"] == "offline").collect()
}

#[tokio::test]
async fn a_user_with_two_devices_is_online_until_both_are_gone() {
    let server = TestServer::start().await;
    // Two shared chats: still one event per connection.
    server.group("alice", &["bob"]).await;
    server.group("bob", &["alice"]).await;
    let mut bob = server.connect("bob").await;
    let mut bob_tablet = server.connect("bob").await;

    let phone = server.connect("alice").await;
    for client in [&mut bob, &mut bob_tablet] {
        // Exactly these fields: presence is not a chat event, so no `id`.
        let online = client.recv_type("online").await;
        assert_eq!(online, json!({"type": "online", "userId": "alice"}));
    }
    let laptop = server.connect("alice").await;
    let (_, body) = server.call("GET", "bob", "/v1/presence?users=alice,carol", None).await;
    assert_eq!(body["users"][0]["userId"], "alice");
    assert_eq!(body["users"][0]["online"], true);
    assert_eq!(body["users"][1], serde_json::json!({"userId": "carol", "online": false, "lastSeen": null}));

    phone.close().await;
    laptop.close().await;
    // Everything bob hears from here to alice's offline: no second online,
    // no early offline when the first device left.
    let mut seen = Vec::new();
    loop {
        let frame = bob.recv().await;
        let done = frame["type"] == "offline";
        seen.push(frame);
        if done {
            break;
        }
    }
    let presence = presence_frames(&seen);
    assert_eq!(presence.len(), 1, "{seen:?}");
    assert_eq!(presence[0]["userId"], "alice");
    let last_seen = presence[0]["lastSeen"].as_i64().expect("lastSeen");
    assert_eq!(presence[0], &json!({"type": "offline", "userId": "alice", "lastSeen": last_seen}));
    assert_eq!(bob_tablet.recv_type("offline").await["lastSeen"], last_seen);

    let (_, body) = server.call("GET", "bob", "/v1/presence?users=alice", None).await;
    assert_eq!(body["users"][0]["online"], false);
    assert_eq!(body["users"][0]["lastSeen"], last_seen);
}

#[tokio::test]
async fn presence_goes_only_to_co_members() {
    let server = TestServer::start().await;
    server.group("alice", &["bob"]).await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let _alice = server.connect("alice").await;
    assert_eq!(bob.recv_type("online").await["userId"], "alice");
    // carol shares nothing with alice. Bob heard of alice, so the announcer
    // is past her; carol's queue holds whatever it would have sent her.
    let carol_frames = carol.drain().await;
    assert!(presence_frames(&carol_frames).is_empty(), "{carol_frames:?}");
}

/// Presence follows membership as it changes while users are connected:
/// a member added to a group hears its members come and go from then on,
/// and one removed no longer does.
#[tokio::test]
async fn presence_follows_members_added_and_removed() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    let mut carol = server.connect("carol").await;
    let members = format!("/v1/chats/{chat}/members");
    let (status, body) = server.call("POST", "alice", &members, Some(json!({"userId": "carol"}))).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(carol.recv_type("chats").await["action"], "created");
    let bob = server.connect("bob").await;
    assert_eq!(carol.recv_type("online").await["userId"], "bob", "added, so told");

    let (status, body) = server.call("DELETE", "alice", &format!("{members}/carol"), None).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(carol.recv_type("chats").await["action"], "deleted");
    bob.close().await;
    assert_eq!(alice.recv_type("offline").await["userId"], "bob");
    // The announcer is past bob's offline; carol's queue holds whatever it
    // would have sent her.
    let carol_frames = carol.drain().await;
    assert!(presence_frames(&carol_frames).is_empty(), "removed, so not told: {carol_frames:?}");
}

/// A crowd coming and leaving at once (a heartbeat sweep, a network cut),
/// more users than one announcer round takes: however the rounds fall,
/// each user is announced online once and offline once, with the
/// last-seen time that REST then reports.
#[tokio::test]
async fn a_crowd_leaving_together_is_announced_one_by_one() {
    const CROWD: usize = 300;
    let server = TestServer::start().await;
    let users: Vec<String> = (0..CROWD).map(|n| format!("crowd{n}")).collect();
    for user in &users {
        server.group(user, &["watcher"]).await;
    }
    let mut watcher = server.connect("watcher").await;
    let mut crowd = Vec::with_capacity(CROWD);
    for user in &users {
        crowd.push(server.connect(user).await);
    }
    let mut online = std::collections::HashSet::new();
    while online.len() < CROWD {
        let frame = watcher.recv_type("online").await;
        assert!(online.insert(frame["userId"].as_str().expect("userId").to_owned()), "twice: {frame}");
    }

    for client in crowd {
        client.close().await;
    }
    let mut last_seen = std::collections::HashMap::new();
    while last_seen.len() < CROWD {
        let frame = watcher.recv_type("offline").await;
        let user = frame["userId"].as_str().expect("userId").to_owned();
        let at = frame["lastSeen"].as_i64().expect("lastSeen");
        assert!(last_seen.insert(user, at).is_none(), "twice: {frame}");
    }
    let (status, body) = server.call("GET", "watcher", "/v1/presence?users=crowd0,crowd299", None).await;
    assert_eq!(status, 200, "{body}");
    for view in body["users"].as_array().expect("users") {
        let user = view["userId"].as_str().expect("userId");
        assert_eq!(view["online"], false, "{view}");
        assert_eq!(view["lastSeen"].as_i64(), Some(last_seen[user]), "{view}");
    }
}

/// A user's `offline` goes to the chats they are in when they leave,
/// joined and left while connected included: the gateway announces it
/// with the chats it followed for them, not the ones they had on
/// connecting.
#[tokio::test]
async fn offline_goes_to_the_chats_a_user_has_when_leaving() {
    let server = TestServer::start().await;
    let left_chat = server.group("alice", &["dave"]).await;
    let mut carol = server.connect("carol").await;
    let mut dave = server.connect("dave").await;
    let mut alice = server.connect("alice").await;
    assert_eq!(dave.recv_type("online").await["userId"], "alice");

    let (status, body) = server
        .call("POST", "alice", "/v1/chats", Some(json!({"type": "group", "name": "new", "members": ["carol"]})))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(alice.recv_type("chats").await["action"], "created");
    let (status, body) = server.call("DELETE", "alice", &format!("/v1/chats/{left_chat}/members/alice"), None).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(alice.recv_type("chats").await["action"], "deleted");

    alice.close().await;
    assert_eq!(carol.recv_type("offline").await["userId"], "alice", "joined while connected, so told");
    // The announcer is past alice's offline; dave's queue holds whatever
    // it would have sent him.
    let dave_frames = dave.drain().await;
    assert!(presence_frames(&dave_frames).is_empty(), "left while connected, so not told: {dave_frames:?}");
}
