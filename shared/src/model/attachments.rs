//! A message's attachments, kept as JSON text from the moment a gateway
//! has checked them.
//!
//! The server never looks inside attachments: it checks their shape once,
//! then stores, relays and replays them. Held as a parsed tree, JSON takes
//! about a hundred times its size (a 60 KB array of small objects, within
//! the frame limit, took 7.5 MB), and every command batch a worker
//! decoded, every run of events a gateway received and every history page
//! held such trees: a few clients sending the largest attachments could
//! take a process past its memory. As text they cost what they weigh.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// A JSON array of objects, in the form `serde_json` writes a `Value`
/// (compact, object keys sorted), so that two that are equal as JSON are
/// equal as text: an edit that resends the same attachments changes
/// nothing, whatever the order of their keys.
#[derive(Clone, Serialize)]
#[serde(transparent)]
pub struct Attachments(Box<RawValue>);

impl Attachments {
    /// `[]`.
    pub fn none() -> Self {
        Attachments(RawValue::from_string("[]".to_owned()).unwrap_or_else(|_| unreachable!("[] is JSON")))
    }

    /// The attachments a client sent, already checked for their shape.
    pub fn from_value(value: &Value) -> Self {
        // Written straight into a raw value, not written and then scanned
        // again as `from_string` would.
        serde_json::value::to_raw_value(value).map(Attachments).unwrap_or_else(|_| Attachments::none())
    }

    /// Attachments as the store keeps them, written by [`Attachments::as_str`];
    /// `[]` should the text not be JSON.
    pub fn from_stored(text: String) -> Self {
        RawValue::from_string(text).map(Attachments).unwrap_or_else(|_| Attachments::none())
    }

    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Attachments {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for Attachments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fields of an internally tagged object (a command, an event's kind),
/// each as its JSON text, borrowed from what is being read. serde's
/// derived form of such enums reads the whole object into a tree of its
/// own before it knows the variant, which would cost attachments what
/// keeping them as text saves; read this way, every field is parsed once,
/// from its own text, and attachments are copied, not parsed. Needs
/// `serde_json::from_str` or `from_slice`, which the bus and the event log
/// use (a reader it cannot borrow from is refused).
pub(crate) struct TaggedFields<'de>(BTreeMap<String, &'de RawValue>);

impl<'de> TaggedFields<'de> {
    pub fn read<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::deserialize(deserializer).map(TaggedFields)
    }

    pub fn take<T: Deserialize<'de>, E: serde::de::Error>(&mut self, name: &'static str) -> Result<T, E> {
        let raw = self.0.remove(name).ok_or_else(|| E::missing_field(name))?;
        serde_json::from_str(raw.get()).map_err(|e| E::custom(format_args!("{name}: {e}")))
    }

    /// [`TaggedFields::take`] for a field older writers may have left out.
    pub fn take_or_default<T: Deserialize<'de> + Default, E: serde::de::Error>(
        &mut self,
        name: &'static str,
    ) -> Result<T, E> {
        match self.0.contains_key(name) {
            true => self.take(name),
            false => Ok(T::default()),
        }
    }

    pub fn attachments<E: serde::de::Error>(&mut self) -> Result<Attachments, E> {
        self.0
            .remove("attachments")
            .map(|raw| Attachments(raw.to_owned()))
            .ok_or_else(|| E::missing_field("attachments"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChatEvent, Command, EventKind, MarkKind};
    use serde_json::json;

    fn attachments() -> Attachments {
        Attachments::from_value(&json!([{"url": "u", "meta": {"w": 1, "h": [2, 3]}}, {"b": null, "a": "\u{0}"}]))
    }

    /// What the bus and the event log carry reads back as it was written,
    /// in the same JSON as before attachments were kept as text.
    #[test]
    fn commands_and_events_read_back_as_written() {
        let commands = [
            Command::Send { chat_id: 7, client_message_id: "c".into(), text: "t".into(), attachments: attachments() },
            Command::Edit { chat_id: 7, message_id: 2, text: "t".into(), attachments: Attachments::none() },
            Command::Delete { chat_id: 7, message_id: 2 },
            Command::Mark { chat_id: 7, message_id: 2, mark: MarkKind::Read },
        ];
        for command in commands {
            let text = serde_json::to_string(&command).expect("written");
            assert_eq!(serde_json::from_str::<Command>(&text).expect("read"), command, "{text}");
        }
        let kinds = [
            EventKind::New { client_message_id: "c".into(), text: "t".into(), attachments: attachments() },
            EventKind::Edit { text: "t".into(), attachments: attachments() },
            EventKind::Delete,
            EventKind::Mark { mark: MarkKind::Delivered },
        ];
        for kind in kinds {
            let event = ChatEvent { chat_id: 7, id: 3, user_id: "u".into(), message_id: 2, timestamp: 5, kind };
            let text = serde_json::to_string(&event).expect("written");
            assert_eq!(serde_json::from_str::<ChatEvent>(&text).expect("read"), event, "{text}");
        }
    }

    /// The JSON is that of the derived form with attachments as a tree, so
    /// that processes of the release before and after read each other's.
    #[test]
    fn the_json_is_that_of_a_tree() {
        let tree = json!([{"url": "u", "meta": {"w": 1, "h": [2, 3]}}, {"b": null, "a": "\u{0}"}]);
        let command =
            Command::Send { chat_id: 7, client_message_id: "c".into(), text: "t".into(), attachments: attachments() };
        let written: Value = serde_json::from_str(&serde_json::to_string(&command).expect("written")).expect("JSON");
        assert_eq!(
            written,
            json!({"op": "send", "chat_id": 7, "client_message_id": "c", "text": "t", "attachments": tree})
        );
        let older = json!({"kind": "edit", "text": "t", "attachments": tree, "later_field": 1}).to_string();
        assert_eq!(
            serde_json::from_str::<EventKind>(&older).expect("read"),
            EventKind::Edit { text: "t".into(), attachments: attachments() }
        );
    }

    #[test]
    fn an_unknown_variant_or_a_missing_field_is_refused() {
        assert!(serde_json::from_str::<Command>(r#"{"op":"pin","chat_id":1}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"op":"send","chat_id":1,"text":"t"}"#).is_err());
        assert!(serde_json::from_str::<EventKind>(r#"{"kind":"mark"}"#).is_err());
        assert!(serde_json::from_str::<EventKind>(r#"{"text":"t"}"#).is_err());
    }
}
