//! The record of each applied command's outcome (`processed_commands`), from
//! which a redelivered command is answered instead of being applied again,
//! and the end of a batch that writes those records with its events.

use std::collections::HashSet;

use sqlx::any::AnyArguments;

use super::batch_rows::{BatchRows, Column, Value};
use super::commands::{Outcome, Submitted, Tx};
use super::event_log::{self, decode_event, EventLog};
use super::placeholders::Placeholders;
use super::{Backend, StoreError};
use crate::error::Refusal;
use crate::model::{Applied, Millis};

/// Which of `batch`'s commands were applied before (a redelivery after a
/// worker died between commit and acknowledgement): one query per batch.
pub(super) async fn recorded_ids(tx: &mut Tx, batch: &[Submitted<'_>]) -> Result<HashSet<String>, StoreError> {
    if batch.is_empty() {
        return Ok(HashSet::new());
    }
    let mut ids = BatchRows::new(tx, &[Column::Text]);
    for submitted in batch {
        ids.push([Value::Text(submitted.id)]);
    }
    let ids_table = ids.table(&mut Placeholders::for_connection(tx), "v");
    // A join, as in the other look-ups by a batch's keys: one probe of the
    // key per id in both databases.
    let sql = format!("SELECT p.id FROM {ids_table} JOIN processed_commands p ON p.id = v.column1");
    let mut args = AnyArguments::default();
    ids.add_to(&mut args)?;
    let query = sqlx::query_as_with::<_, (String,), _>(&sql, args);
    Ok(query.fetch_all(&mut **tx).await?.into_iter().map(|(id,)| id).collect())
}

/// The recorded outcome of command `id`, if it was applied before (a
/// redelivery after a worker died between commit and acknowledgement).
pub(super) async fn already_applied(tx: &mut Tx, id: &str) -> Result<Option<Result<Outcome, Refusal>>, StoreError> {
    let row: Option<(i64, i64, i64, String)> =
        sqlx::query_as("SELECT chat_id, first_event_id, last_event_id, result FROM processed_commands WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    let Some((chat, first, last, result)) = row else { return Ok(None) };
    let result: Result<Applied, Refusal> =
        serde_json::from_str(&result).map_err(|e| StoreError::Corrupt(format!("processed command: {e}")))?;
    let Ok(applied) = result else { return Ok(Some(Err(result.err().unwrap_or_else(Refusal::internal)))) };
    // The events are published again: the first attempt may have died
    // before publishing them. Gateways drop what they already delivered.
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT payload FROM events WHERE chat_id = $1 AND id >= $2 AND id <= $3 ORDER BY id")
            .bind(chat)
            .bind(first)
            .bind(last)
            .fetch_all(&mut **tx)
            .await?;
    let events = rows.iter().map(|r| decode_event(&r.0)).collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Ok(Outcome { applied, events })))
}

/// Ends a batch before its commit: inserts the events still in `log` and
/// records the outcome of `batch[i]` for each `i` in `indices`.
///
/// On PostgreSQL both go in one statement (the events' `INSERT` in a `WITH`
/// of the records' `INSERT`), which saves a round trip on every batch that
/// stored something: a cluster at 2,000 msg/s committed about 1,400
/// batches a second, in seven statements each (docs/benchmarks-journal.md). SQLite
/// has no `INSERT` inside `WITH`, and in process a statement is no round
/// trip.
pub(super) async fn finish(
    tx: &mut Tx,
    log: &mut EventLog,
    batch: &[Submitted<'_>],
    indices: &[usize],
    results: &[Result<Outcome, Refusal>],
    now: Millis,
) -> Result<(), StoreError> {
    let together =
        Backend::of(tx) == Backend::Postgres && !log.is_empty() && !indices.is_empty() && log.fits_one_insert();
    if !together {
        log.flush(tx).await?;
        if indices.is_empty() {
            return Ok(());
        }
        let records = record_rows(tx, batch, indices, results, now);
        let sql = insert_sql(&records, &mut Placeholders::for_connection(tx));
        let mut args = AnyArguments::default();
        records.add_to(&mut args)?;
        sqlx::query_with(&sql, args).execute(&mut **tx).await?;
        return Ok(());
    }
    let events = log.pending(tx);
    let records = record_rows(tx, batch, indices, results, now);
    let mut params = Placeholders::for_connection(tx);
    let events_sql = event_log::insert_sql(&events, &mut params);
    let records_sql = insert_sql(&records, &mut params);
    let sql = format!("WITH logged AS ({events_sql}) {records_sql}");
    let mut args = AnyArguments::default();
    events.add_to(&mut args)?;
    records.add_to(&mut args)?;
    sqlx::query_with(&sql, args).execute(&mut **tx).await?;
    log.clear();
    Ok(())
}

/// Recorded ids and twins are answered before they get here, so the id's
/// key only refuses a record when another transaction recorded the command
/// first: a stalled worker and the shard's next owner applying the same
/// entry, or a command taken for a [`super::Delivery::First`] that was not. The
/// batch then fails and is retried as a [`super::Delivery::Repeat`], which finds
/// the record: the key is the last guard against applying a command twice.
fn insert_sql(records: &BatchRows<'_>, params: &mut Placeholders) -> String {
    records.insert_into("processed_commands (id, chat_id, first_event_id, last_event_id, result, created_at)", params)
}

/// The rows recording `batch[i]`'s outcome for each `i` in `indices`.
fn record_rows<'q>(
    conn: &sqlx::AnyConnection,
    batch: &[Submitted<'q>],
    indices: &[usize],
    results: &[Result<Outcome, Refusal>],
    now: Millis,
) -> BatchRows<'q> {
    let mut rows =
        BatchRows::new(conn, &[Column::Text, Column::Int, Column::Int, Column::Int, Column::Text, Column::Int]);
    for &index in indices {
        let (submitted, result) = (&batch[index], &results[index]);
        let (first, last) = match result {
            Ok(outcome) => match (outcome.events.first(), outcome.events.last()) {
                (Some(first), Some(last)) => (first.id, last.id),
                _ => (0, -1),
            },
            Err(_) => (0, -1),
        };
        let reply = encode_reply(result.as_ref().map(|o| &o.applied));
        rows.push([
            Value::Text(submitted.id),
            Value::Int(submitted.command.chat_id()),
            Value::Int(first),
            Value::Int(last),
            Value::Owned(reply),
            Value::Int(now),
        ]);
    }
    rows
}

/// A command's reply as recorded, which [`already_applied`] answers with.
pub(super) fn encode_reply(reply: Result<&Applied, &Refusal>) -> String {
    serde_json::to_string(&reply).unwrap_or_default()
}
