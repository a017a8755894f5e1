//! Client frames of the native protocol into core requests.
//!
//! Parsing goes through `serde_json::Value` first so that `ref` can be echoed
//! even when the rest of the frame is wrong, and so that every refusal names
//! the offending field. Unknown extra fields are ignored, for forward
//! compatibility of clients.

use serde_json::{Map, Value};

use crate::error::{ErrorCode, Refusal};
use crate::model::{storable, Attachments, ChatId, Command, EventId, MarkKind, MessageId};

/// `clientMessageId` is 1..=64 characters (PROTOCOL.md section 3).
pub const MAX_CLIENT_MESSAGE_ID_CHARS: usize = 64;
/// A `ref` is echoed verbatim, so it is bounded like any other field.
pub const MAX_REF_CHARS: usize = 128;
/// Chats one `sync` may name; more would let one frame demand unbounded
/// work. The frame limit (`config::MAX_FRAME_BYTES`) binds first today: 64
/// KiB holds some 7,400 distinct chatIds at most. This bound stands should that
/// limit grow.
pub const MAX_SYNC_CHATS: usize = 10_000;
/// How deep `attachments` may nest, the array itself counting as one. The
/// JSON reader stops at 128 levels, and every copy the system makes (the
/// command on its way to a worker, the event logged and published) wraps
/// the attachments in a few more: a frame that just fit once read became
/// a command no worker could decode and an event no `sync` could replay.
pub const MAX_ATTACHMENT_DEPTH: usize = 32;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest `message` text in bytes; longer gets `too_large`.
    pub max_text_bytes: usize,
}

/// The client's correlation value, echoed in the one reply a command owes.
pub type Ref = Option<Value>;

#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Ping,
    Command(Command),
    Typing { chat_id: ChatId },
    Sync { since: Vec<(ChatId, EventId)> },
}

impl Request {
    /// The frame's `type`, a bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Command(command) => command.label(),
            Request::Typing { .. } => "typing",
            Request::Sync { .. } => "sync",
        }
    }
}

/// Parses one text frame. On error the `ref` is still returned when the frame
/// carried a usable one.
pub fn parse(frame: &[u8], limits: Limits) -> Result<(Ref, Request), (Ref, Refusal)> {
    let value: Value =
        serde_json::from_slice(frame).map_err(|e| (None, Refusal::bad_request(format!("malformed JSON: {e}"))))?;
    let Value::Object(obj) = value else {
        return Err((None, Refusal::bad_request("a frame must be a JSON object")));
    };
    let reference = match obj.get("ref") {
        None | Some(Value::Null) => None,
        Some(r @ Value::Number(_)) => Some(r.clone()),
        Some(Value::String(s)) if s.chars().count() <= MAX_REF_CHARS => Some(Value::String(s.clone())),
        Some(Value::String(_)) => {
            return Err((None, Refusal::bad_request(format!("ref is longer than {MAX_REF_CHARS} characters"))))
        }
        Some(_) => return Err((None, Refusal::bad_request("ref must be a string or a number"))),
    };
    match request(&obj, limits) {
        Ok(request) => Ok((reference, request)),
        Err(refusal) => Err((reference, refusal)),
    }
}

fn request(obj: &Map<String, Value>, limits: Limits) -> Result<Request, Refusal> {
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(Refusal::bad_request("type must be a string")),
        None => return Err(Refusal::bad_request("missing field type")),
    };
    let f = Fields(obj);
    Ok(match kind {
        "ping" => Request::Ping,
        "new" => {
            let client_message_id = f.string("clientMessageId")?;
            let chars = client_message_id.chars().count();
            if !(1..=MAX_CLIENT_MESSAGE_ID_CHARS).contains(&chars) {
                return Err(Refusal::bad_request(format!(
                    "clientMessageId must be 1..={MAX_CLIENT_MESSAGE_ID_CHARS} characters"
                )));
            }
            storable("clientMessageId", client_message_id)?;
            let (text, attachments) = f.content(limits)?;
            Request::Command(Command::Send {
                chat_id: f.chat_id()?,
                client_message_id: client_message_id.to_owned(),
                text,
                attachments,
            })
        }
        "edit" => {
            let (text, attachments) = f.content(limits)?;
            Request::Command(Command::Edit { chat_id: f.chat_id()?, message_id: f.message_id()?, text, attachments })
        }
        "delete" => Request::Command(Command::Delete { chat_id: f.chat_id()?, message_id: f.message_id()? }),
        "dlvrd" | "read" => Request::Command(Command::Mark {
            chat_id: f.chat_id()?,
            message_id: f.message_id()?,
            mark: if kind == "read" { MarkKind::Read } else { MarkKind::Delivered },
        }),
        "typing" => Request::Typing { chat_id: f.chat_id()? },
        "sync" => Request::Sync { since: f.since()? },
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(Refusal::bad_request(format!("unknown type {shown:?}")));
        }
    })
}

struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Result<&Value, Refusal> {
        match self.0.get(name) {
            None | Some(Value::Null) => Err(Refusal::bad_request(format!("missing field {name}"))),
            Some(v) => Ok(v),
        }
    }

    fn string(&self, name: &str) -> Result<&str, Refusal> {
        self.get(name)?.as_str().ok_or_else(|| Refusal::bad_request(format!("{name} must be a string")))
    }

    fn positive(&self, name: &str) -> Result<i64, Refusal> {
        match self.get(name)?.as_i64() {
            Some(n) if n >= 1 => Ok(n),
            _ => Err(Refusal::bad_request(format!("{name} must be a positive integer"))),
        }
    }

    fn chat_id(&self) -> Result<ChatId, Refusal> {
        self.positive("chatId")
    }

    fn message_id(&self) -> Result<MessageId, Refusal> {
        self.positive("messageId")
    }

    /// `message` and `attachments?` of `new` and `edit`.
    fn content(&self, limits: Limits) -> Result<(String, Attachments), Refusal> {
        let text = self.string("message")?;
        if text.len() > limits.max_text_bytes {
            return Err(Refusal::new(
                ErrorCode::TooLarge,
                format!("message is {} bytes; the limit is {}", text.len(), limits.max_text_bytes),
            ));
        }
        storable("message", text)?;
        let attachments = match self.0.get("attachments") {
            None | Some(Value::Null) => return Ok((text.to_owned(), Attachments::none())),
            Some(attachments @ Value::Array(items)) if items.iter().all(Value::is_object) => attachments,
            Some(_) => return Err(Refusal::bad_request("attachments must be an array of JSON objects")),
        };
        if depth(attachments) > MAX_ATTACHMENT_DEPTH {
            return Err(Refusal::bad_request(format!("attachments nest deeper than {MAX_ATTACHMENT_DEPTH} levels")));
        }
        Ok((text.to_owned(), Attachments::from_value(attachments)))
    }

    fn since(&self) -> Result<Vec<(ChatId, EventId)>, Refusal> {
        let Value::Object(map) = self.get("since")? else {
            return Err(Refusal::bad_request("since must be an object of chatId to event id"));
        };
        if map.len() > MAX_SYNC_CHATS {
            return Err(Refusal::bad_request(format!("since names more than {MAX_SYNC_CHATS} chats")));
        }
        map.iter()
            .map(|(chat, id)| {
                // Written as the server writes chatIds (no sign, no leading
                // zeros): "7", "07" and "+7" would name one chat three
                // times, each replayed in full.
                let chat_id = chat
                    .parse::<ChatId>()
                    .ok()
                    .filter(|c| *c >= 1 && c.to_string() == *chat)
                    .ok_or_else(|| Refusal::bad_request(format!("since key {chat:?} is not a chatId")))?;
                let id = id
                    .as_i64()
                    .filter(|i| *i >= 0)
                    .ok_or_else(|| Refusal::bad_request(format!("since[{chat}] must be an event id >= 0")))?;
                Ok((chat_id, id))
            })
            .collect()
    }
}

/// Levels of arrays and objects in `value`: 0 for a scalar. Recursion is
/// bounded by the JSON reader's own limit of 128.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_text_bytes: 10 };

    fn refusal(frame: &str) -> (Ref, Refusal) {
        parse(frame.as_bytes(), LIMITS).expect_err("should be refused")
    }

    #[test]
    fn parses_every_command() {
        let (r, req) = parse(br#"{"type":"new","ref":7,"chatId":1,"clientMessageId":"c1","message":"hi"}"#, LIMITS)
            .expect("valid");
        assert_eq!(r, Some(Value::from(7)));
        assert_eq!(
            req,
            Request::Command(Command::Send {
                chat_id: 1,
                client_message_id: "c1".into(),
                text: "hi".into(),
                attachments: Attachments::none()
            })
        );
        let (_, req) = parse(br#"{"type":"read","chatId":2,"messageId":3}"#, LIMITS).expect("valid");
        assert_eq!(req, Request::Command(Command::Mark { chat_id: 2, message_id: 3, mark: MarkKind::Read }));
        let (_, req) = parse(br#"{"type":"sync","since":{"4":10,"5":0}}"#, LIMITS).expect("valid");
        let Request::Sync { mut since } = req else { panic!("not sync") };
        since.sort();
        assert_eq!(since, vec![(4, 10), (5, 0)]);
    }

    #[test]
    fn refusals_name_the_problem_and_keep_the_ref() {
        let (r, e) = refusal(r#"{"type":"new","ref":"a","chatId":1,"message":"x"}"#);
        assert_eq!(r, Some(Value::from("a")));
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("clientMessageId"), "{}", e.message);
        assert_eq!(refusal("{nope").1.code, ErrorCode::BadRequest);
        assert!(refusal(r#"{"type":"fly"}"#).1.message.contains("unknown type"));
        assert!(refusal(r#"{"type":"delete","chatId":"1","messageId":1}"#).1.message.contains("chatId"));
        assert_eq!(
            refusal(r#"{"type":"new","chatId":1,"clientMessageId":"c","message":"12345678901"}"#).1.code,
            ErrorCode::TooLarge
        );
        assert!(refusal(r#"{"type":"new","chatId":1,"clientMessageId":"c","message":"x","attachments":[1]}"#)
            .1
            .message
            .contains("attachments"));
        assert!(refusal(&format!(
            r#"{{"type":"new","chatId":1,"clientMessageId":"{}","message":"x"}}"#,
            "c".repeat(65)
        ))
        .1
        .message
        .contains("clientMessageId"));
        assert!(refusal(r#"{"type":"sync","since":{"x":1}}"#).1.message.contains("since"));
        // One chat under several spellings would be replayed once for each.
        for alias in ["07", "+7", "007"] {
            let frame = format!(r#"{{"type":"sync","since":{{"7":0,"{alias}":0}}}}"#);
            assert!(refusal(&frame).1.message.contains("is not a chatId"), "{alias}");
        }
        assert!(refusal(r#"[1,2]"#).1.message.contains("object"));
    }

    /// PostgreSQL cannot store U+0000; refused here, it cannot stall a
    /// shard's worker. An escaped one inside attachments is JSON text, and
    /// stored as such.
    #[test]
    fn a_nul_character_is_refused_where_it_would_be_stored_as_text() {
        let (r, e) = refusal(r#"{"type":"new","ref":1,"chatId":1,"clientMessageId":"c","message":"a\u0000b"}"#);
        assert_eq!(
            (r, e.code, e.message.as_str()),
            (Some(Value::from(1)), ErrorCode::BadRequest, "message must not contain U+0000")
        );
        let e = refusal(r#"{"type":"edit","chatId":1,"messageId":1,"message":"\u0000"}"#).1;
        assert_eq!(e.message, "message must not contain U+0000");
        let e = refusal(r#"{"type":"new","chatId":1,"clientMessageId":"c\u0000","message":"x"}"#).1;
        assert_eq!(e.message, "clientMessageId must not contain U+0000");
        let frame = r#"{"type":"new","chatId":1,"clientMessageId":"c","message":"x","attachments":[{"k":"\u0000"}]}"#;
        assert!(parse(frame.as_bytes(), LIMITS).is_ok(), "attachments are stored as JSON text");
    }

    /// Attachments may nest 32 levels (the array, its objects, 30 more), not
    /// 33, for `new` and `edit` alike.
    #[test]
    fn attachments_nest_at_most_32_levels() {
        let nested = |levels: usize| format!("[{{\"a\":{}0{}}}]", "[".repeat(levels - 2), "]".repeat(levels - 2));
        for head in [r#""type":"new","clientMessageId":"c""#, r#""type":"edit","messageId":1"#] {
            let frame = |levels| format!(r#"{{{head},"chatId":1,"message":"x","attachments":{}}}"#, nested(levels));
            assert!(parse(frame(32).as_bytes(), LIMITS).is_ok(), "32 levels");
            let (_, refusal) = refusal(&frame(33));
            assert_eq!(
                (refusal.code, refusal.message.as_str()),
                (ErrorCode::BadRequest, "attachments nest deeper than 32 levels")
            );
        }
    }
}
