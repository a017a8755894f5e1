//! Copying SQLite's write-ahead log back into the database file beside the
//! writer. Left to itself, SQLite checkpoints inside the commit that takes
//! the log past its limit: that commit copies the pages and waits for two
//! fsyncs, and every command queued behind it waits too. A passive
//! checkpoint from a reader's connection (its own thread) does that work
//! beside the writer, without blocking it; the writer's own checkpoint
//! stays as a backstop at a higher limit (`WRITER_CHECKPOINT_PAGES` in `sqlite.rs`).
//! At 20,000 deliveries/s this took the p99 from about 9 ms to under 6; at
//! 100,000 it kept the writer from saturating (docs/benchmarks-journal.md).
//!
//! A checkpoint is skipped when nothing was written since one that copied
//! the whole log. Run every 50 ms regardless, an idle gateway woke SQLite's
//! reader thread, took and dropped a file lock and woke the runtime back
//! twenty times a second for nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{Backend, Store, StoreError};

/// What one checkpoint found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpointed {
    /// Nothing was written since a checkpoint copied the whole log.
    NothingNew,
    /// In pages of the log: how many it holds, and how many of them are now
    /// in the database file (fewer when a reader still needs older ones).
    Ran { log_pages: i64, copied_pages: i64 },
}

/// Whether SQLite's log may hold pages no checkpoint has copied.
///
/// The writer's connection marks it each time it is handed out (a write
/// may follow) and each time it comes back (a write may have committed
/// after a checkpoint that had already taken the first mark). A checkpoint
/// takes the mark before it starts, so a write that commits during the
/// checkpoint leaves a mark for the next one. A connection closed instead
/// of coming back (an error, the pool shutting down) leaves no second
/// mark: its last commit then waits for the next write's checkpoint, or
/// for the writer's own at `WRITER_CHECKPOINT_PAGES`. Nothing is lost
/// either way; the log is as durable as the database file.
#[derive(Debug, Default)]
pub(super) struct LogWatch {
    written: AtomicBool,
    all_copied: AtomicBool,
}

impl LogWatch {
    pub(super) fn mark_written(&self) {
        self.written.store(true, Ordering::SeqCst);
    }
}

impl Store {
    /// A passive checkpoint on SQLite: it copies what it can without
    /// waiting for the writer or for readers. `None` for PostgreSQL, whose
    /// server checkpoints by itself.
    pub async fn checkpoint(&self) -> Result<Option<Checkpointed>, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let written = self.log.written.swap(false, Ordering::SeqCst);
        if !written && self.log.all_copied.load(Ordering::SeqCst) {
            return Ok(Some(Checkpointed::NothingNew));
        }
        // Cleared first, so that a checkpoint that fails or is cut short
        // is run again next time.
        self.log.all_copied.store(false, Ordering::SeqCst);
        // (busy, pages in the log, pages copied into the database)
        let (_, log_pages, copied_pages): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&self.reader).await?;
        self.log.all_copied.store(copied_pages == log_pages, Ordering::SeqCst);
        Ok(Some(Checkpointed::Ran { log_pages, copied_pages }))
    }
}
