//! Entries handed out from a shard's stream that its consumer does not
//! hold.
//!
//! The consumer acknowledges each batch in the request that reads the next,
//! and reads its backlog (entries handed out and not acknowledged) only when
//! it starts and after a request failed. An entry handed out any other way
//! stays pending where nothing reads it: one that a stalled predecessor's
//! read took through the lease fence's gap (`crate::shard_read`), or one
//! taken by hand through the workers' group. It waited, unapplied, until
//! the shard next changed owner, and held the trim back meanwhile
//! (`crate::stream_trim`), the stream growing toward its cap.
//!
//! So the owner's lease round notes the stream's oldest pending entry. The
//! same entry still the oldest a round later (a third of the lease's TTL)
//! is astray, or in a batch that has been retrying the store all that
//! while: either way, the round gives the shard's consumer every entry
//! pending that long under any name (a read by hand names its own
//! consumer, whose entries the shard's backlog read would not return), and
//! the consumer reads its backlog once more after the batch it holds. When
//! nothing was astray, that read finds nothing.
//!
//! An entry recovered so is applied after commands its sender sent later
//! to the same chat, which went on meanwhile: late, and out of the order
//! sent, as it would have been at the next change of owner. Without a
//! foreign script past Redis's busy limit, or a hand in the workers'
//! group, there is none.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{RedisResult, Value};
use shared::bus::keys::GROUP;

/// Entries one claim moves at most; more move a round later.
const CLAIM_COUNT: usize = 1_000;

/// The oldest pending entry of one shard's stream, from round to round.
#[derive(Default)]
pub struct StrayWatch {
    oldest: Option<String>,
    /// The last entry logged as astray: a batch retrying through a database
    /// outage stays the oldest round after round, and is worth one line.
    logged: Option<String>,
}

impl StrayWatch {
    /// Notes this round's oldest pending entry; true when it was the oldest
    /// a round ago too.
    pub fn still_pending(&mut self, oldest: Option<String>) -> bool {
        let astray = oldest.is_some() && oldest == self.oldest;
        self.oldest = oldest;
        astray
    }

    /// Whether the entry [`StrayWatch::still_pending`] found is yet to be
    /// logged; true once per entry.
    pub fn first_report(&mut self) -> bool {
        let first = self.logged != self.oldest;
        self.logged.clone_from(&self.oldest);
        first
    }
}

/// Gives `consumer` (the shard's) every entry of `stream` pending for
/// `min_idle` or longer under any consumer of the workers' group, and drops
/// from the pending list those the stream no longer holds. `JUSTID`: a
/// claim is not a delivery, so the entries' delivery counts stay as they
/// were.
pub async fn claim_for(
    redis: &mut impl ConnectionLike,
    stream: &str,
    consumer: &str,
    min_idle: Duration,
) -> RedisResult<()> {
    let _: Value = redis::cmd("XAUTOCLAIM")
        .arg(stream)
        .arg(GROUP)
        .arg(consumer)
        .arg(min_idle.as_millis() as u64)
        .arg("0-0")
        .arg("COUNT")
        .arg(CLAIM_COUNT)
        .arg("JUSTID")
        .query_async(redis)
        .await?;
    Ok(())
}

/// The oldest pending entry's id from an `XPENDING <stream> <group>`
/// summary reply (`[count, oldest, newest, consumers]`); `None` when
/// nothing is pending, or the reply is not such a summary.
pub fn oldest_pending(summary: &Value) -> Option<String> {
    let Value::Array(fields) = summary else { return None };
    match fields.get(1)? {
        Value::BulkString(id) => String::from_utf8(id.clone()).ok(),
        Value::SimpleString(id) => Some(id.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_oldest_two_rounds_running_is_astray() {
        let mut watch = StrayWatch::default();
        assert!(!watch.still_pending(Some("5-0".into())));
        assert!(watch.still_pending(Some("5-0".into())));
        // Still there: asked for again, in case the last read failed.
        assert!(watch.still_pending(Some("5-0".into())));
    }

    #[test]
    fn an_entry_astray_round_after_round_is_reported_once() {
        let mut watch = StrayWatch::default();
        watch.still_pending(Some("5-0".into()));
        assert!(watch.still_pending(Some("5-0".into())) && watch.first_report());
        assert!(watch.still_pending(Some("5-0".into())) && !watch.first_report());
        watch.still_pending(Some("8-0".into()));
        assert!(watch.still_pending(Some("8-0".into())) && watch.first_report(), "another entry is news");
    }

    #[test]
    fn batches_that_come_and_go_are_not_astray() {
        let mut watch = StrayWatch::default();
        assert!(!watch.still_pending(Some("5-0".into())));
        assert!(!watch.still_pending(Some("9-0".into())));
        assert!(!watch.still_pending(None));
        assert!(!watch.still_pending(None));
        // Gone, then pending again: a round's gap starts the count anew.
        assert!(!watch.still_pending(Some("9-0".into())));
    }

    #[test]
    fn the_oldest_id_is_the_summarys_second_field() {
        let summary = Value::Array(vec![
            Value::Int(2),
            Value::BulkString(b"5-0".to_vec()),
            Value::BulkString(b"7-0".to_vec()),
            Value::Array(vec![]),
        ]);
        assert_eq!(oldest_pending(&summary).as_deref(), Some("5-0"));
        let none_pending = Value::Array(vec![Value::Int(0), Value::Nil, Value::Nil, Value::Nil]);
        assert_eq!(oldest_pending(&none_pending), None);
        assert_eq!(oldest_pending(&Value::Nil), None);
    }
}
