//! One reply per command (PROTOCOL.md: "the one reply it owes"), also
//! when a command's reply is published twice: a worker that took a shard
//! over answers again what its predecessor applied but had not
//! acknowledged, and a stalled worker may publish late what its successor
//! answered.

use serde_json::json;
use shared::bus::{CommandEnvelope, Event};
use shared::model::Applied;

use crate::harness::{Cluster, Options};

#[tokio::test]
async fn a_reply_published_twice_reaches_its_client_once() {
    let cluster = Cluster::start(Options::default(), 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    alice.send(json!({"type": "new", "ref": "first", "chatId": chat, "clientMessageId": "c1", "message": "one"})).await;
    let ack = alice.recv_type("ack").await;
    assert_eq!(ack["ref"], "first", "{ack}");

    // The reply again, addressed as a worker addresses it: from the
    // command as the gateway queued it.
    let queued = queued_command(&cluster, chat, "first").await;
    let applied = Applied {
        chat_id: chat,
        message_id: ack["messageId"].as_i64().expect("a message id"),
        client_message_id: Some("c1".into()),
        timestamp: ack["timestamp"].as_i64().expect("a timestamp"),
    };
    cluster
        .publish(Event::Reply {
            origin: queued.origin,
            reference: queued.reference,
            result: Ok(applied),
            received_at: queued.received_at,
        })
        .await;

    // This command's reply goes out on the same channel after the repeat
    // was published, so it arrives after it.
    alice
        .send(json!({"type": "new", "ref": "second", "chatId": chat, "clientMessageId": "c2", "message": "two"}))
        .await;
    let next = alice.recv_type("ack").await;
    assert_eq!(next["ref"], "second", "the repeated reply reached the client: {next}");
    let (_, metrics) = cluster.text(cluster.gateways[0].port, "/metrics").await;
    let repeated = metrics.lines().find_map(|line| line.strip_prefix("chat_replies_repeated_total "));
    assert_eq!(repeated.map(str::trim), Some("1"), "counted once:\n{metrics}");
}

/// The command whose `ref` is `reference`, as the gateway queued it in
/// `chat`'s stream.
async fn queued_command(cluster: &Cluster, chat: i64, reference: &str) -> CommandEnvelope {
    let keys = cluster.keys();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(keys.command_stream(keys.shard_of(chat)))
        .arg("-")
        .arg("+")
        .query_async(&mut cluster.redis().await)
        .await
        .expect("XRANGE");
    entries
        .into_iter()
        .flat_map(|(_, fields)| fields.into_iter().map(|(_, payload)| payload))
        .filter_map(|payload| serde_json::from_str::<CommandEnvelope>(&payload).ok())
        .find(|envelope| envelope.reference == Some(json!(reference)))
        .expect("the command in its stream")
}
