//! Shard leases: a worker reads a shard's commands only while it holds the
//! shard's lease, so one chat's commands are applied in the order sent even
//! when a stalled worker and its successor both believe they own a shard.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Cluster, Options};

/// The worker's lease is taken over behind its back (as if it had stalled
/// past its TTL and a successor had taken the shard) just before a command
/// arrives. The worker must not take that command: a successor reading the
/// shard would apply the commands after it first. Once the lease is free
/// again, the worker takes the shard back and applies it.
#[tokio::test]
async fn a_worker_whose_lease_was_taken_reads_nothing_more_from_the_shard() {
    let cluster = Cluster::start(Options::default(), 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    // The worker's consumer is running and waiting for this shard's commands.
    assert_eq!(alice.send_message(chat, "first", "one").await["messageId"], 1);

    let keys = cluster.keys();
    let (stream, lease) = (keys.command_stream(keys.shard_of(chat)), keys.shard_lease(keys.shard_of(chat)));
    let mut redis = cluster.redis().await;
    let _: () = redis::cmd("SET")
        .arg(&lease)
        .arg("successor")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut redis)
        .await
        .expect("SET");
    alice.send(json!({"type": "new", "chatId": chat, "clientMessageId": "second", "message": "two"})).await;
    let started = Instant::now();
    let second = loop {
        let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(&stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut redis)
            .await
            .expect("XREVRANGE");
        match last.into_iter().next() {
            Some((id, fields)) if fields.iter().any(|(_, command)| command.contains("\"second\"")) => break id,
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the gateway never appended the command");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cluster.wait_for_log(&cluster.workers[0], "lease lost").await;

    let groups: Vec<std::collections::HashMap<String, redis::Value>> =
        redis::cmd("XINFO").arg("GROUPS").arg(&stream).query_async(&mut redis).await.expect("XINFO");
    let delivered = match groups.first().and_then(|group| group.get("last-delivered-id")) {
        Some(redis::Value::BulkString(id)) => String::from_utf8_lossy(id).into_owned(),
        other => panic!("no consumer group: {other:?}"),
    };
    assert_ne!(delivered, second, "the worker took a command from a shard it no longer held");

    let _: () = redis::cmd("DEL").arg(&lease).query_async(&mut redis).await.expect("DEL");
    let ack = alice.recv_type("ack").await;
    assert_eq!((&ack["clientMessageId"], &ack["messageId"]), (&json!("second"), &json!(2)), "{ack}");
    assert_eq!(cluster.shard_owner(chat).await, cluster.workers[0].name);
}

/// A worker that reaches Redis but not PostgreSQL (a network policy, a
/// broken route) gives its shards up once its database has failed every
/// check for `UNREACHABLE_GRACE_MS` (3 s at least) while another worker's
/// answers, and that worker applies their commands, the one in hand
/// included, once each. When the path is mended and has answered as long,
/// it takes its share again. It used to go on renewing its leases through
/// Redis, and its shards' chats stalled until someone deleted it.
#[tokio::test]
async fn a_worker_cut_off_from_the_database_hands_its_shards_over() {
    let mut cluster = Cluster::start(Options::default(), 1, 1).await;
    let (proxy, through_proxy) = testkit::proxy::Proxy::in_front_of(&cluster.database_url).await.expect("proxy");
    cluster.start_worker_with(&[("DATABASE_URL", through_proxy), ("UNREACHABLE_GRACE_MS", "1000".to_string())]);
    let cut_off_admin = cluster.worker_admin_ports[1];
    // 16 shards, two live workers: eight each.
    cluster.wait_for_metric_at(cut_off_admin, "chat_worker_owned_shards 8").await;
    let mut chat = cluster.group(0, "alice", &["bob"]).await;
    for _ in 0..16 {
        if cluster.shard_owner(chat).await == "worker-1" {
            break;
        }
        chat = cluster.group(0, "alice", &["bob"]).await;
    }
    assert_eq!(cluster.shard_owner(chat).await, "worker-1", "none of 17 chats on worker-1's shards");
    let mut alice = cluster.connect(0, "alice").await;
    let mut bob = cluster.connect(0, "bob").await;
    assert_eq!(alice.send_message(chat, "before", "one").await["messageId"], 1);

    proxy.cut();
    let during = json!({"type": "new", "chatId": chat, "clientMessageId": "during", "message": "two"});
    // Without the handover, no reply comes, and the client gives up.
    let reply = alice.request(during).await;
    assert_eq!((&reply["type"], &reply["messageId"]), (&json!("ack"), &json!(2)), "{reply}");
    assert_eq!(cluster.shard_owner(chat).await, "worker-0");
    cluster.wait_for_metric_at(cut_off_admin, "chat_worker_owned_shards 0").await;
    // The outage's start is logged once, with what a new connection met.
    // (What it met depends on when the proxy shut it: a reset, or an
    // unexpected answer to its TLS request.)
    cluster.wait_for_log(&cluster.workers[1], "the database does not answer its health check").await;
    let log = cluster.workers[1].log();
    let line = log.lines().find(|l| l.contains("does not answer its health check")).expect("the line");
    assert!(line.contains("cause=") && !line.contains("pool timed out"), "{line}");

    proxy.mend();
    cluster.wait_for_metric_at(cut_off_admin, "chat_worker_owned_shards 8").await;
    assert!(cluster.workers[1].log().contains("the database answers its health check again"));
    // Surplus goes highest shard first: worker-1 gets the same eight back.
    assert_eq!(cluster.shard_owner(chat).await, "worker-1");
    assert_eq!(alice.send_message(chat, "after", "three").await["messageId"], 3);
    let mut delivered = Vec::new();
    while delivered.last() != Some(&json!("after")) {
        let new = bob.recv_type("new").await;
        delivered.push(new["clientMessageId"].clone());
    }
    assert_eq!(delivered, [json!("before"), json!("during"), json!("after")], "each once, in order");
    assert!(
        bob.drain().await.iter().all(|frame| frame["type"] != "new"),
        "a message delivered twice\n{}",
        cluster.logs()
    );
}

/// When no worker reaches the database (PostgreSQL down for everyone),
/// none stands aside: each keeps its shards and says so once, and when the
/// database is back the commands are applied where they were. Moving every
/// shard, then back as the workers returned, would only add to the outage.
#[tokio::test]
async fn workers_all_cut_off_from_the_database_keep_their_shards() {
    let mut cluster = Cluster::start(Options::default(), 1, 0).await;
    let mut proxies = Vec::new();
    for _ in 0..2 {
        let (proxy, through_proxy) = testkit::proxy::Proxy::in_front_of(&cluster.database_url).await.expect("proxy");
        cluster.start_worker_with(&[("DATABASE_URL", through_proxy), ("UNREACHABLE_GRACE_MS", "1000".to_string())]);
        proxies.push(proxy);
    }
    for admin in cluster.worker_admin_ports.clone() {
        cluster.wait_for_metric_at(admin, "chat_worker_owned_shards 8").await;
    }
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    assert_eq!(alice.send_message(chat, "before", "one").await["messageId"], 1);

    for proxy in &proxies {
        proxy.cut();
    }
    for worker in &cluster.workers {
        cluster.wait_for_log(worker, "nor does any other worker's: keeping the shards").await;
    }
    for admin in cluster.worker_admin_ports.clone() {
        cluster.wait_for_metric_at(admin, "chat_worker_owned_shards 8").await;
    }
    assert!(!cluster.logs().contains("giving the shards up"), "a worker stood aside:\n{}", cluster.logs());

    for proxy in &proxies {
        proxy.mend();
    }
    assert_eq!(alice.send_message(chat, "after", "two").await["messageId"], 2);
}
