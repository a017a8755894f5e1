//! What each failure costs: nothing acked is lost, nothing is delivered
//! twice or out of order, and everything recovers without restarts.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::client::{Client, Ended};

use crate::harness::{Cluster, Options};

/// Sends `count` messages pipelined, retrying every unacked one (same
/// clientMessageId) whenever acks stall, as a real client would; calls
/// `midway` once after `midway_at` acks. Returns clientMessageId ->
/// messageId.
async fn send_with_retries(
    client: &mut Client,
    chat: i64,
    count: usize,
    midway_at: usize,
    mut midway: impl FnMut(),
) -> BTreeMap<String, i64> {
    let frame = |i: usize| json!({"type": "new", "ref": i, "chatId": chat, "clientMessageId": format!("c{i}"), "message": format!("m{i}")});
    for i in 1..=count {
        client.send(frame(i)).await;
    }
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    let mut fired = false;
    let started = Instant::now();
    while acked.len() < count {
        assert!(started.elapsed() < Duration::from_secs(120), "only {} of {count} acked", acked.len());
        match tokio::time::timeout(Duration::from_secs(3), client.recv()).await {
            Ok(reply) if reply["type"] == "ack" => {
                let id = reply["clientMessageId"].as_str().expect("clientMessageId").to_owned();
                let message_id = reply["messageId"].as_i64().expect("messageId");
                if let Some(previous) = acked.insert(id.clone(), message_id) {
                    assert_eq!(previous, message_id, "a retry of {id} got another message");
                }
                if !fired && acked.len() >= midway_at {
                    fired = true;
                    midway();
                }
            }
            Ok(_) => {}
            Err(_) => {
                // Acks stalled: resend everything unacknowledged.
                for i in 1..=count {
                    if !acked.contains_key(&format!("c{i}")) {
                        client.send(frame(i)).await;
                    }
                }
            }
        }
    }
    acked
}

#[tokio::test]
async fn a_worker_killed_mid_burst_loses_and_duplicates_nothing() {
    let mut cluster = Cluster::start(Options::default(), 2, 2).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    let mut bob = cluster.connect(1, "bob").await;
    bob.drain().await;

    // Kill the worker that applies this chat's commands.
    let owner = cluster.shard_owner(chat).await;
    let victim = cluster.workers.iter().position(|w| w.name == owner).expect("owner is one of ours");
    let acked = {
        let workers = &mut cluster.workers;
        send_with_retries(&mut alice, chat, 1000, 150, || workers[victim].kill9()).await
    };
    assert!(!cluster.workers[victim].is_running(), "the owner was killed mid-burst");
    assert_ne!(cluster.shard_owner(chat).await, owner, "another worker took the shard over");
    // The survivor says which worker died, where before only its taking
    // the shards over showed, as an info line per shard.
    let survivor = &cluster.workers[1 - victim];
    cluster.wait_for_log(survivor, "stopped renewing its liveness without leaving").await;
    assert!(survivor.log().contains(&format!("worker={owner}")), "names the dead worker: {}", survivor.log());
    cluster.wait_for_metric_at(cluster.worker_admin_ports[1 - victim], "chat_workers_lapsed_total 1").await;
    let ids: HashSet<i64> = acked.values().copied().collect();
    assert_eq!(ids, (1..=1000).collect::<HashSet<i64>>(), "1000 messages, each stored once, ids without gaps");

    let mut seen = Vec::with_capacity(1000);
    while seen.len() < 1000 {
        let frame = bob.recv().await;
        if frame["type"] == "new" {
            seen.push(frame["id"].as_i64().expect("id"));
        }
    }
    assert_eq!(seen, (1..=1000).collect::<Vec<i64>>(), "every member gets each once, in order");
    assert!(bob.drain().await.iter().all(|f| f["type"] != "new"), "and nothing twice afterwards");
    let (_, history) =
        cluster.call(1, "GET", "bob", &format!("/v1/chats/{chat}/messages?limit=200&after=800"), None).await;
    assert_eq!(history["messages"].as_array().expect("messages").len(), 200);
}

#[tokio::test]
async fn a_killed_gateways_users_go_offline_and_resync_elsewhere() {
    let mut cluster = Cluster::start(Options { heartbeat_timeout_ms: Some(2_000), ..Options::default() }, 2, 1).await;
    let chat = cluster.group(1, "bob", &["alice"]).await;
    let mut bob = cluster.connect(1, "bob").await;
    let mut alice = cluster.connect(0, "alice").await;
    let seen = {
        let ack = alice.send_message(chat, "a1", "before").await;
        ack["messageId"].as_i64().expect("id")
    };
    assert_eq!(bob.recv_type("online").await["userId"], "alice");

    cluster.gateways[0].service.kill9();
    let killed = Instant::now();
    let offline = loop {
        let frame = bob.recv_type_or_ping().await;
        if frame["type"] == "offline" {
            break frame;
        }
    };
    let bound = Duration::from_millis(2_000) + Duration::from_secs(10);
    assert!(killed.elapsed() <= bound, "offline after {:?}, bound {bound:?}", killed.elapsed());
    assert_eq!(offline["userId"], "alice");

    for i in 1..=3 {
        bob.send_message(chat, &format!("b{i}"), "while alice was away").await;
    }
    let mut alice = cluster.connect(1, "alice").await;
    alice.send(json!({"type": "sync", "ref": "s", "since": {chat.to_string(): seen}})).await;
    let mut replay: Vec<Value> = Vec::new();
    loop {
        let frame = alice.recv().await;
        if frame["type"] == "ack" {
            assert_eq!(frame["synced"], json!({chat.to_string(): seen + 3}));
            break;
        }
        if frame["type"] == "new" {
            replay.push(frame);
        }
    }
    let ids: Vec<i64> = replay.iter().map(|f| f["id"].as_i64().expect("id")).collect();
    assert_eq!(ids, vec![seen + 1, seen + 2, seen + 3], "exactly what was missed");
}

/// A gateway killed with a command in its stream and started again under
/// the same `NODE_ID`: the worker's reply to that command, addressed to
/// the dead process's connection, reaches no connection of the new one,
/// though the new one's first connection is another user's.
#[tokio::test]
async fn a_dead_gateways_replies_reach_no_connection_of_its_successor() {
    let mut cluster = Cluster::start(Options::default(), 1, 0).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    let left_behind =
        json!({"type": "new", "ref": "alice's", "chatId": chat, "clientMessageId": "a1", "message": "hi"});
    alice.send(left_behind).await;
    // A connection's frames are read one at a time and a command is in
    // Redis before the next is read: the pong says the command is queued.
    alice.drain().await;
    cluster.gateways[0].service.kill9();
    cluster.restart_gateway(0).await;
    let mut bob = cluster.connect(0, "bob").await;
    cluster.start_worker();
    bob.send(json!({"type": "new", "ref": "bob's", "chatId": chat, "clientMessageId": "b1", "message": "hello"})).await;
    // Commands of one chat are applied in order, so alice's reply would
    // come first.
    let mut heard = Vec::new();
    let reply = loop {
        let frame = bob.recv().await;
        if frame["type"] == "ack" || frame["type"] == "error" {
            break frame;
        }
        heard.push(frame);
    };
    assert_eq!(reply["ref"], "bob's", "{reply}");
    assert_eq!(reply["messageId"], 2, "alice's message was applied first: {reply}");
    let alices = heard.iter().filter(|f| f["type"] == "new" && f["userId"] == "alice").count();
    assert_eq!(alices, 1, "bob hears alice's message as an event, not as a reply: {heard:?}");
}

#[tokio::test]
async fn redis_restarted_errors_during_the_outage_and_recovers_alone() {
    let mut cluster = Cluster::start(Options { private_redis: true, ..Options::default() }, 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    let mut bob = cluster.connect(0, "bob").await;
    alice.send_message(chat, "before", "before the outage").await;

    cluster.redis.as_mut().expect("private redis").stop();
    let during =
        alice.request(json!({"type": "new", "chatId": chat, "clientMessageId": "during", "message": "x"})).await;
    assert_eq!(during["type"], "error", "never an ack for something not stored: {during}");
    cluster.redis.as_mut().expect("private redis").start_again().expect("redis back");

    // The client retries until the cluster has recovered by itself.
    let started = Instant::now();
    let ack = loop {
        let reply =
            alice.request(json!({"type": "new", "chatId": chat, "clientMessageId": "after", "message": "after"})).await;
        if reply["type"] == "ack" {
            break reply;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no recovery: {reply}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(ack["messageId"], 2, "the refused command was not stored");
    loop {
        let frame = bob.recv().await;
        if frame["type"] == "new" && frame["clientMessageId"] == "after" {
            assert_eq!(frame["messageId"], 2);
            break;
        }
    }
    // Redis came back empty: the gateway counts its connections there again.
    let started = Instant::now();
    loop {
        let (status, body) = cluster.call(0, "GET", "alice", "/v1/presence?users=alice,bob", None).await;
        assert_eq!(status, 200, "{body}");
        if body["users"].as_array().expect("users").iter().all(|view| view["online"] == true) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "presence not restored: {body}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cluster.gateways[0].service.is_running() && cluster.workers[0].is_running(), "nothing restarted");
}

#[tokio::test]
async fn postgres_restarted_loses_no_acked_message() {
    let mut cluster = Cluster::start(Options { private_postgres: true, ..Options::default() }, 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    let mut bob = cluster.connect(0, "bob").await;
    alice.send_message(chat, "before", "before the outage").await;

    cluster.postgres.as_mut().expect("private postgres").stop();
    alice
        .send(json!({"type": "new", "ref": "during", "chatId": chat, "clientMessageId": "during", "message": "x"}))
        .await;
    // The worker met the outage and is retrying, not crashing.
    cluster.wait_for_log(&cluster.workers[0], "store failed; retrying").await;
    cluster.postgres.as_mut().expect("private postgres").start_again().expect("postgres back");

    // The worker retried: the command queued during the outage is applied.
    let ack = loop {
        let frame = alice.recv().await;
        if frame["ref"] == "during" {
            break frame;
        }
    };
    assert_eq!(ack["type"], "ack", "{ack}\n{}", cluster.logs());
    loop {
        let new = bob.recv_type("new").await;
        if new["clientMessageId"] == "during" {
            assert_eq!(new["messageId"], 2);
            break;
        }
    }
    let (_, history) = cluster.call(0, "GET", "bob", &format!("/v1/chats/{chat}/messages"), None).await;
    let stored: Vec<&str> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["clientMessageId"].as_str().expect("id"))
        .collect();
    assert_eq!(stored, vec!["before", "during"]);
    assert!(cluster.gateways[0].service.is_running() && cluster.workers[0].is_running(), "no crash loop");
}

/// A PostgreSQL that stops answering without closing its connections (a
/// frozen VM, a stuck disk) gets the gateway's clients an error within the
/// gateway's store deadline (5 s), not requests and connections that hang
/// until TCP gives up; once it answers again, so does the gateway. A
/// second connection of the user, which waited for the first one's load
/// of the chats, is closed as well: it used to stay open following none of
/// them, and so did every connection of the user opened after it.
#[tokio::test]
async fn a_silent_postgres_gets_timely_errors_and_the_gateway_recovers() {
    let cluster = Cluster::start(Options { private_postgres: true, ..Options::default() }, 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let postgres = cluster.postgres.as_ref().expect("private postgres");

    postgres.freeze();
    // Well past the deadline: only an answer that never comes hits this.
    let bound = Duration::from_secs(20);
    let (listing, connecting) = tokio::join!(
        tokio::time::timeout(bound, cluster.call(0, "GET", "alice", "/v1/chats", None)),
        tokio::time::timeout(bound, async {
            let url = format!("ws://127.0.0.1:{}/ws", cluster.gateways[0].port);
            let mut first = testkit::client::open(&url, &cluster.token("bob"), "bob").await.expect("upgrade");
            let mut second = testkit::client::open(&url, &cluster.token("bob"), "bob").await.expect("upgrade");
            (first.ended().await, second.ended().await)
        }),
    );
    postgres.thaw();
    let (status, body) = listing.expect("the REST read answered while the database was silent");
    assert_eq!((status, &body["code"]), (503, &json!("internal")), "{body}");
    let ended = connecting.expect("the connections were closed while the database was silent");
    let going_away = Ended::Closed(1001);
    assert_eq!(ended, (going_away, going_away), "closed as going away, for the client to reconnect");
    let (_, metrics) = cluster.text(cluster.gateways[0].port, "/metrics").await;
    let timeouts = metrics
        .lines()
        .find_map(|line| line.strip_prefix("chat_database_timeouts_total "))
        .and_then(|value| value.trim().parse::<f64>().ok());
    assert!(timeouts >= Some(2.0), "the list and the chat list load each timed out: {timeouts:?}");
    let errors = metrics
        .lines()
        .find_map(|line| line.strip_prefix("chat_database_errors_total "))
        .and_then(|value| value.trim().parse::<f64>().ok());
    assert!(errors >= Some(2.0), "the list and the chat list load each count as an error: {errors:?}");

    let (status, body) =
        tokio::time::timeout(bound, cluster.call(0, "GET", "alice", "/v1/chats", None)).await.expect("answered");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["chats"][0]["id"], chat, "{body}");
    let mut bob = cluster.connect(0, "bob").await;
    let mut alice = cluster.connect(0, "alice").await;
    alice.send_message(chat, "after", "the database is back").await;
    assert_eq!(bob.recv_type("new").await["clientMessageId"], "after");
}

/// A connection whose setup waits (here for a silent database to give its
/// user's chats) owes no ping for that wait: the server read nothing from
/// it, and the welcome that starts its client's ping interval came only
/// at the end. Counted from the upgrade, the heartbeat closed it at once.
/// The welcome's `serverTime` is read when it is written, not at the
/// upgrade.
#[tokio::test]
async fn a_slow_setup_does_not_count_against_the_heartbeat() {
    const TIMEOUT_MS: u64 = 1_000;
    let options = Options { private_postgres: true, heartbeat_timeout_ms: Some(TIMEOUT_MS), ..Options::default() };
    let cluster = Cluster::start(options, 1, 1).await;
    cluster.group(0, "alice", &["bob"]).await;
    let postgres = cluster.postgres.as_ref().expect("private postgres");

    postgres.freeze();
    let url = format!("ws://127.0.0.1:{}/ws", cluster.gateways[0].port);
    let mut bob = testkit::client::open(&url, &cluster.token("bob"), "bob").await.expect("upgrade");
    // The stall itself: twice the timeout, within the store's 5 s deadline.
    tokio::time::sleep(Duration::from_millis(2 * TIMEOUT_MS)).await;
    let thawed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    postgres.thaw();
    let welcome = bob.recv().await;
    assert_eq!(welcome["type"], "welcome");
    // Its serverTime is the server's clock when it is written, after the
    // setup, not at the upgrade two seconds before (same machine, same
    // clock).
    let server_time = welcome["serverTime"].as_u64().expect("serverTime") as u128;
    assert!(server_time >= thawed, "serverTime {server_time} is from before the setup ended at {thawed}");
    // Quiet for a while after the welcome, as a client may be: long
    // enough for the sweep (every 50 ms here) to close a connection whose
    // deadline ran during setup, short enough to leave a loaded machine
    // most of the timeout to carry the ping.
    tokio::time::sleep(Duration::from_millis(TIMEOUT_MS / 4)).await;
    // Answered, not closed with 4000 (`recv` fails on a close frame).
    bob.drain().await;
}

/// Likewise a `sync` whose pages wait on a silent database: the reader
/// reads nothing while it waits, so the client's silence meanwhile is not
/// counted against it.
#[tokio::test]
async fn a_sync_waiting_on_the_store_does_not_count_against_the_heartbeat() {
    const TIMEOUT_MS: u64 = 1_000;
    let options = Options { private_postgres: true, heartbeat_timeout_ms: Some(TIMEOUT_MS), ..Options::default() };
    let cluster = Cluster::start(options, 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut bob = cluster.connect(0, "bob").await;
    let postgres = cluster.postgres.as_ref().expect("private postgres");

    postgres.freeze();
    bob.send(json!({"type": "sync", "ref": "s", "since": {chat.to_string(): 0}})).await;
    // The stall: twice the timeout, within the store's 5 s deadline.
    tokio::time::sleep(Duration::from_millis(2 * TIMEOUT_MS)).await;
    postgres.thaw();
    let ack = bob.recv_type("ack").await;
    assert_eq!(ack["ref"], "s", "{ack}");
    // Answered, not closed with 4000 (`recv` fails on a close frame).
    bob.drain().await;
}

/// A rollout while PostgreSQL is silent: the worker and the gateway are
/// stopped (SIGTERM) with a command in hand that the database never
/// answers. Each must still exit, cleanly and within Kubernetes' grace
/// (30 s for a worker, 45 for a gateway), rather than wait for the
/// database until it is killed.
#[tokio::test]
async fn processes_stopped_while_postgres_is_silent_exit_in_time() {
    let mut cluster = Cluster::start(Options { private_postgres: true, ..Options::default() }, 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    let mut bob = cluster.connect(0, "bob").await;
    alice.send_message(chat, "before", "the database answers").await;
    assert_eq!(bob.recv_type("new").await["clientMessageId"], "before");

    let postgres = cluster.postgres.as_ref().expect("private postgres");
    postgres.freeze();
    alice
        .send(json!({"type": "new", "ref": "during", "chatId": chat, "clientMessageId": "during", "message": "x"}))
        .await;
    // The worker has read it: it is pending in the shard's consumer group.
    let keys = cluster.keys();
    let stream = keys.command_stream(keys.shard_of(chat));
    let mut redis = cluster.redis().await;
    let started = Instant::now();
    loop {
        let summary: Vec<redis::Value> = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(shared::bus::keys::GROUP)
            .query_async(&mut redis)
            .await
            .expect("XPENDING");
        if summary.first().is_some_and(|pending| *pending != redis::Value::Int(0)) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the worker never read the command");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The worker gives up on its batch after 10 s (`APPLY_TIMEOUT`). The
    // gateway waits 5 s for alice's reply, then at most 6 s for its
    // background tasks (the last presence announcements among them) and
    // 2 s to close the store; it took 20 s when each batch of announcements
    // waited for the database in turn, and longer the more users it held.
    let worker = cluster.workers[0].terminate(Duration::from_secs(20));
    let gateway = cluster.gateways[0].service.terminate(Duration::from_secs(15));
    postgres.thaw();
    let exited = |process: &str, exit: anyhow::Result<Option<i32>>| {
        let code = exit.unwrap_or_else(|e| panic!("the {process} did not exit in time: {e}\n{}", cluster.logs()));
        assert_eq!(code, Some(0), "the {process} exited uncleanly\n{}", cluster.logs());
    };
    exited("worker", worker);
    exited("gateway", gateway);
    // The announcer's last round waits on the database by design and is
    // abandoned at the bound; any other task abandoned did not stop when
    // asked (health checks once started new rounds after the stop).
    let log = cluster.gateways[0].service.log();
    let abandoned: Vec<&str> = log.lines().filter(|line| line.contains("did not stop in time")).collect();
    assert!(
        abandoned.iter().all(|line| line.contains("\"presence announcements\"")),
        "only the announcer may be abandoned:\n{}",
        abandoned.join("\n")
    );
}

/// Redis connections that went silent (Redis failed over and its old
/// address drops packets, leaving them half-open) are replaced: the
/// gateway's and the workers' commands after their first timeout, the
/// gateway's event subscription after a ping goes unanswered. The events
/// the subscription missed are filled from the store. The replies it
/// missed are not waited for: a command for another shard, which waits for
/// this connection's unanswered ones, goes on.
#[tokio::test]
async fn silent_redis_connections_are_replaced_and_nothing_is_missed() {
    // The clients here do not ping; the heartbeat must outlast the test.
    let options = Options { redis_through_proxy: true, heartbeat_timeout_ms: Some(120_000), ..Options::default() };
    let cluster = Cluster::start(options, 1, 1).await;
    let (chat, elsewhere) = cluster.groups_on_two_shards(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    let mut bob = cluster.connect(0, "bob").await;
    alice.send_message(chat, "before", "the subscription works").await;
    assert_eq!(bob.recv_type("new").await["clientMessageId"], "before");

    cluster.redis_proxy.as_ref().expect("proxy").silence_open_connections();
    // Commands time out (2 s) until the gateway has replaced its
    // connection, and a reply published into the dead subscription is
    // lost: the client retries, as clients do, until acked.
    let started = Instant::now();
    let mut attempt = 0;
    'acked: loop {
        assert!(started.elapsed() < Duration::from_secs(30), "never acked\n{}", cluster.logs());
        attempt += 1;
        let reference = format!("during-{attempt}");
        alice
            .send(json!({"type": "new", "ref": reference, "chatId": chat, "clientMessageId": "during", "message": "x"}))
            .await;
        while let Ok(reply) = tokio::time::timeout(Duration::from_secs(3), alice.recv()).await {
            if reply["ref"] == reference.as_str() {
                if reply["type"] == "ack" {
                    break 'acked;
                }
                break;
            }
        }
    }
    let new = tokio::time::timeout(Duration::from_secs(20), bob.recv_type("new"))
        .await
        .unwrap_or_else(|_| panic!("bob never got the message sent after the silence\n{}", cluster.logs()));
    assert_eq!(new["clientMessageId"], "during");
    assert_eq!(new["messageId"], 2);
    cluster.wait_for_log(&cluster.workers[0], "replacing the connection").await;
    cluster.wait_for_log(&cluster.gateways[0].service, "replacing the connection").await;
    let other_shard = json!({"type": "new", "chatId": elsewhere, "clientMessageId": "elsewhere", "message": "x"});
    let reply = tokio::time::timeout(Duration::from_secs(10), alice.request(other_shard))
        .await
        .unwrap_or_else(|_| panic!("held for a lost reply\n{}", cluster.logs()));
    assert_eq!(reply["type"], "ack", "{reply}");
}

#[tokio::test]
async fn a_terminated_worker_finishes_its_batch_and_hands_its_shards_over() {
    let mut cluster = Cluster::start(Options::default(), 1, 2).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    let owner = cluster.shard_owner(chat).await;
    let victim = cluster.workers.iter().position(|w| w.name == owner).expect("owner is one of ours");
    let mut exit = None;
    let acked = {
        let workers = &mut cluster.workers;
        send_with_retries(&mut alice, chat, 300, 50, || {
            exit = Some(workers[victim].terminate(Duration::from_secs(10)));
        })
        .await
    };
    assert_eq!(exit.expect("terminated").expect("exited in time"), Some(0), "a clean exit");
    let ids: HashSet<i64> = acked.values().copied().collect();
    assert_eq!(ids, (1..=300).collect::<HashSet<i64>>(), "nothing lost, nothing twice");
    assert_ne!(cluster.shard_owner(chat).await, owner);
}

/// A command in the stream that PostgreSQL refuses for its data (U+0000 in
/// text; the gateway refuses it, anything else writing to the stream may
/// not) is answered `internal`; the commands after it in its shard are
/// applied, not held up behind endless retries.
#[tokio::test]
async fn a_command_the_database_refuses_does_not_hold_up_its_shard() {
    let cluster = Cluster::start(Options::default(), 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    cluster.shard_owner(chat).await;
    let refused = shared::bus::CommandEnvelope {
        id: "written-by-hand-1".into(),
        origin: shared::bus::Origin { node: "elsewhere".into(), connection: 1, sequence: 1 },
        user: "alice".into(),
        reference: None,
        command: shared::model::Command::Send {
            chat_id: chat,
            client_message_id: "refused".into(),
            text: "a\0b".into(),
            attachments: shared::model::Attachments::none(),
        },
        received_at: 0,
    };
    cluster.append_command(chat, serde_json::to_string(&refused).expect("JSON")).await;
    let ack = alice.send_message(chat, "after", "fine").await;
    assert_eq!(ack["messageId"], 1, "the refused command took no id: {ack}");
    cluster.wait_for_log(&cluster.workers[0], "the database refuses this command").await;
}

/// A command no worker can read (a gateway newer than the workers, say)
/// is answered `internal` on the connection its envelope names, in its
/// place among that connection's replies, and the commands after it in
/// the shard are applied.
#[tokio::test]
async fn a_command_no_worker_can_read_is_answered_and_holds_nothing_up() {
    let cluster = Cluster::start(Options::default(), 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let (mut alice, origin) = cluster.connect_with_origin(0, "alice").await;
    cluster.shard_owner(chat).await;
    let unreadable = json!({
        "id": "written-by-hand-2",
        "origin": origin,
        "user": "alice",
        "reference": "from-the-future",
        "command": {"type": "teleport", "chat_id": chat},
        "received_at": 0,
    });
    cluster.append_command(chat, unreadable.to_string()).await;
    let refusal = alice.recv_type("error").await;
    assert_eq!((&refusal["ref"], &refusal["code"]), (&json!("from-the-future"), &json!("internal")), "{refusal}");
    let ack = alice.send_message(chat, "after", "fine").await;
    assert_eq!(ack["messageId"], 1, "{ack}");
}

/// A stream entry whose field names are not UTF-8 (nothing of ours writes
/// one) is skipped like any unreadable entry: the commands after it are
/// applied. Once it made every read of its shard fail.
#[tokio::test]
async fn an_entry_with_a_field_name_that_is_not_text_holds_nothing_up() {
    let cluster = Cluster::start(Options::default(), 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    cluster.shard_owner(chat).await;
    let keys = cluster.keys();
    let _: String = redis::cmd("XADD")
        .arg(keys.command_stream(keys.shard_of(chat)))
        .arg("*")
        .arg(&b"\xff"[..])
        .arg("x")
        .query_async(&mut cluster.redis().await)
        .await
        .expect("XADD");
    let ack = alice.send_message(chat, "after", "fine").await;
    assert_eq!(ack["messageId"], 1, "{ack}");
}

/// A member removed, and one added, while Redis was down: the changes'
/// `chats` events could not be published, so the gateway holding the
/// members never heard of them. Once its subscription is back, it reads
/// its users' chats again, stops delivering the chat's events to the
/// removed member, and closes both members' connections there with 4003,
/// since neither got the `chats` frame it was owed: before, bob went on
/// receiving the group's messages until all his connections closed, and
/// later dave received a chat his client was never told he had joined.
#[tokio::test]
async fn memberships_changed_while_redis_was_down_are_repaired_after_it() {
    let mut cluster = Cluster::start(Options { private_redis: true, ..Options::default() }, 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob", "carol"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    let mut bob = cluster.connect(0, "bob").await;
    let mut carol = cluster.connect(0, "carol").await;
    let mut dave = cluster.connect(0, "dave").await;
    alice.send_message(chat, "before", "before the outage").await;
    assert_eq!(bob.recv_type("new").await["clientMessageId"], "before");

    cluster.redis.as_mut().expect("private redis").stop();
    let (status, body) = cluster.call(0, "DELETE", "alice", &format!("/v1/chats/{chat}/members/bob"), None).await;
    assert_eq!(status, 204, "stored, though not announced: {body}");
    let (status, body) =
        cluster.call(0, "POST", "alice", &format!("/v1/chats/{chat}/members"), Some(json!({"userId": "dave"}))).await;
    assert_eq!(status, 204, "stored, though not announced: {body}");
    cluster.redis.as_mut().expect("private redis").start_again().expect("redis back");
    cluster.wait_for_log(&cluster.gateways[0].service, "memberships repaired after a reconnect").await;

    assert_eq!(bob.ended().await, Ended::Closed(4003), "the removed member is told to reconnect");
    assert_eq!(dave.ended().await, Ended::Closed(4003), "the added member is told to reconnect");
    let started = Instant::now();
    loop {
        let reply =
            alice.request(json!({"type": "new", "chatId": chat, "clientMessageId": "after", "message": "after"})).await;
        if reply["type"] == "ack" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no recovery: {reply}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Carol's membership did not change: her connection stays open.
    while carol.recv_type("new").await["clientMessageId"] != "after" {}
    let (_, list) = cluster.call(0, "GET", "dave", "/v1/chats", None).await;
    assert!(list["chats"].as_array().expect("chats").iter().any(|c| c["id"] == chat), "{list}");
    let mut dave = cluster.connect(0, "dave").await;
    let synced = dave.request(json!({"type": "sync", "since": {chat.to_string(): 0}})).await;
    assert_eq!(synced["synced"][chat.to_string()], json!(2), "both messages replayed: {synced}");
    let (_, metrics) = cluster.text(cluster.gateways[0].port, "/metrics").await;
    assert!(metrics.contains("chat_memberships_repaired_total{change=\"dropped\"} 1"), "{metrics}");
    assert!(metrics.contains("chat_memberships_repaired_total{change=\"followed\"} 1"), "{metrics}");
    assert!(metrics.contains("chat_connections_closed_total{reason=\"chats_changed\"} 2"), "{metrics}");
}

/// A command waiting for Redis's answer (here from a Redis gone silent,
/// until the 2 s response timeout) holds the connection's reader, which
/// reads no ping meanwhile. That wait is the server's, not the client's
/// silence: a shorter heartbeat timeout must not close the connection. It
/// did, and under a saturated Redis it closed clients that pinged as asked.
#[tokio::test]
async fn a_command_waiting_for_redis_does_not_count_against_the_heartbeat() {
    let options = Options { redis_through_proxy: true, heartbeat_timeout_ms: Some(1_000), ..Options::default() };
    let cluster = Cluster::start(options, 1, 1).await;
    let chat = cluster.group(0, "alice", &["bob"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    cluster.redis_proxy.as_ref().expect("proxy").silence_open_connections();
    alice.send(json!({"type": "new", "ref": "held", "chatId": chat, "clientMessageId": "h", "message": "x"})).await;
    // Pings every 200 ms behind it, read once the append is answered or
    // has timed out.
    let started = Instant::now();
    let reply = loop {
        assert!(started.elapsed() < Duration::from_secs(10), "no reply\n{}", cluster.logs());
        alice.send(json!({"type": "ping"})).await;
        if let Ok(frame) = tokio::time::timeout(Duration::from_millis(200), alice.recv()).await {
            if frame["ref"] == "held" {
                break frame;
            }
        }
    };
    assert!(started.elapsed() > Duration::from_secs(1), "the append outlasted the heartbeat timeout");
    assert!(reply["type"] == "error" || reply["type"] == "ack", "{reply}");
    if reply["type"] == "error" {
        // The append may have reached Redis before its answer was lost.
        let message = reply["message"].as_str().expect("message");
        assert!(message.contains("may have been applied"), "{reply}");
    }
    alice.send(json!({"type": "ping", "ref": "after"})).await;
    while alice.recv().await["ref"] != "after" {}
}
