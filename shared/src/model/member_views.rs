//! A chat as each of its members sees it, held once for all of them: what
//! a membership change announces. Its parts that every member sees alike
//! are kept once, beside the little that differs per member, so that the
//! announcement of a change to N members is O(N) wherever it goes (the
//! store's read, one event through Redis, a gateway's fan-out), where N
//! per-member summaries, each naming all N members, would be N².

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{ChatId, ChatKind, ChatSummary, DeliveryStatus, EventId, MessageId, Millis, UserId};

/// What every member sees alike: the chat, its members (sorted by bytes),
/// its last message and that message's status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatView {
    pub kind: ChatKind,
    pub id: ChatId,
    pub name: Option<String>,
    pub photo_url: Option<String>,
    pub members: Arc<[UserId]>,
    pub last_message: Option<LastMessage>,
    pub last_message_status: Option<DeliveryStatus>,
    pub last_message_id: MessageId,
    pub last_event_id: EventId,
    pub last_activity_at: Millis,
}

/// The last message that is not deleted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastMessage {
    pub id: MessageId,
    pub author: UserId,
    pub text: String,
    pub at: Millis,
}

impl ChatView {
    pub fn as_seen_by(&self, user: &str, missed: i64) -> ChatSummary {
        // A dialog is named after the other member, as the caller sees it.
        let name = match self.kind {
            ChatKind::Dialog => self.members.iter().find(|m| *m != user).cloned().unwrap_or_default(),
            ChatKind::Group => self.name.clone().unwrap_or_default(),
        };
        let last = self.last_message.as_ref();
        ChatSummary {
            kind: self.kind,
            id: self.id,
            name,
            photo_url: self.photo_url.clone(),
            last_message_text: last.map(|l| l.text.clone()),
            last_message_time: last.map(|l| l.at),
            last_message_author: last.map(|l| l.author.clone()),
            last_message_status: self.last_message_status,
            missed,
            is_mine: last.is_some_and(|l| l.author == user),
            members: self.members.clone(),
            last_message_id: self.last_message_id,
            last_event_id: self.last_event_id,
            last_activity_at: self.last_activity_at,
        }
    }
}

/// A chat as each of its members sees it (`Store::member_views`); each
/// member's summary is made when asked for, so that announcing to N
/// members holds one at a time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberViews {
    view: ChatView,
    /// Messages each member has not read; members with none are left out.
    missed: HashMap<UserId, i64>,
}

impl MemberViews {
    pub fn new(view: ChatView, missed: HashMap<UserId, i64>) -> Self {
        MemberViews { view, missed }
    }

    pub fn members(&self) -> &[UserId] {
        &self.view.members
    }

    pub fn is_member(&self, user: &str) -> bool {
        // Sorted by bytes by the node that read them: every release that
        // publishes views sorts them so (`store::sort_by_user`).
        self.view.members.binary_search_by(|m| m.as_str().cmp(user)).is_ok()
    }

    /// The chat as `user` sees it; `None` if `user` is not a member.
    pub fn as_seen_by(&self, user: &str) -> Option<ChatSummary> {
        self.is_member(user).then(|| {
            let missed = self.missed.get(user).copied().unwrap_or(0);
            self.view.as_seen_by(user, missed)
        })
    }
}
