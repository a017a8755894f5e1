//! The workers' consumer group as an `XINFO GROUPS` reply describes it:
//! read by a worker for its position and its metrics, and by the gateways
//! for the shards' backlogs (`bus::backlog`).

use std::collections::HashMap;

use redis::Value;

use super::keys::GROUP;

/// The fields of the workers' group.
pub struct GroupInfo(HashMap<String, Value>);

/// The workers' group in an `XINFO GROUPS` `reply` (RESP2's field, value
/// arrays or RESP3's maps); `None` when it has no such group, or is not
/// such a reply.
pub fn workers_group(reply: &Value) -> Option<GroupInfo> {
    let groups: Vec<HashMap<String, Value>> = redis::from_redis_value_ref(reply).ok()?;
    groups
        .into_iter()
        .find(|group| matches!(group.get("name"), Some(Value::BulkString(name)) if name == GROUP.as_bytes()))
        .map(GroupInfo)
}

impl GroupInfo {
    /// A count (`pending`, `lag`); `None` when absent, or nil (a `lag`
    /// Redis cannot tell).
    pub fn count(&self, field: &str) -> Option<u64> {
        match self.0.get(field) {
            Some(Value::Int(n)) => Some((*n).max(0) as u64),
            _ => None,
        }
    }

    /// A text field (`last-delivered-id`).
    pub fn text(&self, field: &str) -> Option<String> {
        match self.0.get(field) {
            Some(Value::BulkString(text)) => String::from_utf8(text.clone()).ok(),
            _ => None,
        }
    }
}
