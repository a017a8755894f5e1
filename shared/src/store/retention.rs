//! The event log's retention window (PROTOCOL.md 4): events older than the
//! window or beyond the newest N of their chat are pruned, and the chat
//! remembers the first id it still keeps so that `sync` can answer
//! `sync_gap` exactly when something the client lacks is gone.

use super::{Store, StoreError};
use crate::model::Millis;

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age_ms: Millis,
    pub max_events_per_chat: i64,
}

impl Store {
    /// Prunes what is outside `retention`; returns how many events went.
    pub async fn prune(&self, retention: Retention, now: Millis) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE chats SET first_retained_event_id = last_event_id - $1 + 1 \
             WHERE last_event_id - $1 + 1 > first_retained_event_id",
        )
        .bind(retention.max_events_per_chat)
        .execute(&mut *tx)
        .await?;
        let mut pruned = delete_unretained(&mut tx).await?;
        // After the delete every remaining event is at or above its chat's
        // first retained id, so this only ever moves the bound forward.
        sqlx::query(
            "UPDATE chats SET first_retained_event_id = COALESCE( \
               (SELECT MIN(e.id) FROM events e WHERE e.chat_id = chats.id AND e.created_at >= $1), \
               last_event_id + 1) \
             WHERE EXISTS (SELECT 1 FROM events e WHERE e.chat_id = chats.id AND e.created_at < $1)",
        )
        .bind(now - retention.max_age_ms)
        .execute(&mut *tx)
        .await?;
        pruned += delete_unretained(&mut tx).await?;
        tx.commit().await?;
        Ok(pruned)
    }
}

async fn delete_unretained(tx: &mut sqlx::Transaction<'static, sqlx::Any>) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM events WHERE id < (SELECT c.first_retained_event_id FROM chats c WHERE c.id = events.chat_id)",
    )
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}
