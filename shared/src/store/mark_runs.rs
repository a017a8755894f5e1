//! A run of consecutive `dlvrd`/`read` commands in one batch, applied with
//! five statements whatever its length: lock the run's chats and read their
//! counters, read the senders' marks, then (after [`apply_mark`] in
//! memory, in order) insert the marked ranges, and write back the chats'
//! event counters and the members' marks. Applied one at a time, a mark
//! costs about five statements of its own.
//!
//! Why: when every member marks each message delivered and read, a message
//! of a group of 10 brings 18 mark commands, and the receipts benchmark
//! saturated at about 300 messages/s on those statements' round trips.
//!
//! The result is the one of applying the run a command at a time: a
//! member's marks carry from one command of the run to the next, event ids
//! are given per chat in run order, and refusals (unknown chat, not a
//! member, a message id out of range) use no id.

use std::collections::{BTreeMap, HashMap};

use sqlx::any::AnyArguments;

use super::batch_rows::{BatchRows, Column, Value};
use super::commands::Tx;
use super::event_log::EventLog;
use super::placeholders::Placeholders;
use super::{Outcome, StoreError};
use crate::error::Refusal;
use crate::marks::{apply_mark, MarkedRange, Marks};
use crate::model::{Applied, ChatEvent, ChatId, EventId, EventKind, MarkKind, MessageId, Millis};

/// Runs shorter than this go one command at a time.
pub(super) const SHORTEST_RUN: usize = 2;
/// Runs are cut at this length: a mark makes at most two ranges of six
/// parameters each in SQLite's `VALUES` lists, far below its limit.
pub(super) const LONGEST_RUN: usize = 256;

/// One `dlvrd` or `read` of the run.
pub(super) struct MarkCommand<'a> {
    pub user: &'a str,
    pub chat: ChatId,
    pub message_id: MessageId,
    pub kind: MarkKind,
}

/// A chat's counters as the run moves them.
struct ChatState {
    last_message_id: MessageId,
    last_event_id: EventId,
    advanced: bool,
}

/// Applies `run` in order; one result per command.
pub(super) async fn apply_run(
    tx: &mut Tx,
    log: &mut EventLog,
    run: &[MarkCommand<'_>],
    now: Millis,
) -> Result<Vec<Result<Outcome, Refusal>>, StoreError> {
    let mut chats = lock_chats(tx, run).await?;
    // Read after the locks: on PostgreSQL this statement's snapshot then
    // has every membership change of these chats committed before them.
    let mut members = super::members_of_pairs(tx, run.iter().map(|c| (c.chat, c.user))).await?;
    let mut changed: BTreeMap<(ChatId, &str), Marks> = BTreeMap::new();
    let mut ranges: Vec<(ChatId, &str, MarkedRange)> = Vec::new();
    let mut results = Vec::with_capacity(run.len());
    for command in run {
        let applied =
            Applied { chat_id: command.chat, message_id: command.message_id, client_message_id: None, timestamp: now };
        let Some(chat) = chats.get_mut(&command.chat) else {
            results.push(Err(Refusal::no_chat()));
            continue;
        };
        let Some(current) = members.get_mut(&(command.chat, command.user)).map(|member| &mut member.marks) else {
            results.push(Err(Refusal::not_member()));
            continue;
        };
        let outcome = match apply_mark(*current, command.kind, command.message_id, chat.last_message_id, now) {
            Ok(outcome) => outcome,
            Err(refusal) => {
                results.push(Err(refusal));
                continue;
            }
        };
        let mut events = Vec::with_capacity(outcome.ranges.len());
        for range in &outcome.ranges {
            chat.last_event_id += 1;
            chat.advanced = true;
            let event = ChatEvent {
                chat_id: command.chat,
                id: chat.last_event_id,
                user_id: command.user.to_owned(),
                message_id: range.last,
                timestamp: range.at,
                kind: EventKind::Mark { mark: range.kind },
            };
            log.append(&event);
            events.push(event);
            ranges.push((command.chat, command.user, *range));
        }
        if !events.is_empty() {
            *current = outcome.marks;
            changed.insert((command.chat, command.user), outcome.marks);
        }
        results.push(Ok(Outcome { applied, events }));
    }
    insert_ranges(tx, &ranges).await?;
    write_counters(tx, &chats).await?;
    write_marks(tx, &changed).await?;
    Ok(results)
}

/// Takes the write locks of the run's chats (a no-op update, as one
/// command at a time does) and reads their counters; unknown chats are
/// missing from the answer.
async fn lock_chats(tx: &mut Tx, run: &[MarkCommand<'_>]) -> Result<HashMap<ChatId, ChatState>, StoreError> {
    let mut ids: Vec<ChatId> = run.iter().map(|c| c.chat).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut chat_ids = BatchRows::new(tx, &[Column::Int]);
    for id in &ids {
        chat_ids.push([Value::Int(*id)]);
    }
    let ids_table = chat_ids.table(&mut Placeholders::for_connection(tx), "v");
    let sql = format!(
        "UPDATE chats SET last_event_id = last_event_id FROM {ids_table} WHERE chats.id = v.column1 \
         RETURNING chats.id, chats.last_message_id, chats.last_event_id"
    );
    let mut args = AnyArguments::default();
    chat_ids.add_to(&mut args)?;
    let query = sqlx::query_as_with::<_, (i64, i64, i64), _>(&sql, args);
    Ok(query
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(|(id, last_message_id, last_event_id)| (id, ChatState { last_message_id, last_event_id, advanced: false }))
        .collect())
}

async fn insert_ranges(tx: &mut Tx, ranges: &[(ChatId, &str, MarkedRange)]) -> Result<(), StoreError> {
    if ranges.is_empty() {
        return Ok(());
    }
    let mut rows =
        BatchRows::new(tx, &[Column::Int, Column::Text, Column::Text, Column::Int, Column::Int, Column::Int]);
    for (chat, user, range) in ranges {
        rows.push([
            Value::Int(*chat),
            Value::Text(user),
            Value::Text(range.kind.as_str()),
            Value::Int(range.first),
            Value::Int(range.last),
            Value::Int(range.at),
        ]);
    }
    rows.insert(tx, "mark_ranges (chat_id, user_id, kind, first_message_id, last_message_id, at)").await
}

async fn write_counters(tx: &mut Tx, chats: &HashMap<ChatId, ChatState>) -> Result<(), StoreError> {
    let advanced: Vec<(ChatId, EventId)> =
        chats.iter().filter(|(_, c)| c.advanced).map(|(id, c)| (*id, c.last_event_id)).collect();
    if advanced.is_empty() {
        return Ok(());
    }
    let mut rows = BatchRows::new(tx, &[Column::Int, Column::Int]);
    for (chat, last_event_id) in &advanced {
        rows.push([Value::Int(*chat), Value::Int(*last_event_id)]);
    }
    let table = rows.table(&mut Placeholders::for_connection(tx), "v");
    let sql = format!("UPDATE chats SET last_event_id = v.column2 FROM {table} WHERE chats.id = v.column1");
    let mut args = AnyArguments::default();
    rows.add_to(&mut args)?;
    let query = sqlx::query_with(&sql, args);
    query.execute(&mut **tx).await?;
    Ok(())
}

async fn write_marks(tx: &mut Tx, changed: &BTreeMap<(ChatId, &str), Marks>) -> Result<(), StoreError> {
    if changed.is_empty() {
        return Ok(());
    }
    let mut rows = BatchRows::new(tx, &[Column::Int, Column::Text, Column::Int, Column::Int]);
    for ((chat, user), marks) in changed {
        rows.push([Value::Int(*chat), Value::Text(user), Value::Int(marks.delivered), Value::Int(marks.read)]);
    }
    let table = rows.table(&mut Placeholders::for_connection(tx), "v");
    let sql = format!(
        "UPDATE members SET delivered_mark = v.column3, read_mark = v.column4 FROM {table} \
         WHERE members.chat_id = v.column1 AND members.user_id = v.column2"
    );
    let mut args = AnyArguments::default();
    rows.add_to(&mut args)?;
    let query = sqlx::query_with(&sql, args);
    query.execute(&mut **tx).await?;
    Ok(())
}
