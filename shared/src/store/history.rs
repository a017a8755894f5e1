//! Reading a chat back over REST: history pages and receipts. (The event
//! log's replay behind `sync` is in `replay.rs`.)

use std::sync::Arc;

use super::{membership, Store, StoreRefusal};
use crate::error::Refusal;
use crate::model::{delivery_status, Attachments, ChatId, MarkKind, MemberMarks, MessageId, MessageView, Receipt};

/// message_id, author, client_message_id, body, attachments, created_at,
/// edited_at, deleted_at.
type MessageRow = (i64, String, String, String, String, i64, Option<i64>, Option<i64>);

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 200;

#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryQuery {
    pub before: Option<MessageId>,
    pub after: Option<MessageId>,
    pub limit: Option<i64>,
}

impl Store {
    /// A page of history, ascending by messageId. With `before`, the page
    /// ends just below it (the newest such messages); with `after`, it starts
    /// just above it; with neither, it is the newest page.
    pub async fn messages(&self, chat: ChatId, user: &str, q: HistoryQuery) -> Result<Vec<MessageView>, StoreRefusal> {
        membership(&self.reader, chat, user).await?.require()?;
        let limit = q.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Refusal::bad_request(format!("limit must be 1..={MAX_PAGE}")).into());
        }
        let before = q.before.unwrap_or(i64::MAX);
        let after = q.after.unwrap_or(0);
        // Newest-first when paging back from `before` (or the end), oldest
        // first when paging forward from `after`; sorted ascending below.
        let order = if q.after.is_some() && q.before.is_none() { "ASC" } else { "DESC" };
        let rows: Vec<MessageRow> = sqlx::query_as(&format!(
            "SELECT message_id, user_id, client_message_id, body, attachments, created_at, edited_at, deleted_at \
             FROM messages WHERE chat_id = $1 AND message_id < $2 AND message_id > $3 \
             ORDER BY message_id {order} LIMIT $4"
        ))
        .bind(chat)
        .bind(before)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        let members: Arc<[MemberMarks]> = super::member_marks(&self.reader, chat)
            .await?
            .into_iter()
            .map(|(user_id, delivered, read)| MemberMarks { user_id, delivered, read })
            .collect();
        let mut views: Vec<MessageView> = rows
            .into_iter()
            .map(|(message_id, author, client_message_id, body, attachments, created_at, edited_at, deleted_at)| {
                MessageView {
                    chat_id: chat,
                    message_id,
                    status: delivery_status(
                        message_id,
                        &author,
                        members.iter().map(|m| (m.user_id.as_str(), m.delivered, m.read)),
                    ),
                    user_id: author,
                    client_message_id,
                    text: body,
                    attachments: Attachments::from_stored(attachments),
                    timestamp: created_at,
                    edited_at,
                    deleted: deleted_at.is_some(),
                    members: members.clone(),
                }
            })
            .collect();
        views.sort_by_key(|v| v.message_id);
        Ok(views)
    }

    /// For each current member other than the author: when `message_id`
    /// reached them and when they read it.
    pub async fn receipts(
        &self,
        chat: ChatId,
        user: &str,
        message_id: MessageId,
    ) -> Result<Vec<Receipt>, StoreRefusal> {
        membership(&self.reader, chat, user).await?.require()?;
        let author: Option<(String,)> =
            sqlx::query_as("SELECT user_id FROM messages WHERE chat_id = $1 AND message_id = $2")
                .bind(chat)
                .bind(message_id)
                .fetch_optional(&self.reader)
                .await?;
        let Some((author,)) = author else {
            return Err(Refusal::not_found(format!("no message {message_id} in this chat")).into());
        };
        // Each member's ranges of one kind never overlap, so the one holding
        // the message, if any, is the first that ends at or after it
        // (marks.rs), found by key per member. Read as every range of the
        // chat ending at or after the message, an early message's receipts
        // cost every mark made since.
        let first_at = |kind: &str| {
            format!(
                "(SELECT CASE WHEN r.first_message_id <= $2 THEN r.at END FROM mark_ranges r \
                  WHERE r.chat_id = $1 AND r.user_id = m.user_id AND r.kind = '{kind}' \
                    AND r.last_message_id >= $2 \
                  ORDER BY r.last_message_id LIMIT 1)"
            )
        };
        let sql = format!(
            "SELECT m.user_id, {}, {} FROM members m WHERE m.chat_id = $1",
            first_at(MarkKind::Delivered.as_str()),
            first_at(MarkKind::Read.as_str())
        );
        let mut rows: Vec<(String, Option<i64>, Option<i64>)> =
            sqlx::query_as(&sql).bind(chat).bind(message_id).fetch_all(&self.reader).await?;
        super::sort_by_user(&mut rows, |row| &row.0);
        Ok(rows
            .into_iter()
            .filter(|(member, ..)| *member != author)
            .map(|(user_id, delivered_at, read_at)| Receipt { user_id, delivered_at, read_at })
            .collect())
    }
}
