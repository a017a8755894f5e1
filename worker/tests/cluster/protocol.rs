//! The protocol holds unchanged when a chat's members sit on different
//! gateways and their commands go to different workers.

use serde_json::json;
use shared::clock::now_ms;
use shared::model::ChatAction;
use shared::store::Store;
use testkit::client::Client;

use crate::harness::{Cluster, Options};

#[tokio::test]
async fn members_on_different_gateways_see_one_ordered_chat() {
    let cluster = Cluster::start(Options::default(), 2, 2).await;
    let mut alice = cluster.connect(0, "alice").await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut bob = cluster.connect(1, "bob").await;
    assert_eq!(alice.recv_type("online").await["userId"], "bob", "presence crosses nodes");

    for i in 1..=30 {
        alice.send(json!({"type": "new", "ref": i, "chatId": chat, "clientMessageId": format!("c{i}"), "message": format!("m{i}")})).await;
    }
    let mut acks = Vec::new();
    while acks.len() < 30 {
        let frame = alice.recv().await;
        if frame["type"] == "ack" {
            acks.push((frame["ref"].as_i64().expect("ref"), frame["messageId"].as_i64().expect("id")));
        }
    }
    assert_eq!(acks, (1..=30).map(|i| (i, i)).collect::<Vec<_>>(), "acks in order, ids in send order");
    for i in 1..=30 {
        let new = bob.recv_type("new").await;
        assert_eq!((new["id"].as_i64(), new["message"].as_str()), (Some(i), Some(format!("m{i}").as_str())));
    }

    assert_eq!(bob.request(json!({"type": "read", "chatId": chat, "messageId": 30})).await["type"], "ack");
    assert_eq!(alice.recv_type("dlvrd").await["userId"], "bob");
    assert_eq!(alice.recv_type("read").await["id"], 32);
    bob.send(json!({"type": "typing", "chatId": chat})).await;
    assert_eq!(alice.recv_type("typing").await["userId"], "bob");

    // Membership changes reach the other node's connections live.
    let mut carol = cluster.connect(1, "carol").await;
    let (status, _) =
        cluster.call(0, "POST", "alice", &format!("/v1/chats/{chat}/members"), Some(json!({"userId": "carol"}))).await;
    assert_eq!(status, 204);
    assert_eq!(carol.recv_type("chats").await["action"], "created");
    alice.send_message(chat, "c31", "hi carol").await;
    assert_eq!(carol.recv_type("new").await["id"], 33);

    // Sync on the other gateway returns exactly what was missed.
    bob.close().await;
    alice.send_message(chat, "c32", "missed").await;
    let mut bob = cluster.connect(0, "bob").await;
    let reply = bob.request(json!({"type": "sync", "since": {chat.to_string(): 33}})).await;
    assert_eq!(reply["synced"], json!({chat.to_string(): 34}), "{}", cluster.logs());
    let (_, history) = cluster.call(1, "GET", "carol", &format!("/v1/chats/{chat}/messages?limit=200"), None).await;
    assert_eq!(history["messages"].as_array().expect("messages").len(), 32);
}

/// One connection's commands are applied in the order sent, also when
/// their chats' commands go to different shards, applied by different
/// workers (PROTOCOL.md 3). With no worker running yet, a command for a
/// second shard waits at the gateway behind the first shard's unanswered
/// one, and so does everything after it; once a worker applies the first,
/// the rest follow in order.
#[tokio::test]
async fn a_connection_s_commands_are_applied_in_order_across_shards() {
    let mut cluster = Cluster::start(Options::default(), 1, 0).await;
    let (first, second) = cluster.groups_on_two_shards(0, "alice", &["bob"]).await;
    let keys = cluster.keys();
    let mut alice = cluster.connect(0, "alice").await;
    let new = |r: i64, chat: i64| json!({"type": "new", "ref": r, "chatId": chat, "clientMessageId": format!("o{r}"), "message": "m"});
    alice.send(new(1, first)).await;
    alice.send(new(2, second)).await;
    alice.send(new(3, first)).await;
    // Frames are read in order: once the pong is back, all three were taken.
    alice.send(json!({"type": "ping", "ref": "after"})).await;
    loop {
        let frame = alice.recv().await;
        if frame["type"] == "pong" && frame["ref"] == "after" {
            break;
        }
    }
    let mut redis = cluster.redis().await;
    let mut queued = Vec::new();
    for chat in [first, second] {
        let stream = keys.command_stream(keys.shard_of(chat));
        let length: i64 = redis::cmd("XLEN").arg(stream).query_async(&mut redis).await.expect("XLEN");
        queued.push(length);
    }
    assert_eq!(queued, [1, 0], "the second shard's command waits for the first's answer");

    cluster.start_worker();
    let mut acks = Vec::new();
    while acks.len() < 3 {
        let frame = alice.recv().await;
        if frame["type"] == "ack" {
            acks.push((frame["ref"].as_i64().expect("ref"), frame["timestamp"].as_i64().expect("timestamp")));
        }
    }
    let refs: Vec<i64> = acks.iter().map(|(r, _)| *r).collect();
    assert_eq!(refs, [1, 2, 3], "{}", cluster.logs());
    assert!(acks.windows(2).all(|pair| pair[0].1 <= pair[1].1), "applied in order: {acks:?}");
}

/// A frame that arrives in two parts, with the answer that releases a held
/// command coming between them, is read whole. The gateway's reader waits
/// for the next frame and for that answer at once, and drops the read in
/// progress to release the command; the read taken up again must still
/// have the frame's header (vendor/fastwebsockets/PATCHED.md). It used to
/// read payload bytes as a header and close the connection with 1002.
#[tokio::test]
async fn a_frame_cut_around_a_released_command_is_read_whole() {
    let mut cluster = Cluster::start(Options::default(), 1, 0).await;
    let (first, second) = cluster.groups_on_two_shards(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    let new = |r: i64, chat: i64| json!({"type": "new", "ref": r, "chatId": chat, "clientMessageId": format!("cut{r}"), "message": "m"});
    alice.send(new(1, first)).await;
    alice.send(new(2, second)).await;
    let third = testkit::client::masked_text_frame(&new(3, first).to_string());
    let (head, tail) = third.split_at(10);
    alice.write_bytes(head).await;

    // No worker ran until now: the second command is held, and the answer
    // to the first releases it while the third frame is half read.
    cluster.start_worker();
    let mut refs = Vec::new();
    while refs.len() < 2 {
        let frame = alice.recv().await;
        assert_ne!(frame["type"], "error", "{frame}");
        if frame["type"] == "ack" {
            refs.push(frame["ref"].as_i64().expect("ref"));
        }
    }
    alice.write_bytes(tail).await;
    let ack = alice.recv_type("ack").await;
    refs.push(ack["ref"].as_i64().expect("ref"));
    assert_eq!(refs, [1, 2, 3], "{}", cluster.logs());
}

#[tokio::test]
async fn both_binaries_expose_metrics_and_health() {
    let cluster = Cluster::start(Options::default(), 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    alice.send_message(chat, "c1", "hi").await;

    let (status, gateway) = cluster.text(cluster.gateways[0].port, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "chat_open_connections",
        "chat_connections_opened_total",
        "chat_frames_in_total{type=\"new\"}",
        "chat_frames_out_total{type=\"ack\"}",
        "chat_command_duration_seconds_bucket",
        "chat_delivery_duration_seconds_bucket",
        "chat_fanout_deliveries_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(gateway.contains(name), "gateway /metrics lacks {name}");
    }
    let admin = cluster.worker_admin_ports[0];
    assert_eq!(cluster.text(admin, "/healthz").await.0, 200);
    assert_eq!(cluster.text(admin, "/readyz").await.0, 200);
    // The stream gauges are refreshed on the worker's lease round.
    let started = std::time::Instant::now();
    loop {
        let (status, worker) = cluster.text(admin, "/metrics").await;
        assert_eq!(status, 200);
        let complete = [
            "chat_worker_commands_total{type=\"new\",outcome=\"applied\"}",
            "chat_worker_batch_size_bucket",
            "chat_worker_queue_wait_seconds_bucket",
            "chat_worker_stage_seconds_bucket{stage=\"apply\"",
            "chat_stream_length{shard=",
            "chat_stream_pending{shard=",
            "chat_worker_owned_shards 16",
            "process_resident_memory_bytes",
        ]
        .iter()
        .all(|name| worker.contains(name));
        if complete {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "worker /metrics incomplete:\n{worker}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, ready) = cluster.text(cluster.gateways[0].port, "/readyz").await;
    assert_eq!((status, ready.contains("\"redis\":true")), (200, true), "{ready}");
}

#[tokio::test]
async fn gateway_refuses_cluster_mode_without_a_jwt_secret() {
    let env = std::collections::HashMap::from([
        ("REDIS_URL".to_string(), "redis://127.0.0.1:1".to_string()),
        ("DATABASE_URL".to_string(), "postgres://nobody@127.0.0.1:1/none".to_string()),
    ]);
    let logs = tempfile::tempdir().expect("dir");
    let mut gateway =
        testkit::process::Service::spawn("gw", &testkit::process::binary("gateway"), &[], &env, logs.path())
            .expect("spawn");
    let code = gateway.wait_exit(std::time::Duration::from_secs(10)).expect("exits");
    assert_eq!(code, Some(64));
    assert!(gateway.log().contains("JWT_SECRET"), "{}", gateway.log());
}

#[tokio::test]
async fn an_invalid_setting_stops_either_binary_with_64_naming_it() {
    let logs = tempfile::tempdir().expect("dir");
    for (binary, name, value) in [("gateway", "HEARTBEAT_TIMEOUT_MS", "soon"), ("worker", "LEASE_TTL_MS", "-1")] {
        let env = std::collections::HashMap::from([
            (name.to_string(), value.to_string()),
            ("DATABASE_URL".to_string(), "postgres://nobody@127.0.0.1:1/none".to_string()),
        ]);
        let mut process =
            testkit::process::Service::spawn(binary, &testkit::process::binary(binary), &[], &env, logs.path())
                .expect("spawn");
        let code = process.wait_exit(std::time::Duration::from_secs(10)).expect("exits");
        assert_eq!(code, Some(64), "{binary}: {}", process.log());
        let flag = name.to_lowercase().replace('_', "-");
        assert!(process.log().contains(&flag), "{binary} names the setting: {}", process.log());
    }
}

/// A set `REDIS_URL` that cannot be used, and in cluster mode a
/// `DATABASE_URL` that is not PostgreSQL's, are configuration errors (64),
/// named, found before anything connects.
#[tokio::test]
async fn unusable_redis_and_database_urls_stop_either_binary_with_64() {
    let logs = tempfile::tempdir().expect("dir");
    let cases = [
        ("REDIS_URL", "", "postgres://nobody@127.0.0.1:1/none", "REDIS_URL is set but empty"),
        ("REDIS_URL", "http://x", "postgres://nobody@127.0.0.1:1/none", "REDIS_URL cannot be used"),
        ("DATABASE_URL", "redis://127.0.0.1:1", "postgres", "postgres:// (or postgresql://)"),
    ];
    for binary in ["gateway", "worker"] {
        for (case, (setting, redis_url, database_url, said)) in cases.into_iter().enumerate() {
            let env = std::collections::HashMap::from([
                ("REDIS_URL".to_string(), redis_url.to_string()),
                ("DATABASE_URL".to_string(), database_url.to_string()),
                ("JWT_SECRET".to_string(), "s".to_string()),
            ]);
            let name = format!("{binary}-{case}");
            let mut process =
                testkit::process::Service::spawn(&name, &testkit::process::binary(binary), &[], &env, logs.path())
                    .expect("spawn");
            let code = process.wait_exit(std::time::Duration::from_secs(10)).expect("exits");
            let log = process.log();
            assert_eq!(code, Some(64), "{binary} with a bad {setting}: {log}");
            assert!(log.contains(said), "{binary} says what is wrong with {setting}: {log}");
        }
    }
}

/// A Redis that wants a password the URL lacks accepts the connection and
/// refuses each command: the worker ran on with no shards, and the gateway
/// stopped with a protocol error that named neither. Both stop at start,
/// saying so.
#[tokio::test]
async fn a_redis_that_wants_a_password_the_url_lacks_stops_either_binary() {
    let cluster = Cluster::start(Options { private_redis: true, ..Options::default() }, 0, 0).await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("only-with-this")
        .query_async(&mut cluster.redis().await)
        .await
        .expect("a password");
    let mut env = cluster.common_env();
    env.insert("JWT_SECRET".into(), "s".into());
    env.insert("ADMIN_LISTEN".into(), format!("127.0.0.1:{}", testkit::free_port()));
    env.insert("LISTEN_ADDR".into(), format!("127.0.0.1:{}", testkit::free_port()));
    for binary in ["gateway", "worker"] {
        let mut process =
            testkit::process::Service::spawn(binary, &testkit::process::binary(binary), &[], &env, cluster.logs.path())
                .expect("spawn");
        let code = process.wait_exit(std::time::Duration::from_secs(20)).expect("exits");
        let log = process.log();
        assert_eq!(code, Some(1), "{binary}: {log}");
        assert!(log.contains("Redis is unavailable") && log.contains("NOAUTH"), "{binary} says why: {log}");
    }
}

/// A PostgreSQL that refuses connections at start is named as the cause:
/// the pool retries a refused connection until its deadline, then says
/// only that it timed out, which reads as a pool too small.
#[tokio::test]
async fn a_database_refusing_connections_at_start_is_named_as_the_cause() {
    let logs = tempfile::tempdir().expect("dir");
    let env = std::collections::HashMap::from([
        ("REDIS_URL".to_string(), "redis://127.0.0.1:1".to_string()),
        ("DATABASE_URL".to_string(), format!("postgres://nobody@127.0.0.1:{}/none", testkit::free_port())),
        ("ADMIN_LISTEN".to_string(), format!("127.0.0.1:{}", testkit::free_port())),
    ]);
    let mut worker =
        testkit::process::Service::spawn("worker", &testkit::process::binary("worker"), &[], &env, logs.path())
            .expect("spawn");
    let code = worker.wait_exit(std::time::Duration::from_secs(30)).expect("exits");
    let log = worker.log();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("Connection refused") && !log.contains("pool timed out"), "{log}");
}

/// User ids no user can have, in a REST path or query, are the client's
/// mistake (400), also where PostgreSQL would refuse them (a U+0000) with
/// an error that read as the server's (500).
#[tokio::test]
async fn user_ids_postgres_cannot_hold_are_refused_as_bad_requests() {
    let cluster = Cluster::start(Options::default(), 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    for (method, path) in
        [("GET", "/v1/presence?users=%00".to_string()), ("DELETE", format!("/v1/chats/{chat}/members/%00"))]
    {
        let (status, error) = cluster.call(0, method, "alice", &path, None).await;
        assert_eq!((status, error["code"].as_str()), (400, Some("bad_request")), "{method} {path}: {error}");
    }
}

/// Membership changes made through two gateways are published in no
/// particular order. A removal reaching a gateway after the re-add that
/// followed it must not take the member's chat away again: each change
/// carries the chat's membership version, and one below the last the
/// gateway applied for that member and chat is dropped.
#[tokio::test]
async fn a_membership_change_older_than_the_last_applied_is_dropped() {
    let cluster = Cluster::start(Options::default(), 2, 1).await;
    let chat = cluster.group(0, "bob", &["alice"]).await;
    let mut bob = cluster.connect(0, "bob").await;
    let mut alice = cluster.connect(1, "alice").await;
    let members = format!("/v1/chats/{chat}/members");
    // Created at version 1; the removal is 2, the re-add 3.
    assert_eq!(cluster.call(0, "DELETE", "bob", &format!("{members}/alice"), None).await.0, 204);
    assert_eq!(alice.recv_type("chats").await["action"], "deleted");
    assert_eq!(cluster.call(0, "POST", "bob", &members, Some(json!({"userId": "alice"}))).await.0, 204);
    assert_eq!(alice.recv_type("chats").await["action"], "created");

    // The removal again, as if the re-add's publishing had overtaken it.
    let store = Store::connect(&cluster.database_url).await.expect("store");
    let view = store.summary(chat, "alice").await.expect("read").expect("a member");
    cluster.publish_chat_list("alice", ChatAction::Deleted, view, 2).await;

    bob.send_message(chat, "after", "still here?").await;
    let next = next_chat_frame(&mut alice).await;
    assert_eq!((&next["type"], &next["message"]), (&json!("new"), &json!("still here?")), "{next}");
}

/// A new member's `created` can be overtaken by the `updated` of a later
/// change (another member added through another gateway a moment after),
/// and is then dropped as older. The `updated` makes the member's gateway
/// follow the chat for them, shown as `created`, since it is the first
/// they hear of it.
#[tokio::test]
async fn an_update_overtaking_a_members_creation_makes_the_chat_theirs_here() {
    let cluster = Cluster::start(Options::default(), 2, 1).await;
    let chat = cluster.group(0, "bob", &["alice"]).await;
    let mut bob = cluster.connect(0, "bob").await;
    let mut carol = cluster.connect(1, "carol").await;
    // Carol added underneath, unannounced: the announcements come by hand.
    let store = Store::connect(&cluster.database_url).await.expect("store");
    let added = store.add_member(chat, "bob", "carol", now_ms()).await.expect("added");
    let view = store.summary(chat, "carol").await.expect("read").expect("a member");
    cluster.publish_chat_list("carol", ChatAction::Updated, view.clone(), added.version + 1).await;
    cluster.publish_chat_list("carol", ChatAction::Created, view, added.version).await;

    let shown = next_chat_frame(&mut carol).await;
    assert_eq!((&shown["type"], &shown["action"]), (&json!("chats"), &json!("created")), "{shown}");
    bob.send_message(chat, "hello", "hello carol").await;
    let next = next_chat_frame(&mut carol).await;
    assert_eq!((&next["type"], &next["message"]), (&json!("new"), &json!("hello carol")), "{next}");
}

/// The next `new` or `chats` frame, past presence and the like.
async fn next_chat_frame(client: &mut Client) -> serde_json::Value {
    loop {
        let frame = client.recv().await;
        if frame["type"] == "new" || frame["type"] == "chats" {
            return frame;
        }
    }
}

/// A gateway drained (SIGTERM) while a connection holds a command for
/// order behind an unanswered one answers the held command, not applied,
/// before its 1012: the client knows to resend it rather than guessing
/// from a reply that never comes.
#[tokio::test]
async fn a_drain_answers_the_commands_held_for_order() {
    let cluster = Cluster::start(Options::default(), 1, 0).await;
    let (first, second) = cluster.groups_on_two_shards(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    let new = |r: i64, chat: i64| json!({"type": "new", "ref": r, "chatId": chat, "clientMessageId": format!("d{r}"), "message": "m"});
    // No worker: the first stays unanswered, the second is held behind it.
    alice.send(new(1, first)).await;
    alice.send(new(2, second)).await;
    alice.send(json!({"type": "ping", "ref": "read"})).await;
    while alice.recv().await["ref"] != "read" {}

    let gateway = cluster.gateways[0].service.pid().expect("running");
    testkit::signal::send(gateway, testkit::signal::Signal::TERM).expect("SIGTERM");
    let refused = alice.recv().await;
    assert_eq!((refused["type"].as_str(), refused["ref"].as_i64()), (Some("error"), Some(2)), "{refused}");
    assert_eq!(refused["code"], "internal", "{refused}");
    assert_eq!(alice.ended().await, testkit::client::Ended::Closed(1012));
}
