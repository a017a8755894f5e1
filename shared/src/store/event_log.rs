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
    rows: Vec<(ChatId, EventId, MessageId, &'static str, String, Millis)>,
}

impl EventLog {
    pub fn append(&mut self, event: &ChatEvent) {
        let row =
            (event.chat_id, event.id, event.message_id, kind_column(&event.kind), encode_event(event), event.timestamp);
        self.rows.push(row);
    }

    /// Inserts what was appended, in order.
    pub async fn flush(&mut self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        for chunk in self.rows.chunks(ROWS_PER_INSERT) {
            let values = Placeholders::for_connection(conn).rows(chunk.len(), 6);
            let sql =
                format!("INSERT INTO events (chat_id, id, message_id, kind, payload, created_at) VALUES {values}");
            let mut query = sqlx::query(&sql);
            for (chat, id, message, kind, payload, at) in chunk {
                query = query.bind(*chat).bind(*id).bind(*message).bind(*kind).bind(payload.as_str()).bind(*at);
            }
            query.execute(&mut *conn).await?;
        }
        self.rows.clear();
        Ok(())
    }
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
