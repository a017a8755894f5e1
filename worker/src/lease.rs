//! Shard ownership. Each command stream (shard) is applied by one worker at
//! a time, which is what keeps a chat's commands in order across workers.
//! A worker owns a shard while it holds the shard's lease key in Redis (a
//! value with a TTL that it renews). Workers share the shards evenly: each
//! aims for `ceil(shards / live workers)`, releases extras and takes free
//! ones, so ownership moves when a worker joins, leaves or dies (its leases
//! expire after the TTL).

use std::collections::BTreeSet;

/// How many shards each of `workers` live workers should own.
pub fn fair_share(shards: u32, workers: usize) -> usize {
    let workers = workers.max(1);
    (shards as usize).div_ceil(workers)
}

/// The order in which a worker tries free shards: starting at a point
/// derived from its id, so workers starting together do not all race for
/// shard 0.
pub fn preference(worker: &str, shards: u32) -> Vec<u32> {
    let start = worker.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32)) % shards.max(1);
    (0..shards).map(|i| (start + i) % shards).collect()
}

/// Which owned shards to give up to get down to `target`: the highest
/// numbered first, which is arbitrary but stable.
pub fn surplus(owned: &BTreeSet<u32>, target: usize) -> Vec<u32> {
    owned.iter().rev().take(owned.len().saturating_sub(target)).copied().collect()
}

/// Renews a lease only if this worker still holds it.
pub const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// Releases a lease only if this worker holds it.
pub const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Reads the shard's stream for its consumer group, but only while this
/// worker holds the shard's lease: the check and the read are one step in
/// Redis. A worker stalled past its lease (frozen, starved of CPU) could
/// otherwise take new entries after its successor took over, and apply
/// them after entries the successor read later: one chat's commands out
/// of the order sent. Entries read before the takeover are no such risk:
/// they are pending, the successor reads them first, and whichever applies
/// a command second finds it recorded.
///
/// KEYS: lease, stream. ARGV: worker, group, consumer, count, from (`0`
/// for the pending entries, `>` for new ones). Returns the XREADGROUP
/// reply; when nothing is new, the group's last delivered id, after which
/// to wait; `LEASELOST` when another worker (or none) holds the lease.
pub const READ_IF_OWNED: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LEASELOST this worker no longer holds the shard')
end
local read = redis.pcall('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[2], ARGV[5])
if read then
  return read
end
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do
  local fields = {}
  for i = 1, #group, 2 do
    fields[group[i]] = group[i + 1]
  end
  if fields['name'] == ARGV[2] then
    return fields['last-delivered-id']
  end
end
return '0-0'
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_shard() {
        assert_eq!(fair_share(16, 1), 16);
        assert_eq!(fair_share(16, 2), 8);
        assert_eq!(fair_share(16, 3), 6);
        assert_eq!(fair_share(16, 0), 16);
        for workers in 1..20 {
            assert!(fair_share(16, workers) * workers >= 16);
        }
    }

    #[test]
    fn preference_is_a_permutation() {
        let mut order = preference("worker-a", 16);
        order.sort();
        assert_eq!(order, (0..16).collect::<Vec<_>>());
    }

    #[test]
    fn surplus_gives_up_the_excess() {
        let owned: BTreeSet<u32> = [1, 4, 7, 9].into();
        assert_eq!(surplus(&owned, 2), vec![9, 7]);
        assert!(surplus(&owned, 4).is_empty());
    }
}
