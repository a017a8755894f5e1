//! A batch of only `new`s on PostgreSQL, handed out for the first time:
//! one statement, outside any explicit transaction (a statement is atomic
//! on its own). The general path takes four round trips for one `new`
//! (`BEGIN`, the chat's update with the message's insert, the event's and
//! the record's insert, `COMMIT`) and seven for a run of them
//! ([`super::sends`]: the retries, the memberships, the counters, the
//! messages, the events and records, and the two).
//!
//! Why: below saturation most batches hold a single `new` (a cluster at
//! 2,000 msg/s committed about 1,400 batches a second), and the worker's
//! group commit merges the few that wait at once into runs of a handful
//! (about four). Each round trip costs the worker two system calls and a
//! wait, and PostgreSQL's backend a wake-up, on a machine whose cores are
//! full (docs/benchmarks-journal.md).
//!
//! The statement only does the common case: every chat exists, every
//! sender is a member, no message is stored yet and none repeats another
//! of the batch. Otherwise it changes nothing and the batch takes the
//! general path, which refuses or answers the retry as before. The event's
//! payload and the record's reply need the ids the statement allocates:
//! they are rendered here with zeros in their place and PostgreSQL splices
//! the ids into the pieces between, so what is stored is byte for byte
//! what the general path stores. Ids are given per chat in batch order, as
//! the general path gives them.

use sqlx::any::AnyArguments;

use super::batch_rows::{add, BatchRows, Column, Value};
use super::commands::{advance, membership_unmoved, Outcome};
use super::event_log::{encode_event, kind_column};
use super::placeholders::Placeholders;
use super::records::encode_reply;
use super::sends::LONGEST_RUN;
use super::{Backend, Delivery, Store, StoreError, Submitted};
use crate::error::Refusal;
use crate::model::{Applied, ChatEvent, Command, EventId, EventKind, MessageId, Millis};

const SEND_ALONE: &str = concat!(
    "WITH advanced AS (",
    advance!(),
    membership_unmoved!(),
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

/// Many `new`s at once: the batch's rows are one JSON parameter (see
/// [`BatchRows`]), numbered by their place in the batch (`column1`). Each
/// write is conditioned on `ok`, the common case for every row, read from
/// the statement's snapshot before any write.
///
/// Those checks read the snapshot, so a membership change committed while
/// the statement waited for a chat's row would go unseen
/// ([`membership_unmoved`]). Each chat is updated only if its membership
/// version once the row is held is the one the snapshot has (`counts`),
/// but a chat left out would leave the others' writes standing, so the
/// last line then fails the statement, which undoes all of it: an invalid
/// boolean, SQLSTATE 22P02, saying [`MEMBERSHIP_MOVED`]. The caller takes
/// that as "not the common case". Locking every chat ahead of the checks
/// instead (`FOR NO KEY UPDATE`) cost PostgreSQL 6 % more CPU a message
/// at saturation (docs/benchmarks-journal.md, thirty-third session).
const SENDS_ALONE: &str = "\
WITH v AS MATERIALIZED (SELECT * FROM {rows}), \
ok AS (SELECT \
    NOT EXISTS (SELECT 1 FROM v WHERE NOT EXISTS (SELECT 1 FROM chats c WHERE c.id = v.column2)) \
    AND NOT EXISTS (SELECT 1 FROM v WHERE NOT EXISTS \
        (SELECT 1 FROM members m WHERE m.chat_id = v.column2 AND m.user_id = v.column3)) \
    AND NOT EXISTS (SELECT 1 FROM v CROSS JOIN LATERAL (SELECT 1 FROM messages s \
        WHERE s.chat_id = v.column2 AND s.user_id = v.column3 AND s.client_message_id = v.column4 LIMIT 1) AS s) \
    AND (SELECT count(DISTINCT (column2, column3, column4)) FROM v) = (SELECT count(*) FROM v) AS ok), \
counts AS (SELECT v.column2 AS chat_id, count(*) AS new, c.membership_version \
    FROM v JOIN chats c ON c.id = v.column2 GROUP BY v.column2, c.membership_version), \
advanced AS (UPDATE chats SET last_message_id = last_message_id + counts.new, \
      last_event_id = last_event_id + counts.new, last_activity_at = {now} \
    FROM counts WHERE chats.id = counts.chat_id AND chats.membership_version = counts.membership_version \
      AND (SELECT ok FROM ok) \
    RETURNING chats.id, chats.last_message_id - counts.new AS message_base, \
      chats.last_event_id - counts.new AS event_base), \
numbered AS (SELECT v.*, \
      a.message_base + row_number() OVER (PARTITION BY v.column2 ORDER BY v.column1) AS message_id, \
      a.event_base + row_number() OVER (PARTITION BY v.column2 ORDER BY v.column1) AS event_id \
    FROM v JOIN advanced a ON a.id = v.column2), \
stored AS (INSERT INTO messages \
      (chat_id, message_id, user_id, client_message_id, body, attachments, created_at, new_event_id) \
    SELECT column2, message_id, column3, column4, column5, column6, {now}, event_id FROM numbered), \
logged AS (INSERT INTO events (chat_id, id, message_id, kind, payload, created_at) \
    SELECT column2, event_id, message_id, {kind}, column7 || event_id || column8 || message_id || column9, {now} \
    FROM numbered), \
recorded AS (INSERT INTO processed_commands (id, chat_id, first_event_id, last_event_id, result, created_at) \
    SELECT column10, column2, event_id, event_id, column11 || message_id || column12, {now} FROM numbered) \
SELECT column1, message_id, event_id FROM numbered \
WHERE CASE WHEN NOT (SELECT ok FROM ok) OR (SELECT count(*) FROM advanced) = (SELECT count(*) FROM counts) \
    THEN true ELSE CAST('{moved} ' || (SELECT count(*) FROM advanced) AS boolean) END";

/// What [`SENDS_ALONE`] says when a chat's membership moved under it.
const MEMBERSHIP_MOVED: &str = "membership moved while waiting";

/// The columns of [`SENDS_ALONE`]'s rows: place in the batch, chat, sender,
/// clientMessageId, text, attachments, the event's payload cut around its
/// id and message id, the command's id, its reply cut around the message
/// id.
const ROW: &[Column] = &[
    Column::Int,
    Column::Int,
    Column::Text,
    Column::Text,
    Column::Text,
    Column::Text,
    Column::Text,
    Column::Text,
    Column::Text,
    Column::Text,
    Column::Text,
    Column::Text,
];

/// One `new` of the batch, rendered with zeros for the ids to come.
struct Pending<'a> {
    submitted: &'a Submitted<'a>,
    text: &'a str,
    attachments: &'a str,
    event: ChatEvent,
    applied: Applied,
    payload: String,
    reply: String,
}

impl<'a> Pending<'a> {
    fn of(submitted: &'a Submitted<'a>, now: Millis) -> Option<Pending<'a>> {
        let Command::Send { chat_id, client_message_id, text, attachments } = submitted.command else { return None };
        let event = ChatEvent {
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
        let applied = Applied {
            chat_id: *chat_id,
            message_id: 0,
            client_message_id: Some(client_message_id.clone()),
            timestamp: now,
        };
        let payload = encode_event(&event);
        let reply = encode_reply(Ok(&applied));
        Some(Pending { submitted, text, attachments: attachments.as_str(), event, applied, payload, reply })
    }

    /// The payload cut around its id and message id, the reply around its
    /// message id.
    fn pieces(&self) -> Option<([&str; 3], [&str; 2])> {
        Some((
            split_around_zeros(&self.payload, ["id", "message_id"])?,
            split_around_zeros(&self.reply, ["message_id"])?,
        ))
    }

    fn client_message_id(&self) -> &str {
        self.applied.client_message_id.as_deref().unwrap_or_default()
    }

    /// The outcome once the statement gave the ids.
    fn outcome(mut self, message_id: MessageId, event_id: EventId) -> Result<Outcome, Refusal> {
        self.event.id = event_id;
        self.event.message_id = message_id;
        self.applied.message_id = message_id;
        Ok(Outcome { applied: self.applied, events: vec![self.event] })
    }
}

/// Applies `batch` if it is only `new`s this path takes and the common
/// case holds; `None` leaves the batch to the general path, untouched.
pub(super) async fn apply(
    store: &Store,
    batch: &[Submitted<'_>],
    now: Millis,
    delivery: Delivery,
) -> Result<Option<Vec<Result<Outcome, Refusal>>>, StoreError> {
    // A repeat may have been applied: its record must be looked up first.
    if store.backend != Backend::Postgres || delivery != Delivery::First || batch.len() > LONGEST_RUN {
        return Ok(None);
    }
    let Some(pending) = batch.iter().map(|s| Pending::of(s, now)).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    // A lone `new`, most batches below saturation, keeps a statement of its
    // own without the JSON rows and the batch-wide checks: PostgreSQL
    // executed it in 76 µs against 196 µs a call for the batch statement
    // (`pg_stat_statements` at 2,000 msg/s, docs/benchmarks-journal.md,
    // thirteenth session).
    match <[Pending; 1]>::try_from(pending) {
        Ok([one]) => Ok(apply_one(store, one, now).await?.map(|result| vec![result])),
        Err(pending) if pending.is_empty() => Ok(None),
        Err(pending) => apply_many(store, pending, now).await,
    }
}

async fn apply_one(
    store: &Store,
    pending: Pending<'_>,
    now: Millis,
) -> Result<Option<Result<Outcome, Refusal>>, StoreError> {
    let Some(([before_id, before_message_id, payload_rest], [before_reply_id, reply_rest])) = pending.pieces() else {
        return Ok(None);
    };
    let row: Option<(i64, i64)> = sqlx::query_as(SEND_ALONE)
        .bind(pending.event.chat_id)
        .bind(pending.submitted.user)
        .bind(now)
        .bind(pending.client_message_id())
        .bind(pending.text)
        .bind(pending.attachments)
        .bind(kind_column(&pending.event.kind))
        .bind(before_id)
        .bind(before_message_id)
        .bind(payload_rest)
        .bind(pending.submitted.id)
        .bind(before_reply_id)
        .bind(reply_rest)
        .fetch_optional(&store.writer)
        .await?;
    let Some((message_id, event_id)) = row else { return Ok(None) };
    Ok(Some(pending.outcome(message_id, event_id)))
}

async fn apply_many(
    store: &Store,
    pending: Vec<Pending<'_>>,
    now: Millis,
) -> Result<Option<Vec<Result<Outcome, Refusal>>>, StoreError> {
    let mut rows = BatchRows::for_backend(Backend::Postgres, ROW);
    for (place, p) in pending.iter().enumerate() {
        let Some(([before_id, before_message_id, payload_rest], [before_reply_id, reply_rest])) = p.pieces() else {
            return Ok(None);
        };
        rows.push([
            Value::Int(place as i64),
            Value::Int(p.event.chat_id),
            Value::Text(p.submitted.user),
            Value::Text(p.client_message_id()),
            Value::Text(p.text),
            Value::Text(p.attachments),
            Value::Text(before_id),
            Value::Text(before_message_id),
            Value::Text(payload_rest),
            Value::Text(p.submitted.id),
            Value::Text(before_reply_id),
            Value::Text(reply_rest),
        ]);
    }
    let mut params = Placeholders::for_backend(Backend::Postgres);
    let (now_param, kind_param) = (params.one(), params.one());
    let sql = SENDS_ALONE
        .replace("{rows}", &rows.table(&mut params, "r"))
        .replace("{now}", &now_param)
        .replace("{kind}", &kind_param)
        .replace("{moved}", MEMBERSHIP_MOVED);
    let mut args = AnyArguments::default();
    add(&mut args, now)?;
    add(&mut args, kind_column(&pending[0].event.kind))?;
    rows.add_to(&mut args)?;
    let numbered: Vec<(i64, i64, i64)> = match sqlx::query_as_with(&sql, args).fetch_all(&store.writer).await {
        Err(sqlx::Error::Database(error)) if error.message().contains(MEMBERSHIP_MOVED) => return Ok(None),
        numbered => numbered?,
    };
    if numbered.is_empty() {
        return Ok(None);
    }
    if numbered.len() != pending.len() {
        // `ok` held, so every row has its chat: a row missing would be
        // stored without a reply.
        return Err(StoreError::Corrupt(format!("{} of {} sends numbered", numbered.len(), pending.len())));
    }
    let mut ids = vec![(0, 0); pending.len()];
    for (place, message_id, event_id) in numbered {
        let slot = usize::try_from(place).ok().and_then(|place| ids.get_mut(place));
        let Some(slot) = slot else { return Err(StoreError::Corrupt(format!("send numbered at {place}"))) };
        *slot = (message_id, event_id);
    }
    Ok(Some(pending.into_iter().zip(ids).map(|(p, (message_id, event_id))| p.outcome(message_id, event_id)).collect()))
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
