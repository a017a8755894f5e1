//! A bound on how long a caller waits for the store.
//!
//! Why: a database that stops answering without closing its connections
//! (a frozen VM, a stuck disk, a partition that drops packets) leaves a
//! statement waiting until TCP gives up, which takes minutes, or forever
//! while the server's kernel still acknowledges. sqlx bounds only the wait
//! for a pooled connection. Whoever awaits the store bounds the wait
//! itself, and on timeout drops the statement's future: an unfinished
//! transaction is rolled back (sqlx queues the `ROLLBACK`), and a read's
//! unread answer is skipped by the connection's next statement.
//!
//! A write that timed out may still have committed: the caller reports
//! the outcome as unknown, and a retry meets the store's own idempotency
//! (client message ids, dialog keys).

use std::future::Future;
use std::time::Duration;

use super::StoreError;

/// `work`'s result, or [`StoreError::Timeout`] once `limit` has passed
/// (counted in `chat_database_timeouts_total`).
pub async fn within<T, E>(limit: Duration, work: impl Future<Output = Result<T, E>>) -> Result<T, E>
where
    E: From<StoreError>,
{
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => {
            metrics::counter!("chat_database_timeouts_total").increment(1);
            Err(StoreError::Timeout(limit).into())
        }
    }
}
