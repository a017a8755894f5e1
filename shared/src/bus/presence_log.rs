//! The last minute of presence announcements, kept in a Redis stream
//! beside their PUBLISH.
//!
//! Pub/sub keeps nothing: an announcement published while a gateway's
//! event subscription was down (its connection dropped, Redis cut off a
//! subscriber that fell behind, a failover) never reaches that gateway,
//! and its clients would go on showing a co-member online who left, or
//! offline who came back, until that user's next change. Chat events are
//! recovered from the store after a reconnect and memberships read again;
//! presence is in no store. So a gateway that subscribes again reads the
//! announcements appended since its subscription was last heard from and
//! applies them as if they had just arrived. Those it had applied already
//! are dropped by their numbers, which a gateway remembers for at least a
//! minute (`gateway::latest`); so only the last [`REREAD_AT_MOST_MS`] are
//! read, and an outage longer than that loses what is older.
//!
//! Reading once the subscription is confirmed misses nothing: an
//! announcement appended before the read is in it, and one appended after
//! is published after the subscription was live (each PUBLISH follows its
//! append on one connection), so it arrives.

use redis::Value;

use super::keys::Keys;
use super::redis_connection::RedisConnection;
use super::stream_entries::range_entries_of;
use super::{Event, EventSink};
use crate::clock::now_ms;
use crate::model::Millis;

/// Entries older than this are trimmed as new ones are appended.
const KEEP_MS: Millis = 60_000;
/// How far back a gateway reads: inside the minute it remembers the
/// numbers of the announcements it applied for, with room for the clocks
/// of Redis and the gateway to differ.
pub const REREAD_AT_MOST_MS: Millis = 50_000;
/// Read from this long before the subscription was last heard from: the
/// stream's ids are Redis's clock, the time last heard the gateway's.
const CLOCK_MARGIN_MS: Millis = 5_000;
/// Entries per XRANGE.
const PAGE: usize = 1_000;
/// The field an entry carries its announcement in.
const FIELD: &str = "e";

/// Appends `payload`, a presence announcement, to the log in `pipeline`,
/// trimming what is older than [`KEEP_MS`] (approximately, as Redis trims
/// whole nodes); the reply is ignored.
pub fn append(pipeline: &mut redis::Pipeline, keys: &Keys, payload: &str) {
    pipeline
        .cmd("XADD")
        .arg(keys.presence_log())
        .arg("MINID")
        .arg("~")
        .arg(now_ms() - KEEP_MS)
        .arg("*")
        .arg(FIELD)
        .arg(payload)
        .ignore();
}

/// Where a re-read starts, by the stream's clock, for a subscription last
/// heard from at `last_heard` and confirmed again at `now`; and whether
/// announcements older than that may have been missed (the outage was
/// longer than the re-read reaches).
pub fn reread_from(last_heard: Millis, now: Millis) -> (Millis, bool) {
    let wanted = last_heard - CLOCK_MARGIN_MS;
    let reach = now - REREAD_AT_MOST_MS;
    (wanted.max(reach), wanted < reach)
}

/// Reads the announcements appended since `from` (ms by Redis's clock)
/// and hands them to `sink` page by page; returns how many were read.
pub async fn reread(
    connection: &RedisConnection,
    keys: &Keys,
    from: Millis,
    sink: &dyn EventSink,
) -> Result<usize, redis::RedisError> {
    let key = keys.presence_log();
    let mut start = from.max(0).to_string();
    let mut read = 0;
    loop {
        let mut connection = connection.clone();
        let page: Value = redis::cmd("XRANGE")
            .arg(&key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut connection)
            .await?;
        let entries = range_entries_of(page, FIELD);
        let Some(last) = entries.last() else { return Ok(read) };
        let full = entries.len() == PAGE;
        start = format!("({}", last.id);
        read += entries.len();
        let events = entries
            .iter()
            .filter_map(|entry| match serde_json::from_str::<Event>(entry.payload.as_deref()?) {
                Ok(event) => Some(event),
                Err(e) => {
                    tracing::warn!(error = %e, id = entry.id, "undecodable presence announcement skipped");
                    None
                }
            })
            .collect();
        sink.deliver_all(events);
        if !full {
            return Ok(read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_re_read_starts_before_the_subscription_was_last_heard_from_within_the_minute() {
        let now = 1_000_000;
        assert_eq!(reread_from(now - 3_000, now), (now - 3_000 - CLOCK_MARGIN_MS, false));
        let long_ago = now - 3_600_000;
        assert_eq!(reread_from(long_ago, now), (now - REREAD_AT_MOST_MS, true));
    }
}
