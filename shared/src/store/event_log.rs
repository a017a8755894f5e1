//! Writing the event log within a batch. A command's events are appended in
//! memory and the whole batch's go in with one multi-row `INSERT` before it
//! commits (or before anything in the batch reads the log back): one
//! statement per batch instead of one per event, which is a database round
//! trip saved on every `new`.

use sqlx::any::AnyArguments;
use sqlx::AnyConnection;

use super::batch_rows::{BatchRows, Column, Value};
use super::placeholders::Placeholders;
use super::StoreError;
use crate::model::{ChatEvent, ChatId, EventId, EventKind, MessageId, Millis};

/// Rows per `INSERT`, well under SQLite's limit on parameters.
const ROWS_PER_INSERT: usize = 500;

/// Events written by the batch so far and not yet inserted.
#[derive(Default)]
pub(super) struct EventLog {
    rows: Vec<Row>,
}

type Row = (ChatId, EventId, MessageId, &'static str, String, Millis);

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
    /// ([`Self::pending`]).
    pub fn fits_one_insert(&self) -> bool {
        self.rows.len() <= ROWS_PER_INSERT
    }

    /// Inserts what was appended, in order.
    pub async fn flush(&mut self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        for chunk in self.rows.chunks(ROWS_PER_INSERT) {
            let rows = batch_rows(conn, chunk);
            let sql = insert_sql(&rows, &mut Placeholders::for_connection(conn));
            let mut args = AnyArguments::default();
            rows.add_to(&mut args)?;
            sqlx::query_with(&sql, args).execute(&mut *conn).await?;
        }
        self.rows.clear();
        Ok(())
    }

    /// Everything appended, for a caller that makes its `INSERT`
    /// ([`insert_sql`]) part of a larger statement; only when
    /// [`Self::fits_one_insert`]. [`Self::clear`] once it ran.
    pub fn pending(&self, conn: &AnyConnection) -> BatchRows<'_> {
        batch_rows(conn, &self.rows)
    }

    pub fn clear(&mut self) {
        self.rows.clear();
    }
}

const COLUMNS: &[Column] = &[Column::Int, Column::Int, Column::Int, Column::Text, Column::Text, Column::Int];

fn batch_rows<'q>(conn: &AnyConnection, rows: &'q [Row]) -> BatchRows<'q> {
    let mut batch = BatchRows::new(conn, COLUMNS);
    for (chat, id, message, kind, payload, at) in rows {
        batch.push([
            Value::Int(*chat),
            Value::Int(*id),
            Value::Int(*message),
            Value::Text(kind),
            Value::Text(payload),
            Value::Int(*at),
        ]);
    }
    batch
}

/// The `INSERT` of `rows`.
pub(super) fn insert_sql(rows: &BatchRows<'_>, params: &mut Placeholders) -> String {
    rows.insert_into("events (chat_id, id, message_id, kind, payload, created_at)", params)
}

pub(super) fn kind_column(kind: &EventKind) -> &'static str {
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
