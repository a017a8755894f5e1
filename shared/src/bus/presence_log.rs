//! The latest presence announcements, kept in a Redis stream beside their
//! PUBLISH.
//!
//! Pub/sub keeps nothing: an announcement published while a gateway's
//! event subscription was down (its connection dropped, Redis cut off a
//! subscriber that fell behind, a failover) never reaches that gateway,
//! and its clients would go on showing a co-member online who left, or
//! offline who came back, until that user's next change. Chat events are
//! recovered from the store after a reconnect and memberships read again;
//! presence is in no store. So a gateway that subscribes reads the last
//! [`REREAD_MS`] of announcements, by Redis's clock, and applies them as
//! if they had just arrived. Those it had applied already are dropped by
//! their numbers, which a gateway remembers for at least a minute
//! (`gateway::latest`), so the window stays inside that. Always the whole
//! window rather than from when the subscription was last heard from: a
//! subscriber cut off for falling behind had not yet received what was
//! published long before it noticed, and the gateway's clock is not
//! Redis's.
//!
//! Reading once the subscription is confirmed misses nothing younger than
//! the window: an announcement appended before the read is in it, and one
//! appended after is published after the subscription was live (each
//! PUBLISH follows its append on one connection), so it arrives.

use std::sync::Arc;

use redis::Value;

use super::keys::Keys;
use super::redis_connection::RedisConnection;
use super::stream_entries::range_entries_of;
use super::{Event, EventSink};
use crate::model::Millis;

/// How far back a gateway reads, by Redis's clock: inside the minute it
/// remembers the numbers of the announcements it applied.
pub const REREAD_MS: Millis = 50_000;
/// Entries kept (approximately: Redis trims whole nodes, never below
/// this). The window's worth at up to 2,000 announcements a second, and a
/// bound on Redis's memory that no clock can move.
pub const MAX_LEN: usize = 100_000;
/// Entries per XRANGE.
const PAGE: usize = 1_000;
/// The field an entry carries its announcement in.
const FIELD: &str = "e";
/// The most chats an entry names. The log is capped in entries, so it is
/// the size of each that bounds Redis's memory: a user in 10,000 chats
/// made entries of some 50 KB, and one flapping connection could fill the
/// log with them (5 GB). An announcement of a user in more chats is logged
/// without them, and a gateway reading it again looks the user's chats up
/// (`EventSink::presence_reread`).
pub const CHATS_LOGGED_MAX: usize = 32;

/// Appends `announcement`, published as `payload`, to the log in
/// `pipeline`: as published, or without its chats if they are many.
pub fn append(pipeline: &mut redis::Pipeline, keys: &Keys, announcement: &Event, payload: &str) {
    let chatless = match announcement {
        Event::Presence { user, online, last_seen, chats, seq } if chats.len() > CHATS_LOGGED_MAX => {
            let without = Event::Presence {
                user: user.clone(),
                online: *online,
                last_seen: *last_seen,
                chats: Arc::from([]),
                seq: *seq,
            };
            serde_json::to_string(&without).ok()
        }
        _ => None,
    };
    let entry = chatless.as_deref().unwrap_or(payload);
    pipeline.cmd("XADD").arg(keys.presence_log()).arg("MAXLEN").arg("~").arg(MAX_LEN).arg("*").arg(FIELD).arg(entry);
}

/// A re-read in progress, a page at a time: the listener reads one page
/// between live events, so that a full log (a hundred pages) does not hold
/// back the events, replies and subscriptions it carries meanwhile.
#[derive(Debug, Default)]
pub struct Reread {
    /// Where the next page starts; none before the window is known.
    start: Option<String>,
    /// Announcements read and handed on so far.
    pub read: usize,
    /// The log no longer reaches back the whole window: Redis trimmed it
    /// (more than [`MAX_LEN`] announcements), and its oldest entry left is
    /// inside the window.
    pub cut_short: bool,
}

impl Reread {
    /// Takes the next step: finds the window (by Redis's clock), or reads
    /// the next page of it and hands its announcements to `sink`, in the
    /// order they were appended. Whether the re-read is done. A step that
    /// failed can be taken again.
    pub async fn step(
        &mut self,
        connection: &RedisConnection,
        keys: &Keys,
        sink: &dyn EventSink,
    ) -> Result<bool, redis::RedisError> {
        let key = keys.presence_log();
        let mut connection = connection.clone();
        let Some(start) = &self.start else {
            // XINFO fails on a log not made yet, which is an empty one.
            let (time, oldest, info): (Value, Value, Value) = redis::pipe()
                .ignore_errors()
                .cmd("TIME")
                .cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .cmd("XINFO")
                .arg("STREAM")
                .arg(&key)
                .query_async(&mut connection)
                .await?;
            let (seconds, micros): (i64, i64) = redis::from_redis_value(time.extract_error()?)?;
            let from = seconds * 1000 + micros / 1000 - REREAD_MS;
            let oldest = range_entries_of(oldest.extract_error()?, FIELD).first().and_then(|entry| id_ms(&entry.id));
            self.cut_short = trimmed(&info) && oldest.is_some_and(|oldest| oldest > from);
            self.start = Some(from.max(0).to_string());
            return Ok(false);
        };
        let page: Value = redis::cmd("XRANGE")
            .arg(&key)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut connection)
            .await?;
        let full = matches!(&page, Value::Array(entries) if entries.len() == PAGE);
        let entries = range_entries_of(page, FIELD);
        let Some(last) = entries.last() else { return Ok(true) };
        self.start = Some(format!("({}", last.id));
        self.read += entries.len();
        sink.presence_reread(entries.iter().filter_map(|entry| decode(&entry.id, entry.payload.as_deref())).collect());
        Ok(!full)
    }
}

/// Whether Redis trimmed entries off the log whose `XINFO STREAM` reply is
/// `info`: it has fewer than were ever added to it. (Trimming leaves
/// `max-deleted-entry-id` alone; only XDEL moves it.)
fn trimmed(info: &Value) -> bool {
    let field = |name: &str| -> Option<i64> {
        let pairs: Vec<(&Value, &Value)> = match info {
            Value::Array(items) => items.chunks_exact(2).map(|pair| (&pair[0], &pair[1])).collect(),
            Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
            _ => return None,
        };
        let (_, value) =
            pairs.into_iter().find(|(key, _)| redis::from_redis_value_ref::<String>(key).is_ok_and(|k| k == name))?;
        redis::from_redis_value_ref(value).ok()
    };
    matches!((field("entries-added"), field("length")), (Some(added), Some(length)) if added > length)
}

/// The milliseconds part of a stream id (`<ms>-<seq>`).
fn id_ms(id: &str) -> Option<Millis> {
    id.split('-').next()?.parse().ok()
}

fn decode(id: &str, payload: Option<&str>) -> Option<Event> {
    let Some(payload) = payload else {
        tracing::warn!(id, "presence log entry without an announcement skipped");
        return None;
    };
    match serde_json::from_str(payload) {
        Ok(event) => Some(event),
        Err(e) => {
            tracing::warn!(error = %e, id, "undecodable presence announcement skipped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_s_milliseconds_are_its_first_part() {
        assert_eq!(id_ms("1796570054313-0"), Some(1_796_570_054_313));
        assert_eq!(id_ms("1796570054313-17"), Some(1_796_570_054_313));
        assert_eq!(id_ms("x-0"), None);
    }
}
