//! `chats` events from a REST call on one gateway to members on another.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::harness::{Cluster, Options};

/// Redis drops the connections gateways send commands and publish on (not
/// their subscriptions) just before alice removes carol through gw-0:
/// the removal's publish fails, while gw-1, which holds carol, listens on.
/// The publish is retried, so gw-1 stops delivering the group to carol and
/// tells her; before, she went on receiving it until she reconnected.
#[tokio::test]
async fn a_removal_whose_publish_failed_reaches_the_member_s_gateway_all_the_same() {
    let cluster = Cluster::start(Options { private_redis: true, ..Options::default() }, 2, 1).await;
    let chat = cluster.group(0, "alice", &["bob", "carol"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    let mut bob = cluster.connect(1, "bob").await;
    let mut carol = cluster.connect(1, "carol").await;

    let mut redis = cluster.redis().await;
    let gateway = &cluster.gateways[0].service;
    let failed = || gateway.log().matches("chat change not announced").count();
    // Another of gw-0's commands (its presence round, every second) can
    // reconnect before the removal's publish, which then goes through:
    // carol is added back and the removal tried again.
    for attempt in 1.. {
        let failed_before = failed();
        let _: () =
            redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query_async(&mut redis).await.expect("KILL");
        let path = format!("/v1/chats/{chat}/members/carol");
        let (status, body) = cluster.call(0, "DELETE", "alice", &path, None).await;
        assert_eq!(status, 204, "{body}");
        let removed = carol.recv_type("chats").await;
        assert_eq!((&removed["action"], &removed["chat"]["id"]), (&json!("deleted"), &json!(chat)), "{removed}");
        if failed() > failed_before {
            break;
        }
        assert!(attempt < 5, "the removal's publish never failed; the test proves nothing:\n{}", cluster.logs());
        let body = json!({"userId": "carol"});
        let (status, body) = cluster.call(0, "POST", "alice", &format!("/v1/chats/{chat}/members"), Some(body)).await;
        assert_eq!(status, 204, "{body}");
        assert_eq!(carol.recv_type("chats").await["action"], "created");
    }

    let reply = loop {
        let reply =
            alice.request(json!({"type": "new", "chatId": chat, "clientMessageId": "after", "message": "after"})).await;
        if reply["type"] == "ack" {
            break reply;
        }
    };
    assert_eq!(reply["type"], "ack");
    while bob.recv_type("new").await["clientMessageId"] != "after" {}
    // Bob and carol are on the same gateway: had carol still been among
    // the chat's members there, she would have had it by the time he did.
    let heard = carol.drain().await;
    assert!(heard.iter().all(|f| f["type"] != "new"), "the removed member heard the chat: {heard:?}");
}

/// A membership change of a group of 150 goes through Redis as one event
/// that both gateways hear, not one per member each naming all of them
/// (2.5 s and 1.5 GB for 10,000 members). Members on either gateway are
/// told, each the chat as they see it, and the gateways follow the change:
/// a newcomer on gw-1 gets the chat's messages, a removed member on gw-0
/// no longer does.
#[tokio::test]
async fn a_large_group_s_membership_changes_cross_redis_once_each() {
    let cluster = Cluster::start(Options::default(), 2, 1).await;
    let keys = cluster.keys();
    let client = redis::Client::open(cluster.redis_url.as_str()).expect("redis url");
    let mut heard = client.get_async_pubsub().await.expect("subscriber");
    heard.psubscribe(format!("{}*", keys.user_channel(""))).await.expect("PSUBSCRIBE");
    heard.subscribe(keys.chat_lists_channel()).await.expect("SUBSCRIBE");

    let quiet: Vec<String> = (0..150).map(|n| format!("quiet{n:04}")).collect();
    let mut others = vec!["bob", "carol"];
    others.extend(quiet.iter().map(String::as_str));
    let mut alice = cluster.connect(0, "alice").await;
    let mut carol = cluster.connect(0, "carol").await;
    let mut bob = cluster.connect(1, "bob").await;
    let mut dave = cluster.connect(1, "dave").await;
    let chat = cluster.group(0, "alice", &others).await;
    let created = bob.recv_type("chats").await;
    assert_eq!((&created["action"], &created["chat"]["id"]), (&json!("created"), &json!(chat)), "{created}");
    assert_eq!(created["chat"]["members"].as_array().map(Vec::len), Some(153));
    assert_eq!(carol.recv_type("chats").await["action"], "created");
    assert_eq!(alice.recv_type("chats").await["action"], "created");
    alice.send_message(chat, "m1", "first").await;
    assert_eq!(bob.recv_type("new").await["message"], "first");

    let members = format!("/v1/chats/{chat}/members");
    let (status, body) = cluster.call(1, "POST", "bob", &members, Some(json!({"userId": "dave"}))).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(dave.recv_type("chats").await["action"], "created");
    let for_bob = bob.recv_type("chats").await;
    let for_alice = alice.recv_type("chats").await;
    assert_eq!((&for_bob["action"], &for_alice["action"]), (&json!("updated"), &json!("updated")));
    assert_eq!(for_bob["chat"]["members"].as_array().map(Vec::len), Some(154));
    // Each as they see it: bob has not read alice's message.
    assert_eq!((&for_bob["chat"]["missed"], &for_alice["chat"]["missed"]), (&json!(1), &json!(0)));
    assert_eq!((&for_bob["chat"]["isMine"], &for_alice["chat"]["isMine"]), (&json!(false), &json!(true)));

    let (status, body) = cluster.call(1, "DELETE", "alice", &format!("{members}/carol"), None).await;
    assert_eq!(status, 204, "{body}");
    // After dave's arrival.
    assert_eq!(carol.recv_type("chats").await["action"], "updated");
    assert_eq!(carol.recv_type("chats").await["action"], "deleted");
    assert_eq!(bob.recv_type("chats").await["chat"]["members"].as_array().map(Vec::len), Some(153));
    alice.send_message(chat, "m2", "second").await;
    let mut dave_heard = Vec::new();
    let second = loop {
        let frame = dave.recv().await;
        if frame["type"] == "new" {
            break frame;
        }
        dave_heard.push(frame);
    };
    assert_eq!(second["message"], "second", "the newcomer's gateway follows the chat");
    // Published after the removal's announcement, which reaches gw-1 first.
    let dave_chats: Vec<_> = dave_heard
        .iter()
        .filter(|f| f["type"] == "chats")
        .map(|f| (f["action"].clone(), f["chat"]["members"].as_array().map(Vec::len)))
        .collect();
    assert_eq!(dave_chats, [(json!("updated"), Some(153))], "carol's departure, and not dave's own arrival again");
    // Carol is on alice's gateway, which passes a chat's events on before
    // the replies the worker publishes after them: still among the chat's
    // members there, she would have had it by the time alice had her ack.
    let after = carol.drain().await;
    assert!(after.iter().all(|f| f["type"] != "new"), "a removed member heard the chat: {after:?}");

    // Redis hands a subscriber its messages in the order published: once
    // the marker arrives, every announcement above has.
    let marker = keys.user_channel("zz-marker");
    let _: () = redis::AsyncCommands::publish(&mut cluster.redis().await, &marker, "end").await.expect("PUBLISH");
    let (mut to_users, mut to_all) = (Vec::new(), Vec::new());
    let mut messages = heard.into_on_message();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("the marker arrives")
            .expect("subscribed");
        match message.get_channel_name() {
            channel if channel == marker => break,
            channel if channel == keys.chat_lists_channel() => {
                to_all.push(message.get_payload::<String>().expect("a text payload"))
            }
            channel => to_users.push(channel.to_owned()),
        }
    }
    assert_eq!(to_all.len(), 3, "the creation, dave's arrival and carol's departure");
    // Each names every member once, unread counts and those told included
    // (the second and third after alice's message, which all but she missed).
    for event in &to_all {
        assert_eq!(event.matches("\"quiet0042\"").count(), 1, "{event}");
    }
    assert_eq!(to_users, [keys.user_channel("dave"), keys.user_channel("carol")], "each told alone");
}

/// While a gateway that reads an older form of the shared event lives
/// (here one of a release before the forms, whose liveness key holds
/// `1`), a large group's change goes out per member, which every release
/// reads; once it is gone, as one shared event again. Rolling a release
/// that changes the form out, or back, needs no setting changed.
#[tokio::test]
async fn a_large_group_s_change_goes_per_member_while_an_older_gateway_lives() {
    let options = Options { gateway_env: vec![("SHARED_ANNOUNCE_FROM", "2".into())], ..Options::default() };
    let cluster = Cluster::start(options, 1, 1).await;
    let keys = cluster.keys();
    let mut redis = cluster.redis().await;
    let older = keys.node_alive("gw-older");
    let _: () = redis::cmd("SET").arg(&older).arg(1).arg("PX").arg(120_000).query_async(&mut redis).await.expect("SET");
    let _: i64 = redis::AsyncCommands::sadd(&mut redis, keys.nodes(), "gw-older").await.expect("SADD");
    cluster.wait_for_metric(0, "chat_fleet_chat_list_form 1").await;

    let client = redis::Client::open(cluster.redis_url.as_str()).expect("redis url");
    let mut heard = client.get_async_pubsub().await.expect("subscriber");
    heard.psubscribe(format!("{}*", keys.user_channel(""))).await.expect("PSUBSCRIBE");
    heard.subscribe(keys.chat_lists_channel()).await.expect("SUBSCRIBE");
    let mut heard = heard.into_on_message();
    let mut bob = cluster.connect(0, "bob").await;
    let chat = cluster.group(0, "alice", &["bob", "carol"]).await;
    assert_eq!(bob.recv_type("chats").await["action"], "created");
    let (to_users, to_all) = announcements(&cluster, &mut heard).await;
    assert_eq!(to_all, 0, "no shared event while the older gateway lives");
    let mut told = to_users.clone();
    told.sort();
    assert_eq!(told, ["alice", "bob", "carol"].map(|u| keys.user_channel(u)), "one event per member");

    let _: i64 = redis::AsyncCommands::del(&mut redis, &older).await.expect("DEL");
    cluster.wait_for_metric(0, "chat_fleet_chat_list_form 2").await;
    let members = format!("/v1/chats/{chat}/members");
    let (status, body) = cluster.call(0, "POST", "alice", &members, Some(json!({"userId": "dave"}))).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(bob.recv_type("chats").await["action"], "updated");
    let (to_users, to_all) = announcements(&cluster, &mut heard).await;
    assert_eq!(to_all, 1, "one shared event once it is gone");
    assert_eq!(to_users, [keys.user_channel("dave")], "and the newcomer told alone");
}

/// The announcements `heard` so far: the user channels they went to, and
/// how many went to every gateway. Redis hands a subscriber its messages
/// in the order published: once a marker published now arrives, every
/// announcement made before has.
async fn announcements(
    cluster: &Cluster,
    heard: &mut (impl futures_util::Stream<Item = redis::Msg> + Unpin),
) -> (Vec<String>, usize) {
    let keys = cluster.keys();
    let marker = keys.user_channel("zz-marker");
    let _: () = redis::AsyncCommands::publish(&mut cluster.redis().await, &marker, "end").await.expect("PUBLISH");
    let (mut to_users, mut to_all) = (Vec::new(), 0);
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(10), heard.next()).await.expect("the marker arrives").expect("on");
        match message.get_channel_name() {
            channel if channel == marker => return (to_users, to_all),
            channel if channel == keys.chat_lists_channel() => to_all += 1,
            channel => to_users.push(channel.to_owned()),
        }
    }
}
