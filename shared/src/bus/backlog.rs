//! How far behind the workers are on each shard, as a gateway reads it:
//! the commands appended to the shard's stream and not yet acknowledged
//! (`XINFO GROUPS`: `lag`, those not handed out yet, plus `pending`).
//!
//! A gateway refuses a command to a shard whose backlog reached its limit.
//! Without that, commands went on being appended until the stream's cap
//! (`XADD MAXLEN ~`) trimmed the oldest of them: commands Redis had
//! accepted, never applied, and never answered. A refusal tells the
//! client that its command was not applied. The limit sits below the cap,
//! with room for what the gateways append between two reads (a second's
//! worth).
//!
//! The backlog is read from the group rather than from the stream's
//! length alone, which also counts applied commands the workers have yet
//! to trim (`worker::stream_trim`): workers that do not trim (an older
//! release during a rollout) would otherwise have commands refused
//! without a backlog. The length still bounds it, since every command not
//! yet applied is in the stream: Redis before 8.0 can overstate `lag` for
//! good once the cap has trimmed entries the group never read, which
//! would keep a shard refused with nothing waiting. Before a worker
//! created the group, and when Redis cannot tell the `lag` (after an
//! `XDEL`, which nothing here sends), the backlog is taken to be the
//! length.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use tokio_util::sync::CancellationToken;

use super::group_info::workers_group;
use super::keys::Keys;
use super::redis_connection::RedisConnection;
use super::BusError;

/// How often backlogs are read.
pub const READ_EVERY: Duration = Duration::from_secs(1);
/// Shards read at most each time: two commands each, every second, from
/// every gateway. With more shards (up to 4,096) they are read in turn,
/// each less often, and each takes as much less of the traffic.
const SHARDS_PER_READ: u32 = 256;

pub struct Backlogs {
    limit: u64,
    full: Box<[AtomicBool]>,
    /// The first shard the next read covers.
    next: AtomicU32,
}

impl Backlogs {
    pub fn new(shards: u32, limit: u64) -> Arc<Self> {
        let full = (0..shards).map(|_| AtomicBool::new(false)).collect();
        Arc::new(Backlogs { limit, full, next: AtomicU32::new(0) })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether `shard`'s backlog had reached the limit when last read.
    pub fn is_full(&self, shard: u32) -> bool {
        self.full.get(shard as usize).is_some_and(|full| full.load(Ordering::Relaxed))
    }

    /// Reads the shards' backlogs, one round trip a second, until `stop`. A
    /// read that fails leaves no shard refused: refusing on old news could
    /// go on long after the workers caught up, and while Redis does not
    /// answer the gateways, appends fail anyway.
    pub async fn watch(self: Arc<Self>, redis: RedisConnection, keys: Keys, stop: CancellationToken) {
        crate::periodic::every(READ_EVERY, stop, || {
            let (backlogs, mut redis, keys) = (self.clone(), redis.clone(), keys.clone());
            async move {
                if let Err(e) = backlogs.read(&mut redis, &keys).await {
                    metrics::counter!("chat_redis_errors_total", "op" => "backlog").increment(1);
                    tracing::warn!(error = %e, "could not read the command streams' backlogs");
                    backlogs.full.iter().for_each(|full| full.store(false, Ordering::Relaxed));
                }
                ControlFlow::Continue(())
            }
        })
        .await
    }

    /// Reads the backlogs of the next [`SHARDS_PER_READ`] shards (all of
    /// them, with as many or fewer) and remembers which reached the limit.
    pub async fn read(&self, redis: &mut RedisConnection, keys: &Keys) -> Result<(), BusError> {
        let shards = self.full.len() as u32;
        let first = self.next.load(Ordering::Relaxed) % shards.max(1);
        let count = shards.min(SHARDS_PER_READ);
        self.next.store((first + count) % shards.max(1), Ordering::Relaxed);
        let covered: Vec<u32> = (0..count).map(|n| (first + n) % shards).collect();
        let mut request = redis::pipe();
        request.ignore_errors();
        for &shard in &covered {
            let stream = keys.command_stream(shard);
            request.cmd("XLEN").arg(&stream).cmd("XINFO").arg("GROUPS").arg(&stream);
        }
        let replies: Vec<Value> = request.query_async(redis).await.map_err(|e| BusError::Unavailable(e.to_string()))?;
        for (&shard, pair) in covered.iter().zip(replies.chunks(2)) {
            let shard = shard as usize;
            let [length, groups] = pair else { continue };
            let groups = match groups {
                // A stream not made yet.
                Value::ServerError(e) if e.details().is_some_and(|d| d.contains("no such key")) => None,
                // Any other refusal: this shard is left as last read.
                Value::ServerError(_) => continue,
                groups => Some(groups),
            };
            let Some(backlog) = backlog(length, groups) else { continue };
            self.full[shard].store(backlog >= self.limit, Ordering::Relaxed);
            metrics::gauge!("chat_command_backlog", "shard" => shard.to_string()).set(backlog as f64);
        }
        Ok(())
    }
}

/// A shard's backlog from its stream's `XLEN` and `XINFO GROUPS` replies
/// (`None` for the stream's groups: no stream); `None` when Redis answered
/// neither.
fn backlog(length: &Value, groups: Option<&Value>) -> Option<u64> {
    let length = match length {
        Value::Int(n) => (*n).max(0) as u64,
        _ => return None,
    };
    let Some(group) = groups.and_then(workers_group) else { return Some(length) };
    let Some(lag) = group.count("lag") else { return Some(length) };
    Some((lag + group.count("pending").unwrap_or(0)).min(length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::keys::GROUP;

    fn group(name: &str, lag: Value, pending: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(b"name".to_vec()),
            Value::BulkString(name.as_bytes().to_vec()),
            Value::BulkString(b"pending".to_vec()),
            Value::Int(pending),
            Value::BulkString(b"lag".to_vec()),
            lag,
        ])
    }

    #[test]
    fn the_backlog_is_what_the_group_has_not_acknowledged() {
        let groups = Value::Array(vec![group("other", Value::Int(99), 99), group(GROUP, Value::Int(7), 3)]);
        assert_eq!(backlog(&Value::Int(500), Some(&groups)), Some(10), "lag and pending, not the length");
        assert_eq!(backlog(&Value::Int(6), Some(&groups)), Some(6), "at most the length");
        let unknown_lag = Value::Array(vec![group(GROUP, Value::Nil, 3)]);
        assert_eq!(backlog(&Value::Int(500), Some(&unknown_lag)), Some(500), "lag unknown: the length");
        assert_eq!(backlog(&Value::Int(4), Some(&Value::Array(vec![]))), Some(4), "no group yet: every entry");
        assert_eq!(backlog(&Value::Int(0), None), Some(0), "no stream yet");
        assert_eq!(backlog(&Value::Nil, Some(&groups)), None);
    }
}
