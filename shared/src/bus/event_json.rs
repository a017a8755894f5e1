//! Reading an [`Event`] back from the JSON serde derives for it.
//!
//! serde's derived form of an internally tagged enum reads the whole
//! object into a tree of its own before it looks at the tag. A chat
//! event's attachments are kept as text ([`crate::model::Attachments`]),
//! which cannot be read out of such a tree, and the tree was the cost
//! keeping them as text saves. Read field by field, each from its own
//! text, every field is parsed once.

use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use super::Event;
use crate::model::{ChatEvent, TaggedFields};

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut f = TaggedFields::read(deserializer)?;
        let ev: String = f.take("ev")?;
        Ok(match ev.as_str() {
            "chat" => Event::Chat(Arc::new(ChatEvent {
                chat_id: f.take("chat_id")?,
                id: f.take("id")?,
                user_id: f.take("user_id")?,
                message_id: f.take("message_id")?,
                timestamp: f.take("timestamp")?,
                kind: f.take("kind")?,
            })),
            "typing" => Event::Typing { chat: f.take("chat")?, user: f.take("user")? },
            "presence" => Event::Presence {
                user: f.take("user")?,
                online: f.take("online")?,
                last_seen: f.take("last_seen")?,
                chats: f.take("chats")?,
                seq: f.take_or_default("seq")?,
            },
            "chat_list" => Event::ChatList {
                user: f.take("user")?,
                action: f.take("action")?,
                chat: f.take("chat")?,
                version: f.take_or_default("version")?,
            },
            "chat_list_to_many" => Event::ChatListToMany {
                untold: f.take("untold")?,
                action: f.take("action")?,
                chat: f.take("chat")?,
                version: f.take("version")?,
            },
            "reply" => Event::Reply {
                origin: f.take("origin")?,
                reference: f.take_or_default("reference")?,
                result: f.take("result")?,
                received_at: f.take("received_at")?,
            },
            other => {
                return Err(serde::de::Error::unknown_variant(
                    other,
                    &["chat", "typing", "presence", "chat_list", "chat_list_to_many", "reply"],
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Origin;
    use crate::error::Refusal;
    use crate::model::{Applied, Attachments, ChatAction, ChatKind, ChatView, EventKind, LastMessage, MemberViews};

    fn view() -> ChatView {
        ChatView {
            kind: ChatKind::Group,
            id: 7,
            name: Some("g".into()),
            photo_url: None,
            members: vec!["alice".to_string(), "bob".into()].into(),
            last_message: Some(LastMessage { id: 3, author: "bob".into(), text: "hi".into(), at: 5 }),
            last_message_status: None,
            last_message_id: 3,
            last_event_id: 9,
            last_activity_at: 5,
        }
    }

    /// Every kind of event reads back as the same JSON it was written as.
    #[test]
    fn every_event_reads_back_as_written() {
        let attachments = Attachments::from_value(&serde_json::json!([{"url": "u", "size": [1, {"a": null}]}]));
        let origin = Origin { node: "gw".into(), connection: 4, sequence: 2 };
        let events = [
            Event::Chat(Arc::new(ChatEvent {
                chat_id: 7,
                id: 9,
                user_id: "bob".into(),
                message_id: 3,
                timestamp: 5,
                kind: EventKind::New { client_message_id: "c".into(), text: "hi".into(), attachments },
            })),
            Event::Typing { chat: 7, user: "bob".into() },
            Event::Presence { user: "bob".into(), online: true, last_seen: 5, chats: vec![7, 8].into(), seq: 3 },
            Event::ChatList {
                user: "alice".into(),
                action: ChatAction::Updated,
                chat: Box::new(view().as_seen_by("alice", 1)),
                version: 4,
            },
            Event::ChatListToMany {
                untold: vec!["carol".to_string()].into(),
                action: ChatAction::Created,
                chat: Arc::new(MemberViews::new(view(), [("alice".to_string(), 1)])),
                version: 5,
            },
            Event::Reply {
                origin: origin.clone(),
                reference: Some(serde_json::json!("r1")),
                result: Ok(Applied { chat_id: 7, message_id: 3, client_message_id: Some("c".into()), timestamp: 5 }),
                received_at: 4,
            },
            Event::Reply { origin, reference: None, result: Err(Refusal::no_chat()), received_at: 4 },
        ];
        for event in events {
            let written = serde_json::to_string(&event).expect("written");
            let read: Event = serde_json::from_str(&written).expect("read");
            assert_eq!(serde_json::to_string(&read).expect("written again"), written);
        }
    }

    /// Fields an older writer did not have take their defaults, as they did
    /// with the derived form; an unknown kind is refused.
    #[test]
    fn older_and_unknown_events() {
        let older = r#"{"ev":"presence","user":"bob","online":false,"last_seen":5,"chats":[7]}"#;
        let Event::Presence { seq, .. } = serde_json::from_str(older).expect("read") else { panic!("presence") };
        assert_eq!(seq, 0);
        assert!(serde_json::from_str::<Event>(r#"{"ev":"poke","chat":7}"#).is_err());
    }
}
