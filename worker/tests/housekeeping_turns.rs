//! The housekeeping's turns (src/turns.rs) against a real Redis: of two
//! workers whose rounds come within the same period only the first
//! runs, also when the first comes again; once the claim lapses the
//! other takes the next round, and a round's end renews only its own
//! worker's claim. A chat deleted in between shows which rounds ran:
//! only a round that ran purges it.
//!
//! Needs `TEST_REDIS_URL`: run through `./scripts/test`.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use shared::store::{NewChat, Retention, Store};
use worker::retention::{round, Round};
use worker::turns::{Claim, Turns};

async fn deleted_chat(store: &Store) {
    let created = store.create_chat("alice", NewChat::group("g", ["bob"]), 1).await.map_err(|e| e.0).expect("created");
    store.delete_chat(created.chat_id, "alice", 2).await.expect("deleted");
}

async fn waiting_for_purge(url: &str) -> i64 {
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url).await.expect("connected underneath");
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM deleted_chats").fetch_one(&mut conn).await.expect("counted");
    n
}

#[tokio::test]
async fn one_worker_a_period_runs_the_housekeeping_and_the_next_takes_over_once_its_claim_lapses() {
    let redis_url = std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL (run ./scripts/test)");
    let mut redis = shared::bus::redis::connect(&redis_url).await.expect("redis");
    // A key of its own: the test's Redis may be shared with other tests.
    let key = format!("test:housekeeping:{}", std::process::id());
    let _: () = redis.del(&key).await.expect("DEL");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = Store::connect(&url).await.expect("store");
    let retention = Retention { max_age_ms: i64::MAX / 2, max_events_per_chat: 1_000 };
    // Long enough that no round of the test outlives it by accident.
    let period = Duration::from_secs(60);
    let a = Turns::Claimed(Claim::new(redis.clone(), key.clone(), "a".into(), period));
    let b = Turns::Claimed(Claim::new(redis.clone(), key.clone(), "b".into(), period));

    deleted_chat(&store).await;
    assert_eq!(round(&store, retention, &a).await, Round::Ran);
    assert_eq!(waiting_for_purge(&url).await, 0, "a's round purged the chat");
    let held: i64 = redis.pttl(&key).await.expect("PTTL");
    assert!(held > 0 && held <= 60_000, "a's claim lapses within the period: {held} ms");

    deleted_chat(&store).await;
    assert_eq!(round(&store, retention, &b).await, Round::NotOurTurn, "a's claim holds");
    assert_eq!(round(&store, retention, &a).await, Round::NotOurTurn, "a's own next round waits out the period too");
    assert_eq!(waiting_for_purge(&url).await, 1, "no round ran");

    // The claim lapses (a worker that stopped, or the period passed).
    let _: () = redis.pexpire(&key, 1).await.expect("PEXPIRE");
    let started = Instant::now();
    while redis.exists::<_, bool>(&key).await.expect("EXISTS") {
        assert!(started.elapsed() < Duration::from_secs(10), "the claim never lapsed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(round(&store, retention, &b).await, Round::Ran, "b takes the turn");
    assert_eq!(waiting_for_purge(&url).await, 0, "b's round purged the chat");
    let holder: String = redis.get(&key).await.expect("GET");
    assert_eq!(holder, "b");
    assert_eq!(round(&store, retention, &a).await, Round::NotOurTurn, "now b's claim holds");

    // A round's end renews only its own worker's claim: a round of a's
    // that outlasted its claim does not lengthen b's.
    let _: () = redis.pexpire(&key, 5_000).await.expect("PEXPIRE");
    a.done().await;
    let held: i64 = redis.pttl(&key).await.expect("PTTL");
    assert!(held > 0 && held <= 5_000, "b's claim untouched by a: {held} ms");
    b.done().await;
    let held: i64 = redis.pttl(&key).await.expect("PTTL");
    assert!(held > 5_000, "b's claim renewed for the period from its round's end: {held} ms");

    let standalone = Turns::Every;
    deleted_chat(&store).await;
    assert_eq!(round(&store, retention, &standalone).await, Round::Ran, "standalone asks no one");
    assert_eq!(waiting_for_purge(&url).await, 0);
    let _: () = redis.del(&key).await.expect("DEL");
}
