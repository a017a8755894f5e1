//! Server frames of the native protocol. Each function renders one frame to
//! bytes once; the gateway shares those bytes among every recipient of a
//! fan-out instead of serializing per connection.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::Refusal;
use crate::model::{
    Applied, ChatAction, ChatEvent, ChatId, ChatSummary, DeliveryStatus, EventId, EventKind, MarkKind, MessageView,
    Millis, PresenceView, Receipt,
};

use super::inbound::Ref;

fn render(value: &impl Serialize) -> Bytes {
    // Serializing our own plain structs to a Vec cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Welcome<'a> {
    r#type: &'static str,
    user_id: &'a str,
    connection_id: &'a str,
    node: &'a str,
    heartbeat_timeout: u64,
    server_time: Millis,
}

pub fn welcome(user_id: &str, connection_id: &str, node: &str, heartbeat_timeout_ms: u64, now: Millis) -> Bytes {
    render(&Welcome {
        r#type: "welcome",
        user_id,
        connection_id,
        node,
        heartbeat_timeout: heartbeat_timeout_ms,
        server_time: now,
    })
}

#[derive(Serialize)]
struct Pong<'a> {
    r#type: &'static str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: &'a Ref,
    ts: Millis,
}

pub fn pong(reference: &Ref, now: Millis) -> Bytes {
    render(&Pong { r#type: "pong", reference, ts: now })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ack<'a> {
    r#type: &'static str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: &'a Ref,
    chat_id: ChatId,
    message_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_message_id: Option<&'a str>,
    timestamp: Millis,
}

/// `ack` of `new`, `edit`, `delete`, `dlvrd` and `read`: the chat, the
/// message the command named (for marks: the `m` requested), and when it
/// was applied (for a retried `new` or a repeated `delete`: the original
/// time).
pub fn ack(reference: &Ref, applied: &Applied) -> Bytes {
    render(&Ack {
        r#type: "ack",
        reference,
        chat_id: applied.chat_id,
        message_id: applied.message_id,
        client_message_id: applied.client_message_id.as_deref(),
        timestamp: applied.timestamp,
    })
}

/// `ack` of `sync`: chatId (as a string key) to the last event id sent.
pub fn ack_synced(reference: &Ref, synced: &[(ChatId, EventId)]) -> Bytes {
    let synced: serde_json::Map<String, Value> =
        synced.iter().map(|(chat, id)| (chat.to_string(), Value::from(*id))).collect();
    let mut frame = json!({"type": "ack", "synced": synced});
    if let Some(r) = reference {
        frame["ref"] = r.clone();
    }
    render(&frame)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorFrame<'a> {
    r#type: &'static str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: &'a Ref,
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_id: Option<ChatId>,
}

/// `error`. `chat_id` is set when one command concerns several chats (`sync`)
/// and the refusal is for one of them.
pub fn error(reference: &Ref, refusal: &Refusal, chat_id: Option<ChatId>) -> Bytes {
    render(&ErrorFrame { r#type: "error", reference, code: refusal.code.as_str(), message: &refusal.message, chat_id })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventFrame<'a> {
    r#type: &'static str,
    id: EventId,
    chat_id: ChatId,
    user_id: &'a str,
    message_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attachments: Option<&'a Value>,
    timestamp: Millis,
}

/// The frame type a chat event renders as.
pub fn chat_event_type(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::New { .. } => "new",
        EventKind::Edit { .. } => "edit",
        EventKind::Delete => "delete",
        EventKind::Mark { mark: MarkKind::Delivered } => "dlvrd",
        EventKind::Mark { mark: MarkKind::Read } => "read",
    }
}

/// A persisted chat event: `new`, `edit`, `delete`, `dlvrd` or `read`.
pub fn chat_event(event: &ChatEvent) -> Bytes {
    let (kind, client_message_id, message, attachments) = match &event.kind {
        EventKind::New { client_message_id, text, attachments } => {
            ("new", Some(client_message_id.as_str()), Some(text.as_str()), Some(attachments))
        }
        EventKind::Edit { text, attachments } => ("edit", None, Some(text.as_str()), Some(attachments)),
        EventKind::Delete => ("delete", None, None, None),
        EventKind::Mark { mark: MarkKind::Delivered } => ("dlvrd", None, None, None),
        EventKind::Mark { mark: MarkKind::Read } => ("read", None, None, None),
    };
    render(&EventFrame {
        r#type: kind,
        id: event.id,
        chat_id: event.chat_id,
        user_id: &event.user_id,
        message_id: event.message_id,
        client_message_id,
        message,
        attachments,
        timestamp: event.timestamp,
    })
}

pub fn typing(chat_id: ChatId, user_id: &str) -> Bytes {
    render(&json!({"type": "typing", "chatId": chat_id, "userId": user_id}))
}

pub fn online(user_id: &str) -> Bytes {
    render(&json!({"type": "online", "userId": user_id}))
}

pub fn offline(user_id: &str, last_seen: Millis) -> Bytes {
    render(&json!({"type": "offline", "userId": user_id, "lastSeen": last_seen}))
}

pub fn chats(action: ChatAction, chat: &ChatSummary) -> Bytes {
    let action = match action {
        ChatAction::Created => "created",
        ChatAction::Updated => "updated",
        ChatAction::Deleted => "deleted",
    };
    render(&json!({"type": "chats", "action": action, "chat": chat_json(chat)}))
}

fn status_str(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Sent => "sent",
        DeliveryStatus::Delivered => "dlvrd",
        DeliveryStatus::Read => "read",
    }
}

/// A ChatList item, for the `chats` frame and `GET /v1/chats`.
///
/// PROTOCOL.md 7 marks only `photoUrl` and `lastMessageAuthor` optional,
/// so a chat with no message (every new chat) still gets the other three,
/// as a client typed after the contract decodes them: an empty text, the
/// chat's last activity (its creation) as the time, and `sent`. The absent
/// author (`null`) and `lastMessageId` 0 say there is no message.
pub fn chat_json(chat: &ChatSummary) -> Value {
    json!({
        "type": chat.kind.as_str(),
        "id": chat.id,
        "name": chat.name,
        "photoUrl": chat.photo_url,
        "members": chat.members,
        "lastMessageText": chat.last_message_text.as_deref().unwrap_or(""),
        "lastMessageTime": chat.last_message_time.unwrap_or(chat.last_activity_at),
        "lastMessageAuthor": chat.last_message_author,
        "lastMessageStatus": status_str(chat.last_message_status.unwrap_or(DeliveryStatus::Sent)),
        "missed": chat.missed,
        "isMine": chat.is_mine,
        "lastMessageId": chat.last_message_id,
        "lastEventId": chat.last_event_id,
    })
}

pub fn message_json(m: &MessageView) -> Value {
    json!({
        "chatId": m.chat_id,
        "messageId": m.message_id,
        "userId": m.user_id,
        "clientMessageId": m.client_message_id,
        "message": m.text,
        "attachments": m.attachments,
        "timestamp": m.timestamp,
        "editedAt": m.edited_at,
        "deleted": m.deleted,
        "members": m.members,
        "deliveredMembers": m.delivered_members,
        "readMembers": m.read_members,
        "status": status_str(m.status),
    })
}

pub fn receipt_json(r: &Receipt) -> Value {
    json!({"userId": r.user_id, "deliveredAt": r.delivered_at, "readAt": r.read_at})
}

pub fn presence_json(p: &PresenceView) -> Value {
    json!({"userId": p.user_id, "online": p.online, "lastSeen": p.last_seen})
}

/// The JSON body of every REST error: `{"code","message"}`.
pub fn rest_error(refusal: &Refusal) -> Value {
    json!({"code": refusal.code.as_str(), "message": refusal.message})
}
