//! A shard's command stream in a running cluster holds its backlog, not
//! every command the workers applied (src/stream_trim.rs).

use std::time::{Duration, Instant};

use crate::harness::{Cluster, Options};

/// 60 messages to one chat, each acknowledged, so applied: the worker's
/// lease round trims them off the chat's shard stream (all but the
/// stream's last node), and the shard goes on taking commands.
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
