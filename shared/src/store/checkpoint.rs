//! Copying SQLite's write-ahead log back into the database file beside the
//! writer. Left to itself, SQLite checkpoints inside the commit that takes
//! the log past its limit: that commit copies the pages and waits for two
//! fsyncs, and every command queued behind it waits too. A passive
//! checkpoint from a reader's connection (its own thread) does that work
//! beside the writer, without blocking it; the writer's own checkpoint
//! stays as a backstop at a higher limit (`WRITER_CHECKPOINT_PAGES` in `sqlite.rs`).
//! At 20,000 deliveries/s this took the p99 from about 9 ms to under 6; at
//! 100,000 it kept the writer from saturating (docs/benchmarks-journal.md).

use super::{Backend, Store, StoreError};

/// What one checkpoint found and did, in pages of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpointed {
    pub log_pages: i64,
    pub copied_pages: i64,
}

impl Store {
    /// A passive checkpoint on SQLite: it copies what it can without
    /// waiting for the writer or for readers. `None` for PostgreSQL, whose
    /// server checkpoints by itself.
    pub async fn checkpoint(&self) -> Result<Option<Checkpointed>, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        // (busy, pages in the log, pages copied into the database)
        let (_, log_pages, copied_pages): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&self.reader).await?;
        Ok(Some(Checkpointed { log_pages, copied_pages }))
    }
}
