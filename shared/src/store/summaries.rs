//! ChatList items (PROTOCOL.md 7): a chat as one member sees it, with its
//! last message, that message's status and how many messages the member
//! missed. Built from set queries rather than per-chat round trips, in two
//! steps, so that a long list need not be held whole: the heads of a
//! user's chats (each chat, its last message but for its text, the user's
//! missed count and how many members it has, in two statements), then the
//! members, marks and last messages' texts of some of them at a time.

use std::collections::HashMap;

use sqlx::any::AnyArguments;

use super::batch_rows::{BatchRows, Column, Value};
use super::placeholders::Placeholders;
use super::{Backend, Store, StoreError};
use crate::model::{
    delivery_status, ChatId, ChatKind, ChatSummary, ChatView, LastMessage, MemberViews, MessageId, Millis, UserId,
};

/// id, kind, name, photo_url, last_message_id, last_event_id, last_activity_at.
type ChatRow = (i64, String, Option<String>, Option<String>, i64, i64, i64);
/// A [`ChatRow`], how many members the chat has and how many messages the
/// user missed in it.
type HeadRow = (i64, String, Option<String>, Option<String>, i64, i64, i64, i64, i64);

struct MemberMarks {
    user: UserId,
    delivered: MessageId,
    read: MessageId,
}

/// A chat of a user's list before its members and its last message's
/// text are read.
pub struct ChatHead {
    row: ChatRow,
    /// The last message that is not deleted: id, author, time.
    last: Option<(MessageId, UserId, Millis)>,
    missed: i64,
    /// How many members the chat had when its head was read: what reading
    /// them costs.
    pub members: i64,
    /// How long its last message's text was (0 without one).
    pub text_bytes: i64,
}

/// How much one part of a list may read: a chat above a bound is a part
/// of its own.
#[derive(Clone, Copy)]
pub struct PartBounds {
    pub members: i64,
    pub text_bytes: i64,
    pub chats: usize,
}

/// `heads` in order, in parts within `bounds`.
pub fn in_parts(heads: Vec<ChatHead>, bounds: PartBounds) -> Vec<Vec<ChatHead>> {
    let mut parts: Vec<Vec<ChatHead>> = Vec::new();
    let (mut members, mut text_bytes) = (0, 0);
    for head in heads {
        match parts.last_mut() {
            Some(part)
                if part.len() < bounds.chats
                    && members + head.members <= bounds.members
                    && text_bytes + head.text_bytes <= bounds.text_bytes =>
            {
                members += head.members;
                text_bytes += head.text_bytes;
                part.push(head);
            }
            _ => {
                (members, text_bytes) = (head.members, head.text_bytes);
                parts.push(vec![head]);
            }
        }
    }
    parts
}

impl Store {
    /// `user`'s chats, newest activity first.
    pub async fn summaries(&self, user: &str) -> Result<Vec<ChatSummary>, StoreError> {
        let heads = self.heads_filtered(user, 0).await?;
        self.summaries_of(user, heads).await
    }

    /// One chat as `user` sees it, if `user` is a member.
    pub async fn summary(&self, chat: ChatId, user: &str) -> Result<Option<ChatSummary>, StoreError> {
        let heads = self.heads_filtered(user, chat).await?;
        Ok(self.summaries_of(user, heads).await?.into_iter().next())
    }

    /// The heads of `user`'s chats, newest activity first: their list
    /// before the members are read ([`Store::summaries_of`]).
    pub async fn chat_heads(&self, user: &str) -> Result<Vec<ChatHead>, StoreError> {
        self.heads_filtered(user, 0).await
    }

    /// `heads` as `user` sees them, with their members, marks and last
    /// messages' texts as they are now, in two statements. A chat `user`
    /// has left since its head was read is left out.
    pub async fn summaries_of(&self, user: &str, heads: Vec<ChatHead>) -> Result<Vec<ChatSummary>, StoreError> {
        if heads.is_empty() {
            return Ok(Vec::new());
        }
        let mut texts = self.last_texts(&heads).await?;
        let mut keys = BatchRows::for_backend(self.backend, &[Column::Int]);
        for head in &heads {
            keys.push([Value::Int(head.row.0)]);
        }
        let table = keys.table(&mut Placeholders::for_backend(self.backend), "v");
        // On PostgreSQL each chat's members are probed by key: `OFFSET 0`
        // keeps the planner from flattening the subquery into a join it
        // may hash (as in `Store::chats_of_users`).
        let sql = match self.backend {
            Backend::Postgres => format!(
                "SELECT v.column1, o.user_id, o.delivered_mark, o.read_mark FROM {table} CROSS JOIN LATERAL \
                   (SELECT user_id, delivered_mark, read_mark FROM members WHERE chat_id = v.column1 OFFSET 0) AS o"
            ),
            Backend::Sqlite => format!(
                "SELECT o.chat_id, o.user_id, o.delivered_mark, o.read_mark FROM {table} \
                 JOIN members o ON o.chat_id = v.column1"
            ),
        };
        let mut args = AnyArguments::default();
        keys.add_to(&mut args)?;
        let mut rows: Vec<(i64, String, i64, i64)> = sqlx::query_as_with(&sql, args).fetch_all(&self.reader).await?;
        super::sort_by_user(&mut rows, |row| &row.1);
        let mut members: HashMap<ChatId, Vec<MemberMarks>> = HashMap::new();
        for (chat_id, user, delivered, read) in rows {
            members.entry(chat_id).or_default().push(MemberMarks { user, delivered, read });
        }
        heads
            .into_iter()
            .filter_map(|head| {
                let marks = members.remove(&head.row.0).unwrap_or_default();
                if !marks.iter().any(|m| m.user == user) {
                    return None;
                }
                let last = head.last.map(|(id, author, at)| {
                    let text = texts.remove(&head.row.0).unwrap_or_default();
                    (id, author, text, at)
                });
                Some(chat_view(head.row, &marks, last).map(|view| view.as_seen_by(user, head.missed)))
            })
            .collect()
    }

    /// `chat == 0` means every chat of `user`.
    async fn heads_filtered(&self, user: &str, chat: ChatId) -> Result<Vec<ChatHead>, StoreError> {
        // The user's unread count per chat, by key, as in
        // [`MISSED_BY_MEMBER`]: in a chat they have never written in, the
        // chat's counter less their read mark, less the deleted messages
        // above it; otherwise the messages above their mark by others
        // that are not deleted, counted. (Counted in every chat, the
        // messages above the mark cost a lurker in many long chats every
        // message of them. As a join, PostgreSQL may hash every message
        // of every chat against the user's memberships; it did on a small
        // table.) How many members a chat has is the count its row keeps
        // (migration 0009), where it is of the chat's membership now.
        let chats: Vec<HeadRow> = sqlx::query_as(
            "SELECT c.id, c.kind, c.name, c.photo_url, c.last_message_id, c.last_event_id, c.last_activity_at, \
               CASE WHEN c.member_count_version = c.membership_version THEN c.member_count \
                 ELSE (SELECT COUNT(*) FROM members o WHERE o.chat_id = c.id) END, \
               CASE WHEN (SELECT w.client_message_id FROM messages w WHERE w.chat_id = c.id AND w.user_id = $1 \
                          ORDER BY w.client_message_id LIMIT 1) IS NOT NULL \
                 THEN (SELECT COUNT(*) FROM messages s WHERE s.chat_id = c.id AND s.message_id > m.read_mark \
                         AND s.user_id <> $1 AND s.deleted_at IS NULL) \
                 ELSE c.last_message_id - m.read_mark \
                   - (SELECT COUNT(*) FROM messages s WHERE s.chat_id = c.id AND s.deleted_at IS NOT NULL \
                        AND s.message_id > m.read_mark) \
               END \
             FROM chats c JOIN members m ON m.chat_id = c.id \
             WHERE m.user_id = $1 AND ($2 = 0 OR c.id = $2) \
             ORDER BY c.last_activity_at DESC, c.id DESC",
        )
        .bind(user)
        .bind(chat)
        .fetch_all(&self.reader)
        .await?;
        if chats.is_empty() {
            return Ok(Vec::new());
        }
        // The latest message that is not deleted stands for the chat: found
        // per chat from the top of its messages, where the first that is not
        // deleted ends the search. (Compared with every message of the
        // user's chats, the read cost what they held: 405 ms on PostgreSQL
        // for a list of one group of 2,000 messages, and more for every
        // message a user's chats hold.) Its text, up to `MAX_MESSAGE_BYTES`
        // characters, is read with the chat's part.
        let last: Vec<(i64, i64, String, i64, i64)> = sqlx::query_as(
            "SELECT s.chat_id, s.message_id, s.user_id, CAST(LENGTH(s.body) AS BIGINT), s.created_at \
             FROM (SELECT m.chat_id, \
                     (SELECT x.message_id FROM messages x WHERE x.chat_id = m.chat_id AND x.deleted_at IS NULL \
                      ORDER BY x.message_id DESC LIMIT 1) AS last_id \
                   FROM members m WHERE m.user_id = $1 AND ($2 = 0 OR m.chat_id = $2)) AS l \
             JOIN messages s ON s.chat_id = l.chat_id AND s.message_id = l.last_id",
        )
        .bind(user)
        .bind(chat)
        .fetch_all(&self.reader)
        .await?;
        let mut last: HashMap<ChatId, (i64, String, i64, i64)> =
            last.into_iter().map(|(c, id, author, length, at)| (c, (id, author, length, at))).collect();
        Ok(chats
            .into_iter()
            .map(|(id, kind, name, photo_url, last_message_id, last_event_id, last_activity_at, members, missed)| {
                let last = last.remove(&id);
                ChatHead {
                    row: (id, kind, name, photo_url, last_message_id, last_event_id, last_activity_at),
                    text_bytes: last.as_ref().map_or(0, |l| l.2),
                    last: last.map(|(message, author, _, at)| (message, author, at)),
                    missed,
                    members,
                }
            })
            .collect())
    }

    /// The texts of `heads`' last messages, by chat: empty for one deleted
    /// since its head was read.
    async fn last_texts(&self, heads: &[ChatHead]) -> Result<HashMap<ChatId, String>, StoreError> {
        let mut keys = BatchRows::for_backend(self.backend, &[Column::Int, Column::Int]);
        for head in heads {
            if let Some((message, ..)) = &head.last {
                keys.push([Value::Int(head.row.0), Value::Int(*message)]);
            }
        }
        if keys.len() == 0 {
            return Ok(HashMap::new());
        }
        let table = keys.table(&mut Placeholders::for_backend(self.backend), "v");
        let sql = match self.backend {
            Backend::Postgres => format!(
                "SELECT v.column1, s.body FROM {table} CROSS JOIN LATERAL \
                   (SELECT body FROM messages WHERE chat_id = v.column1 AND message_id = v.column2 OFFSET 0) AS s"
            ),
            Backend::Sqlite => format!(
                "SELECT s.chat_id, s.body FROM {table} \
                 JOIN messages s ON s.chat_id = v.column1 AND s.message_id = v.column2"
            ),
        };
        let mut args = AnyArguments::default();
        keys.add_to(&mut args)?;
        let rows: Vec<(i64, String)> = sqlx::query_as_with(&sql, args).fetch_all(&self.reader).await?;
        Ok(rows.into_iter().collect())
    }

    /// `chat` as each of its members sees it, read for all of them at once:
    /// announcing a change to a group of N members this way reads O(N)
    /// rows, where N calls of [`summary`](Self::summary) would read N².
    /// `None` if there is no such chat.
    pub async fn member_views(&self, chat: ChatId) -> Result<Option<MemberViews>, StoreError> {
        let row: Option<ChatRow> = sqlx::query_as(
            "SELECT id, kind, name, photo_url, last_message_id, last_event_id, last_activity_at \
             FROM chats WHERE id = $1",
        )
        .bind(chat)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let marks = super::member_marks(&self.reader, chat).await?;
        let marks: Vec<MemberMarks> =
            marks.into_iter().map(|(user, delivered, read)| MemberMarks { user, delivered, read }).collect();
        let last: Option<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT message_id, user_id, body, created_at FROM messages \
             WHERE chat_id = $1 AND deleted_at IS NULL ORDER BY message_id DESC LIMIT 1",
        )
        .bind(chat)
        .fetch_optional(&self.reader)
        .await?;
        let missed: Vec<(String, i64)> = sqlx::query_as(MISSED_BY_MEMBER).bind(chat).fetch_all(&self.reader).await?;
        Ok(Some(MemberViews::new(chat_view(row, &marks, last)?, missed)))
    }
}

/// Each member's unread count in chat `$1`, for members behind its last
/// message, in two sorted passes; in both, a mark sorts before a message
/// of the same id, which it has read.
///
/// - Members who have written in the chat: one pass over its messages
///   that are not deleted, above the lowest of these members' read marks.
///   Above a mark lie the messages counted before it, the member's own
///   among them those counted before it in their own partition.
/// - Members who have not: as message ids are given one by one per chat
///   and messages are only removed with their chat, their unread count
///   is the chat's counter less their mark, less the deleted messages
///   above it, which one pass over the chat's deleted messages
///   (`messages_deleted`, migration 0008) counts for all of them.
///
/// Each pass reads its messages in a subquery of their own, which the
/// `LIMIT` keeps SQLite from merging into the pass. Merged, SQLite chose
/// its index for the pass's order rather than for the bound, and read
/// every message of the chat: by the index of senders (which gives the
/// partition's order) in the first pass, by the key rather than the
/// deleted messages' index in the second; a million, 0.2 s each, in a
/// group whose writers had read everything.
///
/// Whether a member has written is found by key in the index of each
/// sender's clientMessageIds, in their order: PostgreSQL reads that from
/// the index, where for an `EXISTS` it scanned the table (a database of
/// one chat of few authors).
///
/// Counted member by member, a group of 10,000 with 2,000 messages most
/// had not read cost 20 million index entries. In one pass over the
/// messages above the lowest mark of all, one member who had read nothing
/// made every deletion or membership change of a group cost its whole
/// history: 2.4 s on SQLite and 3.1 s on PostgreSQL for a million
/// messages (docs/benchmarks-journal.md, forty-seventh session). Such a member
/// nearly always writes nothing either; one who writes and reads nothing
/// still costs the messages above their mark.
const MISSED_BY_MEMBER: &str = "\
    WITH marks AS ( \
      SELECT m.user_id, m.read_mark, \
        (SELECT o.client_message_id FROM messages o WHERE o.chat_id = $1 AND o.user_id = m.user_id \
         ORDER BY o.client_message_id LIMIT 1) IS NOT NULL AS wrote \
      FROM members m JOIN chats c ON c.id = m.chat_id \
      WHERE m.chat_id = $1 AND m.read_mark < c.last_message_id) \
    SELECT user_id, messages_above - own_above FROM ( \
      SELECT user_id, is_message, \
        SUM(is_message) OVER (ORDER BY at DESC, is_message ASC ROWS UNBOUNDED PRECEDING) AS messages_above, \
        SUM(is_message) OVER (PARTITION BY user_id ORDER BY at DESC, is_message ASC ROWS UNBOUNDED PRECEDING) \
          AS own_above \
      FROM (SELECT * FROM (SELECT message_id AS at, 1 AS is_message, user_id FROM messages \
              WHERE chat_id = $1 AND deleted_at IS NULL \
                AND message_id > (SELECT COALESCE(MIN(read_mark), (SELECT last_message_id FROM chats WHERE id = $1)) \
                                  FROM marks WHERE wrote) \
              LIMIT 9223372036854775807) AS live \
            UNION ALL SELECT read_mark, 0, user_id FROM marks WHERE wrote) AS points \
    ) AS running \
    WHERE is_message = 0 AND messages_above > own_above \
    UNION ALL \
    SELECT user_id, (SELECT last_message_id FROM chats WHERE id = $1) - at - deleted_above FROM ( \
      SELECT user_id, at, is_message, \
        SUM(is_message) OVER (ORDER BY at DESC, is_message ASC ROWS UNBOUNDED PRECEDING) AS deleted_above \
      FROM (SELECT * FROM (SELECT message_id AS at, 1 AS is_message, user_id FROM messages \
              WHERE chat_id = $1 AND deleted_at IS NOT NULL \
                AND message_id > (SELECT COALESCE(MIN(read_mark), (SELECT last_message_id FROM chats WHERE id = $1)) \
                                  FROM marks WHERE NOT wrote) \
              LIMIT 9223372036854775807) AS deleted \
            UNION ALL SELECT read_mark, 0, user_id FROM marks WHERE NOT wrote) AS points \
    ) AS running \
    WHERE is_message = 0";

/// The last message that is not deleted, as read: id, author, text, time.
type LastMessageRow = (i64, String, String, i64);

fn chat_view(row: ChatRow, marks: &[MemberMarks], last: Option<LastMessageRow>) -> Result<ChatView, StoreError> {
    let (id, kind, name, photo_url, last_message_id, last_event_id, last_activity_at) = row;
    let kind = ChatKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("chat kind {kind}")))?;
    let last_message = last.map(|(id, author, text, at)| LastMessage { id, author, text, at });
    let last_message_status = last_message.as_ref().map(|last| {
        delivery_status(last.id, &last.author, marks.iter().map(|m| (m.user.as_str(), m.delivered, m.read)))
    });
    Ok(ChatView {
        kind,
        id,
        name,
        photo_url,
        members: marks.iter().map(|m| m.user.clone()).collect(),
        last_message,
        last_message_status,
        last_message_id,
        last_event_id,
        last_activity_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(id: i64, members: i64) -> ChatHead {
        ChatHead { row: (id, "group".into(), None, None, 0, 0, 0), last: None, missed: 0, members, text_bytes: members }
    }

    #[test]
    fn parts_keep_the_order_within_their_bounds() {
        let heads = [(1, 3), (2, 3), (3, 9), (4, 1), (5, 1), (6, 1), (7, 2)].map(|(id, members)| head(id, members));
        // Members bound here, text bytes (as many as members) there.
        let bounds = |members, text_bytes| PartBounds { members, text_bytes, chats: 2 };
        let parts = in_parts(heads.into(), bounds(6, 100));
        let ids: Vec<Vec<i64>> = parts.iter().map(|part| part.iter().map(|h| h.row.0).collect()).collect();
        assert_eq!(ids, [vec![1, 2], vec![3], vec![4, 5], vec![6, 7]]);
        let by_text: Vec<Vec<i64>> = in_parts(
            [(1, 3), (2, 3), (3, 9), (4, 1), (5, 1), (6, 1), (7, 2)].map(|(id, members)| head(id, members)).into(),
            bounds(100, 6),
        )
        .iter()
        .map(|part| part.iter().map(|h| h.row.0).collect())
        .collect();
        assert_eq!(by_text, ids);
        assert!(in_parts(Vec::new(), bounds(6, 6)).is_empty());
    }
}
