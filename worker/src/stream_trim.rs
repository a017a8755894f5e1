//! Trimming what a shard's command stream no longer needs: the entries its
//! consumer group has been handed and has acknowledged.
//!
//! Without it a stream kept every applied command until the cap on its
//! length (`XADD MAXLEN ~`, `shared::bus::redis`) pushed it out: Redis
//! held up to that many entries per shard whatever the backlog, and had
//! to be sized for it. Trimmed here, a stream holds its backlog and little
//! more.
//!
//! The script finds, atomically, the oldest entry that may still be
//! needed: the oldest pending one (handed out, not acknowledged: a batch
//! in hand, or one a lost reply or a fenced read left behind), or, with
//! none pending, the group's last delivered entry. Everything older was
//! handed out and acknowledged, and stays so: entries are handed out in id
//! order, past the last delivered one. So the trim is safe from any worker
//! at any time, owner of the shard or not. `MINID ~` removes only whole
//! nodes of the stream, which costs Redis least, and at most [`LIMIT`]
//! entries a call (about 1 ms of Redis's time here): a stream that holds
//! many more (the first round after a release that kept every command)
//! is trimmed by a few calls a round, over a few rounds.

use std::sync::LazyLock;
use std::time::Instant;

use redis::aio::ConnectionLike;
use redis::Script;

/// Entries one call removes at most.
const LIMIT: i64 = 10_000;
/// Calls one round makes at most for a stream: 100,000 entries a round,
/// a round being a third of the lease's TTL, far above what a shard
/// applies meanwhile.
const CALLS_PER_ROUND: usize = 10;

/// KEYS: the stream. ARGV: the consumer group, the limit. Returns the
/// entries removed. Fails (`NOGROUP`) before a worker made the group.
static TRIM_APPLIED: LazyLock<Script> = LazyLock::new(|| Script::new(TRIM_SCRIPT));

const TRIM_SCRIPT: &str = r#"
local floor = redis.call('XPENDING', KEYS[1], ARGV[1])[2]
if not floor then
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local fields = {}
    for i = 1, #group, 2 do
      fields[group[i]] = group[i + 1]
    end
    if fields['name'] == ARGV[1] then
      floor = fields['last-delivered-id']
    end
  end
end
if not floor then
  return 0
end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', floor, 'LIMIT', ARGV[2])
"#;

/// Removes the entries of `stream` that `group` has been handed and has
/// acknowledged (all but those in the node that holds the oldest still
/// needed: see the module's note on `~`), a call at a time while calls
/// remove nearly their limit and `until` has not passed. Returns how many
/// went.
pub async fn trim_applied(
    redis: &mut impl ConnectionLike,
    stream: &str,
    group: &str,
    until: Instant,
) -> redis::RedisResult<i64> {
    let mut trimmed = 0;
    for _ in 0..CALLS_PER_ROUND {
        let removed: i64 = TRIM_APPLIED.key(stream).arg(group).arg(LIMIT).invoke_async(redis).await?;
        trimmed += removed;
        // Short of the limit by more than a node's worth: nothing more to trim.
        if removed < LIMIT / 2 || Instant::now() >= until {
            break;
        }
    }
    Ok(trimmed)
}
