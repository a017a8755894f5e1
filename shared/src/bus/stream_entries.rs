//! The entries of an XREADGROUP or XRANGE reply, read by hand. redis-rs's
//! `StreamReadReply` fails the whole reply when one entry's field names
//! are not UTF-8, and a reply that never parses left a worker's shard
//! reading the same pending entry again for ever. Here such an entry is
//! one without a payload, which the consumer answers if it can, logs and
//! acknowledges like any entry it cannot decode.

use redis::Value;

/// The field a command stream's entry carries its command in.
pub const COMMAND_FIELD: &str = "c";

/// One stream entry: its id, and its payload field if that is there and
/// is text.
#[derive(Debug, PartialEq)]
pub struct Entry {
    pub id: String,
    pub payload: Option<String>,
}

/// The entries of every stream in an XREAD(GROUP) `reply` (RESP2's array
/// of [key, entries] pairs or RESP3's map), in order, with their `field`;
/// none for a read that timed out (nil).
pub fn entries_of(reply: Value, field: &str) -> Vec<Entry> {
    let streams: Vec<Value> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(key_and_entries) => key_and_entries.into_iter().nth(1),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    streams.into_iter().flat_map(|entries| range_entries_of(entries, field)).collect()
}

/// The entries of an XRANGE `reply`, in order, with their `field`.
pub fn range_entries_of(reply: Value, field: &str) -> Vec<Entry> {
    match reply {
        Value::Array(entries) => entries.into_iter().filter_map(|entry| entry_of(entry, field.as_bytes())).collect(),
        _ => Vec::new(),
    }
}

/// `[id, [field, value, ...]]`; the fields are nil for an entry deleted
/// while it was pending.
fn entry_of(entry: Value, field: &[u8]) -> Option<Entry> {
    let Value::Array(parts) = entry else { return None };
    let mut parts = parts.into_iter();
    let id = text(parts.next()?)?;
    let payload = match parts.next() {
        Some(Value::Array(fields)) => {
            let mut fields = fields.into_iter();
            let mut payload = None;
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                if matches!(&name, Value::BulkString(name) if name.as_slice() == field) {
                    payload = text(value);
                }
            }
            payload
        }
        Some(Value::Map(fields)) => fields
            .into_iter()
            .find(|(name, _)| matches!(name, Value::BulkString(name) if name.as_slice() == field))
            .and_then(|(_, value)| text(value)),
        _ => None,
    };
    Some(Entry { id, payload })
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> Value {
        Value::BulkString(bytes.to_vec())
    }

    fn entry(id: &str, fields: Value) -> Value {
        Value::Array(vec![bulk(id.as_bytes()), fields])
    }

    #[test]
    fn every_entry_is_read_whatever_its_fields() {
        let entries = Value::Array(vec![
            entry("1-0", Value::Array(vec![bulk(b"c"), bulk(b"{}")])),
            // A field name that is not UTF-8 once made the whole reply fail.
            entry("2-0", Value::Array(vec![bulk(b"\xff"), bulk(b"x"), bulk(b"c"), bulk(b"{\"a\":1}")])),
            entry("3-0", Value::Array(vec![bulk(b"\xff"), bulk(b"x")])),
            entry("4-0", Value::Array(vec![bulk(b"c"), bulk(b"\xff")])),
            // Deleted while pending.
            entry("5-0", Value::Nil),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk(b"chat:cmd:0"), entries.clone()])]);
        let resp3 = Value::Map(vec![(bulk(b"chat:cmd:0"), entries)]);
        let expected = vec![
            Entry { id: "1-0".into(), payload: Some("{}".into()) },
            Entry { id: "2-0".into(), payload: Some("{\"a\":1}".into()) },
            Entry { id: "3-0".into(), payload: None },
            Entry { id: "4-0".into(), payload: None },
            Entry { id: "5-0".into(), payload: None },
        ];
        assert_eq!(entries_of(resp2, COMMAND_FIELD), expected);
        assert_eq!(entries_of(resp3, COMMAND_FIELD), expected);
        assert!(entries_of(Value::Nil, COMMAND_FIELD).is_empty(), "a read that timed out");
    }
}
