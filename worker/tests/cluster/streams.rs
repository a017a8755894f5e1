//! A shard's command stream in a running cluster: it holds its backlog,
//! not every command the workers applied (src/stream_trim.rs), and the
//! gateways stop appending to it at their limit
//! (shared/src/bus/backlog.rs).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Cluster, Options};

/// 60 messages to one chat, each acknowledged, so applied: the worker's
/// lease round trims them off the chat's shard stream (all but the
/// stream's last node: a node holds at most 4 KiB by Redis's default,
/// some fifteen commands of about 250 bytes), and the shard goes on
/// taking commands.
#[tokio::test]
async fn applied_commands_are_trimmed_off_their_stream() {
    const SENT: usize = 60;
    let cluster = Cluster::start(Options::default(), 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    for n in 0..SENT {
        alice.send_message(chat, &format!("m{n}"), "hello").await;
    }
    let keys = cluster.keys();
    let stream = keys.command_stream(keys.shard_of(chat));
    let mut redis = cluster.redis().await;
    // The round runs every third of the lease's TTL; nothing else tells
    // when it did.
    let started = Instant::now();
    loop {
        let length: usize = redis::cmd("XLEN").arg(&stream).query_async(&mut redis).await.expect("XLEN");
        if length < SENT {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{length} entries still in {stream}:\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(alice.send_message(chat, "after", "still taken").await["messageId"], SENT as i64 + 1);
}

/// With no worker running, a shard's backlog reaches the gateway's limit
/// (3 here): the gateway refuses the next command to the shard, without
/// appending it, and tells the client it was not applied. Once a worker
/// applies the backlog, the shard takes commands again, and each command
/// accepted before was applied. The backlog is read from the workers'
/// group, which a first worker made before it stopped (before that it is
/// the stream's length: shared/tests/backlog.rs).
#[tokio::test]
async fn a_shard_at_its_backlog_limit_refuses_commands_and_loses_none() {
    let options = Options { gateway_env: vec![("COMMAND_BACKLOG_LIMIT", "3".into())], ..Options::default() };
    let mut cluster = Cluster::start(options, 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    assert_eq!(alice.send_message(chat, "m0", "first").await["messageId"], 1);
    cluster.workers[0].terminate(Duration::from_secs(20)).expect("the worker stops");

    let new = |n: usize| {
        let id = format!("m{n}");
        json!({"type": "new", "ref": id, "chatId": chat, "clientMessageId": id, "message": "hi"})
    };
    for n in 1..=3 {
        alice.send(new(n)).await;
    }
    let keys = cluster.keys();
    let shard = keys.shard_of(chat);
    let stream = keys.command_stream(shard);
    let redis = cluster.redis().await;
    let length = || {
        let mut redis = redis.clone();
        let stream = stream.clone();
        async move { redis::cmd("XLEN").arg(&stream).query_async::<usize>(&mut redis).await.expect("XLEN") }
    };
    let backlog_read = |backlog: usize| format!("chat_command_backlog{{shard=\"{shard}\"}} {backlog}");
    // The gateway reads the backlogs every second; its gauge tells when.
    cluster.wait_for_metric(0, &backlog_read(3)).await;
    let before = length().await;

    // Appended, it would wait for a worker: no reply at all.
    let refused = tokio::time::timeout(Duration::from_secs(10), alice.request(new(4))).await.expect("a reply");
    assert_eq!((&refused["type"], &refused["code"]), (&json!("error"), &json!("internal")), "{refused}");
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("not applied")), "{refused}");
    assert_eq!(length().await, before, "the refused command was not appended");

    cluster.start_worker();
    let mut acked = Vec::new();
    while acked.len() < 3 {
        let frame = alice.recv().await;
        if frame["type"] == "ack" {
            acked.push((frame["ref"].clone(), frame["messageId"].clone()));
        }
    }
    assert_eq!(acked, [(json!("m1"), json!(2)), (json!("m2"), json!(3)), (json!("m3"), json!(4))]);
    cluster.wait_for_metric(0, &backlog_read(0)).await;
    assert_eq!(alice.send_message(chat, "m4", "again").await["messageId"], 5);
}

/// A command handed out from its shard's stream past the worker's consumer
/// is applied once the owner's lease round finds it still pending
/// (src/stray_entries.rs): alice's command is acknowledged, and nothing
/// of the stream stays pending. A stalled predecessor's read through the
/// lease fence's one gap (src/shard_read.rs) leaves such an entry under
/// the shard's consumer name; here the transaction that appends it reads
/// it through the workers' group under a name of its own, as a read by
/// hand would, so the consumer never reads it as new and its backlog read
/// alone would not find it. Before, it waited until the shard changed
/// owner (for ever, under another name), and held the trim back.
#[tokio::test]
async fn a_command_handed_out_past_the_consumer_is_applied() {
    let cluster = Cluster::start(Options::default(), 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let (mut alice, origin) = cluster.connect_with_origin(0, "alice").await;
    // Applied, so the workers' group exists and the consumer is reading.
    assert_eq!(alice.send_message(chat, "first", "one").await["messageId"], 1);

    let astray = shared::bus::CommandEnvelope {
        id: "handed-out-by-hand".into(),
        origin,
        user: "alice".into(),
        reference: Some(json!("astray")),
        command: shared::model::Command::Send {
            chat_id: chat,
            client_message_id: "astray".into(),
            text: "two".into(),
            attachments: shared::model::Attachments::none(),
        },
        received_at: 0,
    };
    let keys = cluster.keys();
    let shard = keys.shard_of(chat);
    let stream = keys.command_stream(shard);
    let mut redis = cluster.redis().await;
    let (appended, handed_out): (String, redis::Value) = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("c")
        .arg(serde_json::to_string(&astray).expect("JSON"))
        .cmd("XREADGROUP")
        .arg("GROUP")
        .arg(shared::bus::keys::GROUP)
        .arg("by-hand")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut redis)
        .await
        .expect("XADD and XREADGROUP");
    assert!(format!("{handed_out:?}").contains(&appended), "the test's read took {handed_out:?}, not {appended}");

    let ack = alice.recv_type("ack").await;
    assert_eq!((&ack["ref"], &ack["messageId"]), (&json!("astray"), &json!(2)), "{ack}");
    cluster.wait_for_log(&cluster.workers[0], "the shard's backlog is read again").await;
    // Acknowledged in the request after the reply's: nothing tells when.
    let started = Instant::now();
    loop {
        let summary: redis::Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(shared::bus::keys::GROUP)
            .query_async(&mut redis)
            .await
            .expect("XPENDING");
        if matches!(&summary, redis::Value::Array(fields) if fields.first() == Some(&redis::Value::Int(0))) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still pending: {summary:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(alice.send_message(chat, "third", "three").await["messageId"], 3);
}
