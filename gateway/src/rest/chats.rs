//! Chats and members over REST; every change is announced to the affected
//! members as a `chats` frame (created, updated or deleted).

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use shared::bus::{Broker, Event};
use shared::clock::now_ms;
use shared::error::Refusal;
use shared::model::{ChatAction, ChatId, ChatKind, MemberViews, UserId};
use shared::protocol::native::outbound::{chat_item, rest_error};
use shared::store::{within, NewChat, StoreRefusal, CREATED_MEMBERSHIP_VERSION};

use super::auth::{id, ApiError, Caller};
use crate::node::{Node, STORE_DEADLINE};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateChat {
    r#type: String,
    name: Option<String>,
    photo_url: Option<String>,
    #[serde(default)]
    members: Vec<String>,
}

/// Longest `Idempotency-Key`, in bytes.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Creates a chat. With an `Idempotency-Key` header, a retry (after a 503,
/// a timeout or a dropped connection) answers with the chat the first
/// attempt created, and announces it to the members again in case the
/// first attempt stored it but never got to announce it.
pub async fn create(
    State(node): State<Arc<Node>>,
    Caller(user): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let request: CreateChat =
        serde_json::from_slice(&body).map_err(|e| Refusal::bad_request(format!("invalid body: {e}")))?;
    let kind =
        ChatKind::parse(&request.r#type).ok_or_else(|| Refusal::bad_request("type must be \"dialog\" or \"group\""))?;
    let new_chat =
        NewChat { kind, name: request.name, photo_url: request.photo_url, members: request.members, idempotency_key };
    let creating = async { Ok(node.store.create_chat(&user, new_chat, now_ms()).await) };
    let created = match within::<_, ApiError>(STORE_DEADLINE, creating).await? {
        Ok(created) => created,
        Err((StoreRefusal::Refused(refusal), Some(existing))) => {
            let mut body = rest_error(&refusal);
            body["chatId"] = json!(existing);
            return Ok((StatusCode::CONFLICT, Json(body)).into_response());
        }
        Err((e, _)) => return Err(e.into()),
    };
    if created.earlier {
        tracing::debug!(chat = created.chat_id, "a chat creation retried under its idempotency key");
    }
    let views = read_views(&node, created.chat_id).await;
    announce(&node, views.as_ref(), &created.members, ChatAction::Created, CREATED_MEMBERSHIP_VERSION).await;
    let summary =
        within(STORE_DEADLINE, node.store.summary(created.chat_id, &user)).await?.ok_or_else(Refusal::no_chat)?;
    Ok((StatusCode::CREATED, Json(chat_item(&summary))).into_response())
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    match value.to_str() {
        Ok(key) if (1..=MAX_IDEMPOTENCY_KEY).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key.to_owned()))
        }
        _ => Err(Refusal::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        ))),
    }
}

pub async fn delete(
    State(node): State<Arc<Node>>,
    Caller(user): Caller,
    Path(chat): Path<String>,
) -> Result<StatusCode, ApiError> {
    let chat = id(&chat, "chatId")?;
    // Each member's last view of the chat goes with the `deleted` frame, so
    // it is read before the deletion; a caller who may not delete the chat
    // is refused before that read.
    within(STORE_DEADLINE, node.store.may_delete(chat, &user)).await?;
    let before = within(STORE_DEADLINE, node.store.member_views(chat)).await?.map(Arc::new);
    let deleted = within(STORE_DEADLINE, node.store.delete_chat(chat, &user, now_ms())).await?;
    announce(&node, before.as_ref(), &deleted.members, ChatAction::Deleted, deleted.version).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddMember {
    user_id: String,
}

pub async fn add_member(
    State(node): State<Arc<Node>>,
    Caller(user): Caller,
    Path(chat): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let chat = id(&chat, "chatId")?;
    let request: AddMember =
        serde_json::from_slice(&body).map_err(|e| Refusal::bad_request(format!("invalid body: {e}")))?;
    let added = within(STORE_DEADLINE, node.store.add_member(chat, &user, &request.user_id, now_ms())).await?;
    let views = read_views(&node, chat).await;
    let newcomer = std::slice::from_ref(&request.user_id);
    announce(&node, views.as_ref(), newcomer, ChatAction::Created, added.version).await;
    let others: Vec<String> = added.members.into_iter().filter(|m| *m != request.user_id).collect();
    announce(&node, views.as_ref(), &others, ChatAction::Updated, added.version).await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove_member(
    State(node): State<Arc<Node>>,
    Caller(user): Caller,
    Path((chat, removed)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let chat = id(&chat, "chatId")?;
    // Before any query: PostgreSQL refuses a U+0000 in a parameter, which
    // would answer 500 for what is the client's mistake.
    if !shared::auth::valid_user_id(&removed) {
        return Err(Refusal::bad_request(format!("{removed:?} is not a valid user id")).into());
    }
    // The removed member's last view goes with their `deleted` frame, so it
    // is read before the removal; a caller who may not remove them is
    // refused before that read.
    within(STORE_DEADLINE, node.store.may_remove(chat, &user, &removed)).await?;
    let last_view = within(STORE_DEADLINE, node.store.summary(chat, &removed)).await?;
    let change = within(STORE_DEADLINE, node.store.remove_member(chat, &user, &removed)).await?;
    if let Some(view) = last_view {
        let event = Event::ChatList {
            user: removed.clone(),
            action: ChatAction::Deleted,
            chat: Box::new(view),
            version: change.version,
        };
        publish_in_turn(&node, std::iter::once(event)).await;
    }
    let others: Vec<String> = change.members.into_iter().filter(|m| *m != removed).collect();
    let views = read_views(&node, chat).await;
    announce(&node, views.as_ref(), &others, ChatAction::Updated, change.version).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The chat as each member sees it now, read once for all of them; `None`
/// (logged) when it cannot be read, and then nobody is told.
async fn read_views(node: &Node, chat: ChatId) -> Option<Arc<MemberViews>> {
    match within(STORE_DEADLINE, node.store.member_views(chat)).await {
        Ok(views) => views.map(Arc::new),
        Err(e) => {
            metrics::counter!("chat_database_errors_total").increment(1);
            tracing::warn!(error = %e, chat, "chat change not announced");
            None
        }
    }
}

/// Sends each of `users` the chat as they see it, as of membership
/// `version`.
///
/// From `SHARED_ANNOUNCE_FROM` users on, while every live gateway reads
/// its form ([`crate::fleet_forms`]), in one event that every gateway
/// hears: the chat as all of them see it, which each gateway renders for
/// the users it holds. Below, one event per user, on the user's channel.
/// For a group of N, per-user events carry about N² member ids through
/// Redis in all, but only to the gateways that hold the members; the one
/// event N ids and N counts (the members, their unread counts) to each of
/// G gateways: less from 100 users on for any fleet of up to some 85
/// gateways (measured in docs/operations.md, Redis).
///
/// Per-user events are made and published in turn, so that one
/// announcement holds one summary at a time, unless Redis fails it. Then
/// the rest are not tried one by one (each would wait for Redis's
/// timeout), and the whole remainder is published again later
/// ([`announce_later`]).
async fn announce(node: &Node, views: Option<&Arc<MemberViews>>, users: &[String], action: ChatAction, version: i64) {
    let Some(views) = views else { return };
    let shared_from = node.settings.shared_announce_from;
    if shared_from > 0 && users.len() >= shared_from && node.fleet_forms.shared_event_read_everywhere() {
        let told: HashSet<&str> = users.iter().map(String::as_str).collect();
        let untold: Arc<[UserId]> = views.members().iter().filter(|m| !told.contains(m.as_str())).cloned().collect();
        let event = Event::ChatListToMany { untold, action, chat: views.clone(), version };
        return publish_in_turn(node, std::iter::once(event)).await;
    }
    let events = users.iter().filter_map(|user| {
        let summary = views.as_seen_by(user)?;
        Some(Event::ChatList { user: user.clone(), action, chat: Box::new(summary), version })
    });
    publish_in_turn(node, events).await;
}

/// Publishes `events` one at a time, made as they are taken (see
/// [`announce`]).
async fn publish_in_turn(node: &Node, events: impl Iterator<Item = Event>) {
    let mut unannounced = Vec::new();
    for event in events {
        if !unannounced.is_empty() {
            unannounced.push(event);
            continue;
        }
        if let Err((e, event)) = node.broker.publish_or_keep(event).await {
            metrics::counter!("chat_redis_errors_total", "op" => "announce").increment(1);
            tracing::warn!(error = %e, "chat change not announced; retrying it every second");
            unannounced.push(event);
        }
    }
    if !unannounced.is_empty() {
        announce_later(node.broker.clone(), unannounced);
    }
}

/// Publishes `events` again, every second for [`ANNOUNCE_RETRY_FOR`]. Only
/// this node's connection to Redis may have failed while the members'
/// gateways listen on, and those would follow the old membership until
/// their own next reconnect (which reads it again, `hub::repair`): a
/// removed member would go on receiving the chat. A repeat reaching a
/// gateway that had the first (whose answer was lost) is applied again, so
/// a member may get the same `chats` frame twice; one older than a change
/// announced meanwhile is dropped by its version, which gateways remember
/// for longer than the retries last.
fn announce_later(broker: Broker, events: Vec<Event>) {
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + ANNOUNCE_RETRY_FOR;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            match broker.publish_all(events.clone()).await {
                Ok(()) => return tracing::info!(events = events.len(), "chat change announced on a retry"),
                Err(_) => metrics::counter!("chat_redis_errors_total", "op" => "announce").increment(1),
            }
        }
        tracing::warn!(
            events = events.len(),
            "chat change not announced; its members' gateways follow it once they reconnect to Redis"
        );
    });
}

/// How long a failed announcement is retried: its last attempt starts
/// before this and ends within Redis's timeouts, well inside the 1 to 2
/// minutes gateways remember versions for (`gateway::latest`).
const ANNOUNCE_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);
