//! The fields of a server frame the agent reads. Everything else is
//! skipped unparsed, and strings are borrowed from the frame when they hold
//! no escapes, so reading a delivery allocates nothing: the agent shares
//! the machine with the server it measures, and parsing each frame into a
//! `serde_json::Value` (a map and a string per field) was a visible part
//! of its CPU at 100,000 deliveries/s (docs/benchmarks-journal.md).

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(rename = "chatId")]
    pub chat_id: Option<i64>,
    /// A chat event's id.
    pub id: Option<i64>,
    #[serde(rename = "messageId")]
    pub message_id: Option<i64>,
    /// The text of a `new`: the agent sends its send time in µs.
    #[serde(borrow)]
    pub message: Option<Cow<'a, str>>,
    #[serde(rename = "userId", borrow)]
    pub user_id: Option<Cow<'a, str>>,
    /// An `offline`'s `lastSeen`: when the server saw the user's last
    /// connection close (ms since the epoch).
    #[serde(rename = "lastSeen")]
    pub last_seen: Option<i64>,
    /// An `error`'s code.
    #[serde(borrow)]
    pub code: Option<Cow<'a, str>>,
    /// Echoed by replies. The agent's refs are all strings; any other
    /// reads as none rather than making the whole frame unreadable.
    #[serde(rename = "ref", borrow, default, deserialize_with = "text_or_none")]
    pub reference: Option<Cow<'a, str>>,
}

fn text_or_none<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ref<'a> {
        Text(#[serde(borrow)] Cow<'a, str>),
        Other(IgnoredAny),
    }
    Ok(match Option::<Ref>::deserialize(d)? {
        Some(Ref::Text(text)) => Some(text),
        _ => None,
    })
}

impl<'a> Incoming<'a> {
    pub fn parse(text: &'a str) -> Option<Incoming<'a>> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::Incoming;

    #[test]
    fn reads_a_delivery_and_skips_what_it_does_not_need() {
        let text = r#"{"type":"new","id":4,"chatId":9,"messageId":3,"userId":"u\"1","message":"1700","attachments":[{"k":[1,{}]}],"at":5}"#;
        let frame = Incoming::parse(text).expect("parsed");
        assert_eq!(
            (frame.kind.as_ref(), frame.id, frame.chat_id, frame.message_id),
            ("new", Some(4), Some(9), Some(3))
        );
        assert_eq!((frame.user_id.as_deref(), frame.message.as_deref()), (Some("u\"1"), Some("1700")));
        assert_eq!(frame.reference, None);
    }

    #[test]
    fn reads_a_reply_whatever_its_ref() {
        for (text, reference) in [
            (r#"{"type":"ack","ref":"s17","messageId":2}"#, Some("s17")),
            (r#"{"type":"error","ref":null,"code":"internal"}"#, None),
            (r#"{"type":"error","ref":7,"code":"internal"}"#, None),
            (r#"{"type":"error","ref":{"a":[1]},"code":"internal"}"#, None),
            (r#"{"type":"pong","ts":1}"#, None),
        ] {
            let frame = Incoming::parse(text).unwrap_or_else(|| panic!("{text} parsed"));
            assert_eq!(frame.reference.as_deref(), reference, "{text}");
        }
    }
}
