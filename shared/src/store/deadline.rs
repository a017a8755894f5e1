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

use futures_util::FutureExt;

use super::StoreError;

/// `work`'s result, or [`StoreError::Timeout`] once `limit` has passed
/// (counted in `chat_database_timeouts_total`).
///
/// The statement's future and its timer live on the heap: a caller's
/// future then holds a pointer, not both. Inline they made every
/// connection's task 1.6 KiB larger, since a connection may read the
/// store (`typing`, `sync`), and a task is as large as its largest state.
pub fn within<T, E>(limit: Duration, work: impl Future<Output = Result<T, E>>) -> impl Future<Output = Result<T, E>>
where
    E: From<StoreError>,
{
    Box::pin(tokio::time::timeout(limit, work)).map(move |result| match result {
        Ok(result) => result,
        Err(_) => {
            metrics::counter!("chat_database_timeouts_total").increment(1);
            Err(StoreError::Timeout(limit).into())
        }
    })
}
