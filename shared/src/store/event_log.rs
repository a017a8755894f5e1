//! Writing the event log within a batch. A command's events are appended in
//! memory and the whole batch's go in with one multi-row `INSERT` before it
//! commits (or before anything in the batch reads the log back): one
//! statement per batch instead of one per event, which is a database round
//! trip saved on every `new`.

use sqlx::AnyConnection;

use super::placeholders::Placeholders;
use super::StoreError;
use crate::model::{ChatEvent, ChatId, EventId, EventKind, MessageId, Millis};

/// Rows per `INSERT`, well under both databases' limits on parameters.
const ROWS_PER_INSERT: usize = 500;

/// Events written by the batch so far and not yet inserted.
#[derive(Default)]
pub(super) struct EventLog {
    rows: Vec<Row>,
}

type Row = (ChatId, EventId, MessageId, &'static str, String, Millis);

/// A statement being built, its values bound in placeholder order.
pub(super) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

impl EventLog {
    pub fn append(&mut self, event: &ChatEvent) {
        let row =
            (event.chat_id, event.id, event.message_id, kind_column(&event.kind), encode_event(event), event.timestamp);
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether everything appended goes in with one `INSERT`
    /// ([`Self::insert_sql`]).
    pub fn fits_one_insert(&self) -> bool {
        self.rows.len() <= ROWS_PER_INSERT
    }

    /// Inserts what was appended, in order.
    pub async fn flush(&mut self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        for chunk in self.rows.chunks(ROWS_PER_INSERT) {
            let sql = insert_sql(chunk, &mut Placeholders::for_connection(conn));
            bind_rows(chunk, sqlx::query(&sql)).execute(&mut *conn).await?;
        }
        self.rows.clear();
        Ok(())
    }

    /// The `INSERT` of everything appended, for a caller that makes it part
    /// of a larger statement; only when [`Self::fits_one_insert`]. Bind
    /// with [`Self::bind`], then [`Self::clear`] once it ran.
    pub fn insert_sql(&self, params: &mut Placeholders) -> String {
        insert_sql(&self.rows, params)
    }

    pub fn bind<'q>(&'q self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        bind_rows(&self.rows, query)
    }

    pub fn clear(&mut self) {
        self.rows.clear();
    }
}

fn insert_sql(rows: &[Row], params: &mut Placeholders) -> String {
    let values = params.rows(rows.len(), 6);
    format!("INSERT INTO events (chat_id, id, message_id, kind, payload, created_at) VALUES {values}")
}

fn bind_rows<'q>(rows: &'q [Row], mut query: AnyQuery<'q>) -> AnyQuery<'q> {
    for (chat, id, message, kind, payload, at) in rows {
        query = query.bind(*chat).bind(*id).bind(*message).bind(*kind).bind(payload.as_str()).bind(*at);
    }
    query
}

fn kind_column(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::New { .. } => "new",
        EventKind::Edit { .. } => "edit",
        EventKind::Delete => "delete",
        EventKind::Mark { mark } => mark.as_str(),
    }
}

pub(super) fn encode_event(event: &ChatEvent) -> String {
    serde_json::to_string(event).unwrap_or_default()
}

pub(super) fn decode_event(payload: &str) -> Result<ChatEvent, StoreError> {
    serde_json::from_str(payload).map_err(|e| StoreError::Corrupt(format!("event payload: {e}")))
}
