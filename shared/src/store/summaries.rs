//! ChatList items (PROTOCOL.md 7): a chat as one member sees it, with its
//! last message, that message's status and how many messages the member
//! missed. Built from four set queries rather than per-chat round trips.

use std::collections::HashMap;

use super::{Store, StoreError};
use crate::model::{
    delivery_status, ChatId, ChatKind, ChatSummary, ChatView, LastMessage, MemberViews, MessageId, UserId,
};

/// id, kind, name, photo_url, last_message_id, last_event_id, last_activity_at.
type ChatRow = (i64, String, Option<String>, Option<String>, i64, i64, i64);

struct MemberMarks {
    user: UserId,
    delivered: MessageId,
    read: MessageId,
}

impl Store {
    /// `user`'s chats, newest activity first.
    pub async fn summaries(&self, user: &str) -> Result<Vec<ChatSummary>, StoreError> {
        self.summaries_filtered(user, 0).await
    }

    /// One chat as `user` sees it, if `user` is a member.
    pub async fn summary(&self, chat: ChatId, user: &str) -> Result<Option<ChatSummary>, StoreError> {
        Ok(self.summaries_filtered(user, chat).await?.into_iter().next())
    }

    /// `chat == 0` means every chat of `user`.
    async fn summaries_filtered(&self, user: &str, chat: ChatId) -> Result<Vec<ChatSummary>, StoreError> {
        let chats: Vec<ChatRow> = sqlx::query_as(
            "SELECT c.id, c.kind, c.name, c.photo_url, c.last_message_id, c.last_event_id, c.last_activity_at \
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
        let mut members: HashMap<ChatId, Vec<MemberMarks>> = HashMap::new();
        let mut rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT o.chat_id, o.user_id, o.delivered_mark, o.read_mark \
             FROM members m JOIN members o ON o.chat_id = m.chat_id \
             WHERE m.user_id = $1 AND ($2 = 0 OR m.chat_id = $2)",
        )
        .bind(user)
        .bind(chat)
        .fetch_all(&self.reader)
        .await?;
        super::sort_by_user(&mut rows, |row| &row.1);
        for (chat_id, user, delivered, read) in rows {
            members.entry(chat_id).or_default().push(MemberMarks { user, delivered, read });
        }
        // The latest message that is not deleted stands for the chat.
        let last: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(
            "SELECT s.chat_id, s.message_id, s.user_id, s.body, s.created_at \
             FROM messages s JOIN members m ON m.chat_id = s.chat_id AND m.user_id = $1 \
             WHERE ($2 = 0 OR s.chat_id = $2) AND s.message_id = \
               (SELECT MAX(x.message_id) FROM messages x WHERE x.chat_id = s.chat_id AND x.deleted_at IS NULL)",
        )
        .bind(user)
        .bind(chat)
        .fetch_all(&self.reader)
        .await?;
        let last: HashMap<ChatId, LastMessageRow> =
            last.into_iter().map(|(c, id, author, body, at)| (c, (id, author, body, at))).collect();
        let missed: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT s.chat_id, COUNT(*) FROM messages s JOIN members m ON m.chat_id = s.chat_id AND m.user_id = $1 \
             WHERE ($2 = 0 OR s.chat_id = $2) AND s.message_id > m.read_mark AND s.user_id <> $1 \
               AND s.deleted_at IS NULL \
             GROUP BY s.chat_id",
        )
        .bind(user)
        .bind(chat)
        .fetch_all(&self.reader)
        .await?;
        let missed: HashMap<ChatId, i64> = missed.into_iter().collect();

        chats
            .into_iter()
            .map(|row| {
                let marks = members.remove(&row.0).unwrap_or_default();
                let last_message = last.get(&row.0);
                let missed = missed.get(&row.0).copied().unwrap_or(0);
                let view = chat_view(row, &marks, last_message.cloned())?;
                Ok(view.as_seen_by(user, missed))
            })
            .collect()
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
        let missed: Vec<(String, i64)> = sqlx::query_as(
            "SELECT m.user_id, COUNT(*) FROM members m JOIN messages s ON s.chat_id = m.chat_id \
             WHERE m.chat_id = $1 AND s.message_id > m.read_mark AND s.user_id <> m.user_id \
               AND s.deleted_at IS NULL \
             GROUP BY m.user_id",
        )
        .bind(chat)
        .fetch_all(&self.reader)
        .await?;
        Ok(Some(MemberViews::new(chat_view(row, &marks, last)?, missed)))
    }
}

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
