//! ChatList items (PROTOCOL.md 7): a chat as one member sees it, with its
//! last message, that message's status and how many messages the member
//! missed. Built from four set queries rather than per-chat round trips.

use std::collections::HashMap;

use super::{Store, StoreError};
use crate::model::{delivery_status, ChatId, ChatKind, ChatSummary, MessageId, UserId};

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
        let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT o.chat_id, o.user_id, o.delivered_mark, o.read_mark \
             FROM members m JOIN members o ON o.chat_id = m.chat_id \
             WHERE m.user_id = $1 AND ($2 = 0 OR m.chat_id = $2) ORDER BY o.user_id",
        )
        .bind(user)
        .bind(chat)
        .fetch_all(&self.reader)
        .await?;
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
        let last: HashMap<ChatId, (i64, String, String, i64)> =
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
            .map(|(id, kind, name, photo_url, last_message_id, last_event_id, last_activity_at)| {
                let kind = ChatKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("chat kind {kind}")))?;
                let marks = members.remove(&id).unwrap_or_default();
                let member_ids: Vec<UserId> = marks.iter().map(|m| m.user.clone()).collect();
                // A dialog is named after the other member, as the caller sees it.
                let name = match kind {
                    ChatKind::Dialog => member_ids.iter().find(|m| *m != user).cloned().unwrap_or_default(),
                    ChatKind::Group => name.unwrap_or_default(),
                };
                let last_message = last.get(&id);
                Ok(ChatSummary {
                    kind,
                    id,
                    name,
                    photo_url,
                    last_message_text: last_message.map(|l| l.2.clone()),
                    last_message_time: last_message.map(|l| l.3),
                    last_message_author: last_message.map(|l| l.1.clone()),
                    last_message_status: last_message.map(|(message_id, author, _, _)| {
                        delivery_status(
                            *message_id,
                            author,
                            marks.iter().map(|m| (m.user.as_str(), m.delivered, m.read)),
                        )
                    }),
                    missed: missed.get(&id).copied().unwrap_or(0),
                    is_mine: last_message.is_some_and(|l| l.1 == user),
                    members: member_ids,
                    last_message_id,
                    last_event_id,
                    last_activity_at,
                })
            })
            .collect()
    }
}
