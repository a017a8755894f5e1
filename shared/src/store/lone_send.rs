//! A batch of one `new` on PostgreSQL, handed out for the first time: one
//! statement, outside any explicit transaction (a statement is atomic on
//! its own), where the general path takes four round trips: `BEGIN`, the
//! chat's update with the message's insert, the event's and the record's
//! insert, `COMMIT`.
//!
//! Why: below saturation most batches hold a single `new` (a cluster at
//! 2,000 msg/s committed about 1,400 batches a second), and each round trip
//! costs the worker two system calls and a wait, and PostgreSQL's backend a
//! wake-up, on a machine whose cores are full (docs/benchmarks-journal.md).
//!
//! The statement only does the common case: the chat exists, the sender is
//! a member, and the message is not stored yet. Otherwise it changes
//! nothing and the batch takes the general path, which refuses or answers
//! the retry as before. The event's payload and the record's reply need the
//! ids the statement allocates: they are rendered here with zeros in their
//! place and PostgreSQL splices the ids into the pieces between, so what is
//! stored is byte for byte what the general path stores.

use super::commands::{advance, Outcome};
use super::event_log::{encode_event, kind_column};
use super::records::encode_reply;
use super::{Backend, Delivery, Store, StoreError, Submitted};
use crate::error::Refusal;
use crate::model::{Applied, ChatEvent, Command, EventKind, Millis};

const SEND_ALONE: &str = concat!(
    "WITH advanced AS (",
    advance!(),
    " AND NOT EXISTS (SELECT 1 FROM messages s \
          WHERE s.chat_id = $1 AND s.user_id = $2 AND s.client_message_id = $4) \
      RETURNING last_message_id, last_event_id), \
    stored AS (INSERT INTO messages \
        (chat_id, message_id, user_id, client_message_id, body, attachments, created_at, new_event_id) \
      SELECT $1, last_message_id, $2, $4, $5, $6, $3, last_event_id FROM advanced), \
    logged AS (INSERT INTO events (chat_id, id, message_id, kind, payload, created_at) \
      SELECT $1, last_event_id, last_message_id, $7, $8 || last_event_id || $9 || last_message_id || $10, $3 \
      FROM advanced), \
    recorded AS (INSERT INTO processed_commands (id, chat_id, first_event_id, last_event_id, result, created_at) \
      SELECT $11, $1, last_event_id, last_event_id, $12 || last_message_id || $13, $3 FROM advanced) \
    SELECT last_message_id, last_event_id FROM advanced"
);

/// Applies `batch` if it is a lone `new` this path takes and the common
/// case holds; `None` leaves the batch to the general path, untouched.
pub(super) async fn apply(
    store: &Store,
    batch: &[Submitted<'_>],
    now: Millis,
    delivery: Delivery,
) -> Result<Option<Result<Outcome, Refusal>>, StoreError> {
    let [submitted] = batch else { return Ok(None) };
    let Command::Send { chat_id, client_message_id, text, attachments } = submitted.command else { return Ok(None) };
    // A repeat may have been applied: its record must be looked up first.
    if store.backend != Backend::Postgres || delivery != Delivery::First {
        return Ok(None);
    }
    let mut event = ChatEvent {
        chat_id: *chat_id,
        id: 0,
        user_id: submitted.user.to_owned(),
        message_id: 0,
        timestamp: now,
        kind: EventKind::New {
            client_message_id: client_message_id.clone(),
            text: text.clone(),
            attachments: attachments.clone(),
        },
    };
    let mut applied = Applied {
        chat_id: *chat_id,
        message_id: 0,
        client_message_id: Some(client_message_id.clone()),
        timestamp: now,
    };
    let payload = encode_event(&event);
    let reply = encode_reply(Ok(&applied));
    let (Some([before_id, before_message_id, payload_rest]), Some([before_reply_id, reply_rest])) =
        (split_around_zeros(&payload, ["id", "message_id"]), split_around_zeros(&reply, ["message_id"]))
    else {
        return Ok(None);
    };
    let row: Option<(i64, i64)> = sqlx::query_as(SEND_ALONE)
        .bind(*chat_id)
        .bind(submitted.user)
        .bind(now)
        .bind(client_message_id.as_str())
        .bind(text.as_str())
        .bind(attachments.to_string())
        .bind(kind_column(&event.kind))
        .bind(before_id)
        .bind(before_message_id)
        .bind(payload_rest)
        .bind(submitted.id)
        .bind(before_reply_id)
        .bind(reply_rest)
        .fetch_optional(&store.writer)
        .await?;
    let Some((message_id, event_id)) = row else { return Ok(None) };
    event.id = event_id;
    event.message_id = message_id;
    applied.message_id = message_id;
    Ok(Some(Ok(Outcome { applied, events: vec![event] })))
}

/// `json` cut around the values of the fields `names`, each the first
/// field of that name after the one before, each 0: the `N + 1` pieces
/// to join with the values in between. Inside a JSON string a quote is
/// always escaped, so `"name":` can only be a key; the top-level fields
/// searched for come before any nested object. `None` if the layout is not
/// that (a changed struct); the caller then takes the general path.
fn split_around_zeros<'j, const N: usize, const P: usize>(json: &'j str, names: [&str; N]) -> Option<[&'j str; P]> {
    if P != N + 1 {
        return None;
    }
    let mut pieces = [""; P];
    let mut start = 0;
    for (i, name) in names.iter().enumerate() {
        let key = format!("\"{name}\":0");
        let at = start + json[start..].find(&key)?;
        let value = at + key.len() - 1;
        if !matches!(json.as_bytes().get(value + 1), Some(b',' | b'}')) {
            return None;
        }
        pieces[i] = &json[start..value];
        start = value + 1;
    }
    pieces[N] = &json[start..];
    Some(pieces)
}

#[cfg(test)]
mod tests {
    use super::split_around_zeros;

    #[test]
    fn cuts_around_the_named_zeros_only() {
        let json = r#"{"chat_id":0,"id":0,"user_id":"\"id\":0","message_id":0,"kind":{"id":0}}"#;
        let pieces = split_around_zeros(json, ["id", "message_id"]).expect("cut");
        assert_eq!(pieces, [r#"{"chat_id":0,"id":"#, r#","user_id":"\"id\":0","message_id":"#, r#","kind":{"id":0}}"#]);
        assert_eq!(
            format!("{}7{}3{}", pieces[0], pieces[1], pieces[2]),
            r#"{"chat_id":0,"id":7,"user_id":"\"id\":0","message_id":3,"kind":{"id":0}}"#
        );
    }

    #[test]
    fn refuses_a_layout_it_does_not_know() {
        assert_eq!(split_around_zeros::<1, 2>(r#"{"id":5}"#, ["id"]), None);
        assert_eq!(split_around_zeros::<1, 2>(r#"{"id":0.5}"#, ["id"]), None);
        assert_eq!(split_around_zeros::<1, 2>(r#"{"other":0}"#, ["id"]), None);
        assert_eq!(split_around_zeros::<1, 3>(r#"{"id":0}"#, ["id"]), None);
    }
}
