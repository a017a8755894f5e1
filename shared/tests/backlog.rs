//! The shards' backlogs as a gateway reads them (src/bus/backlog.rs),
//! against a real Redis: a stream not made yet has none; before the
//! workers' group exists every entry counts; then what the group has not
//! acknowledged does, handed out or not.
//!
//! Needs `TEST_REDIS_URL`: run through `./scripts/test`.

use redis::AsyncCommands;
use shared::bus::backlog::Backlogs;
use shared::bus::keys::{Keys, GROUP};
use shared::bus::redis::connect;
use shared::bus::redis_connection::RedisConnection;

/// The test's Redis, and keys of a test's own with `shards` streams: the
/// Redis may be shared with other tests.
async fn redis_and_keys(shards: u32) -> (RedisConnection, Keys) {
    let url = std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL (run ./scripts/test)");
    let keys = Keys::new(&format!("{}:", testkit::unique("backlog")), shards);
    (connect(&url).await.expect("redis"), keys)
}

#[tokio::test]
async fn a_shard_is_full_while_its_unacknowledged_commands_reach_the_limit() {
    let (mut redis, keys) = redis_and_keys(2).await;
    let backlogs = Backlogs::new(2, 3);
    let (empty, busy) = (0, 1);
    let stream = keys.command_stream(busy);
    let mut append = redis::pipe();
    for _ in 0..4 {
        append.cmd("XADD").arg(&stream).arg("*").arg("c").arg("{}").ignore();
    }
    let _: () = append.query_async(&mut redis).await.expect("XADD");

    backlogs.read(&mut redis, &keys).await.expect("read");
    assert!(!backlogs.is_full(empty), "no stream: no backlog");
    assert!(backlogs.is_full(busy), "no group yet: all 4 entries wait");

    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(GROUP)
        .arg("0")
        .query_async(&mut redis)
        .await
        .expect("XGROUP CREATE");
    let read: redis::streams::StreamReadReply = redis
        .xread_options(&[&stream], &[">"], &redis::streams::StreamReadOptions::default().group(GROUP, "c").count(2))
        .await
        .expect("XREADGROUP");
    let handed: Vec<String> = read.keys.into_iter().flat_map(|key| key.ids).map(|entry| entry.id).collect();
    let _: i64 = redis.xack(&stream, GROUP, &handed[..1]).await.expect("XACK");
    // One acknowledged: one pending and two not handed out, 3 of 4.
    backlogs.read(&mut redis, &keys).await.expect("read");
    assert!(backlogs.is_full(busy), "lag 2 and pending 1 reach the limit of 3");

    let _: i64 = redis.xack(&stream, GROUP, &handed[1..]).await.expect("XACK");
    backlogs.read(&mut redis, &keys).await.expect("read");
    assert!(!backlogs.is_full(busy), "lag 2 alone is below the limit, though the stream holds 4");
    let _: () = redis.del(&stream).await.expect("DEL");
}

/// With more shards than one read covers (256), the reads take them in
/// turn: a shard past the first 256 is read by the second.
#[tokio::test]
async fn many_shards_are_read_in_turn() {
    let (mut redis, keys) = redis_and_keys(300).await;
    let backlogs = Backlogs::new(300, 1);
    let (early, late) = (7, 299);
    for shard in [early, late] {
        let _: String = redis::cmd("XADD")
            .arg(keys.command_stream(shard))
            .arg("*")
            .arg("c")
            .arg("{}")
            .query_async(&mut redis)
            .await
            .expect("XADD");
    }
    backlogs.read(&mut redis, &keys).await.expect("read");
    assert_eq!((backlogs.is_full(early), backlogs.is_full(late)), (true, false), "the first read: shards 0 to 255");
    backlogs.read(&mut redis, &keys).await.expect("read");
    assert_eq!((backlogs.is_full(early), backlogs.is_full(late)), (true, true), "the second: 256 to 299, then 0 on");
    for shard in [early, late] {
        let _: () = redis.del(keys.command_stream(shard)).await.expect("DEL");
    }
}
