//! Presence over two gateways: each node counts its connections in Redis,
//! announces its users' transitions in batches (last-seen times and
//! co-members from PostgreSQL) and every node delivers the announcements
//! its local co-members are owed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use redis::AsyncCommands;
use serde_json::{json, Value};
use shared::bus::presence_log::CHATS_LOGGED_MAX;
use shared::bus::Event;
use testkit::client::Client;

use crate::harness::{Cluster, Options};

/// Users per gateway: more than one announcer round takes (256), so the
/// rounds split the crowd however its connections fall.
const PER_GATEWAY: usize = 300;

/// Reads `watcher`'s frames until it has heard `expected` presence frames
/// of `kind`, and returns them by user (a user heard twice fails). The
/// watchers' own presence is left out: whether the first watcher is
/// announced to the second depends on which of them the announcer was
/// quicker than.
async fn heard(watcher: &mut Client, kind: &str, expected: usize) -> HashMap<String, Value> {
    let mut frames = HashMap::new();
    while frames.len() < expected {
        let frame = watcher.recv().await;
        let about_a_watcher = frame["userId"].as_str().is_some_and(|u| u.starts_with("watcher"));
        if (frame["type"] == "online" || frame["type"] == "offline") && !about_a_watcher {
            assert_eq!(frame["type"], kind, "{frame}");
            let user = frame["userId"].as_str().expect("userId").to_owned();
            assert!(frames.insert(user, frame.clone()).is_none(), "twice: {frame}");
        }
    }
    frames
}

/// A crowd on both gateways, and one user with a device on each, come and
/// leave together: watchers on both gateways hear each user online once and
/// offline once, the two-device user only when the second device leaves,
/// and REST reports the last-seen time the `offline` frame carried.
#[tokio::test]
async fn a_crowd_over_two_gateways_is_announced_once_each_way() {
    let cluster = Cluster::start(Options::default(), 2, 1).await;
    let crowd: Vec<(usize, String)> = (0..2 * PER_GATEWAY).map(|n| (n % 2, format!("crowd{n}"))).collect();
    for (_, user) in &crowd {
        cluster.group(0, user, &["watcher0", "watcher1"]).await;
    }
    cluster.group(0, "twin", &["watcher0", "watcher1"]).await;
    let mut watchers = [cluster.connect(0, "watcher0").await, cluster.connect(1, "watcher1").await];

    let twin_on_0 = cluster.connect(0, "twin").await;
    let twin_on_1 = cluster.connect(1, "twin").await;
    let mut connected = Vec::with_capacity(crowd.len());
    for (gateway, user) in &crowd {
        connected.push(cluster.connect(*gateway, user).await);
    }
    for watcher in &mut watchers {
        let online = heard(watcher, "online", crowd.len() + 1).await;
        assert!(online.contains_key("twin"));
    }

    // The twin's first device leaves before the crowd: its node's later
    // announcements (the crowd's) come after anything it said of the twin.
    twin_on_0.close().await;
    for client in connected {
        client.close().await;
    }
    let mut last_seen = HashMap::new();
    for watcher in &mut watchers {
        let offline = heard(watcher, "offline", crowd.len()).await;
        assert!(!offline.contains_key("twin"), "the twin still has a device");
        for (user, frame) in offline {
            let at = frame["lastSeen"].as_i64().expect("lastSeen");
            assert_eq!(*last_seen.entry(user).or_insert(at), at, "both watchers hear one lastSeen");
        }
    }
    assert_eq!(last_seen.keys().cloned().collect::<HashSet<_>>(), crowd.iter().map(|(_, u)| u.clone()).collect());

    twin_on_1.close().await;
    for watcher in &mut watchers {
        let offline = heard(watcher, "offline", 1).await;
        let at = offline.get("twin").and_then(|frame| frame["lastSeen"].as_i64()).expect("the twin's offline");
        assert_eq!(*last_seen.entry("twin".to_owned()).or_insert(at), at, "both watchers hear one lastSeen");
    }
    let (status, body) = cluster.call(1, "GET", "watcher1", "/v1/presence?users=crowd0,crowd1,twin", None).await;
    assert_eq!(status, 200, "{body}");
    for view in body["users"].as_array().expect("users") {
        let user = view["userId"].as_str().expect("userId");
        assert_eq!(view["online"], false, "{view}");
        assert_eq!(view["lastSeen"].as_i64(), Some(last_seen[user]), "{view}");
    }
}

/// Redis runs a presence change only after the gateway stopped waiting for
/// its answer (writes paused past the 2 s response timeout): the change
/// happened, but the gateway could not tell whether it moved the user
/// across zero. Its retry reads the recorded answer, so the user is
/// announced offline, then online again, once each, and counted once.
#[tokio::test]
async fn a_presence_change_answered_too_late_is_announced_by_its_retry() {
    let cluster = Cluster::start(Options { private_redis: true, ..Options::default() }, 1, 1).await;
    cluster.group(0, "alice", &["watcher"]).await;
    let mut watcher = cluster.connect(0, "watcher").await;
    let alice = cluster.connect(0, "alice").await;
    assert!(heard(&mut watcher, "online", 1).await.contains_key("alice"));
    let mut redis = cluster.redis().await;
    let counts = cluster.keys().online("alice");

    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(3000).arg("WRITE").query_async(&mut redis).await.expect("pause");
    alice.close().await;
    let offline = heard(&mut watcher, "offline", 1).await;
    assert!(offline.contains_key("alice"), "{offline:?}");
    let left: Vec<i64> = redis::cmd("HVALS").arg(&counts).query_async(&mut redis).await.expect("hvals");
    assert_eq!(left, Vec::<i64>::new(), "alice's departure counted once");

    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(3000).arg("WRITE").query_async(&mut redis).await.expect("pause");
    let _alice = cluster.connect(0, "alice").await;
    assert!(heard(&mut watcher, "online", 1).await.contains_key("alice"));
    let now: Vec<i64> = redis::cmd("HVALS").arg(&counts).query_async(&mut redis).await.expect("hvals");
    assert_eq!(now, vec![1], "alice's arrival counted once");
    let gateway = &cluster.gateways[0].service;
    assert_eq!(gateway.log().matches("presence change unanswered").count(), 2, "{}", gateway.log());
}

/// Redis restarts empty under a gateway holding more users than one
/// write-back round takes (500): every one of them is counted online again,
/// once, without reconnecting.
#[tokio::test]
async fn after_redis_restarts_empty_every_user_is_counted_again() {
    const USERS: usize = 700;
    let mut cluster = Cluster::start(Options { private_redis: true, ..Options::default() }, 1, 1).await;
    let users: Vec<String> = (0..USERS).map(|n| format!("held{n}")).collect();
    let mut held = Vec::with_capacity(USERS);
    for user in &users {
        held.push(cluster.connect(0, user).await);
    }
    cluster.redis.as_mut().expect("private redis").stop();
    cluster.redis.as_mut().expect("private redis").start_again().expect("redis back");

    let mut redis = cluster.redis().await;
    let keys = cluster.keys();
    let started = std::time::Instant::now();
    loop {
        let mut counted = Vec::with_capacity(USERS);
        for user in &users {
            let counts: Vec<i64> =
                redis::cmd("HVALS").arg(keys.online(user)).query_async(&mut redis).await.expect("hvals");
            counted.push(counts.iter().sum::<i64>());
        }
        if counted.iter().all(|&total| total == 1) {
            break;
        }
        assert!(counted.iter().all(|&total| total <= 1), "counted twice: {counted:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "not written back: {counted:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(held);
}

/// A gateway stalls past its lease (SIGSTOP) while it holds a user: the
/// other gateway reaps it and announces the user offline. When the stalled
/// gateway carries on, the user is still connected there, so it writes its
/// counts back and announces the user online again.
#[tokio::test]
async fn a_gateway_reaped_after_a_stall_announces_its_users_online_again() {
    let cluster = Cluster::start(Options::default(), 2, 1).await;
    cluster.group(0, "alice", &["watcher", "bob"]).await;
    let mut watcher = cluster.connect(0, "watcher").await;
    let _alice = cluster.connect(1, "alice").await;
    let _bob = cluster.connect(1, "bob").await;
    assert_eq!(heard(&mut watcher, "online", 2).await.len(), 2);

    let stalled = &cluster.gateways[1].service;
    stalled.pause().expect("SIGSTOP");
    let offline = heard(&mut watcher, "offline", 2).await;
    stalled.resume().expect("SIGCONT");
    assert!(offline.contains_key("alice") && offline.contains_key("bob"), "{offline:?}");

    let online = heard(&mut watcher, "online", 2).await;
    assert!(online.contains_key("alice") && online.contains_key("bob"), "{online:?}");
    let (status, body) = cluster.call(0, "GET", "watcher", "/v1/presence?users=alice,bob", None).await;
    assert_eq!(status, 200, "{body}");
    for view in body["users"].as_array().expect("users") {
        assert_eq!(view["online"], true, "{view}");
    }
    let mut redis = cluster.redis().await;
    let last: HashMap<String, String> = redis.hgetall(cluster.keys().presence_last("alice")).await.expect("HGETALL");
    assert_eq!(last.get("o").map(String::as_str), Some("1"), "alice's last transition recorded online: {last:?}");
}

/// A stalled gateway reaped by the other, as above, and carol's device on it
/// closed during the stall while her other device stays on the other
/// gateway. The stalled one reads the close as it carries on, possibly
/// before it has written its counts back: counted then against a count
/// the reaping had dropped, the departure took her total to 0 and she was
/// announced offline, never to come back online (an audit saw it in three
/// runs of three). She must stay online throughout.
#[tokio::test]
async fn a_departure_read_by_a_reaped_gateway_takes_no_one_offline_who_is_online_elsewhere() {
    let cluster = Cluster::start(Options::default(), 2, 1).await;
    cluster.group(0, "carol", &["watcher", "bob", "dave"]).await;
    let mut watcher = cluster.connect(0, "watcher").await;
    let _carol_here = cluster.connect(0, "carol").await;
    let carol_there = cluster.connect(1, "carol").await;
    let _bob = cluster.connect(1, "bob").await;
    assert_eq!(heard(&mut watcher, "online", 2).await.len(), 2);

    let stalled = &cluster.gateways[1].service;
    stalled.pause().expect("SIGSTOP");
    let offline = heard(&mut watcher, "offline", 1).await;
    assert!(offline.contains_key("bob"), "{offline:?}");
    drop(carol_there);
    stalled.resume().expect("SIGCONT");
    // Her departure has been counted, or left uncounted, once the gauge
    // falls: the gateway lowers it after presence is done with it.
    cluster.wait_for_metric(1, "chat_open_connections 1").await;
    let online = heard(&mut watcher, "online", 1).await;
    assert!(online.contains_key("bob"), "{online:?}");
    // Announced after anything decided before it, by the same gateway.
    let _dave = cluster.connect(1, "dave").await;
    loop {
        let frame = watcher.recv().await;
        assert_ne!((&frame["type"], &frame["userId"]), (&json!("offline"), &json!("carol")), "{frame}");
        if frame["type"] == "online" && frame["userId"] == "dave" {
            break;
        }
    }
    let mut redis = cluster.redis().await;
    let last: HashMap<String, String> = redis.hgetall(cluster.keys().presence_last("carol")).await.expect("HGETALL");
    assert_eq!(last.get("o").map(String::as_str), Some("1"), "carol's last transition recorded online: {last:?}");
    let (status, body) = cluster.call(0, "GET", "watcher", "/v1/presence?users=carol", None).await;
    assert_eq!((status, &body["users"][0]["online"]), (200, &json!(true)), "{body}");
}

/// While Redis is down, bob connects and carol, online before, leaves for
/// good: neither change is answered, and the Redis that comes back has
/// forgotten everything. Once the gateway has written its counts back, it
/// announces both users' state from the counts: bob online, carol offline.
/// It used to drop the unanswered changes with the records Redis lost, and
/// alice went on seeing bob offline and carol online.
#[tokio::test]
async fn changes_unanswered_while_redis_was_away_are_announced_once_it_is_back() {
    let mut cluster = Cluster::start(Options { private_redis: true, ..Options::default() }, 1, 1).await;
    cluster.group(0, "alice", &["bob", "carol"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    let carol = cluster.connect(0, "carol").await;
    assert_eq!(alice.recv_type("online").await["userId"], "carol");

    cluster.redis.as_mut().expect("private redis").stop();
    let _bob = cluster.connect(0, "bob").await;
    carol.close().await;
    let gateway = &cluster.gateways[0].service;
    let started = std::time::Instant::now();
    while gateway.log().matches("presence change unanswered").count() < 2 {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{}", gateway.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    cluster.redis.as_mut().expect("private redis").start_again().expect("redis back");
    // Some seconds pass before the announcement (reconnecting, writing
    // back, then the others' time to write back): more than one frame's wait.
    cluster.wait_for_log(&cluster.gateways[0].service, "presence announced again from the counts").await;

    let mut states = HashMap::new();
    while states.len() < 2 {
        let frame = alice.recv().await;
        if frame["type"] == "online" || frame["type"] == "offline" {
            let user = frame["userId"].as_str().expect("userId").to_owned();
            assert!(states.insert(user, frame["type"].clone()).is_none(), "twice: {frame}");
        }
    }
    assert_eq!(states.get("bob"), Some(&json!("online")), "{states:?}");
    assert_eq!(states.get("carol"), Some(&json!("offline")), "{states:?}");
    let (status, body) = cluster.call(0, "GET", "alice", "/v1/presence?users=bob,carol", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["users"][0]["online"], &body["users"][1]["online"]), (&json!(true), &json!(false)), "{body}");
}

/// Alice leaves gw-0, whose `offline` waits behind a batch held up in the
/// database; she comes and goes on gw-1, which announces both; she is back
/// on gw-0 before its `offline` went out. That `offline` and her return
/// are not consecutive (gw-1's two came between), so they must not cancel:
/// bob would be left with gw-1's `offline` while alice is connected. Her
/// `online` from gw-0 goes out instead.
#[tokio::test]
async fn a_return_cancels_no_departure_another_gateway_announced_changes_after() {
    use sqlx::Connection;
    let cluster = Cluster::start(Options::default(), 2, 1).await;
    cluster.group(0, "bob", &["alice", "x", "y"]).await;
    let mut bob = cluster.connect(0, "bob").await;
    let x = cluster.connect(0, "x").await;
    let y = cluster.connect(0, "y").await;
    let alice = cluster.connect(0, "alice").await;
    assert_eq!(heard(&mut bob, "online", 3).await.len(), 3);

    // gw-0's announcer takes x's `offline` and waits on x's row.
    let mut database = sqlx::PgConnection::connect(&cluster.database_url).await.expect("database");
    sqlx::query("INSERT INTO users (user_id) VALUES ('x') ON CONFLICT DO NOTHING")
        .execute(&mut database)
        .await
        .expect("x's row");
    let mut holding = database.begin().await.expect("BEGIN");
    sqlx::query("SELECT 1 FROM users WHERE user_id = 'x' FOR UPDATE").execute(&mut *holding).await.expect("lock");
    x.close().await;
    until_a_statement_waits_for_a_lock(&cluster, "x's offline").await;

    let redis = cluster.redis().await;
    let counts = cluster.keys().online("alice");
    let counted = |expected: Vec<i64>| {
        let (mut redis, counts) = (redis.clone(), counts.clone());
        async move {
            let started = std::time::Instant::now();
            loop {
                let now: Vec<i64> = redis.hvals(&counts).await.expect("HVALS");
                if now == expected {
                    return;
                }
                assert!(started.elapsed() < std::time::Duration::from_secs(10), "{now:?}, not {expected:?}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    alice.close().await;
    counted(vec![]).await;
    let on_gw_1 = cluster.connect(1, "alice").await;
    assert_eq!(bob.recv_type("online").await["userId"], "alice");
    on_gw_1.close().await;
    assert_eq!(bob.recv_type("offline").await["userId"], "alice");
    let _alice = cluster.connect(0, "alice").await;
    counted(vec![1]).await;
    holding.commit().await.expect("COMMIT");

    assert_eq!(bob.recv_type("offline").await["userId"], "x");
    y.close().await;
    let next = loop {
        let frame = bob.recv().await;
        if frame["type"] == "online" || frame["type"] == "offline" {
            break frame;
        }
    };
    assert_eq!((&next["type"], &next["userId"]), (&json!("online"), &json!("alice")), "{next}");
    assert_eq!(bob.recv_type("offline").await["userId"], "y");
}

/// Waits until a statement in the cluster's database waits for a row lock
/// the test holds (not an advisory lock, which chat changes take):
/// `what` is then held up behind it.
async fn until_a_statement_waits_for_a_lock(cluster: &Cluster, what: &str) {
    use sqlx::Connection;
    let mut watching = sqlx::PgConnection::connect(&cluster.database_url).await.expect("database");
    let started = std::time::Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event <> 'advisory'",
        )
        .fetch_one(&mut watching)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{what} never waited");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Alice leaves gw-1, whose announcer is then held on her row in
/// PostgreSQL before it can store when she left. `GET /v1/presence` on
/// gw-0 already says when, from Redis's record of her departure, rather
/// than the time stored before (or nothing); and it is the time her
/// `offline` carries once it goes out.
#[tokio::test]
async fn rest_presence_tells_when_a_user_left_before_their_gateway_stored_it() {
    use sqlx::Connection;
    let cluster = Cluster::start(Options::default(), 2, 1).await;
    cluster.group(0, "bob", &["alice"]).await;
    let mut database = sqlx::PgConnection::connect(&cluster.database_url).await.expect("database");
    sqlx::query("INSERT INTO users (user_id, last_seen) VALUES ('alice', 1000)")
        .execute(&mut database)
        .await
        .expect("alice's row, as an old departure left it");
    let mut bob = cluster.connect(0, "bob").await;
    let alice = cluster.connect(1, "alice").await;
    assert_eq!(bob.recv_type("online").await["userId"], "alice");

    let mut holding = database.begin().await.expect("BEGIN");
    sqlx::query("SELECT 1 FROM users WHERE user_id = 'alice' FOR UPDATE").execute(&mut *holding).await.expect("lock");
    let leaving = shared::clock::now_ms();
    alice.close().await;
    until_a_statement_waits_for_a_lock(&cluster, "alice's offline").await;
    let (status, body) = cluster.call(0, "GET", "bob", "/v1/presence?users=alice", None).await;
    assert_eq!((status, &body["users"][0]["online"]), (200, &json!(false)), "{body}");
    let last_seen = body["users"][0]["lastSeen"].as_i64().expect("lastSeen");
    assert!(last_seen >= leaving, "{body}: alice left at {leaving} or after");

    holding.commit().await.expect("COMMIT");
    let offline = bob.recv_type("offline").await;
    assert_eq!((&offline["userId"], offline["lastSeen"].as_i64()), (&json!("alice"), Some(last_seen)), "{offline}");
}

/// A gateway that stops (SIGTERM) gives its lease up and leaves its
/// entries for the other gateways to reap, as a dead one's: a user it still
/// counts (a disconnect that never reached Redis during the drain, written
/// into Redis here) is announced offline by them. It used to delete its own
/// list of users, which left such a user online for good.
#[tokio::test]
async fn a_stopped_gateway_s_leftover_users_are_reaped_by_the_others() {
    let mut cluster = Cluster::start(Options::default(), 2, 1).await;
    cluster.group(0, "alice", &["ghost"]).await;
    let mut alice = cluster.connect(0, "alice").await;
    let keys = cluster.keys();
    let mut redis = cluster.redis().await;
    let _: () = redis.hset(keys.online("ghost"), "gw-1", 1).await.expect("a count");
    let _: () = redis.sadd(keys.node_users("gw-1"), "ghost").await.expect("listed");
    let (_, body) = cluster.call(0, "GET", "alice", "/v1/presence?users=ghost", None).await;
    assert_eq!(body["users"][0]["online"], true, "{body}");

    let stopped = cluster.gateways[1].service.terminate(std::time::Duration::from_secs(30)).expect("stopped");
    assert_eq!(stopped, Some(0), "{}", cluster.logs());
    let offline = alice.recv_type("offline").await;
    assert_eq!(offline["userId"], "ghost", "{offline}");
    let (_, body) = cluster.call(0, "GET", "alice", "/v1/presence?users=ghost", None).await;
    assert_eq!(body["users"][0]["online"], false, "{body}");
}

/// The gateway's event subscription drops and cannot come back (Redis
/// refuses SUBSCRIBE) while alice leaves: her `offline` is published to no
/// one. Once the subscription is back, bob hears it, read again from the
/// presence log, and before it nothing the gateway had delivered already
/// (carol's and alice's `online`, earlier in the log). Without the log,
/// bob went on seeing alice online.
#[tokio::test]
async fn an_announcement_published_while_the_subscription_was_down_arrives_once_it_is_back() {
    published_while_the_subscription_was_down(0).await;
}

/// As above, with alice in more chats than the presence log names
/// (`CHATS_LOGGED_MAX`): her `offline` is logged without them, and the
/// gateway reads them from the store to tell bob.
#[tokio::test]
async fn an_announcement_logged_without_its_many_chats_still_reaches_co_members() {
    published_while_the_subscription_was_down(CHATS_LOGGED_MAX).await;
}

/// alice, bob and carol share a group, and alice is in `more` chats of her
/// own beside it.
async fn published_while_the_subscription_was_down(more: usize) {
    let cluster = Cluster::start(Options { private_redis: true, ..Options::default() }, 1, 1).await;
    cluster.group(0, "bob", &["alice", "carol"]).await;
    for _ in 0..more {
        cluster.group(0, "alice", &[]).await;
    }
    let mut bob = cluster.connect(0, "bob").await;
    let _carol = cluster.connect(0, "carol").await;
    assert_eq!(bob.recv_type("online").await["userId"], "carol");
    let alice = cluster.connect(0, "alice").await;
    assert_eq!(bob.recv_type("online").await["userId"], "alice");

    let mut redis = cluster.redis().await;
    let acl = |rule: &'static str| redis::cmd("ACL").arg("SETUSER").arg("default").arg(rule).clone();
    let _: () = acl("-subscribe").query_async(&mut redis).await.expect("ACL");
    let _: () = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut redis).await.expect("KILL");
    let gateway = &cluster.gateways[0].service;
    cluster.wait_for_log(gateway, "event subscription lost").await;
    alice.close().await;
    // bob, carol and alice online, then alice offline.
    announcements_timed(&cluster, 0, 4).await;
    let _: () = acl("+subscribe").query_async(&mut redis).await.expect("ACL");

    let frame = loop {
        let frame = bob.recv().await;
        if frame["type"] == "online" || frame["type"] == "offline" {
            break frame;
        }
    };
    assert_eq!((&frame["type"], &frame["userId"]), (&json!("offline"), &json!("alice")), "{frame}");
}

/// The presence log refusing an append (its key holds a string here; in
/// production, Redis's memory is full) does not fail the announcement,
/// which went out all the same: bob hears alice, and the announcer counts
/// it published. It used to count it failed, and announce her again.
#[tokio::test]
async fn an_announcement_the_presence_log_refuses_still_counts_as_made() {
    let cluster = Cluster::start(Options::default(), 1, 1).await;
    cluster.group(0, "bob", &["alice"]).await;
    let mut bob = cluster.connect(0, "bob").await;
    announcements_timed(&cluster, 0, 1).await;
    let mut redis = cluster.redis().await;
    let _: () = redis.set(cluster.keys().presence_log(), "not a stream").await.expect("SET");

    let _alice = cluster.connect(0, "alice").await;
    assert_eq!(bob.recv_type("online").await["userId"], "alice");
    announcements_timed(&cluster, 0, 2).await;
    let gateway = &cluster.gateways[0].service;
    assert!(gateway.log().contains("presence log append refused"), "{}", gateway.log());
    assert!(!gateway.log().contains("presence not announced"), "{}", gateway.log());
}

/// With Redis away a gateway cannot tell who is online: `GET
/// /v1/presence` answers 503 rather than everyone offline, as it used to.
#[tokio::test]
async fn rest_presence_is_unavailable_rather_than_wrong_while_redis_is_away() {
    let mut cluster = Cluster::start(Options { private_redis: true, ..Options::default() }, 1, 1).await;
    cluster.group(0, "alice", &["bob"]).await;
    let _bob = cluster.connect(0, "bob").await;
    let (status, body) = cluster.call(0, "GET", "alice", "/v1/presence?users=bob,carol", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["users"][0]["online"], &body["users"][1]["online"]), (&json!(true), &json!(false)), "{body}");

    cluster.redis.as_mut().expect("private redis").stop();
    let (status, body) = cluster.call(0, "GET", "alice", "/v1/presence?users=bob", None).await;
    assert_eq!((status, &body["code"]), (503, &json!("internal")), "{body}");
}

/// Each gateway times the announcements it makes for operators
/// (`chat_presence_delay_seconds`), and only those: bob's `online` on the
/// first, alice's `online` and `offline` on the second.
#[tokio::test]
async fn each_gateway_times_the_announcements_it_makes() {
    let cluster = Cluster::start(Options::default(), 2, 1).await;
    cluster.group(0, "alice", &["bob"]).await;
    let mut bob = cluster.connect(0, "bob").await;
    let alice = cluster.connect(1, "alice").await;
    assert_eq!(bob.recv_type("online").await["userId"], "alice");
    announcements_timed(&cluster, 0, 1).await;
    announcements_timed(&cluster, 1, 1).await;
    alice.close().await;
    assert_eq!(bob.recv_type("offline").await["userId"], "alice");
    announcements_timed(&cluster, 1, 2).await;
    announcements_timed(&cluster, 0, 1).await;
}

/// Waits until gateway `gateway`'s `chat_presence_delay_seconds` has
/// counted `expected` announcements: a client can hear one as Redis
/// delivers it, a moment before the announcer records it.
async fn announcements_timed(cluster: &Cluster, gateway: usize, expected: u64) {
    let started = std::time::Instant::now();
    loop {
        let (status, metrics) = cluster.text(cluster.gateways[gateway].port, "/metrics").await;
        assert_eq!(status, 200);
        let counted = metrics
            .lines()
            .find_map(|line| line.strip_prefix("chat_presence_delay_seconds_count "))
            .map(|n| n.trim().parse::<u64>().expect("a count"));
        match counted {
            Some(n) if n == expected => return,
            Some(n) => assert!(n < expected, "gateway {gateway}: {n} announcements timed, {expected} made"),
            None => {}
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "gateway {gateway}:\n{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A user's announcements, made by two gateways, reach co-members in the
/// order of the transitions rather than of their publishing: an `offline`
/// numbered below the `online` already applied (as the gateway a user left
/// publishes it when the gateway they moved to was quicker) is dropped,
/// and a later one is not.
#[tokio::test]
async fn an_announcement_older_than_the_last_applied_is_dropped() {
    let cluster = Cluster::start(Options::default(), 2, 1).await;
    let chat = cluster.group(0, "bob", &["alice"]).await;
    let mut bob = cluster.connect(0, "bob").await;
    let _alice = cluster.connect(1, "alice").await;
    assert_eq!(bob.recv_type("online").await["userId"], "alice");
    // Alice's transition took the latest number.
    let mut redis = cluster.redis().await;
    let latest: u64 = redis.get(cluster.keys().presence_seq()).await.expect("GET");
    assert!(latest > 0);
    let offline = |last_seen: i64, seq: u64| Event::Presence {
        user: "alice".into(),
        online: false,
        last_seen,
        chats: Arc::from([chat]),
        seq,
    };
    for event in [offline(1, latest - 1), offline(2, latest + 1)] {
        cluster.publish(event).await;
    }
    let heard = bob.recv_type("offline").await;
    assert_eq!((&heard["userId"], &heard["lastSeen"]), (&json!("alice"), &json!(2)), "{heard}");
}

/// Alice leaves gw-0, whose change goes unanswered (its record of changes
/// is unusable for a while), then comes and goes on gw-1, whose changes
/// cross no zero. When gw-0's retry finally takes her offline, she was last
/// seen leaving gw-1, not gw-0: her `offline` and `GET /v1/presence` both
/// say so. The `offline` used to carry the time of the retried change,
/// earlier than her last departure.
#[tokio::test]
async fn an_offline_decided_by_a_retry_carries_the_user_s_latest_departure() {
    let cluster = Cluster::start(Options::default(), 2, 1).await;
    cluster.group(0, "bob", &["alice"]).await;
    let mut bob = cluster.connect(1, "bob").await;
    let alice_on_0 = cluster.connect(0, "alice").await;
    assert!(heard(&mut bob, "online", 1).await.contains_key("alice"));
    let mut redis = cluster.redis().await;
    let (changes, counts) = (cluster.keys().node_presence_ops("gw-0"), cluster.keys().online("alice"));
    let _: () = redis.del(&changes).await.expect("del");
    let _: () = redis.set(&changes, "unusable").await.expect("set");

    alice_on_0.close().await;
    cluster.wait_for_log(&cluster.gateways[0].service, "presence change unanswered").await;
    let alice_on_1 = cluster.connect(1, "alice").await;
    let on_1: Option<i64> = redis.hget(&counts, "gw-1").await.expect("hget");
    assert_eq!(on_1, Some(1), "her connection counted before its welcome");
    let leaving = shared::clock::now_ms();
    alice_on_1.close().await;
    let started = std::time::Instant::now();
    while redis.hexists::<_, _, bool>(&counts, "gw-1").await.expect("hexists") {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "gw-1 never counted her departure");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _: () = redis.del(&changes).await.expect("del");

    let offline = heard(&mut bob, "offline", 1).await.remove("alice").expect("alice's offline");
    let last_seen = offline["lastSeen"].as_i64().expect("lastSeen");
    assert!(last_seen >= leaving, "{offline}: she left gw-1 at {leaving} or after");
    let (status, body) = cluster.call(0, "GET", "bob", "/v1/presence?users=alice", None).await;
    assert_eq!((status, &body["users"][0]["lastSeen"]), (200, &json!(last_seen)), "{body}");
}
