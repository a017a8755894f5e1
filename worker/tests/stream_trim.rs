//! Trimming a command stream (src/stream_trim.rs) against a real Redis:
//! only entries the consumer group was handed and has acknowledged go; a
//! pending one, and everything after it, stays; and a long stream is
//! trimmed whole, by more than one call.
//!
//! Needs `TEST_REDIS_URL`: run through `./scripts/test`.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use worker::stream_trim::trim_applied;

const GROUP: &str = "g";

/// A deadline no call of the test reaches.
fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
}
/// More than one call of the trim removes (10,000).
const ENTRIES: usize = 25_000;

#[tokio::test]
async fn only_entries_handed_out_and_acknowledged_are_trimmed() {
    let url = std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL (run ./scripts/test)");
    let mut redis = shared::bus::redis::connect(&url).await.expect("redis");
    // A key of its own: the test's Redis may be shared with other tests.
    let stream = format!("test:stream-trim:{}", std::process::id());
    let _: () = redis.del(&stream).await.expect("DEL");
    let refused = trim_applied(&mut redis, &stream, GROUP, later()).await.expect_err("no group yet");
    assert_eq!(refused.code(), Some("NOGROUP"), "{refused}");

    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut redis)
        .await
        .expect("XGROUP CREATE");
    // About the size of a command entry: a stream node holds a dozen.
    let payload = "x".repeat(300);
    let mut append = redis::pipe();
    for _ in 0..ENTRIES {
        append.cmd("XADD").arg(&stream).arg("*").arg("c").arg(&payload).ignore();
    }
    let _: () = append.query_async(&mut redis).await.expect("XADD");
    assert_eq!(trim_applied(&mut redis, &stream, GROUP, later()).await.expect("trim"), 0, "nothing handed out yet");

    let read: redis::streams::StreamReadReply = redis
        .xread_options(
            &[&stream],
            &[">"],
            &redis::streams::StreamReadOptions::default().group(GROUP, "c").count(ENTRIES),
        )
        .await
        .expect("XREADGROUP");
    let ids: Vec<String> = read.keys.into_iter().flat_map(|key| key.ids).map(|entry| entry.id).collect();
    assert_eq!(ids.len(), ENTRIES);
    let (pending, acked): (Vec<&String>, Vec<&String>) = ids.iter().partition(|id| **id == ids[500]);
    let _: i64 = redis.xack(&stream, GROUP, &acked).await.expect("XACK");

    let trimmed = trim_applied(&mut redis, &stream, GROUP, later()).await.expect("trim");
    let kept: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg(&stream).arg(pending[0]).arg("+").query_async(&mut redis).await.expect("XRANGE");
    assert_eq!(kept.len(), ENTRIES - 500, "the pending entry and everything after it");
    assert!(trimmed > 0, "acknowledged entries before the pending one go");
    let length: usize = redis.xlen(&stream).await.expect("XLEN");
    assert_eq!(length, ENTRIES - trimmed as usize);

    let _: i64 = redis.xack(&stream, GROUP, &pending).await.expect("XACK");
    // Past its deadline, a trim makes one call: 10,000 entries at most.
    let one_call = trim_applied(&mut redis, &stream, GROUP, Instant::now()).await.expect("trim");
    assert!((5_000..=10_000).contains(&one_call), "{one_call}");
    trim_applied(&mut redis, &stream, GROUP, later()).await.expect("trim");
    let length: usize = redis.xlen(&stream).await.expect("XLEN");
    // `~` keeps the node that holds the last delivered entry; the rest
    // takes the trim three calls.
    assert!(length < 100, "all acknowledged, all but the last node goes: {length} left");
    let _: () = redis.del(&stream).await.expect("DEL");
}
