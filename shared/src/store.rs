//! Durable storage of chats, members, messages, the per-chat event log and
//! mark ranges. One implementation over `sqlx::Any` serves both backends:
//! the schemas are kept column-for-column equal and every query is written in
//! the SQL the two share (`$n` parameters, `RETURNING`, no `FOR UPDATE`).
//! What differs (connection set-up, migrations) lives in [`sqlite`] and
//! [`postgres`].
//!
//! Concurrency: every write that allocates a message or event id starts with
//! `UPDATE chats ... RETURNING`, which takes the chat's row lock in
//! PostgreSQL and the database write lock in SQLite, so concurrent writers of
//! one chat serialize and ids stay consecutive. (A run of `new`s reads
//! its senders' memberships and its retries first: memberships only come
//! with a chat's creation, and a retry stored in between fails the batch
//! on the messages' unique key, to be applied again.)

mod batch_rows;
mod changes;
mod chat_quota;
mod chats;
mod checkpoint;
mod commands;
mod deadline;
mod event_log;
mod first_sends;
mod history;
mod mark_runs;
mod migrations;
mod placeholders;
mod postgres;
mod presence;
mod purge;
mod records;
mod replay;
mod replay_bounds;
mod retention;
mod sends;
mod sqlite;
mod summaries;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

pub use chat_quota::MAX_CHATS_PER_USER;
pub use chats::{ChatCreated, MembershipChange, NewChat, CREATED_MEMBERSHIP_VERSION, MAX_MEMBERS};
pub use checkpoint::Checkpointed;
pub use commands::{Delivery, Outcome, Submitted};
pub use deadline::within;
pub use history::HistoryQuery;
pub use migrations::{Migrated, Migration};
pub use presence::PresenceChange;
pub use purge::{Purged, PURGE_STEP};
pub use replay::{PageRequest, SyncPage};
pub use replay_bounds::{Bounds, BoundsRequest};
pub use retention::Retention;
pub use sqlite::run_statements_on_this_thread;
pub use summaries::{in_parts, ChatHead, PartBounds};

use crate::error::Refusal;
use crate::marks::Marks;
use crate::model::{ChatId, UserId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("unsupported DATABASE_URL scheme (use sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("the database did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The task that applies a worker's batches is gone (shutting down).
    #[error("the worker's committer stopped")]
    Stopped,
}

impl StoreError {
    /// Whether PostgreSQL refused a statement for the data in it (SQLSTATE
    /// class 22, data exception, or 54, program limit exceeded): the same
    /// command will be refused again however often it is retried, unlike a
    /// lost connection, a timeout, a deadlock, a unique key taken by a
    /// concurrent writer or a failover, which a retry may get past.
    pub fn refuses_the_data(&self) -> bool {
        let StoreError::Database(sqlx::Error::Database(e)) = self else {
            return false;
        };
        e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|e| e.code().starts_with("22") || e.code().starts_with("54"))
    }

    /// Whether a write that failed so may have committed all the same: its
    /// deadline passed (a `COMMIT` already queued completes regardless,
    /// `store::deadline`), or its connection failed under it, and the
    /// database's answer was lost. Any other failure was answered, and
    /// rolled the write back.
    pub fn may_have_committed(&self) -> bool {
        matches!(self, StoreError::Timeout(_) | StoreError::Database(sqlx::Error::Io(_)))
    }
}

/// Either the request was refused for a reason the client can act on, or the
/// store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreRefusal {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Failed(#[from] StoreError),
}

impl From<sqlx::Error> for StoreRefusal {
    fn from(e: sqlx::Error) -> Self {
        StoreRefusal::Failed(StoreError::Database(e))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The database behind one of the store's connections.
    pub(crate) fn of(conn: &sqlx::AnyConnection) -> Backend {
        if conn.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }
}

/// Is `user` in `chat`, and does the chat exist at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    NoChat,
    NotMember,
    Member,
}

impl Membership {
    /// From a look-up of the chat: `None` when it has no row, else how many
    /// of its member rows are the user's.
    pub(crate) fn of(member_rows: Option<i64>) -> Membership {
        match member_rows {
            None => Membership::NoChat,
            Some(0) => Membership::NotMember,
            Some(_) => Membership::Member,
        }
    }

    /// The protocol's rule: unknown chat is `not_found`, a non-member is
    /// `forbidden`.
    pub fn require(self) -> Result<(), Refusal> {
        match self {
            Membership::Member => Ok(()),
            Membership::NotMember => Err(Refusal::not_member()),
            Membership::NoChat => Err(Refusal::no_chat()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    /// The pool commands and REST writes go through. For SQLite it has one
    /// connection: SQLite allows one writer, and queueing in the pool is
    /// cheaper than SQLITE_BUSY retries.
    writer: AnyPool,
    /// The pool history, summaries and sync read from.
    reader: AnyPool,
    backend: Backend,
    /// SQLite's only: whether a checkpoint has anything to copy.
    log: std::sync::Arc<checkpoint::LogWatch>,
}

impl Store {
    /// Opens `url` and brings its schema up to date. For PostgreSQL the
    /// migration takes an advisory lock, so processes starting together are
    /// safe.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Ok(Store::connect_migrated(url).await?.0)
    }

    /// [`Store::connect`], with what bringing the schema up to date did.
    pub async fn connect_migrated(url: &str) -> Result<(Store, Migrated), StoreError> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            sqlite::open(url).await
        } else if crate::config::is_postgres_url(url) {
            postgres::open(url).await
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// True when the database answers a trivial query within `limit`. A
    /// connection that took the query and gave no answer is not given back
    /// to the pool: given back, it went to the next taker without a ping
    /// (it had just been used), and a health check every second met the
    /// same silent connection each time, for good.
    pub async fn ping_within(&self, limit: std::time::Duration) -> bool {
        let Ok(Ok(mut connection)) = tokio::time::timeout(limit, self.reader.acquire()).await else { return false };
        match tokio::time::timeout(limit, sqlx::query("SELECT 1").execute(&mut *connection)).await {
            Ok(answered) => answered.is_ok(),
            Err(_) => {
                drop(connection.detach());
                false
            }
        }
    }

    /// Why a new connection to the database fails now, for a log line
    /// ([`connection_refusal`]); `None` when one can be made.
    pub async fn why_unreachable(&self) -> Option<String> {
        connection_refusal(&self.reader.connect_options()).await.map(|cause| cause.to_string())
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// [`Store::close`] for a process about to exit: gives up after 2 s,
    /// with a warning. sqlx's `close` waits for every connection in use,
    /// and one waiting on a database that does not answer would hold the
    /// exit until TCP gives up; the exit closes its socket anyway.
    pub async fn close_before_exit(&self) {
        if tokio::time::timeout(std::time::Duration::from_secs(2), self.close()).await.is_err() {
            tracing::warn!("the database did not let its connections go in time; leaving them to the exit");
        }
    }

    pub async fn membership(&self, chat: ChatId, user: &str) -> Result<Membership, StoreError> {
        membership(&self.reader, chat, user).await
    }

    /// Those of `pairs` (chat, user) that are memberships, in one
    /// statement.
    pub async fn memberships_among(
        &self,
        pairs: &[(ChatId, &str)],
    ) -> Result<std::collections::HashSet<(ChatId, UserId)>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        let found = members_of_pairs(&mut conn, pairs.iter().copied()).await?;
        Ok(found.into_keys().map(|(chat, user)| (chat, user.to_owned())).collect())
    }
}

/// Why one direct connection with `options` is not made now (`None`: it
/// is). The pool retries a refused connection until its deadline and then
/// says only "pool timed out", which reads as a pool too small; one attempt
/// names the cause (`Connection refused`, a name that does not resolve, a
/// password refused, or no answer within 5 s). The error names no secret:
/// not the URL, nor its password.
async fn connection_refusal(options: &sqlx::any::AnyConnectOptions) -> Option<StoreError> {
    use sqlx::ConnectOptions;
    let limit = std::time::Duration::from_secs(5);
    match tokio::time::timeout(limit, options.connect()).await {
        Ok(Ok(connection)) => {
            let _ = sqlx::Connection::close(connection).await;
            None
        }
        Ok(Err(cause)) => Some(StoreError::Database(cause)),
        Err(_) => Some(StoreError::Timeout(limit)),
    }
}

fn pool_options(max: u32) -> AnyPoolOptions {
    AnyPoolOptions::new().max_connections(max).acquire_timeout(std::time::Duration::from_secs(10))
}

async fn membership<'e, E>(db: E, chat: ChatId, user: &str) -> Result<Membership, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT c.id, (SELECT COUNT(*) FROM members m WHERE m.chat_id = c.id AND m.user_id = $2) \
         FROM chats c WHERE c.id = $1",
    )
    .bind(chat)
    .bind(user)
    .fetch_optional(db)
    .await?;
    Ok(Membership::of(row.map(|(_, count)| count)))
}

/// A membership as a batch read it: the member's marks, and the chat's
/// membership version in the same snapshot.
#[derive(Debug, Clone, Copy)]
struct MemberRow {
    marks: Marks,
    membership_version: i64,
}

/// Those of `pairs` (chat, user) that are memberships, in one statement: a
/// pair missing from the answer is not a member. Runs of `new` use it as
/// their membership check, runs of marks for the marks.
async fn members_of_pairs<'a>(
    conn: &mut sqlx::AnyConnection,
    pairs: impl IntoIterator<Item = (ChatId, &'a str)>,
) -> Result<std::collections::HashMap<(ChatId, &'a str), MemberRow>, StoreError> {
    let mut pairs: Vec<(ChatId, &str)> = pairs.into_iter().collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut keys = batch_rows::BatchRows::new(conn, &[batch_rows::Column::Int, batch_rows::Column::Text]);
    for (chat, user) in &pairs {
        keys.push([batch_rows::Value::Int(*chat), batch_rows::Value::Text(user)]);
    }
    let keys_table = keys.table(&mut placeholders::Placeholders::for_connection(conn), "v");
    // A join, not `(…) IN (VALUES …)`, which SQLite answers with a scan.
    let sql = format!(
        "SELECT m.chat_id, m.user_id, m.delivered_mark, m.read_mark, c.membership_version \
         FROM {keys_table} JOIN members m ON m.chat_id = v.column1 AND m.user_id = v.column2 \
           JOIN chats c ON c.id = m.chat_id"
    );
    let mut args = sqlx::any::AnyArguments::default();
    keys.add_to(&mut args)?;
    let query = sqlx::query_as_with::<_, (i64, String, i64, i64, i64), _>(&sql, args);
    let rows: std::collections::HashMap<(i64, String), MemberRow> = query
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(chat, user, delivered, read, membership_version)| {
            ((chat, user), MemberRow { marks: Marks { delivered, read }, membership_version })
        })
        .collect();
    Ok(pairs
        .into_iter()
        .filter_map(|(chat, user)| Some(((chat, user), *rows.get(&(chat, user.to_owned()))?)))
        .collect())
}

/// The user ids of `chat`'s members, sorted.
async fn members_of<'e, E>(db: E, chat: ChatId) -> Result<Vec<UserId>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT user_id FROM members WHERE chat_id = $1").bind(chat).fetch_all(db).await?;
    let mut members: Vec<UserId> = rows.into_iter().map(|r| r.0).collect();
    members.sort_unstable();
    Ok(members)
}

/// Each member of `chat` with their delivered and read marks, sorted by
/// member.
async fn member_marks<'e, E>(db: E, chat: ChatId) -> Result<Vec<(UserId, i64, i64)>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let mut marks: Vec<(UserId, i64, i64)> =
        sqlx::query_as("SELECT user_id, delivered_mark, read_mark FROM members WHERE chat_id = $1")
            .bind(chat)
            .fetch_all(db)
            .await?;
    sort_by_user(&mut marks, |row| &row.0);
    Ok(marks)
}

/// Member lists go out sorted by their ids' bytes, sorted here rather than
/// by `ORDER BY`: PostgreSQL orders text by the database's collation (in
/// most locales `alice` before `Bob`), SQLite by bytes (`Bob` first), and
/// the protocol is the same on both.
fn sort_by_user<T>(rows: &mut [T], user: impl Fn(&T) -> &str) {
    rows.sort_unstable_by(|a, b| user(a).cmp(user(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lost_answer_may_have_committed() {
        let broken = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(StoreError::Database(sqlx::Error::Io(broken)).may_have_committed());
        assert!(StoreError::Timeout(std::time::Duration::from_secs(10)).may_have_committed());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).may_have_committed());
        assert!(!StoreError::Stopped.may_have_committed());
    }
}
