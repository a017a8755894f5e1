//! A run of consecutive `new` commands in one batch, applied with four
//! statements whatever its length: the retries among them, their senders'
//! memberships, the chats' counters (advanced for the whole run at once)
//! and the messages. Applied one at a time, `new` costs two statements.
//!
//! Why: a batch is applied statement by statement, each a round trip (to
//! sqlx's SQLite thread, or to PostgreSQL), and while it runs the next
//! batch waits. At saturation the batches are full of `new`s and those
//! round trips, not CPU, were what capped messages per second (the
//! standalone machine was a fifth idle).
//!
//! The result is the same as applying the run one command at a time: ids
//! are given per chat in run order, a retry (same chat, sender and
//! clientMessageId, stored before or earlier in the run) is answered as
//! the first time with nothing broadcast, and a sender who is not a member
//! is refused without using an id.

use std::collections::HashMap;

use sqlx::any::AnyArguments;

use super::batch_rows::{add, BatchRows, Column, Value};
use super::commands::{Content, Tx};
use super::event_log::EventLog;
use super::placeholders::Placeholders;
use super::{MemberRow, Membership, Outcome, StoreError};
use crate::error::Refusal;
use crate::model::{Applied, ChatEvent, ChatId, EventId, EventKind, MessageId, Millis};

/// Runs shorter than this go one command at a time: the four statements
/// only pay off from three `new`s on (which cost six).
pub(super) const SHORTEST_RUN: usize = 3;
/// Runs are cut at this length, which keeps every statement's parameters
/// (eight per message in SQLite's `VALUES` lists) far below its limit.
pub(super) const LONGEST_RUN: usize = 256;

/// One `new` of the run.
pub(super) struct NewMessage<'a> {
    pub user: &'a str,
    pub chat: ChatId,
    pub client_message_id: &'a str,
    pub content: Content<'a>,
}

impl NewMessage<'_> {
    fn key(&self) -> (ChatId, &str, &str) {
        (self.chat, self.user, self.client_message_id)
    }
}

/// What became of one `new` before ids are given.
enum Fate {
    /// Stored before: (message id, created at).
    Stored(MessageId, Millis),
    /// The same as an earlier `new` of this run.
    Twin(usize),
    Refused(Refusal),
    /// A new message: its offset among its chat's new messages in the run.
    New(i64),
}

/// Applies `run` in order; one result per command.
pub(super) async fn apply_run(
    tx: &mut Tx,
    log: &mut EventLog,
    run: &[NewMessage<'_>],
    now: Millis,
) -> Result<Vec<Result<Outcome, Refusal>>, StoreError> {
    let stored = stored_before(tx, run).await?;
    let mut members = super::members_of_pairs(tx, run.iter().map(|m| (m.chat, m.user))).await?;
    // (chat → the first message id and event id of its new messages)
    let mut first_ids: HashMap<ChatId, (MessageId, EventId)> = HashMap::new();
    let fates = loop {
        let (fates, new_per_chat) = decide(tx, run, &stored, &members).await?;
        let to_advance: HashMap<ChatId, (i64, i64)> =
            new_per_chat.into_iter().filter(|(chat, _)| !first_ids.contains_key(chat)).collect();
        let advanced = advance_counters(tx, &to_advance, now).await?;
        let moved: Vec<ChatId> = to_advance.keys().filter(|chat| !advanced.contains_key(chat)).copied().collect();
        first_ids.extend(advanced);
        if moved.is_empty() {
            break fates;
        }
        // Their membership changed (or they were deleted) after it was
        // read: read it again, and decide those chats' messages anew.
        // The others keep their fates and their ids.
        let again = run.iter().filter(|m| moved.contains(&m.chat)).map(|m| (m.chat, m.user));
        let fresh = super::members_of_pairs(tx, again).await?;
        members.retain(|(chat, _), _| !moved.contains(chat));
        members.extend(fresh);
    };
    let mut results: Vec<Result<Outcome, Refusal>> = Vec::with_capacity(run.len());
    let mut inserts = Vec::new();
    for (message, fate) in run.iter().zip(&fates) {
        let applied = |message_id, timestamp| Applied {
            chat_id: message.chat,
            message_id,
            client_message_id: Some(message.client_message_id.to_owned()),
            timestamp,
        };
        let result = match fate {
            Fate::Stored(id, at) => Ok(Outcome { applied: applied(*id, *at), events: Vec::new() }),
            Fate::Twin(first) => results[*first]
                .as_ref()
                .map(|first| Outcome { applied: first.applied.clone(), events: Vec::new() })
                .map_err(Refusal::clone),
            Fate::Refused(refusal) => Err(refusal.clone()),
            Fate::New(offset) => {
                // The loop above advanced every chat with a new message or
                // decided again without it. Were it missed all the same, a
                // refusal: an error is retried for ever, stalling the
                // shard (once the fate of a member that outlived its chat).
                let Some(&(first_message, first_event)) = first_ids.get(&message.chat) else {
                    results.push(Err(Refusal::no_chat()));
                    continue;
                };
                let (message_id, event_id) = (first_message + offset, first_event + offset);
                let event = ChatEvent {
                    chat_id: message.chat,
                    id: event_id,
                    user_id: message.user.to_owned(),
                    message_id,
                    timestamp: now,
                    kind: EventKind::New {
                        client_message_id: message.client_message_id.to_owned(),
                        text: message.content.text.to_owned(),
                        attachments: message.content.attachments.clone(),
                    },
                };
                log.append(&event);
                inserts.push((message, message_id, event_id));
                Ok(Outcome { applied: applied(message_id, now), events: vec![event] })
            }
        };
        results.push(result);
    }
    insert_messages(tx, &inserts, now).await?;
    Ok(results)
}

/// Each message's fate, given what is stored and who is a member, and
/// per chat the number of new messages and the membership version under
/// which they were decided.
async fn decide<'a>(
    tx: &mut Tx,
    run: &'a [NewMessage<'a>],
    stored: &HashMap<(ChatId, &str, &str), (MessageId, Millis)>,
    members: &HashMap<(ChatId, &str), MemberRow>,
) -> Result<(Vec<Fate>, HashMap<ChatId, (i64, i64)>), StoreError> {
    let mut fates = Vec::with_capacity(run.len());
    let mut first_of: HashMap<(ChatId, &str, &str), usize> = HashMap::new();
    let mut new_per_chat: HashMap<ChatId, (i64, i64)> = HashMap::new();
    for (index, message) in run.iter().enumerate() {
        let fate = if let Some(&(id, at)) = stored.get(&message.key()) {
            Fate::Stored(id, at)
        } else if let Some(&first) = first_of.get(&message.key()) {
            Fate::Twin(first)
        } else if let Some(member) = members.get(&(message.chat, message.user)) {
            first_of.insert(message.key(), index);
            let (count, _) = new_per_chat.entry(message.chat).or_insert((0, member.membership_version));
            *count += 1;
            Fate::New(*count - 1)
        } else {
            Fate::Refused(match super::membership(&mut **tx, message.chat, message.user).await? {
                Membership::NoChat => Refusal::no_chat(),
                _ => Refusal::not_member(),
            })
        };
        fates.push(fate);
    }
    Ok((fates, new_per_chat))
}

/// The run's messages that are already stored (retries), by key. Those of
/// a deleted chat, whose messages stay until they are purged, are not:
/// a retry to it is `not_found` as any send to it.
async fn stored_before<'a>(
    tx: &mut Tx,
    run: &'a [NewMessage<'a>],
) -> Result<HashMap<(ChatId, &'a str, &'a str), (MessageId, Millis)>, StoreError> {
    let mut keys = BatchRows::new(tx, &[Column::Int, Column::Text, Column::Text]);
    for message in run {
        keys.push([Value::Int(message.chat), Value::Text(message.user), Value::Text(message.client_message_id)]);
    }
    let keys_table = keys.table(&mut Placeholders::for_connection(tx), "v");
    let sql = if super::Backend::of(tx) == super::Backend::Postgres {
        // One probe of the unique key per row, whatever the table's size
        // when the statement was prepared: PostgreSQL keeps a prepared
        // statement's generic plan, and one made while `messages` was
        // nearly empty (a fresh deployment, every benchmark) hash-joins a
        // scan of the whole table, which then grows under it: 40 ms for
        // 256 keys against 200,000 messages, where the probes take 1.4 ms.
        // `LIMIT 1` (the key is unique) keeps the planner from turning the
        // lateral subquery back into that join.
        format!(
            "SELECT v.column1, v.column2, v.column3, m.message_id, m.created_at, \
               (SELECT c.id FROM chats c WHERE c.id = v.column1) \
             FROM {keys_table} CROSS JOIN LATERAL \
               (SELECT message_id, created_at FROM messages \
                WHERE chat_id = v.column1 AND user_id = v.column2 AND client_message_id = v.column3 \
                LIMIT 1) AS m"
        )
    } else {
        // A join, not `(…) IN (VALUES …)`: SQLite scans the whole table for
        // the latter, and finds each row by the unique key for the former.
        format!(
            "SELECT m.chat_id, m.user_id, m.client_message_id, m.message_id, m.created_at, \
               (SELECT c.id FROM chats c WHERE c.id = m.chat_id) \
             FROM {keys_table} JOIN messages m \
               ON m.chat_id = v.column1 AND m.user_id = v.column2 AND m.client_message_id = v.column3"
        )
    };
    let mut args = AnyArguments::default();
    keys.add_to(&mut args)?;
    let query = sqlx::query_as_with::<_, (i64, String, String, i64, i64, Option<i64>), _>(&sql, args);
    let rows = query.fetch_all(&mut **tx).await?;
    let mut stored = HashMap::with_capacity(rows.len());
    // The chat is looked up in the list of what is selected, for the rows
    // found only (retries, which are rare), not joined: a join would be
    // the planner's to order, and every run's statement pays for it.
    let live = rows.into_iter().filter(|row| row.5.is_some());
    for (chat, user, client_message_id, message_id, created_at, _) in live {
        // Borrow the key from the run so the map outlives the rows.
        if let Some(message) =
            run.iter().find(|m| m.chat == chat && m.user == user && m.client_message_id == client_message_id)
        {
            stored.insert(message.key(), (message_id, created_at));
        }
    }
    Ok(stored)
}

/// Advances each chat's counters by its number of new messages in one
/// statement, which also takes the chats' write locks; returns per chat
/// the first message id and event id the run may use. A chat whose
/// membership version is no longer the one its messages were decided
/// under is left as it is and missing from the answer: on PostgreSQL a
/// change can commit between the read of the memberships and this update,
/// or while the update waits for the row.
async fn advance_counters(
    tx: &mut Tx,
    new_per_chat: &HashMap<ChatId, (i64, i64)>,
    now: Millis,
) -> Result<HashMap<ChatId, (MessageId, EventId)>, StoreError> {
    if new_per_chat.is_empty() {
        return Ok(HashMap::new());
    }
    let mut counts = BatchRows::new(tx, &[Column::Int, Column::Int, Column::Int]);
    for (chat, (count, membership_version)) in new_per_chat {
        counts.push([Value::Int(*chat), Value::Int(*count), Value::Int(*membership_version)]);
    }
    let mut params = Placeholders::for_connection(tx);
    let now_param = params.one();
    let counts_table = counts.table(&mut params, "v");
    let sql = format!(
        "UPDATE chats SET last_message_id = last_message_id + v.column2, \
           last_event_id = last_event_id + v.column2, last_activity_at = {now_param} \
         FROM {counts_table} WHERE chats.id = v.column1 AND chats.membership_version = v.column3 \
         RETURNING chats.id, chats.last_message_id, chats.last_event_id"
    );
    let mut args = AnyArguments::default();
    add(&mut args, now)?;
    counts.add_to(&mut args)?;
    let query = sqlx::query_as_with::<_, (i64, i64, i64), _>(&sql, args);
    let rows = query.fetch_all(&mut **tx).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(chat, last_message, last_event)| {
            let (count, _) = new_per_chat.get(&chat)?;
            Some((chat, (last_message - count + 1, last_event - count + 1)))
        })
        .collect())
}

/// Inserts the run's new messages in one statement. A unique-key conflict
/// here means another transaction stored one of them since `stored_before`
/// looked (two workers briefly applying one shard while its lease moves):
/// the batch fails and its redelivery finds the message stored.
async fn insert_messages(
    tx: &mut Tx,
    inserts: &[(&NewMessage<'_>, MessageId, EventId)],
    now: Millis,
) -> Result<(), StoreError> {
    if inserts.is_empty() {
        return Ok(());
    }
    let mut rows = BatchRows::new(
        tx,
        &[Column::Int, Column::Int, Column::Text, Column::Text, Column::Text, Column::Text, Column::Int, Column::Int],
    );
    for (message, message_id, event_id) in inserts {
        rows.push([
            Value::Int(message.chat),
            Value::Int(*message_id),
            Value::Text(message.user),
            Value::Text(message.client_message_id),
            Value::Text(message.content.text),
            Value::Text(message.content.attachments.as_str()),
            Value::Int(now),
            Value::Int(*event_id),
        ]);
    }
    rows.insert(
        tx,
        "messages (chat_id, message_id, user_id, client_message_id, body, attachments, created_at, new_event_id)",
    )
    .await
}
