//! The project's patch of sqlx-core (vendor/sqlx-core/PATCHED.md): a pooled
//! PostgreSQL connection goes back without a ping when it has nothing to
//! send. What the ping was for must still hold: a dropped transaction is
//! rolled back as its connection goes back, not at its next use, and a
//! query dropped before its answer leaves the connection usable.
//!
//! Needs `TEST_DATABASE_URL`: run through `./scripts/test`.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Row};

async fn database() -> String {
    let admin = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL (run ./scripts/test)");
    testkit::services::fresh_database(&admin).await.expect("a fresh database")
}

async fn pool(url: &str) -> PgPool {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await.expect("pool");
    sqlx::query("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)").execute(&pool).await.expect("schema");
    sqlx::query("INSERT INTO t VALUES (1, 0)").execute(&pool).await.expect("row");
    pool
}

#[tokio::test]
async fn a_dropped_transaction_releases_its_locks_without_the_connection_being_used_again() {
    let url = database().await;
    let pool = pool(&url).await;
    {
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("UPDATE t SET v = 1 WHERE id = 1").execute(&mut *tx).await.expect("update");
        // Dropped uncommitted: the row stays locked until `ROLLBACK` arrives.
    }
    // The pool is left alone from here on: the rollback must go out as the
    // connection goes back, or this update waits for the row until
    // `lock_timeout` and fails.
    let mut other = PgConnection::connect(&url).await.expect("a second connection");
    sqlx::query("SET lock_timeout = '10s'").execute(&mut other).await.expect("lock timeout");
    sqlx::query("UPDATE t SET v = 2 WHERE id = 1").execute(&mut other).await.expect("the row is not locked");
    let v: i32 = sqlx::query_scalar("SELECT v FROM t WHERE id = 1").fetch_one(&mut other).await.expect("read");
    assert_eq!(v, 2, "the dropped transaction's update was rolled back, this one kept");
}

#[tokio::test]
async fn a_query_dropped_before_its_answer_leaves_its_connection_usable() {
    let url = database().await;
    let pool = pool(&url).await;
    {
        let mut conn = pool.acquire().await.expect("acquire");
        // Dropped while the server runs it: prepared, sent, not answered.
        let query = sqlx::query("SELECT g FROM pg_sleep(1), generate_series(1, 1000) g").fetch_all(&mut *conn);
        let dropped = tokio::time::timeout(Duration::from_millis(200), query).await;
        assert!(dropped.is_err(), "the query was still waiting for its answer when dropped");
    }
    // The pool holds one connection, so this is the same one: its next
    // statement must read past the dropped query's answer to its own.
    let mut conn = tokio::time::timeout(Duration::from_secs(10), pool.acquire())
        .await
        .expect("the connection came back to the pool")
        .expect("acquire");
    let row = sqlx::query("SELECT 42 AS answer, (SELECT v FROM t WHERE id = 1) AS v")
        .fetch_one(&mut *conn)
        .await
        .expect("the next statement runs");
    assert_eq!(row.get::<i32, _>("answer"), 42);
    assert_eq!(row.get::<i32, _>("v"), 0);
}

/// A dropped transaction's connection is pinged as it goes back, to send
/// its `ROLLBACK`; on a connection whose server went silent that ping never
/// ended, and the connection held its pool slot until TCP gave up (a
/// quarter of an hour), where a path cut in the middle of transactions
/// could take the whole pool. The ping is bounded (2 s), and the slot goes
/// to a new connection.
#[tokio::test]
async fn a_dropped_transaction_on_a_silent_connection_gives_its_slot_back() {
    let url = database().await;
    pool(&url).await;
    let (proxy, through_proxy) = testkit::proxy::Proxy::in_front_of(&url).await.expect("proxy");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&through_proxy)
        .await
        .expect("pool");
    {
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("UPDATE t SET v = 1 WHERE id = 1").execute(&mut *tx).await.expect("update");
        proxy.silence_open_connections();
        // Dropped uncommitted: its rollback goes into the silence.
    }
    let taken = tokio::time::timeout(Duration::from_secs(10), pool.acquire()).await;
    let mut conn = taken.expect("the slot came back").expect("a new connection");
    let v: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await.expect("a live connection");
    assert_eq!(v, 1);
}
