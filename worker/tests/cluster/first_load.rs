//! Membership changes announced around a user's first connection on a
//! gateway. The gateway hears a user's `chats` events only from the moment
//! it subscribes their channel, and loads their chats just after. Two
//! changes of one membership, made through two gateways, are published in
//! no particular order: the later one can go out before the user's
//! channel was heard (and be in the load), the earlier one after. Applied
//! as heard, the earlier would undo the later.

use serde_json::json;
use shared::clock::now_ms;
use shared::model::{ChatAction, ChatSummary};
use shared::store::Store;

use crate::harness::{Cluster, Options};

/// The counter of such changes the gateway dropped, as it reads once `n`.
fn overtaken(n: u64) -> String {
    format!("chat_membership_changes_overtaken_total {n}")
}

/// Removes alice from `chat` and adds her back underneath, unannounced;
/// returns her view of the chat before, and the removal's version.
async fn removed_and_added_back(cluster: &Cluster, chat: i64) -> (ChatSummary, i64) {
    let store = Store::connect(&cluster.database_url).await.expect("store");
    let view = store.summary(chat, "alice").await.expect("read").expect("a member");
    let removed = store.remove_member(chat, "bob", "alice").await.expect("removed");
    store.add_member(chat, "bob", "alice", now_ms()).await.expect("added back");
    (view, removed.version)
}

/// Alice was removed and added back before she connected; the removal's
/// announcement comes only after. She stays in the chat.
#[tokio::test]
async fn a_removal_announced_after_the_readd_that_followed_it_is_dropped() {
    let cluster = Cluster::start(Options::default(), 1, 1).await;
    let chat = cluster.group(0, "bob", &["alice"]).await;
    let mut bob = cluster.connect(0, "bob").await;
    let (view, removed) = removed_and_added_back(&cluster, chat).await;

    let mut alice = cluster.connect(0, "alice").await;
    cluster.publish_chat_list("alice", ChatAction::Deleted, view, removed).await;
    cluster.wait_for_metric(0, &overtaken(1)).await;

    bob.send_message(chat, "after", "still here?").await;
    let mut heard = Vec::new();
    while heard.last().is_none_or(|f: &serde_json::Value| f["type"] != "new") {
        heard.push(alice.recv().await);
    }
    assert!(heard.iter().all(|f| f["type"] != "chats"), "told of a removal undone: {heard:?}");
    assert_eq!(heard.last().expect("the message")["message"], "still here?", "{heard:?}");
}

/// Alice was added and removed again before she connected; the addition's
/// announcement comes only after. She is not told of the chat, and does
/// not hear it.
#[tokio::test]
async fn an_addition_announced_after_the_removal_that_followed_it_is_dropped() {
    let cluster = Cluster::start(Options::default(), 1, 1).await;
    let chat = cluster.group(0, "bob", &["carol"]).await;
    let mut bob = cluster.connect(0, "bob").await;
    let mut carol = cluster.connect(0, "carol").await;
    let store = Store::connect(&cluster.database_url).await.expect("store");
    let added = store.add_member(chat, "bob", "alice", now_ms()).await.expect("added");
    let view = store.summary(chat, "alice").await.expect("read").expect("a member");
    store.remove_member(chat, "bob", "alice").await.expect("removed");

    let mut alice = cluster.connect(0, "alice").await;
    cluster.publish_chat_list("alice", ChatAction::Created, view, added.version).await;
    cluster.wait_for_metric(0, &overtaken(1)).await;

    bob.send_message(chat, "after", "alice is gone").await;
    while carol.recv_type("new").await["clientMessageId"] != "after" {}
    // Carol and alice are on one gateway: had alice been among the chat's
    // members there, she would have had it queued by the time carol did.
    let heard = alice.drain().await;
    assert!(heard.iter().all(|f| f["type"] != "new" && f["type"] != "chats"), "a removed member heard: {heard:?}");
}

/// A change announced in the same moment, not overtaken, is applied as
/// before: a member added just after connecting is told, and hears the
/// chat.
#[tokio::test]
async fn an_addition_just_after_connecting_is_applied() {
    let cluster = Cluster::start(Options::default(), 1, 1).await;
    let chat = cluster.group(0, "bob", &["carol"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    let body = json!({"userId": "alice"});
    let (status, body) = cluster.call(0, "POST", "bob", &format!("/v1/chats/{chat}/members"), Some(body)).await;
    assert_eq!(status, 204, "{body}");
    let told = alice.recv_type("chats").await;
    assert_eq!((&told["action"], &told["chat"]["id"]), (&json!("created"), &json!(chat)), "{told}");

    let mut bob = cluster.connect(0, "bob").await;
    bob.send_message(chat, "welcome", "welcome alice").await;
    assert_eq!(alice.recv_type("new").await["message"], "welcome alice");
}

/// As the first test, but the removal's announcement reaches the gateway
/// while it is still loading alice's chats (the database frozen a moment).
/// Taken as heard, it kept the chat out of her load.
#[tokio::test]
async fn a_removal_heard_while_the_member_s_chats_load_is_checked_too() {
    let cluster = Cluster::start(Options { private_postgres: true, ..Options::default() }, 1, 1).await;
    let chat = cluster.group(0, "bob", &["alice"]).await;
    let mut bob = cluster.connect(0, "bob").await;
    let (view, removed) = removed_and_added_back(&cluster, chat).await;

    let postgres = cluster.postgres.as_ref().expect("a private PostgreSQL");
    postgres.freeze();
    let announce_while_loading = async {
        // Heard once her channel is subscribed, which comes before the load.
        let channel = cluster.keys().user_channel("alice");
        let mut redis = cluster.redis().await;
        let started = std::time::Instant::now();
        loop {
            let (_, subscribers): (String, u64) =
                redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query_async(&mut redis).await.expect("NUMSUB");
            if subscribers > 0 {
                break;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(3), "alice's channel never subscribed");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        cluster.publish_chat_list("alice", ChatAction::Deleted, view, removed).await;
        // The gateway hears its subscriptions in the order published, and
        // handles them in turn: once bob hears this typing, it has handled
        // the removal, with alice's chats still loading.
        cluster.publish(shared::bus::Event::Typing { chat, user: "carol".into() }).await;
        assert_eq!(bob.recv_type("typing").await["userId"], "carol");
        postgres.thaw();
    };
    let (mut alice, ()) = tokio::join!(cluster.connect(0, "alice"), announce_while_loading);
    cluster.wait_for_metric(0, &overtaken(1)).await;

    bob.send_message(chat, "after", "still here?").await;
    assert_eq!(alice.recv_type("new").await["message"], "still here?");
}
