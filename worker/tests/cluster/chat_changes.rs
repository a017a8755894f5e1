//! `chats` events from a REST call on one gateway to members on another.

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
