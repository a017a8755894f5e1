//! The event log's retention window (PROTOCOL.md 4). A chat keeps at least
//! the events of the last `max_age_ms` and at least its newest
//! `max_events_per_chat`: an event is pruned only once it is outside both.
//! The chat remembers the first id it still keeps, so `sync` answers
//! `sync_gap` exactly when something the client lacks is gone.

use super::{Store, StoreError};
use crate::model::{ChatId, EventId, Millis};

/// How long applied command ids, and the idempotency keys chats were
/// created under, are remembered for deduplication.
const PROCESSED_COMMANDS_KEPT_MS: Millis = 86_400_000;

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age_ms: Millis,
    pub max_events_per_chat: i64,
}

/// The first event id to keep: the lower of the two windows' bounds, never
/// below what was already kept. `first_recent` is the first event within
/// the age window, or `None` if there is none below the count window's
/// bound (either way the count window's bound is the lower).
pub fn first_retained(current: i64, last_event_id: i64, first_recent: Option<i64>, max_events: i64) -> i64 {
    let by_count = last_event_id - max_events + 1;
    let by_age = first_recent.unwrap_or(last_event_id + 1);
    current.max(by_count.min(by_age))
}

impl Store {
    /// Prunes what is outside `retention`, at most about `step` events of
    /// a chat per transaction; returns how many events went.
    pub async fn prune(&self, retention: Retention, now: Millis, step: i64) -> Result<u64, StoreError> {
        let step = step.max(1);
        // Only chats holding more than the count window can have anything
        // outside both windows. The age window's first event matters only
        // below the count window's (`first_retained` keeps the lower), so
        // the search for it stops there: from the first event kept, it
        // reads the events this prune deletes and one more. Unbounded, it
        // read every event the count window kept, in every chat that got
        // an event since the last round: with RETENTION_EVENTS' 10,000,
        // ten thousand rows a chat a minute.
        let candidates: Vec<(i64, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT c.id, c.first_retained_event_id, c.last_event_id, \
               (SELECT MIN(e.id) FROM events e WHERE e.chat_id = c.id \
                  AND e.id >= c.first_retained_event_id AND e.id <= c.last_event_id - $2 AND e.created_at >= $1) \
             FROM chats c WHERE c.last_event_id - c.first_retained_event_id + 1 > $2",
        )
        .bind(now - retention.max_age_ms)
        .bind(retention.max_events_per_chat)
        .fetch_all(&self.reader)
        .await?;
        // Redelivery happens within seconds, and a client retries a request
        // within minutes; a day of records is plenty.
        for table in ["processed_commands", "chat_creations"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE created_at < $1"))
                .bind(now - PROCESSED_COMMANDS_KEPT_MS)
                .execute(&self.writer)
                .await?;
        }
        let mut pruned = 0;
        for (chat, current, last, first_recent) in candidates {
            let keep_from = first_retained(current, last, first_recent, retention.max_events_per_chat);
            // The window moves up a step per transaction, each holding the
            // chat's row (and on SQLite the one writer) only as long as a
            // step's deletes take. In one transaction, the first prune
            // after RETENTION_DAYS was lowered, or of a database kept
            // whole until then, deleted a million events of a chat at
            // once: seconds in which the chat's messages waited, on SQLite
            // every chat's. Event ids are numbered one by one and those
            // below the first retained are gone, so a step deletes at most
            // `step` events. Steps after the first delete from the last
            // one's bound up, not walking the index entries PostgreSQL
            // keeps of what they deleted until a vacuum.
            let mut from = current;
            let mut lowest = EventId::MIN;
            while from < keep_from {
                let to = keep_from.min(from.saturating_add(step));
                pruned += self.move_retention_window(chat, lowest, to).await?;
                (from, lowest) = (to, to);
            }
        }
        Ok(pruned)
    }

    /// Makes `to` the first event `chat` keeps, if it kept fewer, and
    /// deletes those from `lowest` up to it: one transaction.
    async fn move_retention_window(&self, chat: ChatId, lowest: EventId, to: EventId) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE chats SET first_retained_event_id = $2 WHERE id = $1 AND first_retained_event_id < $2")
            .bind(chat)
            .bind(to)
            .execute(&mut *tx)
            .await?;
        let pruned = sqlx::query("DELETE FROM events WHERE chat_id = $1 AND id >= $2 AND id < $3")
            .bind(chat)
            .bind(lowest)
            .bind(to)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::first_retained;

    #[test]
    fn an_event_goes_only_when_outside_both_windows() {
        // 100 events, keep 10 by count; events from 50 on are recent.
        assert_eq!(first_retained(1, 100, Some(50), 10), 50, "age keeps more than count");
        assert_eq!(first_retained(1, 100, Some(95), 10), 91, "count keeps more than age");
        assert_eq!(first_retained(1, 100, None, 10), 91, "nothing recent: the count window");
        assert_eq!(first_retained(95, 100, Some(50), 10), 95, "never moves back");
    }
}
