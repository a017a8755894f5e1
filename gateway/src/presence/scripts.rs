//! The Lua scripts behind cluster presence (`cluster.rs`). Each runs
//! atomically in Redis, so a user's count, total and transitions change
//! together, and exactly one node sees each crossing of zero.

/// Defines `total(key)`: a user's total over every node, the sum of the
/// counts under `key`. Totals are sums because a node's count may be -1
/// until a retried connect arrives.
macro_rules! lua_total {
    () => {
        "local function total(key)
  local sum = 0
  for _, v in ipairs(redis.call('HVALS', key)) do sum = sum + tonumber(v) end
  return sum
end
"
    };
}

/// Defines `next_seq(key)`: the number of a transition about to be
/// announced, above every one taken before it cluster-wide (scripts run one
/// at a time). Redis's clock in microseconds, or one more than the last
/// number when that is ahead, so that numbers keep rising after a Redis
/// restart that lost the key; gateways remember numbers for minutes
/// (`presence/order.rs`). `string.format`, because Lua would write the
/// number in exponent notation, losing its last digits.
macro_rules! lua_next_seq {
    () => {
        "local function next_seq(key)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
  local seq = redis.call('INCR', key)
  if seq < now then
    redis.call('SET', key, string.format('%d', now))
    seq = now
  end
  return seq
end
"
    };
}

/// Defines `record(last, seq, online, at)`: records a transition numbered
/// `seq`, made at `at` (ms, the gateway's clock), as the last of the user
/// whose last-transition record is `last`, and returns the time recorded.
/// And `departed(last, at)`: records that one of the user's connections
/// closed at `at` without taking them offline.
///
/// The record tells a gateway holding a transition not yet announced
/// whether its opposite came straight after it, so that the two may
/// cancel (`presence/pending.rs`), and tells a node writing its counts
/// back whether co-members last heard the user go offline. Its time is
/// the `lastSeen` of the user's `offline`, and what `GET /v1/presence` on
/// any gateway says an offline user was last seen at before the gateway
/// announcing them has stored it: the latest departure of any of their
/// connections. An `offline` decided by a retried change or a recount
/// carries the time of an older change, while another connection of the
/// user's may have closed later elsewhere; so a departure's time never
/// moves it back, and every departure counts, not only the last. It
/// lasts an hour past the user's last change, longer than any stall a
/// gateway's clients would sit through, and bounds Redis's memory to the
/// users who came or went within the hour (136 bytes each, by `MEMORY
/// USAGE`).
macro_rules! lua_record {
    () => {
        "local function latest(last, at)
  local previous = redis.call('HGET', last, 't')
  if previous and tonumber(previous) > tonumber(at) then return previous end
  return at
end
local function record(last, seq, online, at)
  if not online then at = latest(last, at) end
  redis.call('HSET', last, 's', string.format('%d', seq), 'o', online and 1 or 0, 't', at)
  redis.call('EXPIRE', last, 3600)
  return tonumber(at)
end
local function departed(last, at)
  redis.call('HSET', last, 't', latest(last, at))
  redis.call('EXPIRE', last, 3600)
end
"
    };
}

/// Defines `decide(last, seq_key, online, at)` (with `record`):
/// numbers a transition of the user whose last-transition record is
/// `last`, about to be announced, records it, and returns its number, the
/// number of the user's transition before it (0 when unknown) and the
/// time recorded (for an `offline`, the user's latest departure).
macro_rules! lua_decide {
    () => {
        "local function decide(last, seq_key, online, at)
  local before = tonumber(redis.call('HGET', last, 's')) or 0
  local seq = next_seq(seq_key)
  local recorded = record(last, seq, online, at)
  return seq, before, recorded
end
"
    };
}

/// KEYS: the user's counts, the node's user set, the node's change records,
/// the user's last-transition record, the presence sequence, the node set.
/// ARGV: node, user, change id, +1 or -1, when the change happened (ms).
/// Returns {the user's total right after this change, the total now, the
/// number to announce it under, the number of the user's transition before
/// it, the time to announce it with, 1 if nothing was counted as the node
/// is forgotten, else 0}. The totals are the same for a change
/// made now and may differ for one retried after others. The number is 0
/// when there is nothing to announce: the change moved no total across
/// zero, or, retried, the user has changed state since (that later change
/// was announced instead). A departure that takes the user nowhere still
/// moves their record's time (`departed`).
///
/// A node missing from the node set (reaped after a stall, or Redis
/// restarted empty) has no counts here until it writes them back: a
/// departure counted now would take the node's count to -1 and the
/// user's total to 0 while the user is still online on another node, a
/// false `offline`. Nothing is counted; the count written back holds the
/// change, and the node announces the user's state afterwards if it is
/// not what co-members last heard (`RECOUNT`).
pub const COUNT: &str = concat!(
    lua_total!(),
    lua_next_seq!(),
    lua_record!(),
    lua_decide!(),
    r#"
local connect = tonumber(ARGV[4]) == 1
if redis.call('SISMEMBER', KEYS[6], ARGV[1]) == 0 then return {0, 0, 0, 0, 0, 1} end
local done = redis.call('HGET', KEYS[3], ARGV[3])
if done then
  local after, now = tonumber(done), total(KEYS[1])
  if after == (connect and 1 or 0) and (now > 0) == connect then
    local seq, before, at = decide(KEYS[4], KEYS[5], connect, ARGV[5])
    return {after, now, seq, before, at, 0}
  end
  return {after, now, 0, 0, 0, 0}
end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], tonumber(ARGV[4]))
if n == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[2])
else
  redis.call('SADD', KEYS[2], ARGV[2])
end
local after = total(KEYS[1])
redis.call('HSET', KEYS[3], ARGV[3], after)
if (after == 1 and connect) or (after == 0 and not connect) then
  local seq, before, at = decide(KEYS[4], KEYS[5], connect, ARGV[5])
  return {after, after, seq, before, at, 0}
end
if not connect then departed(KEYS[4], ARGV[5]) end
return {after, after, 0, 0, 0, 0}
"#
);

/// KEYS: the node's user set, the node set, the node's lease, the node's
/// change records, the presence sequence.
/// ARGV: node, key prefix, what the reaping is for, and when it happens
/// (ms: the users it leaves offline were last seen then). What for:
/// - `dead`: another node's, only if its lease lapsed;
/// - `previous`: this node's previous run's entries, at start;
/// - `rewrite`: this node's own entries, cleared before writing its counts
///   back; nothing is announced, as the counts written back are the truth.
///
/// Returns {the number to announce them under, the users left with no
/// connection anywhere}, both empty for `rewrite`.
pub const REAP: &str = concat!(
    lua_total!(),
    lua_next_seq!(),
    lua_record!(),
    r#"
if ARGV[3] == 'dead' and redis.call('EXISTS', KEYS[3]) == 1 then return {0, {}} end
local gone = {}
for _, user in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2] .. 'online:' .. user
  redis.call('HDEL', key, ARGV[1])
  if total(key) <= 0 then table.insert(gone, user) end
end
redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[4])
redis.call('SREM', KEYS[2], ARGV[1])
if #gone == 0 or ARGV[3] == 'rewrite' then return {0, {}} end
local seq = next_seq(KEYS[5])
for _, user in ipairs(gone) do
  record(ARGV[2] .. 'presencelast:' .. user, seq, false, ARGV[4])
end
return {seq, gone}
"#
);

/// Re-asserts this node's count for one user after Redis lost it (a
/// restart, or a reaping after a stall). KEYS: the user's counts, the
/// node's user set, the user's last-transition record, the presence
/// sequence.
/// ARGV: node, user, count, now (ms). Returns {the number to announce the user online
/// again under, the number of the transition before it} if it must be:
/// the count brings the user back online and co-members last heard them go
/// offline (this node's reaping announced it, or another node's recount
/// while this one had yet to write back); {0, 0} otherwise.
pub const RESTORE: &str = concat!(
    lua_total!(),
    lua_next_seq!(),
    lua_record!(),
    lua_decide!(),
    r#"
local before = total(KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
if before <= 0 and total(KEYS[1]) > 0 and redis.call('HGET', KEYS[3], 'o') == '0' then
  local seq, last = decide(KEYS[3], KEYS[4], true, ARGV[4])
  return {seq, last}
end
return {0, 0}
"#
);

/// Announces a user's state now from the counts. Whatever co-members last
/// heard, for a user whose transition may have gone unannounced (its
/// change's answer was lost along with Redis's memory, or its announcement
/// could not be published); only if it is not the state last recorded (or
/// none is), for a change a forgotten node did not count (`COUNT`), which
/// decided nothing. KEYS: the user's counts, the user's last-transition
/// record, the presence sequence. ARGV: when the user's last change that
/// may have gone unannounced happened (ms); 1 for "only if not the state
/// last recorded", else 0.
/// Returns {1 if online, else 0, the number to announce it under (0:
/// nothing to announce), the number of the transition before it, the time
/// to announce it with}.
pub const RECOUNT: &str = concat!(
    lua_total!(),
    lua_next_seq!(),
    lua_record!(),
    lua_decide!(),
    r#"
local online = total(KEYS[1]) > 0
if ARGV[2] == '1' and redis.call('HGET', KEYS[2], 'o') == (online and '1' or '0') then
  return {online and 1 or 0, 0, 0, 0}
end
local seq, before, at = decide(KEYS[2], KEYS[3], online, ARGV[1])
return {online and 1 or 0, seq, before, at}
"#
);
