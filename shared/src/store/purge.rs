//! Purging deleted chats' histories. A deletion leaves a chat's messages,
//! events and marked ranges behind, listed in `deleted_chats` (migration
//! 0007), and the workers' housekeeping deletes them here a step at a time:
//! each statement deletes at most about [`PURGE_STEP`] rows, so none holds
//! SQLite's one writer, or PostgreSQL's locks and log, for long, and a
//! history of any size is purged within the store's deadline per step.

use std::time::{Duration, Instant};

use super::{Store, StoreError};
use crate::model::{ChatId, Millis};

/// Rows the housekeeping deletes per statement, a few milliseconds of
/// work: a purge's step, and how far a prune moves a chat's retention
/// window per transaction.
pub const PURGE_STEP: i64 = 2_000;

/// A chat's history tables, each with the key its rows are purged in order
/// of. A chat's messages and events are numbered one by one; its marked
/// ranges are ordered by the last message they cover, which several
/// members' ranges may share.
const HISTORY: [(&str, &str); 3] = [("events", "id"), ("mark_ranges", "last_message_id"), ("messages", "message_id")];

/// One deleted chat whose history was purged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purged {
    pub chat: ChatId,
    pub rows: u64,
    pub deleted_at: Millis,
    pub took: Duration,
}

impl Store {
    /// Purges the history of every chat deleted so far, `step` rows per
    /// statement, and forgets each chat once its history is gone. A purge
    /// cut short (the process stopping, the database failing) leaves the
    /// chat listed and the next one goes on with what is left.
    pub async fn purge_deleted_chats(&self, step: i64) -> Result<Vec<Purged>, StoreError> {
        let step = step.max(1);
        let pending: Vec<(i64, i64)> = sqlx::query_as("SELECT chat_id, deleted_at FROM deleted_chats ORDER BY chat_id")
            .fetch_all(&self.reader)
            .await?;
        let mut purged = Vec::with_capacity(pending.len());
        for (chat, deleted_at) in pending {
            let started = Instant::now();
            let mut rows = 0;
            for (table, key) in HISTORY {
                rows += self.purge_table(chat, table, key, step).await?;
            }
            sqlx::query("DELETE FROM deleted_chats WHERE chat_id = $1").bind(chat).execute(&self.writer).await?;
            purged.push(Purged { chat, rows, deleted_at, took: started.elapsed() });
        }
        Ok(purged)
    }

    /// Deletes `chat`'s rows of `table` in order of `key`, up to the
    /// `step`-th key above the last step's each time (a key shared by
    /// several rows goes whole, so a step of marked ranges may delete a
    /// few more), and the rest once fewer than `step` remain. Each step
    /// looks for its bound above the last one's rather than from the
    /// start: PostgreSQL's index keeps the deleted entries until a vacuum,
    /// and every step walking them all again would cost the square of the
    /// history.
    async fn purge_table(&self, chat: ChatId, table: &str, key: &str, step: i64) -> Result<u64, StoreError> {
        let bound_sql =
            format!("SELECT {key} FROM {table} WHERE chat_id = $1 AND {key} > $2 ORDER BY {key} LIMIT 1 OFFSET $3");
        let mut above = i64::MIN;
        let mut rows = 0;
        loop {
            let bound: Option<(i64,)> =
                sqlx::query_as(&bound_sql).bind(chat).bind(above).bind(step - 1).fetch_optional(&self.reader).await?;
            let Some((bound,)) = bound else {
                let rest = format!("DELETE FROM {table} WHERE chat_id = $1 AND {key} > $2");
                let done = sqlx::query(&rest).bind(chat).bind(above).execute(&self.writer).await?;
                return Ok(rows + done.rows_affected());
            };
            let range = format!("DELETE FROM {table} WHERE chat_id = $1 AND {key} > $2 AND {key} <= $3");
            let done = sqlx::query(&range).bind(chat).bind(above).bind(bound).execute(&self.writer).await?;
            rows += done.rows_affected();
            above = bound;
        }
    }
}
