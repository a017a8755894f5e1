//! What presence needs from the store: when users were last seen, and who
//! is told when they come and go. Both take a whole batch of users, because
//! users come and go in crowds (a reconnect storm, a heartbeat sweep), and
//! one statement per user made a cluster's announcer, one round trip and
//! one flushed commit at a time, fall seconds behind 10,000 clients going
//! silent at once (docs/benchmarks-journal.md, 2026-12-04, tenth session).

use std::collections::HashMap;

use super::batch_rows::{BatchRows, Column, Value};
use super::placeholders::Placeholders;
use super::{Store, StoreError};
use crate::model::{Millis, UserId};

impl Store {
    /// Records when each of `seen`'s users was last seen, in one statement.
    /// Each user at most once.
    pub async fn set_last_seen_all(&self, seen: &[(&str, Millis)]) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        let mut conn = self.writer.acquire().await?;
        let mut rows = BatchRows::new(&conn, &[Column::Text, Column::Int]);
        for (user, at) in seen {
            rows.push([Value::Text(user), Value::Int(*at)]);
        }
        let table = rows.table(&mut Placeholders::for_connection(&conn), "v");
        // `WHERE true` tells SQLite's parser that `ON CONFLICT` belongs to
        // the insert, not to a join of the select.
        let sql = format!(
            "INSERT INTO users (user_id, last_seen) SELECT v.column1, v.column2 FROM {table} WHERE true \
             ON CONFLICT (user_id) DO UPDATE SET last_seen = excluded.last_seen"
        );
        let mut args = sqlx::any::AnyArguments::default();
        rows.add_to(&mut args)?;
        sqlx::query_with(&sql, args).execute(&mut *conn).await?;
        Ok(())
    }

    pub async fn last_seen(&self, user: &str) -> Result<Option<Millis>, StoreError> {
        let row: Option<(Option<i64>,)> = sqlx::query_as("SELECT last_seen FROM users WHERE user_id = $1")
            .bind(user)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.and_then(|r| r.0))
    }

    /// For each of `users`, everyone who shares at least one chat with
    /// them, themselves excepted; a user who shares none is absent.
    pub async fn co_members_of(&self, users: &[&str]) -> Result<HashMap<UserId, Vec<UserId>>, StoreError> {
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let mut conn = self.reader.acquire().await?;
        let mut keys = BatchRows::new(&conn, &[Column::Text]);
        for user in users {
            keys.push([Value::Text(user)]);
        }
        let table = keys.table(&mut Placeholders::for_connection(&conn), "v");
        let sql = format!(
            "SELECT DISTINCT m.user_id, o.user_id FROM {table} \
             JOIN members m ON m.user_id = v.column1 \
             JOIN members o ON o.chat_id = m.chat_id \
             WHERE o.user_id <> m.user_id"
        );
        let mut args = sqlx::any::AnyArguments::default();
        keys.add_to(&mut args)?;
        let rows: Vec<(String, String)> = sqlx::query_as_with(&sql, args).fetch_all(&mut *conn).await?;
        let mut co_members: HashMap<UserId, Vec<UserId>> = HashMap::new();
        for (user, other) in rows {
            co_members.entry(user).or_default().push(other);
        }
        Ok(co_members)
    }
}
