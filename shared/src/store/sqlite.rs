//! SQLite specifics: the file is created if missing, WAL journaling lets
//! readers proceed while the single writer commits, and `synchronous=NORMAL`
//! makes a commit durable against a process crash without an fsync per
//! commit (a power loss may lose the last commits; the standalone trade-off,
//! documented in docs/architecture.md).

use std::path::Path;
use std::sync::Arc;

use super::checkpoint::LogWatch;
use super::migrations::{self, Migrated};
use super::{pool_options, Backend, Store, StoreError};

/// A binary older than the schema (a rollback, or an old pod during a
/// rollout) still starts: migrations are additive, so it ignores the newer
/// ones it does not know.
fn migrator() -> &'static sqlx::migrate::Migrator {
    static MIGRATOR: std::sync::OnceLock<sqlx::migrate::Migrator> = std::sync::OnceLock::new();
    MIGRATOR.get_or_init(|| {
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.set_ignore_missing(true);
        migrator
    })
}

/// No ping before a pooled connection is handed out: it cost a round trip to
/// sqlx's SQLite thread on every transaction, the hottest path there is, and
/// a connection to a local file does not die the way a server's does.
/// (PostgreSQL keeps the ping: after a server restart it is what keeps a
/// dead connection from failing a request.)
fn sqlite_pool_options(max: u32) -> sqlx::any::AnyPoolOptions {
    pool_options(max).test_before_acquire(false)
}

/// From now on, SQLite statements this thread issues run on it instead of
/// being handed to each connection's own thread (the project's patch of
/// sqlx-sqlite, vendor/sqlx-sqlite/PATCHED.md). Only for a thread that does
/// nothing but apply commands: a statement blocks it while it runs.
pub fn run_statements_on_this_thread() {
    sqlx::sqlite::run_statements_on_this_thread();
}

pub(super) async fn open(url: &str) -> Result<(Store, Migrated), StoreError> {
    if let Some(dir) = file_path(url).and_then(|p| Path::new(p).parent().map(Path::to_path_buf)) {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| StoreError::Corrupt(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    let url = if url.contains('?') { url.to_owned() } else { format!("{url}?mode=rwc") };
    let log = Arc::new(LogWatch::default());
    let writer = watched_by(sqlite_pool_options(1), &log)
        .after_connect({
            let log = log.clone();
            move |conn, _| {
                log.mark_written();
                Box::pin(async move { writer_pragmas(conn).await })
            }
        })
        .connect(&url)
        .await?;
    let migrated = migrations::apply(&writer, migrator()).await?;
    let reader = sqlite_pool_options(4)
        .after_connect(|conn, _| Box::pin(async move { pragmas(conn).await }))
        .connect(&url)
        .await?;
    Ok((Store { writer, reader, backend: Backend::Sqlite, log }, migrated))
}

/// The writer's pool marks `log` whenever its connection is handed out or
/// comes back (`LogWatch` says why both); a new connection is marked by
/// `after_connect`, which runs instead of `before_acquire`.
fn watched_by(options: sqlx::any::AnyPoolOptions, log: &Arc<LogWatch>) -> sqlx::any::AnyPoolOptions {
    let (acquired, released) = (log.clone(), log.clone());
    options
        .before_acquire(move |_, _| {
            acquired.mark_written();
            Box::pin(async { Ok(true) })
        })
        .after_release(move |_, _| {
            released.mark_written();
            Box::pin(async { Ok(true) })
        })
}

async fn pragmas(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000;").await?;
    Ok(())
}

/// The log size, in pages, at which the writer checkpoints by itself. A
/// background checkpoint (`checkpoint.rs`) normally keeps the log below it;
/// under sustained load, when those never catch up completely, this is what
/// lets the log start over. SQLite's default, 1,000, made the writer do the
/// copying itself about ten times a second at saturation; at 4,000 the log
/// file stays under 17 MiB.
const WRITER_CHECKPOINT_PAGES: u32 = 4000;

/// `temp_store = MEMORY` keeps SQLite's temporary data (statement
/// journals, the tables `RETURNING` and sorting fill) in memory. Adopted
/// when every batch's multi-row `INSERT`s kept statement journals, each
/// past 64 KiB a file created, written, closed and unlinked: half of the
/// writer's `pwrite64` calls at 100,000 deliveries/s (docs/benchmarks-journal.md,
/// fifth session). Those inserts no longer keep any (`INSERT OR FAIL`,
/// `batch_rows.rs`); what temporary data remains is small.
async fn writer_pragmas(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    pragmas(conn).await?;
    conn.execute(format!("PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}; PRAGMA temp_store = MEMORY").as_str())
        .await?;
    Ok(())
}

/// The file path inside `sqlite://PATH` or `sqlite:PATH`, if it names a file.
fn file_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}
