//! PostgreSQL specifics: a pool sized for concurrent workers and readers, and
//! migrations that take sqlx's advisory lock so that several processes
//! starting at once apply them exactly once.

use std::time::Duration;

use sqlx::Connection;

use super::migrations::{self, Migrated};
use super::{connection_refusal, pool_options, Backend, Store, StoreError};

/// A binary older than the schema (a rollback, or an old pod during a
/// rollout) still starts: migrations are additive, so it ignores the newer
/// ones it does not know.
fn migrator() -> &'static sqlx::migrate::Migrator {
    static MIGRATOR: std::sync::OnceLock<sqlx::migrate::Migrator> = std::sync::OnceLock::new();
    MIGRATOR.get_or_init(|| {
        let mut migrator = sqlx::migrate!("./migrations/postgres");
        migrator.set_ignore_missing(true);
        migrator
    })
}

/// A connection used this recently is taken as alive without asking the
/// server: HikariCP's rule (its `aliveBypassWindowMs`, 500 ms by default).
/// sqlx otherwise pings before every acquire, a round trip that on a busy
/// cluster came with every batch the worker committed and every read a
/// gateway made. One that sat idle longer is still pinged, so that after
/// a server restart an idle connection fails the ping, not a request.
const ALIVE_WITHOUT_PING: Duration = Duration::from_millis(500);

/// An idle connection that does not answer its ping within this is closed,
/// and the pool opens a new one in its place. A connection whose far end
/// went away without a word (a failover behind the same address, a route
/// that dropped packets while the server gave up on the connection) never
/// answers: unbounded, every idle one held its taker until the caller's
/// own deadline (5 s for a gateway's read, 10 s for a worker's batch), one
/// after the other, and the health check's ping never found a live one.
/// The ping is a round trip with no work in it: one that takes a second
/// means a server that is gone, or too loaded to serve the statement after
/// it in time anyway.
const IDLE_PING_LIMIT: Duration = Duration::from_secs(1);

/// How long the server lets a transaction wait for its client's next
/// statement before it ends the session (`idle_in_transaction_session_timeout`,
/// off by default). A client whose path went silent in the middle of a
/// transaction never sends its `ROLLBACK`, and the server, hearing nothing
/// to say otherwise, keeps the transaction and its row locks for as long
/// as TCP lets it, hours at the defaults: a worker that took over the
/// shards of one cut off from the database waited on those locks, batch
/// after batch (found reviewing the session that hands such shards over).
/// Every transaction here sends its statements back to back and is given
/// at most 10 s, so only a client that is gone, or stalled past that,
/// meets this bound, and a stalled one retries.
const IDLE_IN_TRANSACTION_LIMIT: &str = "15s";

/// No statement here is compiled (`jit`, on by default since PostgreSQL
/// 12 wherever it was built with LLVM, as Debian's packages are). Each
/// reads or writes a few rows by key, but where the planner's estimate
/// passes `jit_above_cost`, compiling costs far more than running: a
/// chat list of 21 groups of 10,000, whose plan holds a count of members
/// in a branch it then does not run, spent 180 ms compiling and under
/// 1 ms executing (docs/benchmarks-journal.md, forty-eighth session).
const NO_JIT: &str = "SET jit = off";

async fn connect_pool(url: &str) -> Result<sqlx::AnyPool, sqlx::Error> {
    pool_options(16)
        .after_connect(|conn, _| {
            Box::pin(async move {
                let limit = format!("SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_LIMIT}'");
                sqlx::query(&limit).execute(&mut *conn).await?;
                sqlx::query(NO_JIT).execute(conn).await.map(|_| ())
            })
        })
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= ALIVE_WITHOUT_PING {
                    match tokio::time::timeout(IDLE_PING_LIMIT, conn.ping()).await {
                        Ok(answered) => answered?,
                        Err(_) => {
                            let silent = std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                format!("an idle connection did not answer a ping within {IDLE_PING_LIMIT:?}"),
                            );
                            return Err(sqlx::Error::Io(silent));
                        }
                    }
                }
                Ok(true)
            })
        })
        .connect(url)
        .await
}

pub(super) async fn open(url: &str) -> Result<(Store, Migrated), StoreError> {
    let pool = match connect_pool(url).await {
        // Why, in one direct attempt; `None`: the database answers now (it
        // has just come up), so the pool may try again.
        Err(sqlx::Error::PoolTimedOut) => match connection_refusal(&url.parse()?).await {
            Some(cause) => return Err(cause),
            None => connect_pool(url).await?,
        },
        pool => pool?,
    };
    let migrated = migrations::apply(&pool, migrator()).await?;
    Ok((Store { writer: pool.clone(), reader: pool, backend: Backend::Postgres, log: Default::default() }, migrated))
}

#[cfg(test)]
mod tests {
    /// The pool's connections carry the bound on idle transactions and
    /// compile no statement. On PostgreSQL only, when `TEST_DATABASE_URL`
    /// names one (`scripts/test` always does).
    #[tokio::test]
    async fn a_pooled_connection_carries_the_session_settings() {
        let Ok(admin) = std::env::var("TEST_DATABASE_URL") else { return };
        sqlx::any::install_default_drivers();
        let url = testkit::services::fresh_database(&admin).await.expect("database");
        let pool = super::connect_pool(&url).await.expect("pool");
        let mut conn = pool.acquire().await.expect("a connection");
        let idle: String =
            sqlx::query_scalar("SHOW idle_in_transaction_session_timeout").fetch_one(&mut *conn).await.expect("SHOW");
        assert_eq!(idle, super::IDLE_IN_TRANSACTION_LIMIT);
        let jit: String = sqlx::query_scalar("SHOW jit").fetch_one(&mut *conn).await.expect("SHOW");
        assert_eq!(jit, "off");
    }
}
