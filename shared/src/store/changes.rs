//! Changing a message by its author: `edit` and `delete`. Both are safe to
//! apply twice: an edit that changes nothing and the delete of a deleted
//! message are acknowledged without an event.

use super::commands::{locked_for, next_event_id, Content, Outcome, Tx};
use super::event_log::{decode_event, encode_event, EventLog};
use super::StoreError;
use crate::error::Refusal;
use crate::model::{Applied, Attachments, ChatEvent, ChatId, EventId, EventKind, MessageId, Millis};

/// What changing a message by its author needs to know of it.
struct OwnMessage {
    deleted_at: Option<Millis>,
    /// Its `new` event's id, where the message keeps it (see [`redact_events`]).
    new_event_id: Option<EventId>,
    text: String,
    /// As stored: JSON text.
    attachments: String,
    /// When it got its present content: its last edit, or its sending.
    content_since: Millis,
}

/// Locks the chat for `user`'s change and reads the message if `user`
/// wrote it: the chat's last event id and the message, or the refusal for
/// touching it (no chat, not a member, no message, not the author).
async fn own_message(
    tx: &mut Tx,
    user: &str,
    chat: ChatId,
    message_id: MessageId,
) -> Result<Result<(EventId, OwnMessage), Refusal>, StoreError> {
    let last_event_id = match locked_for(tx, chat, user).await? {
        Ok(counters) => counters.last_event_id,
        Err(refusal) => return Ok(Err(refusal)),
    };
    type Row = (String, Option<i64>, Option<i64>, String, String, i64);
    let row: Option<Row> = sqlx::query_as(
        "SELECT user_id, deleted_at, new_event_id, body, attachments, COALESCE(edited_at, created_at) \
         FROM messages WHERE chat_id = $1 AND message_id = $2",
    )
    .bind(chat)
    .bind(message_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        None => Err(Refusal::not_found(format!("no message {message_id} in this chat"))),
        Some((author, ..)) if author != user => Err(Refusal::forbidden("only the author may change a message")),
        Some((_, deleted_at, new_event_id, text, attachments, content_since)) => {
            Ok((last_event_id, OwnMessage { deleted_at, new_event_id, text, attachments, content_since }))
        }
    })
}

pub(super) async fn edit(
    tx: &mut Tx,
    log: &mut EventLog,
    user: &str,
    chat: ChatId,
    message_id: MessageId,
    content: Content<'_>,
    now: Millis,
) -> Result<Result<Outcome, Refusal>, StoreError> {
    let Content { text, attachments } = content;
    let (last_event_id, message) = match own_message(tx, user, chat, message_id).await? {
        Err(refusal) => return Ok(Err(refusal)),
        Ok((_, OwnMessage { deleted_at: Some(_), .. })) => {
            return Ok(Err(Refusal::conflict("a deleted message can't be edited")))
        }
        Ok(found) => found,
    };
    // An edit that changes nothing, such as one resent after its ack was
    // lost, is acknowledged as of when the message got that content, with
    // no event: members would only see the same text again.
    // Attachments are stored and sent in one form (`Attachments`), so
    // equal text is equal JSON.
    let unchanged = message.text == text && message.attachments == attachments.as_str();
    if unchanged {
        return Ok(Ok(Outcome {
            applied: Applied { chat_id: chat, message_id, client_message_id: None, timestamp: message.content_since },
            events: Vec::new(),
        }));
    }
    sqlx::query(
        "UPDATE messages SET body = $3, attachments = $4, edited_at = $5 WHERE chat_id = $1 AND message_id = $2",
    )
    .bind(chat)
    .bind(message_id)
    .bind(text)
    .bind(attachments.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let kind = EventKind::Edit { text: text.to_owned(), attachments: attachments.clone() };
    announce_change(tx, log, user, chat, message_id, last_event_id, now, kind).await.map(Ok)
}

pub(super) async fn delete(
    tx: &mut Tx,
    log: &mut EventLog,
    user: &str,
    chat: ChatId,
    message_id: MessageId,
    now: Millis,
) -> Result<Result<Outcome, Refusal>, StoreError> {
    let (last_event_id, new_event_id) = match own_message(tx, user, chat, message_id).await? {
        Err(refusal) => return Ok(Err(refusal)),
        Ok((_, OwnMessage { deleted_at: Some(deleted_at), .. })) => {
            // Already deleted (a retry, or a redelivered command): same answer, no event.
            return Ok(Ok(Outcome {
                applied: Applied { chat_id: chat, message_id, client_message_id: None, timestamp: deleted_at },
                events: Vec::new(),
            }));
        }
        Ok((last_event_id, OwnMessage { deleted_at: None, new_event_id, .. })) => (last_event_id, new_event_id),
    };
    sqlx::query(
        "UPDATE messages SET deleted_at = $3, body = '', attachments = '[]' WHERE chat_id = $1 AND message_id = $2",
    )
    .bind(chat)
    .bind(message_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    // The message's earlier events may still be in this batch's log.
    log.flush(tx).await?;
    redact_events(tx, chat, message_id, new_event_id).await?;
    announce_change(tx, log, user, chat, message_id, last_event_id, now, EventKind::Delete).await.map(Ok)
}

/// The change's event, under the chat's next id, into the batch's log,
/// and the reply that carries it.
#[allow(clippy::too_many_arguments)] // each is one fact of the change
async fn announce_change(
    tx: &mut Tx,
    log: &mut EventLog,
    user: &str,
    chat: ChatId,
    message_id: MessageId,
    last_event_id: EventId,
    now: Millis,
    kind: EventKind,
) -> Result<Outcome, StoreError> {
    let event = ChatEvent {
        chat_id: chat,
        id: next_event_id(tx, chat, last_event_id).await?,
        user_id: user.to_owned(),
        message_id,
        timestamp: now,
        kind,
    };
    log.append(&event);
    Ok(Outcome {
        applied: Applied { chat_id: chat, message_id, client_message_id: None, timestamp: now },
        events: vec![event],
    })
}

/// A deleted message's text leaves the event log too: `sync` replays its
/// `new` and `edit` events with empty content, followed by the `delete`.
///
/// The `new` event is found by the id its message keeps, the edits by an
/// index (migration 0003 says why). A message that keeps no id (stored by
/// an older binary, or on PostgreSQL before that migration) has its `new`
/// event searched for by message: through `events_by_message` on
/// PostgreSQL, among the chat's events on SQLite.
async fn redact_events(
    tx: &mut Tx,
    chat: ChatId,
    message_id: MessageId,
    new_event_id: Option<EventId>,
) -> Result<(), StoreError> {
    let mut rows: Vec<(i64, String)> = match new_event_id {
        Some(id) => {
            sqlx::query_as("SELECT id, payload FROM events WHERE chat_id = $1 AND id = $2")
                .bind(chat)
                .bind(id)
                .fetch_all(&mut **tx)
                .await?
        }
        None => {
            sqlx::query_as("SELECT id, payload FROM events WHERE chat_id = $1 AND message_id = $2 AND kind = 'new'")
                .bind(chat)
                .bind(message_id)
                .fetch_all(&mut **tx)
                .await?
        }
    };
    rows.extend(
        sqlx::query_as::<_, (i64, String)>(
            "SELECT id, payload FROM events WHERE chat_id = $1 AND message_id = $2 AND kind = 'edit'",
        )
        .bind(chat)
        .bind(message_id)
        .fetch_all(&mut **tx)
        .await?,
    );
    for (id, payload) in rows {
        let mut event = decode_event(&payload)?;
        match &mut event.kind {
            EventKind::New { text, attachments, .. } | EventKind::Edit { text, attachments } => {
                text.clear();
                *attachments = Attachments::none();
            }
            _ => continue,
        }
        sqlx::query("UPDATE events SET payload = $3 WHERE chat_id = $1 AND id = $2")
            .bind(chat)
            .bind(id)
            .bind(encode_event(&event))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
