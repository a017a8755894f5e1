//! Reading a chat back: history pages and receipts (REST), and the event log
//! replay behind `sync` (PROTOCOL.md 4).

use sqlx::AnyPool;

use super::event_log::decode_event;
use super::{members_of, membership, Backend, Membership, Store, StoreError, StoreRefusal};
use crate::error::{ErrorCode, Refusal};
use crate::marks::{timestamp_of, MarkedRange};
use crate::model::{delivery_status, ChatEvent, ChatId, EventId, MarkKind, MessageId, MessageView, Receipt};

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

/// Events of one chat after the client's `since`, up to a page.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncPage {
    pub events: Vec<ChatEvent>,
    /// The chat's last event id when the page was read.
    pub last_event_id: EventId,
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
        let marks: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT user_id, delivered_mark, read_mark FROM members WHERE chat_id = $1 ORDER BY user_id",
        )
        .bind(chat)
        .fetch_all(&self.reader)
        .await?;
        let members: Vec<String> = marks.iter().map(|m| m.0.clone()).collect();
        let mut views: Vec<MessageView> = rows
            .into_iter()
            .map(|(message_id, author, client_message_id, body, attachments, created_at, edited_at, deleted_at)| {
                let others = || marks.iter().filter(|m| m.0 != author);
                MessageView {
                    chat_id: chat,
                    message_id,
                    status: delivery_status(message_id, &author, marks.iter().map(|m| (m.0.as_str(), m.1, m.2))),
                    delivered_members: others().filter(|m| m.1 >= message_id).map(|m| m.0.clone()).collect(),
                    read_members: others().filter(|m| m.2 >= message_id).map(|m| m.0.clone()).collect(),
                    user_id: author,
                    client_message_id,
                    text: body,
                    attachments: serde_json::from_str(&attachments).unwrap_or_else(|_| serde_json::json!([])),
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
        let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT user_id, kind, first_message_id, last_message_id, at FROM mark_ranges \
             WHERE chat_id = $1 AND last_message_id >= $2 AND first_message_id <= $2",
        )
        .bind(chat)
        .bind(message_id)
        .fetch_all(&self.reader)
        .await?;
        let members = members_of(&self.reader, chat).await?;
        Ok(members
            .into_iter()
            .filter(|m| *m != author)
            .map(|member| {
                let ranges: Vec<MarkedRange> = rows
                    .iter()
                    .filter(|r| r.0 == member)
                    .map(|r| MarkedRange {
                        kind: if r.1 == MarkKind::Read.as_str() { MarkKind::Read } else { MarkKind::Delivered },
                        first: r.2,
                        last: r.3,
                        at: r.4,
                    })
                    .collect();
                Receipt {
                    delivered_at: timestamp_of(&ranges, MarkKind::Delivered, message_id),
                    read_at: timestamp_of(&ranges, MarkKind::Read, message_id),
                    user_id: member,
                }
            })
            .collect())
    }

    /// Up to `limit` events of `chat` after `since`, for `user`. Answers
    /// `sync_gap` when events the client lacks were pruned by retention, or
    /// when `since` is beyond the chat's log (the client's state belongs to
    /// another history; it must reload over REST either way).
    pub async fn events_after(
        &self,
        chat: ChatId,
        user: &str,
        since: EventId,
        limit: i64,
    ) -> Result<SyncPage, StoreRefusal> {
        let (chat_row, payloads) = read_sync_page(&self.reader, self.backend, chat, user, since, limit).await?;
        Membership::of(chat_row.map(|(_, _, member_rows)| member_rows)).require()?;
        // The chat exists: `require` refused a missing one.
        let (first_retained, last_event_id, _) = chat_row.unwrap_or_default();
        if since > last_event_id {
            return Err(Refusal::new(
                ErrorCode::SyncGap,
                format!("since {since} is beyond this chat's last event {last_event_id}"),
            )
            .into());
        }
        if since + 1 < first_retained {
            return Err(Refusal::new(
                ErrorCode::SyncGap,
                format!("events before {first_retained} are no longer kept; reload history"),
            )
            .into());
        }
        let events = payloads.iter().map(|p| decode_event(p)).collect::<Result<Vec<_>, StoreError>>()?;
        Ok(SyncPage { events, last_event_id })
    }

    /// Events of `chat` in `(after, upto]`, for a gateway filling a gap in
    /// what it received (no membership check: the gateway asks for itself).
    pub async fn events_between(
        &self,
        chat: ChatId,
        after: EventId,
        upto: EventId,
    ) -> Result<Vec<ChatEvent>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT payload FROM events WHERE chat_id = $1 AND id > $2 AND id <= $3 ORDER BY id")
                .bind(chat)
                .bind(after)
                .bind(upto)
                .fetch_all(&self.reader)
                .await?;
        rows.iter().map(|r| decode_event(&r.0)).collect()
    }
}

/// The chat's first retained and last event ids and the user's membership
/// rows (none if there is no such chat), and the page's event payloads,
/// which the caller discards unless the user may read them.
type SyncRead = (Option<(i64, i64, i64)>, Vec<String>);

/// The chat's row and a page of its events. Every client of a reconnect
/// storm syncs at once, and on PostgreSQL each statement is a round trip:
/// there the two come from one, whose lateral join keeps the page an index
/// range of the chat's events and returns the chat's row once, with no
/// payload, when the page is empty. SQLite has no lateral join, and in
/// process a statement is no round trip: two statements on one connection.
async fn read_sync_page(
    pool: &AnyPool,
    backend: Backend,
    chat: ChatId,
    user: &str,
    since: EventId,
    limit: i64,
) -> Result<SyncRead, StoreError> {
    if backend == Backend::Postgres {
        let rows: Vec<(i64, i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT c.first_retained_event_id, c.last_event_id, \
               (SELECT COUNT(*) FROM members m WHERE m.chat_id = c.id AND m.user_id = $2), e.payload \
             FROM chats c LEFT JOIN LATERAL \
               (SELECT id, payload FROM events WHERE chat_id = c.id AND id > $3 ORDER BY id LIMIT $4) AS e ON TRUE \
             WHERE c.id = $1 ORDER BY e.id",
        )
        .bind(chat)
        .bind(user)
        .bind(since)
        .bind(limit)
        .fetch_all(pool)
        .await?;
        let chat_row = rows.first().map(|&(first, last, member_rows, _)| (first, last, member_rows));
        return Ok((chat_row, rows.into_iter().filter_map(|row| row.3).collect()));
    }
    let mut conn = pool.acquire().await?;
    let chat_row: Option<(i64, i64, i64)> = sqlx::query_as(
        "SELECT first_retained_event_id, last_event_id, \
           (SELECT COUNT(*) FROM members m WHERE m.chat_id = c.id AND m.user_id = $2) \
         FROM chats c WHERE c.id = $1",
    )
    .bind(chat)
    .bind(user)
    .fetch_optional(&mut *conn)
    .await?;
    if chat_row.is_none() {
        return Ok((None, Vec::new()));
    }
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT payload FROM events WHERE chat_id = $1 AND id > $2 ORDER BY id LIMIT $3")
            .bind(chat)
            .bind(since)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
    Ok((chat_row, rows.into_iter().map(|(payload,)| payload).collect()))
}
