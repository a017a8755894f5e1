//! Server frames of the native protocol. Each function renders one frame to
//! bytes once; the gateway shares those bytes among every recipient of a
//! fan-out instead of serializing per connection.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::Refusal;
use crate::model::{
    Applied, Attachments, ChatAction, ChatEvent, ChatId, ChatSummary, DeliveryStatus, EventId, EventKind, MarkKind,
    MessageId, MessageView, Millis, PresenceView, Receipt, UserId,
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
    attachments: Option<&'a Attachments>,
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

#[derive(Serialize)]
struct ChatsFrame<'a> {
    r#type: &'static str,
    action: &'static str,
    chat: ChatItem<'a>,
}

fn chats_frame(action: ChatAction, chat: ChatItem<'_>) -> ChatsFrame<'_> {
    let action = match action {
        ChatAction::Created => "created",
        ChatAction::Updated => "updated",
        ChatAction::Deleted => "deleted",
    };
    ChatsFrame { r#type: "chats", action, chat }
}

pub fn chats(action: ChatAction, chat: &ChatSummary) -> Bytes {
    render(&chats_frame(action, chat_item(chat)))
}

/// A `chats` frame in two parts, [`chats_head`] then [`chats_end`], for
/// the members of a large group: the end, the member list, is the same in
/// every member's frame, so it is rendered once and held once, however
/// many members are told. The head ends with `"members":`.
pub fn chats_head(action: ChatAction, chat: &ChatSummary) -> Bytes {
    let item = ChatItem { members: None, ..chat_item(chat) };
    let mut head = serde_json::to_vec(&chats_frame(action, item)).unwrap_or_default();
    // `}}`: the item's and the frame's; the members come last.
    debug_assert!(head.ends_with(b"}}"));
    head.truncate(head.len().saturating_sub(2));
    head.extend_from_slice(b",\"members\":");
    Bytes::from(head)
}

/// What follows every [`chats_head`] of a chat whose members are `members`.
pub fn chats_end(members: &[UserId]) -> Bytes {
    let mut end = serde_json::to_vec(members).unwrap_or_default();
    end.extend_from_slice(b"}}");
    Bytes::from(end)
}

fn status_str(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Sent => "sent",
        DeliveryStatus::Delivered => "dlvrd",
        DeliveryStatus::Read => "read",
    }
}

/// A ChatList item, for the `chats` frame and `GET /v1/chats`. Serialized
/// straight from the summary it borrows: a `serde_json::Value` would copy
/// every member's name into a tree first, for every member told of a
/// change to a group of thousands.
///
/// PROTOCOL.md 7 marks only `photoUrl` and `lastMessageAuthor` optional,
/// so a chat with no message (every new chat) still gets the other three,
/// as a client typed after the contract decodes them: an empty text, the
/// chat's last activity (its creation) as the time, and `sent`. The absent
/// author (`null`) says there is no message.
///
/// The members come last: a large group's `chats` frames share them
/// ([`chats_head`]).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatItem<'a> {
    r#type: &'static str,
    id: ChatId,
    name: &'a str,
    photo_url: Option<&'a str>,
    last_message_text: &'a str,
    last_message_time: Millis,
    last_message_author: Option<&'a str>,
    last_message_status: &'static str,
    missed: i64,
    is_mine: bool,
    last_message_id: MessageId,
    last_event_id: EventId,
    /// Left out only for [`chats_head`].
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<&'a [UserId]>,
}

pub fn chat_item(chat: &ChatSummary) -> ChatItem<'_> {
    ChatItem {
        r#type: chat.kind.as_str(),
        id: chat.id,
        name: &chat.name,
        photo_url: chat.photo_url.as_deref(),
        members: Some(&chat.members),
        last_message_text: chat.last_message_text.as_deref().unwrap_or(""),
        last_message_time: chat.last_message_time.unwrap_or(chat.last_activity_at),
        last_message_author: chat.last_message_author.as_deref(),
        last_message_status: status_str(chat.last_message_status.unwrap_or(DeliveryStatus::Sent)),
        missed: chat.missed,
        is_mine: chat.is_mine,
        last_message_id: chat.last_message_id,
        last_event_id: chat.last_event_id,
    }
}

/// A message of a history page, serialized from the view it borrows (see
/// [`ChatItem`]: a page of 200 messages names every member 200 times).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageItem<'a> {
    chat_id: ChatId,
    message_id: MessageId,
    user_id: &'a str,
    client_message_id: &'a str,
    message: &'a str,
    attachments: &'a Attachments,
    timestamp: Millis,
    edited_at: Option<Millis>,
    deleted: bool,
    members: MemberIds<'a>,
    delivered_members: MemberIds<'a>,
    read_members: MemberIds<'a>,
    status: &'static str,
}

fn message_item(m: &MessageView) -> MessageItem<'_> {
    MessageItem {
        chat_id: m.chat_id,
        message_id: m.message_id,
        user_id: &m.user_id,
        client_message_id: &m.client_message_id,
        message: &m.text,
        attachments: &m.attachments,
        timestamp: m.timestamp,
        edited_at: m.edited_at,
        deleted: m.deleted,
        members: MemberIds { view: m, reached: None },
        delivered_members: MemberIds { view: m, reached: Some(MarkKind::Delivered) },
        read_members: MemberIds { view: m, reached: Some(MarkKind::Read) },
        status: status_str(m.status),
    }
}

/// One of a history item's member lists, written straight from the page's
/// shared marks: every member, or those a mark of the message reached.
struct MemberIds<'a> {
    view: &'a MessageView,
    reached: Option<MarkKind>,
}

impl Serialize for MemberIds<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.reached {
            None => serializer.collect_seq(self.view.members.iter().map(|m| &m.user_id)),
            Some(kind) => serializer.collect_seq(self.view.reached(kind)),
        }
    }
}

/// A chat list, `{"chats":[...]}`, written a part at a time as its parts
/// are read (`store::in_parts`): every item names its chat's members, so
/// the list of a user in a hundred groups of 10,000 is 14 MB, and its rows
/// were some 60 MB of a gateway's memory when read whole.
#[derive(Default)]
pub struct ChatListParts {
    written: usize,
}

impl ChatListParts {
    pub const START: &'static [u8] = b"{\"chats\":[";
    pub const END: &'static [u8] = b"]}";

    /// The JSON of `chats`, the list's next items.
    pub fn part(&mut self, chats: &[ChatSummary]) -> Bytes {
        let mut piece = Vec::new();
        for chat in chats {
            if self.written > 0 {
                piece.push(b',');
            }
            let _ = serde_json::to_writer(&mut piece, &chat_item(chat));
            self.written += 1;
        }
        Bytes::from(piece)
    }
}

/// A history page, `{"messages":[...]}`, rendered piece by piece as the
/// answer is written, each piece as soon as it holds `piece_bytes`. A page
/// of 200 messages of a 10,000-member group that all read them is 90 MB of
/// JSON; rendered whole, a gateway held that (and 550 MiB at its peak) for
/// each such request until its client had read it.
pub fn history_page(messages: Vec<MessageView>, piece_bytes: usize) -> impl Iterator<Item = Bytes> + Send {
    let mut messages = messages.into_iter();
    let mut started = false;
    let mut written = 0usize;
    let mut ended = false;
    std::iter::from_fn(move || {
        if ended {
            return None;
        }
        let mut piece = Vec::with_capacity(piece_bytes.min(64 * 1024));
        if !started {
            piece.extend_from_slice(b"{\"messages\":[");
            started = true;
        }
        while piece.len() < piece_bytes {
            let Some(message) = messages.next() else {
                piece.extend_from_slice(b"]}");
                ended = true;
                break;
            };
            if written > 0 {
                piece.push(b',');
            }
            // Serializing our own plain structs to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut piece, &message_item(&message));
            written += 1;
        }
        Some(Bytes::from(piece))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChatKind;

    fn summary(last_message: bool) -> ChatSummary {
        ChatSummary {
            kind: ChatKind::Group,
            id: 7,
            name: "a \"quoted\" }} name".into(),
            photo_url: last_message.then(|| "https://example.com/p.png".into()),
            members: vec!["al\"ice".to_string(), "bob".into(), "ζ}}".into()].into(),
            last_message_text: last_message.then(|| "hi }}".into()),
            last_message_time: last_message.then_some(5),
            last_message_author: last_message.then(|| "bob".into()),
            last_message_status: None,
            missed: 3,
            is_mine: false,
            last_message_id: 4,
            last_event_id: 9,
            last_activity_at: 5,
        }
    }

    /// A large group's frames, head and shared end, are the frame rendered
    /// whole, byte for byte.
    #[test]
    fn a_chats_frame_in_two_parts_is_the_whole_frame() {
        for last_message in [false, true] {
            let chat = summary(last_message);
            for action in [ChatAction::Created, ChatAction::Updated, ChatAction::Deleted] {
                let parts = [chats_head(action, &chat), chats_end(&chat.members)].concat();
                assert_eq!(parts, chats(action, &chat), "{}", String::from_utf8_lossy(&parts));
                let parsed: Value = serde_json::from_slice(&parts).expect("JSON");
                assert_eq!(parsed["chat"]["members"], serde_json::json!(["al\"ice", "bob", "ζ}}"]));
            }
        }
    }

    fn page(count: i64) -> Vec<MessageView> {
        let members: std::sync::Arc<[crate::model::MemberMarks]> = [("al\"ice", 2, 1), ("bob", 3, 3), ("ζ}}", 1, 0)]
            .into_iter()
            .map(|(user_id, delivered, read)| crate::model::MemberMarks { user_id: user_id.into(), delivered, read })
            .collect();
        (1..=count)
            .map(|message_id| MessageView {
                chat_id: 7,
                message_id,
                user_id: "bob".into(),
                client_message_id: format!("c{message_id}"),
                text: "hi ]}".into(),
                attachments: Attachments::none(),
                timestamp: 5,
                edited_at: None,
                deleted: false,
                members: members.clone(),
                status: DeliveryStatus::Sent,
            })
            .collect()
    }

    /// Whatever the size of its pieces, a history page is one JSON object
    /// naming, for each message, the members its marks reached.
    #[test]
    fn a_history_page_in_pieces_is_the_whole_page() {
        for count in [0, 1, 3] {
            for piece_bytes in [1, 200, 1 << 20] {
                let pieces: Vec<Bytes> = history_page(page(count), piece_bytes).collect();
                assert!(pieces[..pieces.len() - 1].iter().all(|p| p.len() >= piece_bytes.min(14)), "{pieces:?}");
                let whole: Value = serde_json::from_slice(&pieces.concat()).expect("JSON");
                let messages = whole["messages"].as_array().expect("messages");
                assert_eq!(messages.len() as i64, count, "{whole}");
                for (n, item) in messages.iter().enumerate() {
                    let message_id = n as i64 + 1;
                    let reached = |column: usize| -> Vec<&str> {
                        [("al\"ice", 2, 1), ("ζ}}", 1, 0)]
                            .into_iter()
                            .filter(|m| [m.1, m.2][column] >= message_id)
                            .map(|m| m.0)
                            .collect()
                    };
                    assert_eq!(item["messageId"], message_id);
                    assert_eq!(item["message"], "hi ]}");
                    assert_eq!(item["members"], serde_json::json!(["al\"ice", "bob", "ζ}}"]));
                    assert_eq!(item["deliveredMembers"], serde_json::json!(reached(0)), "{item}");
                    assert_eq!(item["readMembers"], serde_json::json!(reached(1)), "{item}");
                }
            }
        }
    }

    /// A chat list written in parts, empty ones among them, is the list
    /// rendered whole.
    #[test]
    fn a_chat_list_in_parts_is_the_whole_list() {
        for count in [0, 1, 3, 5] {
            let chats: Vec<ChatSummary> = (0..count).map(|n| summary(n % 2 == 0)).collect();
            let whole = serde_json::json!({ "chats": chats.iter().map(chat_item).collect::<Vec<_>>() });
            for part_size in [1, 2, 10] {
                let mut list = ChatListParts::default();
                let mut written = vec![Bytes::from_static(ChatListParts::START), list.part(&[])];
                written.extend(chats.chunks(part_size).map(|part| list.part(part)));
                written.push(list.part(&[]));
                written.push(Bytes::from_static(ChatListParts::END));
                let read: Value = serde_json::from_slice(&written.concat()).expect("JSON");
                assert_eq!(read, whole, "{count} chats in parts of {part_size}");
            }
        }
    }
}
