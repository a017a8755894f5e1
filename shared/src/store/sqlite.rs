//! SQLite specifics: the file is created if missing, WAL journaling lets
//! readers proceed while the single writer commits, and each commit is
//! synced to disk before it counts ([`Synchronous`]).

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

/// When SQLite makes a commit reach the disk, chosen by the URL's
/// `synchronous` parameter (ours: sqlx's URL knows none, so it is taken out
/// before sqlx reads the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synchronous {
    /// The default: the log is synced at every commit, so an ack means the
    /// message survives a power loss too (PROTOCOL.md 3: acked once durably
    /// stored). A batch of commands is one commit, so under load the cost
    /// is shared; about a tenth more CPU per delivery than `Normal` at
    /// 20,000 deliveries/s on the test machine (docs/benchmarks-journal.md,
    /// twenty-fifth session).
    Full,
    /// `?synchronous=normal`: synced only at checkpoints. A process crash
    /// loses nothing; a power loss or kernel crash may lose the last
    /// commits, already acked.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "PRAGMA synchronous = FULL",
            Synchronous::Normal => "PRAGMA synchronous = NORMAL",
        }
    }
}

/// `url` without its `synchronous` parameter, and what that asked for.
fn take_synchronous(url: &str) -> Result<(String, Synchronous), StoreError> {
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_owned(), Synchronous::Full)) };
    let mut synchronous = Synchronous::Full;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("synchronous", value)) => {
                synchronous = match value.to_ascii_lowercase().as_str() {
                    "full" => Synchronous::Full,
                    "normal" => Synchronous::Normal,
                    _ => {
                        let message = format!("unknown value {value:?} for `synchronous` (use full or normal)");
                        return Err(StoreError::Database(sqlx::Error::Configuration(message.into())));
                    }
                }
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, synchronous))
}

pub(super) async fn open(url: &str) -> Result<(Store, Migrated), StoreError> {
    let (url, synchronous) = take_synchronous(url)?;
    let url = url.as_str();
    if let Some(path) = file_path(url) {
        private_file(Path::new(path)).map_err(|e| StoreError::Corrupt(format!("cannot create {path}: {e}")))?;
    }
    let url = if url.contains('?') { url.to_owned() } else { format!("{url}?mode=rwc") };
    let log = Arc::new(LogWatch::default());
    let writer = watched_by(sqlite_pool_options(1), &log)
        .after_connect({
            let log = log.clone();
            move |conn, _| {
                log.mark_written();
                Box::pin(async move { writer_pragmas(conn, synchronous).await })
            }
        })
        .connect(&url)
        .await?;
    let migrated = migrations::apply(&writer, migrator()).await?;
    let reader = sqlite_pool_options(4)
        .after_connect(move |conn, _| Box::pin(async move { pragmas(conn, synchronous).await }))
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

async fn pragmas(conn: &mut sqlx::AnyConnection, synchronous: Synchronous) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    conn.execute(format!("PRAGMA journal_mode = WAL; {}; PRAGMA busy_timeout = 10000;", synchronous.pragma()).as_str())
        .await?;
    Ok(())
}

/// The log size, in pages, at which the writer checkpoints by itself. A
/// background checkpoint (`checkpoint.rs`) normally keeps the log below it;
/// under sustained load, when those never catch up completely, this is what
/// lets the log start over. SQLite's default, 1,000, made the writer do the
/// copying itself about ten times a second at saturation; at 4,000 the log
/// file stays under 17 MiB.
const WRITER_CHECKPOINT_PAGES: u32 = 4000;

/// What a checkpoint that starts the log over truncates it to. A large
/// transaction grows the log past what the checkpoints above keep it to
/// (ten 10,000-member groups made it 21 MiB, found by an audit), and
/// SQLite never gives that space back otherwise.
const LOG_SIZE_LIMIT_BYTES: u64 = 17 * 1024 * 1024;

/// `temp_store = MEMORY` keeps SQLite's temporary data (statement
/// journals, the tables `RETURNING` and sorting fill) in memory. Adopted
/// when every batch's multi-row `INSERT`s kept statement journals, each
/// past 64 KiB a file created, written, closed and unlinked: half of the
/// writer's `pwrite64` calls at 100,000 deliveries/s (docs/benchmarks-journal.md,
/// fifth session). Those inserts no longer keep any (`INSERT OR FAIL`,
/// `batch_rows.rs`); what temporary data remains is small.
async fn writer_pragmas(conn: &mut sqlx::AnyConnection, synchronous: Synchronous) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    pragmas(conn, synchronous).await?;
    conn.execute(
        format!(
            "PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}; PRAGMA journal_size_limit = {LOG_SIZE_LIMIT_BYTES}; \
             PRAGMA temp_store = MEMORY"
        )
        .as_str(),
    )
    .await?;
    Ok(())
}

/// Creates the database file, and its folder, readable by this user only,
/// unless they exist: they hold every message. SQLite makes its files
/// readable by everyone (0644), and the log and shared-memory files beside
/// the database take the database file's permissions. An existing file
/// (made by an older release, say) others may read is left as it is, and
/// said.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        Err(_) => {}
        Ok(_) => return Ok(()),
    }
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "the database may be read by other users; chmod 600 it and its -wal and -shm files, and 700 its folder"
        );
    }
    Ok(())
}

/// The file path inside `sqlite://PATH` or `sqlite:PATH`, if it names a file.
fn file_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synchronous_parameter_is_ours_and_taken_out() {
        let cases = [
            ("sqlite://d/c.db", "sqlite://d/c.db", Synchronous::Full),
            ("sqlite://d/c.db?synchronous=normal", "sqlite://d/c.db", Synchronous::Normal),
            ("sqlite://d/c.db?mode=rwc&synchronous=FULL", "sqlite://d/c.db?mode=rwc", Synchronous::Full),
            ("sqlite://d/c.db?synchronous=normal&mode=rwc", "sqlite://d/c.db?mode=rwc", Synchronous::Normal),
        ];
        for (given, url, synchronous) in cases {
            assert_eq!(take_synchronous(given).expect(given), (url.to_owned(), synchronous), "{given}");
        }
        assert!(take_synchronous("sqlite://d/c.db?synchronous=off").is_err(), "only full or normal");
    }

    /// What the writer's connection runs with, as SQLite reports it (2 is
    /// FULL, 1 NORMAL).
    #[tokio::test]
    async fn commits_are_synced_unless_the_url_says_normal() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (query, expected) in [("", 2), ("?synchronous=normal", 1)] {
            let url = format!("sqlite://{}/s{expected}.db{query}", dir.path().display());
            let (store, _) = Store::connect_migrated(&url).await.expect("store");
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&store.writer).await.expect("pragma");
            assert_eq!(level, expected, "{url}");
            store.close().await;
        }
    }
}
