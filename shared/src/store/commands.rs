//! Applying client commands: the write path of `new`, `edit`, `delete`,
//! `dlvrd` and `read`. A batch of commands commits in one transaction, so a
//! busy chat costs one commit per batch rather than per message, and a run
//! of consecutive `new`s, or of marks, is applied together
//! ([`super::sends`], [`super::mark_runs`]). An author's `edit` and
//! `delete` are in [`super::changes`].
//!
//! Every command is safe to apply twice (a redelivered stream entry): `new`
//! is idempotent on (chat, sender, clientMessageId), `delete` of a deleted
//! message acknowledges without a new event, and marks only move forward.

use std::collections::{HashMap, HashSet};

use sqlx::{Any, Transaction};

use super::event_log::EventLog;
use super::{changes, first_sends, mark_runs, records, sends, Store, StoreError};
use crate::error::Refusal;
use crate::marks::{apply_mark, Marks};
use crate::model::{Applied, Attachments, ChatEvent, ChatId, Command, EventId, EventKind, MarkKind, MessageId, Millis};

/// A command to apply: its unique id, its sender and what it asks.
#[derive(Debug, Clone, Copy)]
pub struct Submitted<'a> {
    pub id: &'a str,
    pub user: &'a str,
    pub command: &'a Command,
}

/// What a command did: the reply its sender gets, and the events (in id
/// order) that every member's connections get.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub applied: Applied,
    pub events: Vec<ChatEvent>,
}

pub(super) type Tx = Transaction<'static, Any>;

/// What the queue that handed over a batch may have done with its commands
/// before, which decides whether their outcomes are recorded
/// (`processed_commands`) and looked up there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The queue hands out each command once (in process): nothing is
    /// recorded.
    Once,
    /// The queue may hand these out again later, but hands them out for the
    /// first time now (Redis entries read as new, on the first attempt):
    /// their outcomes are recorded; there is nothing to look up, since a
    /// command's id is made once per submission and never queued twice.
    First,
    /// These may have been applied before (pending entries read again, a
    /// batch retried after a commit whose outcome is unknown): each is
    /// looked up first, and answered from its record if it has one.
    Repeat,
}

impl Store {
    /// Applies `batch` in order, in one transaction. A refused command does
    /// not affect the others; a database failure fails them all (and nothing
    /// of the batch is committed). `delivery` says what is recorded and
    /// looked up: the look-up is one statement per batch, a round trip on
    /// PostgreSQL, which only a redelivery needs.
    pub async fn apply_batch(
        &self,
        batch: &[Submitted<'_>],
        now: Millis,
        delivery: Delivery,
    ) -> Result<Vec<Result<Outcome, Refusal>>, StoreError> {
        if let Some(results) = first_sends::apply(self, batch, now, delivery).await? {
            return Ok(results);
        }
        let mut tx = self.writer.begin().await?;
        let recording = delivery != Delivery::Once;
        let recorded =
            if delivery == Delivery::Repeat { records::recorded_ids(&mut tx, batch).await? } else { HashSet::new() };
        let mut results: Vec<Result<Outcome, Refusal>> = Vec::with_capacity(batch.len());
        let mut to_record = Vec::new();
        // Should a batch hold one command twice (gateways make an id once
        // per submission, but the queue is not ours alone), the twin is
        // answered like the first, before either is recorded.
        let mut applied_here: HashMap<&str, usize> = HashMap::new();
        let mut log = EventLog::default();
        let mut index = 0;
        while index < batch.len() {
            let rest = &batch[index..];
            let sends = fresh_run(rest, &recorded, &applied_here, sends::LONGEST_RUN, as_new_message);
            let run_results = if sends.len() >= sends::SHORTEST_RUN {
                Some(sends::apply_run(&mut tx, &mut log, &sends, now).await?)
            } else {
                let marks = fresh_run(rest, &recorded, &applied_here, mark_runs::LONGEST_RUN, as_mark);
                if marks.len() >= mark_runs::SHORTEST_RUN {
                    Some(mark_runs::apply_run(&mut tx, &mut log, &marks, now).await?)
                } else {
                    None
                }
            };
            if let Some(run_results) = run_results {
                for result in run_results {
                    if recording {
                        to_record.push(index);
                        applied_here.insert(batch[index].id, index);
                    }
                    results.push(result);
                    index += 1;
                }
                continue;
            }
            let submitted = &batch[index];
            let earlier = match applied_here.get(submitted.id) {
                Some(&twin) => Some(results[twin].clone()),
                None if recorded.contains(submitted.id) => records::already_applied(&mut tx, submitted.id).await?,
                None => None,
            };
            let result = match earlier {
                Some(earlier) => earlier,
                None => {
                    let result = apply(&mut tx, &mut log, submitted.user, submitted.command, now).await?;
                    if recording {
                        to_record.push(index);
                        applied_here.insert(submitted.id, index);
                    }
                    result
                }
            };
            results.push(result);
            index += 1;
        }
        records::finish(&mut tx, &mut log, batch, &to_record, &results, now).await?;
        tx.commit().await?;
        Ok(results)
    }
}

/// The commands at the start of `rest` that `pick` takes, as one run (see
/// [`sends`], [`mark_runs`]): up to the first it does not take, or one
/// applied before or earlier in the batch (answered from its record
/// instead).
fn fresh_run<'a, T>(
    rest: &[Submitted<'a>],
    recorded: &HashSet<String>,
    applied_here: &HashMap<&str, usize>,
    longest: usize,
    pick: impl Fn(&Submitted<'a>) -> Option<T>,
) -> Vec<T> {
    let mut ids = HashSet::new();
    let mut run = Vec::new();
    for submitted in rest.iter().take(longest) {
        let Some(item) = pick(submitted) else { break };
        if recorded.contains(submitted.id) || applied_here.contains_key(submitted.id) || !ids.insert(submitted.id) {
            break;
        }
        run.push(item);
    }
    run
}

fn as_new_message<'a>(submitted: &Submitted<'a>) -> Option<sends::NewMessage<'a>> {
    let Command::Send { chat_id, client_message_id, text, attachments } = submitted.command else { return None };
    Some(sends::NewMessage {
        user: submitted.user,
        chat: *chat_id,
        client_message_id,
        content: Content { text, attachments },
    })
}

fn as_mark<'a>(submitted: &Submitted<'a>) -> Option<mark_runs::MarkCommand<'a>> {
    let Command::Mark { chat_id, message_id, mark } = submitted.command else { return None };
    Some(mark_runs::MarkCommand { user: submitted.user, chat: *chat_id, message_id: *message_id, kind: *mark })
}

/// The chat's counters, read under its write lock.
pub(super) struct Counters {
    last_message_id: MessageId,
    pub(super) last_event_id: EventId,
}

/// Takes the chat's row lock (a no-op update) and reads its counters. Ids are
/// only allocated after every check passed, so a refused command never
/// leaves a gap.
/// Also answers, in the same statement, whether `user` is a member: one
/// round trip instead of two on the hottest path. That answer comes from
/// the statement's snapshot, taken before any wait for the row; when the
/// chat's membership version moved during the wait (a change committed
/// just ahead, on PostgreSQL), membership is looked up again, now final
/// since the row is held.
async fn lock_chat(tx: &mut Tx, chat: ChatId, user: &str) -> Result<Option<(Counters, bool)>, StoreError> {
    let row: Option<(i64, i64, i64, i64, i64)> = sqlx::query_as(
        "UPDATE chats SET last_event_id = last_event_id WHERE id = $1 \
         RETURNING last_message_id, last_event_id, membership_version, \
           (SELECT s.membership_version FROM chats s WHERE s.id = $1), \
           (SELECT COUNT(*) FROM members m WHERE m.chat_id = $1 AND m.user_id = $2)",
    )
    .bind(chat)
    .bind(user)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((last_message_id, last_event_id, version, version_seen, member_rows)) = row else { return Ok(None) };
    let member = if version == version_seen {
        member_rows > 0
    } else {
        super::membership(&mut **tx, chat, user).await? == super::Membership::Member
    };
    Ok(Some((Counters { last_message_id, last_event_id }, member)))
}

async fn apply(
    tx: &mut Tx,
    log: &mut EventLog,
    user: &str,
    command: &Command,
    now: Millis,
) -> Result<Result<Outcome, Refusal>, StoreError> {
    let chat = command.chat_id();
    match command {
        Command::Send { client_message_id, text, attachments, .. } => {
            send(tx, log, user, chat, client_message_id, Content { text, attachments }, now).await
        }
        Command::Edit { message_id, text, attachments, .. } => {
            changes::edit(tx, log, user, chat, *message_id, Content { text, attachments }, now).await
        }
        Command::Delete { message_id, .. } => changes::delete(tx, log, user, chat, *message_id, now).await,
        Command::Mark { message_id, mark, .. } => mark_range(tx, log, user, chat, *message_id, *mark, now).await,
    }
}

/// What a `new` or `edit` says.
#[derive(Clone, Copy)]
pub(super) struct Content<'a> {
    pub text: &'a str,
    pub attachments: &'a Attachments,
}

/// Locks the chat for `user`'s command: its counters, or the refusal
/// (unknown chat, not a member).
pub(super) async fn locked_for(tx: &mut Tx, chat: ChatId, user: &str) -> Result<Result<Counters, Refusal>, StoreError> {
    Ok(match lock_chat(tx, chat, user).await? {
        None => Err(Refusal::no_chat()),
        Some((_, false)) => Err(Refusal::not_member()),
        Some((counters, true)) => Ok(counters),
    })
}

/// The update that advances a chat's counters by one for a `new`, if the
/// sender is a member: `$1` the chat, `$2` the sender, `$3` the time. A
/// macro so that the statements built on it are constants (`concat!`).
macro_rules! advance {
    () => {
        "UPDATE chats SET last_message_id = last_message_id + 1, last_event_id = last_event_id + 1, \
           last_activity_at = $3 \
         WHERE id = $1 AND EXISTS (SELECT 1 FROM members m WHERE m.chat_id = $1 AND m.user_id = $2)"
    };
}
pub(super) use advance;

/// The condition, added to [`advance`] on PostgreSQL, that chat `$1`'s
/// membership did not change while the update waited for its row. The
/// membership check reads the statement's snapshot, taken before the wait
/// (read committed re-checks only the row itself): a removal committed
/// just ahead would otherwise let its member's `new` through. The row's
/// version, the latest once the wait is over, is compared with the
/// snapshot's; when they differ nothing is updated, and the caller looks
/// again. SQLite's one writer cannot interleave the two, so its
/// statements go without it.
macro_rules! membership_unmoved {
    () => {
        " AND membership_version = (SELECT s.membership_version FROM chats s WHERE s.id = $1)"
    };
}
pub(super) use membership_unmoved;

/// Advances the chat's counters by one if `user` is a member of it, and
/// inserts the message under the new id unless it is a retry (the unique
/// key (chat, sender, clientMessageId)): the new last message id and event
/// id and whether the message went in, or `None` if `user` may not send
/// there.
///
/// On PostgreSQL this is one statement (the update in a `WITH` of the
/// insert): a round trip fewer on every `new` applied on its own. On SQLite
/// it is three: neither the update's new values nor the inserted row are
/// `RETURNING`ed, since SQLite gathers returned rows in a temporary b-tree,
/// opened, paged and closed every time (8 % of a `new`'s instructions,
/// bench/instructions.sh, docs/benchmarks-journal.md); the counters are read back
/// under the write lock the transaction holds, and the insert is counted.
async fn advance_and_insert(
    tx: &mut Tx,
    chat: ChatId,
    user: &str,
    client_message_id: &str,
    content: Content<'_>,
    now: Millis,
) -> Result<Option<(i64, i64, bool)>, StoreError> {
    const ADVANCE: &str = advance!();
    const ADVANCE_AND_INSERT: &str = concat!(
        "WITH advanced AS (",
        advance!(),
        membership_unmoved!(),
        " RETURNING last_message_id, last_event_id), \
         inserted AS (INSERT INTO messages \
           (chat_id, message_id, user_id, client_message_id, body, attachments, created_at, new_event_id) \
           SELECT $1, last_message_id, $2, $4, $5, $6, $3, last_event_id FROM advanced \
           ON CONFLICT (chat_id, user_id, client_message_id) DO NOTHING RETURNING 1) \
         SELECT last_message_id, last_event_id, EXISTS (SELECT 1 FROM inserted) FROM advanced"
    );
    let attachments = content.attachments.as_str();
    if super::Backend::of(tx) == super::Backend::Postgres {
        let advanced = sqlx::query_as(ADVANCE_AND_INSERT)
            .bind(chat)
            .bind(user)
            .bind(now)
            .bind(client_message_id)
            .bind(content.text)
            .bind(attachments)
            .fetch_optional(&mut **tx)
            .await?;
        return Ok(advanced);
    }
    let changed = sqlx::query(ADVANCE).bind(chat).bind(user).bind(now).execute(&mut **tx).await?.rows_affected();
    if changed == 0 {
        return Ok(None);
    }
    let (message_id, event_id): (i64, i64) =
        sqlx::query_as("SELECT last_message_id, last_event_id FROM chats WHERE id = $1")
            .bind(chat)
            .fetch_one(&mut **tx)
            .await?;
    let inserted = sqlx::query(
        "INSERT INTO messages \
           (chat_id, message_id, user_id, client_message_id, body, attachments, created_at, new_event_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (chat_id, user_id, client_message_id) DO NOTHING",
    )
    .bind(chat)
    .bind(message_id)
    .bind(user)
    .bind(client_message_id)
    .bind(content.text)
    .bind(attachments)
    .bind(now)
    .bind(event_id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    Ok(Some((message_id, event_id, inserted)))
}

/// `new`, the hottest command, in one statement on PostgreSQL and three on
/// SQLite ([`advance_and_insert`]): the chat's counters are advanced in the
/// statement that locks the row and checks membership, and the message
/// insert doubles as the idempotency check; its event joins the batch's
/// log. A retry (rare) puts the counters back.
async fn send(
    tx: &mut Tx,
    log: &mut EventLog,
    user: &str,
    chat: ChatId,
    client_message_id: &str,
    content: Content<'_>,
    now: Millis,
) -> Result<Result<Outcome, Refusal>, StoreError> {
    let Content { text, attachments } = content;
    let (message_id, event_id, inserted) = loop {
        if let Some(advanced) = advance_and_insert(tx, chat, user, client_message_id, content, now).await? {
            break advanced;
        }
        // A retry of a message stored while the sender was a member is
        // answered as the first time, as a run of sends answers it
        // (`sends.rs`): it was accepted then, and refusing it now would
        // tell the client it was not.
        if let Some(stored) = stored_send(tx, chat, user, client_message_id).await? {
            return Ok(Ok(stored));
        }
        match super::membership(&mut **tx, chat, user).await? {
            super::Membership::NoChat => return Ok(Err(Refusal::no_chat())),
            super::Membership::NotMember => return Ok(Err(Refusal::not_member())),
            // Still a member: the membership moved while the update waited
            // ([`membership_unmoved`]); the next statement's snapshot has
            // the change.
            super::Membership::Member => continue,
        }
    };
    if !inserted {
        // An idempotent retry: put the counters back (this transaction holds
        // the row) and answer as the first time; nothing is broadcast. The
        // chat's activity goes back too, to its latest message's time (the
        // time every way of storing a `new` gives both) or, with none, its
        // creation's, so that a retry does not move the chat up the list.
        sqlx::query(
            "UPDATE chats SET last_message_id = last_message_id - 1, last_event_id = last_event_id - 1, \
               last_activity_at = COALESCE((SELECT m.created_at FROM messages m \
                 WHERE m.chat_id = chats.id AND m.message_id = chats.last_message_id - 1), chats.created_at) \
             WHERE id = $1",
        )
        .bind(chat)
        .execute(&mut **tx)
        .await?;
        let stored = stored_send(tx, chat, user, client_message_id).await?;
        return stored.ok_or_else(|| StoreError::Corrupt(format!("message {client_message_id} not found"))).map(Ok);
    }
    let event = ChatEvent {
        chat_id: chat,
        id: event_id,
        user_id: user.to_owned(),
        message_id,
        timestamp: now,
        kind: EventKind::New {
            client_message_id: client_message_id.to_owned(),
            text: text.to_owned(),
            attachments: attachments.clone(),
        },
    };
    log.append(&event);
    Ok(Ok(Outcome {
        applied: Applied {
            chat_id: chat,
            message_id,
            client_message_id: Some(client_message_id.to_owned()),
            timestamp: now,
        },
        events: vec![event],
    }))
}

/// The reply a `new` already stored under (chat, sender, clientMessageId)
/// got: its message id and time, and no event.
async fn stored_send(
    tx: &mut Tx,
    chat: ChatId,
    user: &str,
    client_message_id: &str,
) -> Result<Option<Outcome>, StoreError> {
    // The chat's row too: a deleted chat's messages stay until they are
    // purged (store/purge.rs), and a retry to it is `not_found` as any
    // send to it, not answered from them.
    let stored: Option<(i64, i64)> = sqlx::query_as(
        "SELECT m.message_id, m.created_at FROM messages m JOIN chats c ON c.id = m.chat_id \
         WHERE m.chat_id = $1 AND m.user_id = $2 AND m.client_message_id = $3",
    )
    .bind(chat)
    .bind(user)
    .bind(client_message_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(stored.map(|(message_id, created_at)| Outcome {
        applied: Applied {
            chat_id: chat,
            message_id,
            client_message_id: Some(client_message_id.to_owned()),
            timestamp: created_at,
        },
        events: Vec::new(),
    }))
}

async fn mark_range(
    tx: &mut Tx,
    log: &mut EventLog,
    user: &str,
    chat: ChatId,
    m: MessageId,
    kind: MarkKind,
    now: Millis,
) -> Result<Result<Outcome, Refusal>, StoreError> {
    let counters = match locked_for(tx, chat, user).await? {
        Ok(counters) => counters,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let (delivered, read): (i64, i64) =
        sqlx::query_as("SELECT delivered_mark, read_mark FROM members WHERE chat_id = $1 AND user_id = $2")
            .bind(chat)
            .bind(user)
            .fetch_one(&mut **tx)
            .await?;
    let outcome = match apply_mark(Marks { delivered, read }, kind, m, counters.last_message_id, now) {
        Ok(outcome) => outcome,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let mut events = Vec::with_capacity(outcome.ranges.len());
    let mut last_event_id = counters.last_event_id;
    for range in &outcome.ranges {
        sqlx::query(
            "INSERT INTO mark_ranges (chat_id, user_id, kind, first_message_id, last_message_id, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(chat)
        .bind(user)
        .bind(range.kind.as_str())
        .bind(range.first)
        .bind(range.last)
        .bind(range.at)
        .execute(&mut **tx)
        .await?;
        last_event_id = next_event_id(tx, chat, last_event_id).await?;
        let event = ChatEvent {
            chat_id: chat,
            id: last_event_id,
            user_id: user.to_owned(),
            message_id: range.last,
            timestamp: range.at,
            kind: EventKind::Mark { mark: range.kind },
        };
        log.append(&event);
        events.push(event);
    }
    if !events.is_empty() {
        sqlx::query("UPDATE members SET delivered_mark = $3, read_mark = $4 WHERE chat_id = $1 AND user_id = $2")
            .bind(chat)
            .bind(user)
            .bind(outcome.marks.delivered)
            .bind(outcome.marks.read)
            .execute(&mut **tx)
            .await?;
    }
    Ok(Ok(Outcome {
        applied: Applied { chat_id: chat, message_id: m, client_message_id: None, timestamp: now },
        events,
    }))
}

/// Allocates the event id after `previous` for `chat` (whose row this
/// transaction already holds).
pub(super) async fn next_event_id(tx: &mut Tx, chat: ChatId, previous: EventId) -> Result<EventId, StoreError> {
    let id = previous + 1;
    sqlx::query("UPDATE chats SET last_event_id = $2 WHERE id = $1").bind(chat).bind(id).execute(&mut **tx).await?;
    Ok(id)
}
