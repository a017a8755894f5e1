//! The event log read back: the pages `sync` replays (PROTOCOL.md 4), one
//! client's or many clients' at once, and the events a gateway fills a gap
//! in its live stream with.
//!
//! Why many at once: every client of a reconnect storm syncs at the same
//! moment, and on PostgreSQL each statement is a round trip whose fixed
//! cost is most of what a small page costs (docs/benchmarks-journal.md,
//! fourteenth session).

use std::collections::HashMap;

use sqlx::any::AnyArguments;
use sqlx::AnyPool;

use super::batch_rows::{add, BatchRows, Column, Value};
use super::event_log::decode_event;
use super::placeholders::Placeholders;
use super::{Backend, Membership, Store, StoreError, StoreRefusal};
use crate::error::{ErrorCode, Refusal};
use crate::model::{ChatEvent, ChatId, EventId};

/// Events of one chat after the client's `since`, up to a page.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncPage {
    pub events: Vec<ChatEvent>,
    /// The chat's last event id when the page was read.
    pub last_event_id: EventId,
}

/// One client's request for a page: `user`'s events of `chat` after `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub chat: ChatId,
    pub user: String,
    pub since: EventId,
}

/// The chat's first retained and last event ids and the user's membership
/// rows (none if there is no such chat), and the page's event payloads,
/// which are discarded unless the user may read them.
type PageRead = (Option<(i64, i64, i64)>, Vec<String>);

/// A page ends once this many bytes of payload (characters, as the
/// databases count them) came before an event, however few events that
/// is; at least one event always comes. A client that does not read holds
/// two pages on the server until its heartbeat closes it, and a page of
/// 500 events of 64 KiB each was 32 MB.
const PAGE_BYTES: i64 = 1 << 20;

/// The events of a page as a subquery: those matching `condition`, in id
/// order, at most `limit` of them, and none once [`PAGE_BYTES`] (the
/// parameter `bytes`) came before. The window runs over `limit` rows at
/// most.
fn page_events(condition: &str, limit: &str, bytes: &str) -> String {
    format!(
        "SELECT id, payload FROM \
           (SELECT id, payload, SUM(LENGTH(payload)) OVER (ORDER BY id) - LENGTH(payload) AS before FROM \
             (SELECT id, payload FROM events WHERE {condition} ORDER BY id LIMIT {limit}) AS p) AS w \
         WHERE before < {bytes}"
    )
}

impl Store {
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
        let read = read_page(&self.reader, self.backend, chat, user, since, limit).await?;
        Ok(page_from(read, since)??)
    }

    /// [`Self::events_after`] for each of `requests`, in their order; on
    /// PostgreSQL in one statement. A database failure fails them all.
    pub async fn events_after_many(
        &self,
        requests: &[PageRequest],
        limit: i64,
    ) -> Result<Vec<Result<SyncPage, Refusal>>, StoreError> {
        let reads = if self.backend == Backend::Postgres && requests.len() > 1 {
            read_pages_at_once(&self.reader, requests, limit).await?
        } else {
            let mut reads = Vec::with_capacity(requests.len());
            for r in requests {
                reads.push(read_page(&self.reader, self.backend, r.chat, &r.user, r.since, limit).await?);
            }
            reads
        };
        reads.into_iter().zip(requests).map(|(read, r)| page_from(read, r.since)).collect()
    }

    /// The first `limit` events of `chat` in `(after, upto]`, for a gateway
    /// filling a gap in what it received (no membership check: the gateway
    /// asks for itself).
    pub async fn events_between(
        &self,
        chat: ChatId,
        after: EventId,
        upto: EventId,
        limit: usize,
    ) -> Result<Vec<ChatEvent>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT payload FROM events WHERE chat_id = $1 AND id > $2 AND id <= $3 ORDER BY id LIMIT $4",
        )
        .bind(chat)
        .bind(after)
        .bind(upto)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|r| decode_event(&r.0)).collect()
    }
}

/// The page a read makes for a client at `since`, or why it gets none.
fn page_from((chat_row, payloads): PageRead, since: EventId) -> Result<Result<SyncPage, Refusal>, StoreError> {
    let last_event_id = match replay_bound(chat_row, since) {
        Ok(last) => last,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let events = payloads.iter().map(|p| decode_event(p)).collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Ok(SyncPage { events, last_event_id }))
}

/// The chat's last event id, to replay up to from `since`, or why the
/// client gets no replay. `chat_row` is the chat's first retained and last
/// event ids and the user's member rows; `None` if there is no such chat.
pub(super) fn replay_bound(chat_row: Option<(i64, i64, i64)>, since: EventId) -> Result<EventId, Refusal> {
    Membership::of(chat_row.map(|(_, _, member_rows)| member_rows)).require()?;
    // The chat exists: `require` refused a missing one.
    let (first_retained, last_event_id, _) = chat_row.unwrap_or_default();
    if since > last_event_id {
        let message = format!("since {since} is beyond this chat's last event {last_event_id}");
        return Err(Refusal::new(ErrorCode::SyncGap, message));
    }
    if since + 1 < first_retained {
        let message = format!("events before {first_retained} are no longer kept; reload history");
        return Err(Refusal::new(ErrorCode::SyncGap, message));
    }
    Ok(last_event_id)
}

/// The chat's row and a page of its events, in one statement, so that both
/// come from one snapshot: read in two, a prune committed between them
/// made the page start past events the chat's row still said were kept, a
/// gap the client was not told of. On PostgreSQL a lateral join keeps the
/// page an index range of the chat's events; SQLite has none, and its page
/// is a subquery on the parameters alone. Either returns the chat's row
/// once, with no payload, when the page is empty.
async fn read_page(
    pool: &AnyPool,
    backend: Backend,
    chat: ChatId,
    user: &str,
    since: EventId,
    limit: i64,
) -> Result<PageRead, StoreError> {
    let sql = match backend {
        Backend::Postgres => format!(
            "SELECT c.first_retained_event_id, c.last_event_id, \
               (SELECT COUNT(*) FROM members m WHERE m.chat_id = c.id AND m.user_id = $2), e.payload \
             FROM chats c LEFT JOIN LATERAL ({}) AS e ON TRUE \
             WHERE c.id = $1 ORDER BY e.id",
            page_events("chat_id = c.id AND id > $3", "$4", "$5")
        ),
        Backend::Sqlite => format!(
            "SELECT c.first_retained_event_id, c.last_event_id, \
               (SELECT COUNT(*) FROM members m WHERE m.chat_id = c.id AND m.user_id = $2), e.payload \
             FROM chats c LEFT JOIN ({}) AS e ON 1 \
             WHERE c.id = $1 ORDER BY e.id",
            page_events("chat_id = $1 AND id > $3", "$4", "$5")
        ),
    };
    let rows: Vec<(i64, i64, i64, Option<String>)> =
        sqlx::query_as(&sql).bind(chat).bind(user).bind(since).bind(limit).bind(PAGE_BYTES).fetch_all(pool).await?;
    let chat_row = rows.first().map(|&(first, last, member_rows, _)| (first, last, member_rows));
    Ok((chat_row, rows.into_iter().filter_map(|row| row.3).collect()))
}

/// [`read_page`] for many requests in one PostgreSQL statement: each
/// request's chat probed by key (`OFFSET 0` keeps the planner from
/// turning the lateral subquery into a join it may hash), then its page.
async fn read_pages_at_once(pool: &AnyPool, requests: &[PageRequest], limit: i64) -> Result<Vec<PageRead>, StoreError> {
    let mut asks = BatchRows::for_backend(Backend::Postgres, &[Column::Int, Column::Int, Column::Text, Column::Int]);
    for (index, r) in requests.iter().enumerate() {
        asks.push([Value::Int(index as i64), Value::Int(r.chat), Value::Text(&r.user), Value::Int(r.since)]);
    }
    let mut params = Placeholders::for_backend(Backend::Postgres);
    let asks_table = asks.table(&mut params, "v");
    let limit_param = params.one();
    let bytes_param = params.one();
    let page = page_events("chat_id = v.column2 AND id > v.column4", &limit_param, &bytes_param);
    let sql = format!(
        "SELECT v.column1, c.first_retained_event_id, c.last_event_id, c.member_rows, e.payload \
         FROM {asks_table} CROSS JOIN LATERAL \
           (SELECT ch.first_retained_event_id, ch.last_event_id, \
              (SELECT COUNT(*) FROM members m WHERE m.chat_id = ch.id AND m.user_id = v.column3) AS member_rows \
            FROM chats ch WHERE ch.id = v.column2 OFFSET 0) AS c \
         LEFT JOIN LATERAL ({page}) AS e ON TRUE \
         ORDER BY v.column1, e.id"
    );
    let mut args = AnyArguments::default();
    asks.add_to(&mut args)?;
    add(&mut args, limit)?;
    add(&mut args, PAGE_BYTES)?;
    let rows: Vec<(i64, i64, i64, i64, Option<String>)> = sqlx::query_as_with(&sql, args).fetch_all(pool).await?;
    let mut reads: HashMap<i64, PageRead> = HashMap::new();
    for (index, first, last, member_rows, payload) in rows {
        let read = reads.entry(index).or_insert_with(|| (Some((first, last, member_rows)), Vec::new()));
        read.1.extend(payload);
    }
    // A request whose chat does not exist has no row.
    Ok((0..requests.len() as i64).map(|index| reads.remove(&index).unwrap_or((None, Vec::new()))).collect())
}
