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
