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
//! nodes of the stream, which costs Redis least.

use redis::aio::ConnectionLike;

/// KEYS: the stream. ARGV: the consumer group. Returns the entries removed
/// (0 when the group does not exist yet: `XPENDING` fails, and so does the
/// script, which the caller logs).
const TRIM_APPLIED: &str = r#"
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
return redis.call('XTRIM', KEYS[1], 'MINID', '~', floor)
"#;

/// Removes the entries of `stream` that `group` has been handed and has
/// acknowledged (most of them: see the module's note on `~`). Returns how
/// many went.
pub async fn trim_applied(redis: &mut impl ConnectionLike, stream: &str, group: &str) -> redis::RedisResult<i64> {
    redis::Script::new(TRIM_APPLIED).key(stream).arg(group).invoke_async(redis).await
}
