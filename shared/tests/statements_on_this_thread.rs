//! The project's patch of sqlx-sqlite (vendor/sqlx-sqlite/PATCHED.md): a
//! thread that opts in runs its SQLite statements itself, and what they mean
//! (transactions, order) is what it was through the connection's own thread.

use futures_util::FutureExt;
use sqlx::{Connection, Executor, SqliteConnection};

/// Counting to three million keeps SQLite busy for a while.
const LONG_QUERY: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT count(*) FROM c";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Runs `work` on a new thread that runs its own statements.
fn on_a_store_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        shared::store::run_statements_on_this_thread();
        work()
    })
    .join()
    .expect("store thread")
}

/// A database with one table, and a way to read it from an ordinary thread.
struct Database {
    _dir: tempfile::TempDir,
    url: String,
}

impl Database {
    fn new() -> Database {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        runtime().block_on(async {
            let mut conn = SqliteConnection::connect(&url).await.expect("connect");
            conn.execute("CREATE TABLE t (v TEXT NOT NULL)").await.expect("schema");
            conn.close().await.expect("close");
        });
        Database { _dir: dir, url }
    }

    fn values(&self) -> Vec<String> {
        runtime().block_on(async {
            let mut conn = SqliteConnection::connect(&self.url).await.expect("connect");
            let rows: Vec<(String,)> =
                sqlx::query_as("SELECT v FROM t ORDER BY rowid").fetch_all(&mut conn).await.expect("read");
            rows.into_iter().map(|(v,)| v).collect()
        })
    }
}

async fn insert(conn: &mut SqliteConnection, value: &str) {
    sqlx::query("INSERT INTO t (v) VALUES (?)").bind(value).execute(conn).await.expect("insert");
}

#[test]
fn statements_run_on_the_calling_thread_and_transactions_keep_their_meaning() {
    let db = Database::new();
    let url = db.url.clone();
    on_a_store_thread(move || {
        runtime().block_on(async move {
            let mut conn = SqliteConnection::connect(&url).await.expect("connect");
            // Done within the first poll: nothing was handed to another thread.
            let ran_here = sqlx::query("INSERT INTO t (v) VALUES ('ran here')").execute(&mut conn).now_or_never();
            assert!(matches!(ran_here, Some(Ok(_))), "the insert completed without waiting: {ran_here:?}");

            let mut tx = conn.begin().await.expect("begin");
            insert(&mut tx, "committed").await;
            tx.commit().await.expect("commit");

            let mut tx = conn.begin().await.expect("begin");
            insert(&mut tx, "dropped").await;
            drop(tx);

            let mut tx = conn.begin().await.expect("begin");
            insert(&mut tx, "rolled back").await;
            tx.rollback().await.expect("rollback");

            let mut tx = conn.begin().await.expect("begin");
            insert(&mut tx, "before a refused statement").await;
            let refused = sqlx::query("INSERT INTO t (v) VALUES (NULL)").execute(&mut *tx).await;
            assert!(refused.is_err(), "NOT NULL refuses the row: {refused:?}");
            drop(tx);

            let mut tx = conn.begin().await.expect("a transaction after a dropped one");
            let mut inner = tx.begin().await.expect("savepoint");
            insert(&mut inner, "in a savepoint rolled back").await;
            inner.rollback().await.expect("rollback to savepoint");
            insert(&mut tx, "after the savepoint").await;
            tx.commit().await.expect("commit");
            conn.close().await.expect("close");
        })
    });
    assert_eq!(db.values(), ["ran here", "committed", "after the savepoint"]);
}

#[test]
fn a_statement_waits_for_what_the_connections_own_thread_still_has_queued() {
    let db = Database::new();
    // An ordinary thread leaves the connection's own thread busy with a long
    // query and, behind it, the rollback of the transaction it abandons.
    let conn = runtime().block_on(async {
        let mut conn = SqliteConnection::connect(&db.url).await.expect("connect");
        let mut tx = conn.begin().await.expect("begin");
        insert(&mut tx, "abandoned").await;
        let long = sqlx::query(LONG_QUERY).execute(&mut *tx).now_or_never();
        assert!(long.is_none(), "the long query was still running");
        drop(tx);
        conn
    });
    on_a_store_thread(move || {
        runtime().block_on(async move {
            let mut conn = conn;
            let mut tx = conn.begin().await.expect("begin, after the queued rollback");
            insert(&mut tx, "kept").await;
            tx.commit().await.expect("commit");
            conn.close().await.expect("close");
        })
    });
    assert_eq!(db.values(), ["kept"]);
}
