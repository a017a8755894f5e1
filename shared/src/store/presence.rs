//! What presence needs from the store: when users were last seen, and who
//! is told when they come and go. Both take a whole batch of users, because
//! users come and go in crowds (a reconnect storm, a heartbeat sweep), and
//! one statement per user made a cluster's announcer, one round trip and
//! one flushed commit at a time, fall seconds behind 10,000 clients going
//! silent at once (docs/benchmarks-journal.md, 2026-12-04, tenth session).

use std::collections::{HashMap, HashSet};

use super::batch_rows::{BatchRows, Column, Value};
use super::placeholders::Placeholders;
use super::{Backend, Store, StoreError};
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
    ///
    /// The statement returns each chat of theirs once, with its members, and
    /// the pairs are made here: asked for pairs, PostgreSQL returned (and
    /// deduplicated) a row per pair, which for a chat of 1,000 is 999 rows
    /// for each of its members that comes or goes, instead of its 1,000
    /// members once per batch. Every membership is read by key: on
    /// PostgreSQL the users' and then their chats' through lateral
    /// subqueries that `OFFSET 0` keeps from being flattened into joins (as
    /// in [`Store::chats_of_users`]). Read through joins or `IN`, the
    /// planner, guessing a hundred rows, may hash a scan of every
    /// membership, a cost that grows with the table instead of with the
    /// batch: one such version took 1.7 ms a call in a reconnect storm,
    /// against 0.14 ms for the pairs and 0.07 ms for this one
    /// (docs/benchmarks-journal.md, fifteenth session).
    pub async fn co_members_of(&self, users: &[&str]) -> Result<HashMap<UserId, Vec<UserId>>, StoreError> {
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let mut keys = BatchRows::for_backend(self.backend, &[Column::Text]);
        for user in users {
            keys.push([Value::Text(user)]);
        }
        let table = keys.table(&mut Placeholders::for_backend(self.backend), "v");
        let sql = match self.backend {
            Backend::Postgres => format!(
                "SELECT c.chat_id, o.user_id FROM \
                   (SELECT DISTINCT m.chat_id FROM {table} CROSS JOIN LATERAL \
                     (SELECT chat_id FROM members WHERE user_id = v.column1 OFFSET 0) AS m) AS c \
                 CROSS JOIN LATERAL (SELECT user_id FROM members WHERE chat_id = c.chat_id OFFSET 0) AS o"
            ),
            Backend::Sqlite => format!(
                "SELECT o.chat_id, o.user_id FROM members o \
                 WHERE o.chat_id IN (SELECT m.chat_id FROM {table} JOIN members m ON m.user_id = v.column1)"
            ),
        };
        let mut args = sqlx::any::AnyArguments::default();
        keys.add_to(&mut args)?;
        let rows: Vec<(i64, String)> = sqlx::query_as_with(&sql, args).fetch_all(&self.reader).await?;
        Ok(pairs_by_chat(users, &rows))
    }
}

/// From `members` as (chat, member) rows: for each of `asked`, the others
/// of every chat they are in, each once.
fn pairs_by_chat(asked: &[&str], members: &[(i64, String)]) -> HashMap<UserId, Vec<UserId>> {
    let asked: HashSet<&str> = asked.iter().copied().collect();
    let mut chats: HashMap<i64, Vec<&str>> = HashMap::new();
    for (chat, user) in members {
        chats.entry(*chat).or_default().push(user);
    }
    let mut others: HashMap<&str, HashSet<&str>> = HashMap::new();
    for chat in chats.values() {
        for &user in chat.iter().filter(|user| asked.contains(*user)) {
            let of_user = others.entry(user).or_default();
            of_user.extend(chat.iter().copied().filter(|&other| other != user));
        }
    }
    others
        .into_iter()
        .filter(|(_, of_user)| !of_user.is_empty())
        .map(|(user, of_user)| (user.to_owned(), of_user.into_iter().map(str::to_owned).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(members: &[(i64, &str)]) -> Vec<(i64, String)> {
        members.iter().map(|(chat, user)| (*chat, user.to_string())).collect()
    }

    fn sorted(mut users: Vec<UserId>) -> Vec<UserId> {
        users.sort();
        users
    }

    #[test]
    fn each_asked_user_gets_the_others_of_all_their_chats_once() {
        let members =
            rows(&[(1, "ann"), (2, "bob"), (1, "bob"), (1, "cat"), (3, "eve"), (2, "ann"), (2, "dan"), (3, "bob")]);
        let mut pairs = pairs_by_chat(&["ann", "eve", "zed"], &members);
        assert_eq!(sorted(pairs.remove("ann").expect("ann")), ["bob", "cat", "dan"], "bob, in both chats, once");
        assert_eq!(sorted(pairs.remove("eve").expect("eve")), ["bob"]);
        assert!(pairs.is_empty(), "only the asked, and only those who share a chat: {pairs:?}");
    }

    #[test]
    fn a_user_alone_in_their_chats_shares_none() {
        let pairs = pairs_by_chat(&["ann"], &rows(&[(1, "ann"), (2, "ann")]));
        assert!(pairs.is_empty(), "{pairs:?}");
    }
}
