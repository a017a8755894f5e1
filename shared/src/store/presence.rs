//! What presence needs from the store: when users were last seen, and the
//! chats whose members are told when they come and go. Both take a whole
//! batch of users, because users come and go in crowds (a reconnect storm,
//! a heartbeat sweep), and one statement per user made a cluster's
//! announcer, one round trip and one flushed commit at a time, fall
//! seconds behind 10,000 clients going silent at once
//! (docs/benchmarks-journal.md, 2026-12-04, tenth session).

use std::collections::HashMap;

use super::batch_rows::{BatchRows, Column, Value};
use super::placeholders::Placeholders;
use super::{Backend, Store, StoreError};
use crate::model::{ChatId, Millis, UserId};

/// A user's presence change, as the store records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceChange<'a> {
    pub user: &'a str,
    /// When the user came (`online`) or went.
    pub at: Millis,
    pub online: bool,
}

impl Store {
    /// Records each of `changes`' users, in one statement: gone at the
    /// time given (their last seen; a time earlier than the one stored is
    /// kept out, as a retried change or a recount announces the time of an
    /// older change), or, where `online`, online since then (standalone's
    /// mark, migration 0010, which going clears). Each user at most once.
    pub async fn record_presence_all(&self, changes: &[PresenceChange<'_>]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut conn = self.writer.acquire().await?;
        let mut rows = BatchRows::new(&conn, &[Column::Text, Column::Int, Column::Int]);
        for change in changes {
            rows.push([Value::Text(change.user), Value::Int(change.at), Value::Int(i64::from(change.online))]);
        }
        let table = rows.table(&mut Placeholders::for_connection(&conn), "v");
        // `WHERE true` tells SQLite's parser that `ON CONFLICT` belongs to
        // the insert, not to a join of the select.
        let sql = format!(
            "INSERT INTO users (user_id, last_seen, online_since) \
             SELECT v.column1, CASE WHEN v.column3 = 0 THEN v.column2 END, CASE WHEN v.column3 = 1 THEN v.column2 END \
             FROM {table} WHERE true \
             ON CONFLICT (user_id) DO UPDATE SET last_seen = CASE \
               WHEN excluded.last_seen IS NOT NULL AND (users.last_seen IS NULL OR excluded.last_seen > users.last_seen) \
               THEN excluded.last_seen ELSE users.last_seen END, \
             online_since = excluded.online_since"
        );
        let mut args = sqlx::any::AnyArguments::default();
        rows.add_to(&mut args)?;
        sqlx::query_with(&sql, args).execute(&mut *conn).await?;
        Ok(())
    }

    /// Records the users a process marked online and did not see go (it
    /// died with their connections open) as last seen `at`, the first
    /// moment they are known gone, unless a later time is stored; returns
    /// how many. For standalone's start, before it takes connections.
    pub async fn settle_left_online(&self, at: Millis) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET last_seen = CASE WHEN last_seen IS NULL OR last_seen < $1 THEN $1 ELSE last_seen END, \
             online_since = NULL WHERE online_since IS NOT NULL",
        )
        .bind(at)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    /// `users` as a table `v` of one column, `column1`, and the arguments
    /// it binds: the left side of a lookup per user.
    pub(super) fn users_table<'q>(
        &self,
        users: &[&'q str],
    ) -> Result<(String, sqlx::any::AnyArguments<'q>), StoreError> {
        let keys = BatchRows::texts(self.backend, users);
        let table = keys.table(&mut Placeholders::for_backend(self.backend), "v");
        let mut args = sqlx::any::AnyArguments::default();
        keys.add_to(&mut args)?;
        Ok((table, args))
    }

    /// When each of `users` was last seen, in one statement (a user never
    /// seen is absent): `GET /v1/presence` asks about up to 500 at once,
    /// and one statement each kept the caller waiting for 500 round trips.
    /// Users are looked up by key, on PostgreSQL through a lateral
    /// subquery, as in [`Store::chat_ids_of_users`].
    pub async fn last_seen_all(&self, users: &[&str]) -> Result<HashMap<UserId, Millis>, StoreError> {
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let (table, args) = self.users_table(users)?;
        let sql = match self.backend {
            Backend::Postgres => format!(
                "SELECT v.column1, u.last_seen FROM {table} CROSS JOIN LATERAL \
                   (SELECT last_seen FROM users WHERE user_id = v.column1 AND last_seen IS NOT NULL OFFSET 0) AS u"
            ),
            Backend::Sqlite => format!(
                "SELECT v.column1, u.last_seen FROM {table} JOIN users u ON u.user_id = v.column1 \
                 WHERE u.last_seen IS NOT NULL"
            ),
        };
        let rows: Vec<(String, i64)> = sqlx::query_as_with(&sql, args).fetch_all(&self.reader).await?;
        Ok(rows.into_iter().collect())
    }

    /// The chats of each of `users` (a user in none is absent): whom their
    /// `online` and `offline` are for. A user's chats, not their
    /// co-members: 20 rows for a user in 20 chats of 10 rather than the
    /// 200 memberships of those chats, which made this read PostgreSQL's
    /// largest cost in a storm of such users reconnecting
    /// (docs/benchmarks-journal.md, twenty-seventh session). Memberships
    /// are probed by key, on PostgreSQL through a lateral subquery that
    /// `OFFSET 0` keeps from being flattened into a join the planner may
    /// hash (as in [`Store::chats_of_users`]).
    pub async fn chat_ids_of_users(&self, users: &[&str]) -> Result<HashMap<UserId, Vec<ChatId>>, StoreError> {
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let (table, args) = self.users_table(users)?;
        let sql = match self.backend {
            Backend::Postgres => format!(
                "SELECT v.column1, m.chat_id FROM {table} CROSS JOIN LATERAL \
                   (SELECT chat_id FROM members WHERE user_id = v.column1 OFFSET 0) AS m"
            ),
            Backend::Sqlite => {
                format!("SELECT v.column1, m.chat_id FROM {table} JOIN members m ON m.user_id = v.column1")
            }
        };
        let rows: Vec<(String, ChatId)> = sqlx::query_as_with(&sql, args).fetch_all(&self.reader).await?;
        let mut chats: HashMap<UserId, Vec<ChatId>> = HashMap::new();
        for (user, chat) in rows {
            chats.entry(user).or_default().push(chat);
        }
        Ok(chats)
    }
}
