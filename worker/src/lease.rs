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

/// The check before a read of a shard (`crate::shard_read`): 1 if this
/// worker holds the shard's lease; if not, 0, after writing the read's
/// fence key, which the read's transaction WATCHes, so that the read does
/// not run. KEYS: lease, fence. ARGV: worker.
pub const CHECK_BEFORE_READ: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 1
end
redis.call('SET', KEYS[2], 1, 'PX', 60000)
return 0
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
