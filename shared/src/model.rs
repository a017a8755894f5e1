//! The core's model of chats, messages, marks and presence. Nothing here knows
//! a wire format: the native protocol (and later other adapters) translate to
//! and from these types. Serde derives exist only so that the bus and the
//! event log can carry them; their field names are internal.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::Refusal;

mod attachments;
mod member_views;
pub use attachments::Attachments;
pub(crate) use attachments::TaggedFields;
pub use member_views::{ChatView, LastMessage, MemberViews};

pub type ChatId = i64;
pub type MessageId = i64;
pub type EventId = i64;
pub type UserId = String;
/// Milliseconds since the Unix epoch.
pub type Millis = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    Dialog,
    Group,
}

impl ChatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatKind::Dialog => "dialog",
            ChatKind::Group => "group",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dialog" => Some(ChatKind::Dialog),
            "group" => Some(ChatKind::Group),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkKind {
    Delivered,
    Read,
}

impl MarkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MarkKind::Delivered => "dlvrd",
            MarkKind::Read => "read",
        }
    }
}

/// Where a message stands with the members other than its author.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
}

/// A persisted event of one chat. `id` is the chat's event sequence number:
/// consecutive, no gaps (PROTOCOL.md section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatEvent {
    pub chat_id: ChatId,
    pub id: EventId,
    pub user_id: UserId,
    pub message_id: MessageId,
    pub timestamp: Millis,
    pub kind: EventKind,
}

/// Read through [`TaggedFields`], in the JSON serde derives for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    New { client_message_id: String, text: String, attachments: Attachments },
    Edit { text: String, attachments: Attachments },
    Delete,
    Mark { mark: MarkKind },
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut f = TaggedFields::read(deserializer)?;
        let kind: String = f.take("kind")?;
        Ok(match kind.as_str() {
            "new" => EventKind::New {
                client_message_id: f.take("client_message_id")?,
                text: f.take("text")?,
                attachments: f.attachments()?,
            },
            "edit" => EventKind::Edit { text: f.take("text")?, attachments: f.attachments()? },
            "delete" => EventKind::Delete,
            "mark" => EventKind::Mark { mark: f.take("mark")? },
            other => return Err(serde::de::Error::unknown_variant(other, &["new", "edit", "delete", "mark"])),
        })
    }
}

/// Refuses a string no store can keep: PostgreSQL's `text` cannot hold
/// U+0000. Checked where clients hand strings in, for both backends alike
/// (a deployment may move from SQLite to PostgreSQL), so that the client
/// learns what is wrong (`bad_request`) instead of getting the `internal`
/// a worker answers for a command the database refuses.
pub fn storable(field: &str, value: &str) -> Result<(), Refusal> {
    if value.contains('\0') {
        return Err(Refusal::bad_request(format!("{field} must not contain U+0000")));
    }
    Ok(())
}

/// A state-changing command from a client, already validated for shape.
/// Membership and authorship are checked by the worker against the store.
/// Read through [`TaggedFields`], in the JSON serde derives for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    Send { chat_id: ChatId, client_message_id: String, text: String, attachments: Attachments },
    Edit { chat_id: ChatId, message_id: MessageId, text: String, attachments: Attachments },
    Delete { chat_id: ChatId, message_id: MessageId },
    Mark { chat_id: ChatId, message_id: MessageId, mark: MarkKind },
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut f = TaggedFields::read(deserializer)?;
        let op: String = f.take("op")?;
        Ok(match op.as_str() {
            "send" => Command::Send {
                chat_id: f.take("chat_id")?,
                client_message_id: f.take("client_message_id")?,
                text: f.take("text")?,
                attachments: f.attachments()?,
            },
            "edit" => Command::Edit {
                chat_id: f.take("chat_id")?,
                message_id: f.take("message_id")?,
                text: f.take("text")?,
                attachments: f.attachments()?,
            },
            "delete" => Command::Delete { chat_id: f.take("chat_id")?, message_id: f.take("message_id")? },
            "mark" => {
                Command::Mark { chat_id: f.take("chat_id")?, message_id: f.take("message_id")?, mark: f.take("mark")? }
            }
            other => return Err(serde::de::Error::unknown_variant(other, &["send", "edit", "delete", "mark"])),
        })
    }
}

impl Command {
    pub fn chat_id(&self) -> ChatId {
        match self {
            Command::Send { chat_id, .. }
            | Command::Edit { chat_id, .. }
            | Command::Delete { chat_id, .. }
            | Command::Mark { chat_id, .. } => *chat_id,
        }
    }

    /// Bytes of what the client wrote into the command: text, attachments
    /// and its own message id.
    pub fn content_bytes(&self) -> usize {
        match self {
            Command::Send { client_message_id, text, attachments, .. } => {
                client_message_id.len() + text.len() + attachments.as_str().len()
            }
            Command::Edit { text, attachments, .. } => text.len() + attachments.as_str().len(),
            Command::Delete { .. } | Command::Mark { .. } => 0,
        }
    }

    /// A short, bounded label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Command::Send { .. } => "new",
            Command::Edit { .. } => "edit",
            Command::Delete { .. } => "delete",
            Command::Mark { mark: MarkKind::Delivered, .. } => "dlvrd",
            Command::Mark { mark: MarkKind::Read, .. } => "read",
        }
    }
}

/// What a successfully applied command reports back to its sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub chat_id: ChatId,
    pub message_id: MessageId,
    /// Only for `Send`: echoed so the client can match retries.
    pub client_message_id: Option<String>,
    pub timestamp: Millis,
}

/// One chat as a given user sees it in their chat list (PROTOCOL.md 7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatSummary {
    pub kind: ChatKind,
    pub id: ChatId,
    pub name: String,
    pub photo_url: Option<String>,
    /// Shared by every member's view of the chat: announcing a change to
    /// N members would otherwise copy the N names N times.
    pub members: Arc<[UserId]>,
    pub last_message_text: Option<String>,
    pub last_message_time: Option<Millis>,
    pub last_message_author: Option<UserId>,
    pub last_message_status: Option<DeliveryStatus>,
    pub missed: i64,
    pub is_mine: bool,
    pub last_message_id: MessageId,
    pub last_event_id: EventId,
    /// When the chat was created or last got a message: what the list is
    /// ordered by. Defaults to 0 when read from a node that did not send it
    /// (a rolling upgrade).
    #[serde(default)]
    pub last_activity_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatAction {
    Created,
    Updated,
    Deleted,
}

/// A message as history shows it to a member (PROTOCOL.md 7).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageView {
    pub chat_id: ChatId,
    pub message_id: MessageId,
    pub user_id: UserId,
    pub client_message_id: String,
    pub text: String,
    pub attachments: Attachments,
    pub timestamp: Millis,
    pub edited_at: Option<Millis>,
    pub deleted: bool,
    /// The chat's members with their marks, shared by every message of a
    /// page. Whom a message reached is read from them as it is written out
    /// ([`MessageView::reached`]): listed per message, a page of 200 of a
    /// 10,000-member group held four million ids.
    pub members: Arc<[MemberMarks]>,
    pub status: DeliveryStatus,
}

impl MessageView {
    /// The members other than the author whose `kind` mark has reached
    /// this message, in the members' order.
    pub fn reached(&self, kind: MarkKind) -> impl Iterator<Item = &str> + '_ {
        self.members
            .iter()
            .filter(move |m| m.user_id != self.user_id && m.mark(kind) >= self.message_id)
            .map(|m| m.user_id.as_str())
    }
}

/// A member of a chat and how far their marks reach.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberMarks {
    pub user_id: UserId,
    pub delivered: MessageId,
    pub read: MessageId,
}

impl MemberMarks {
    pub fn mark(&self, kind: MarkKind) -> MessageId {
        match kind {
            MarkKind::Delivered => self.delivered,
            MarkKind::Read => self.read,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub user_id: UserId,
    pub delivered_at: Option<Millis>,
    pub read_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceView {
    pub user_id: UserId,
    pub online: bool,
    pub last_seen: Option<Millis>,
}

/// The status of message `message_id` written by `author`, given every
/// member's (delivered, read) marks: `read` once every other member read it,
/// `dlvrd` once every other member has it (PROTOCOL.md 7, Message).
pub fn delivery_status<'a>(
    message_id: MessageId,
    author: &str,
    marks: impl IntoIterator<Item = (&'a str, MessageId, MessageId)>,
) -> DeliveryStatus {
    let mut others = 0;
    let mut all_read = true;
    let mut all_delivered = true;
    for (user, delivered, read) in marks {
        if user == author {
            continue;
        }
        others += 1;
        all_read &= read >= message_id;
        all_delivered &= delivered >= message_id;
    }
    // With nobody else in the chat there is nobody to deliver to: "sent".
    if others == 0 {
        DeliveryStatus::Sent
    } else if all_read {
        DeliveryStatus::Read
    } else if all_delivered {
        DeliveryStatus::Delivered
    } else {
        DeliveryStatus::Sent
    }
}
