//! The fields of a server frame the agent reads. Everything else is
//! skipped unparsed, and strings are borrowed from the frame when they hold
//! no escapes, so reading a delivery allocates nothing: the agent shares
//! the machine with the server it measures, and parsing each frame into a
//! `serde_json::Value` (a map and a string per field) was a visible part
//! of its CPU at 100,000 deliveries/s (docs/benchmarks.md).

use std::borrow::Cow;

use serde::Deserialize;

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
    /// Echoed by replies; the agent's refs are all strings.
    #[serde(rename = "ref", borrow)]
    pub reference: Option<Cow<'a, str>>,
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
    fn reads_a_reply_with_a_null_ref() {
        let frame = Incoming::parse(r#"{"type":"error","ref":null,"code":"internal"}"#).expect("parsed");
        assert_eq!((frame.kind.as_ref(), frame.reference), ("error", None));
    }
}
