//! A chat as each of its members sees it, held once for all of them: what
//! a membership change announces. Its parts that every member sees alike
//! are kept once, beside the little that differs per member, so that the
//! announcement of a change to N members is O(N) wherever it goes (the
//! store's read, one event through Redis, a gateway's fan-out), where N
//! per-member summaries, each naming all N members, would be N².

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
    /// Messages each member has not read, in the members' order: counts
    /// rather than a map by name, so that an announcement of the views
    /// names each member once.
    missed: Vec<i64>,
}

impl MemberViews {
    /// `missed`: members' unread counts; a member with none may be left
    /// out, and a name that is no member is ignored.
    pub fn new(view: ChatView, missed: impl IntoIterator<Item = (UserId, i64)>) -> Self {
        let mut views = MemberViews { missed: vec![0; view.members.len()], view };
        for (user, count) in missed {
            if let Some(at) = views.position(&user) {
                views.missed[at] = count;
            }
        }
        views
    }

    pub fn members(&self) -> &[UserId] {
        &self.view.members
    }

    /// The chat as `user` sees it; `None` if `user` is not a member.
    pub fn as_seen_by(&self, user: &str) -> Option<ChatSummary> {
        let at = self.position(user)?;
        // Read, not indexed: the counts may come from another node.
        Some(self.view.as_seen_by(user, self.missed.get(at).copied().unwrap_or(0)))
    }

    fn position(&self, user: &str) -> Option<usize> {
        // Sorted by bytes by the node that read them: every release that
        // publishes views sorts them so (`store::sort_by_user`).
        self.view.members.binary_search_by(|m| m.as_str().cmp(user)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(missed: &[(&str, i64)]) -> MemberViews {
        let view = ChatView {
            kind: ChatKind::Group,
            id: 7,
            name: Some("g".into()),
            photo_url: None,
            members: ["alice", "bob", "carol"].map(String::from).into(),
            last_message: None,
            last_message_status: None,
            last_message_id: 0,
            last_event_id: 0,
            last_activity_at: 0,
        };
        MemberViews::new(view, missed.iter().map(|(user, n)| (user.to_string(), *n)))
    }

    #[test]
    fn each_member_sees_their_own_count_and_a_stranger_sees_nothing() {
        let views = views(&[("carol", 2), ("mallory", 9), ("alice", 1)]);
        let missed = |user| views.as_seen_by(user).map(|summary| summary.missed);
        assert_eq!([missed("alice"), missed("bob"), missed("carol")], [Some(1), Some(0), Some(2)]);
        assert_eq!(missed("mallory"), None);
    }

    /// The counts may come from another node: fewer than the members (a
    /// bug there) read as none, rather than a panic here.
    #[test]
    fn counts_short_of_the_members_read_as_none() {
        let mut json = serde_json::to_value(views(&[("alice", 1), ("carol", 3)])).expect("serialises");
        assert_eq!(json["missed"], serde_json::json!([1, 0, 3]), "one count per member, in order");
        json["missed"] = serde_json::json!([1]);
        let views: MemberViews = serde_json::from_value(json).expect("deserialises");
        let missed = |user| views.as_seen_by(user).map(|summary| summary.missed);
        assert_eq!([missed("alice"), missed("carol")], [Some(1), Some(0)]);
    }
}
