//! Where each chat a `sync` names stands, read before any page: the last
//! event id its replay runs up to, or why the client gets none. One
//! statement for every chat a client names, and on PostgreSQL for many
//! clients' at once.
//!
//! Why before the pages: after a reconnect a client has seen nearly every
//! event of nearly every chat it names, so nearly every page read comes
//! back empty. A storm of 19,000 users in 20 chats each queued 380,000
//! such reads, and its clients waited over 20 s for them
//! (docs/benchmarks-journal.md, twenty-seventh session). With the bounds
//! read first, only chats with something to replay are paged.

use std::collections::HashMap;

use sqlx::any::AnyArguments;

use super::batch_rows::{BatchRows, Column, Value};
use super::placeholders::Placeholders;
use super::replay::replay_bound;
use super::{Backend, Store, StoreError};
use crate::error::Refusal;
use crate::model::{ChatId, EventId};

/// Chats per statement: three parameters each on SQLite, well under its
/// limit on parameters.
const MOST_CHATS: usize = 2_000;

/// One client's `sync`: its user and the chats it names, with its `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundsRequest {
    pub user: String,
    pub since: Vec<(ChatId, EventId)>,
}

/// Per chat named, in order: the last event id to replay up to (the
/// client's `since` when there is nothing to replay), or the refusal.
pub type Bounds = Vec<Result<EventId, Refusal>>;

impl Store {
    /// The [`Bounds`] of each of `requests`, in their order. A database
    /// failure fails them all.
    pub async fn replay_bounds(&self, requests: &[BoundsRequest]) -> Result<Vec<Bounds>, StoreError> {
        let asks: Vec<(&str, ChatId, EventId)> =
            requests.iter().flat_map(|r| r.since.iter().map(|&(chat, since)| (r.user.as_str(), chat, since))).collect();
        let mut rows = HashMap::with_capacity(asks.len());
        for (chunk, part) in asks.chunks(MOST_CHATS).enumerate() {
            self.read_chat_rows(chunk * MOST_CHATS, part, &mut rows).await?;
        }
        let mut bounds = asks.iter().enumerate().map(|(at, &(_, _, since))| replay_bound(rows.remove(&at), since));
        Ok(requests.iter().map(|r| bounds.by_ref().take(r.since.len()).collect()).collect())
    }

    /// Each ask's chat row (first retained and last event ids, the user's
    /// member rows) by the ask's index from `first`; none for no such chat.
    async fn read_chat_rows(
        &self,
        first: usize,
        asks: &[(&str, ChatId, EventId)],
        rows: &mut HashMap<usize, (i64, i64, i64)>,
    ) -> Result<(), StoreError> {
        let mut table = BatchRows::for_backend(self.backend, &[Column::Int, Column::Int, Column::Text]);
        for (at, &(user, chat, _)) in asks.iter().enumerate() {
            table.push([Value::Int((first + at) as i64), Value::Int(chat), Value::Text(user)]);
        }
        let table_sql = table.table(&mut Placeholders::for_backend(self.backend), "v");
        let member_rows = "(SELECT COUNT(*) FROM members m WHERE m.chat_id = v.column2 AND m.user_id = v.column3)";
        // Each ask's chat probed by key: on PostgreSQL through a lateral
        // subquery that `OFFSET 0` keeps the planner from flattening into
        // a join it may hash (see `Store::chats_of_users`); SQLite, which
        // has no lateral joins, probes its join by key.
        let sql = match self.backend {
            Backend::Postgres => format!(
                "SELECT v.column1, c.first_retained_event_id, c.last_event_id, {member_rows} \
                 FROM {table_sql} CROSS JOIN LATERAL \
                   (SELECT first_retained_event_id, last_event_id FROM chats WHERE id = v.column2 OFFSET 0) AS c"
            ),
            Backend::Sqlite => format!(
                "SELECT v.column1, c.first_retained_event_id, c.last_event_id, {member_rows} \
                 FROM {table_sql} JOIN chats c ON c.id = v.column2"
            ),
        };
        let mut args = AnyArguments::default();
        table.add_to(&mut args)?;
        let found: Vec<(i64, i64, i64, i64)> = sqlx::query_as_with(&sql, args).fetch_all(&self.reader).await?;
        rows.extend(found.into_iter().map(|(at, first, last, member_rows)| (at as usize, (first, last, member_rows))));
        Ok(())
    }
}
