//! Every Redis key and channel name, built here and nowhere else. All of
//! them start with a configurable prefix, so several deployments (or test
//! runs) can share one Redis without seeing each other.

use crate::model::ChatId;

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    shards: u32,
}

/// The consumer group every worker reads command streams through.
pub const GROUP: &str = "workers";

impl Keys {
    pub fn new(prefix: &str, shards: u32) -> Self {
        Keys { prefix: prefix.to_owned(), shards: shards.max(1) }
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// Commands of `chat` go to one stream, so one worker at a time applies
    /// them, in order.
    pub fn shard_of(&self, chat: ChatId) -> u32 {
        chat.rem_euclid(self.shards as i64) as u32
    }

    pub fn command_stream(&self, shard: u32) -> String {
        format!("{}cmd:{shard}", self.prefix)
    }

    /// The consumer name of a shard: the shard, not the worker, so a new
    /// owner reads the pending entries its predecessor left.
    pub fn shard_consumer(&self, shard: u32) -> String {
        format!("shard-{shard}")
    }

    /// Holds the id of the worker that owns `shard`, with a TTL.
    pub fn shard_lease(&self, shard: u32) -> String {
        format!("{}lease:{shard}", self.prefix)
    }

    /// Written when a worker finds it no longer holds `shard`'s lease just
    /// before reading the shard; the read's transaction WATCHes it, so the
    /// read does not run (`worker::shard_read`).
    pub fn shard_read_fence(&self, shard: u32) -> String {
        format!("{}readfence:{shard}", self.prefix)
    }

    /// Held (with a TTL) by the worker whose turn the store's
    /// housekeeping is (`worker::turns`).
    pub fn housekeeping_turn(&self) -> String {
        format!("{}housekeeping", self.prefix)
    }

    /// A live worker's heartbeat key (with a TTL).
    pub fn worker_alive(&self, worker: &str) -> String {
        format!("{}worker:{worker}", self.prefix)
    }

    /// The set of workers that announced themselves.
    pub fn workers(&self) -> String {
        format!("{}workers", self.prefix)
    }

    pub fn chat_channel(&self, chat: ChatId) -> String {
        format!("{}ev:{chat}", self.prefix)
    }

    pub fn user_channel(&self, user: &str) -> String {
        format!("{}user:{user}", self.prefix)
    }

    pub fn node_channel(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }

    /// Presence changes go to every gateway; each keeps what concerns its
    /// own users.
    pub fn presence_channel(&self) -> String {
        format!("{}presence", self.prefix)
    }

    /// Membership changes of large groups go to every gateway
    /// (`Event::ChatListToMany`); each tells the members it holds.
    pub fn chat_lists_channel(&self) -> String {
        format!("{}chatlists", self.prefix)
    }

    /// The last minute or so of what went out on the presence channel, for
    /// a gateway whose subscription dropped (`bus::presence_log`).
    pub fn presence_log(&self) -> String {
        format!("{}presencelog", self.prefix)
    }

    /// Per user: node -> open connections on that node.
    pub fn online(&self, user: &str) -> String {
        format!("{}online:{user}", self.prefix)
    }

    /// Per node: the users with connections on it, for reaping a dead node.
    pub fn node_users(&self, node: &str) -> String {
        format!("{}nodeusers:{node}", self.prefix)
    }

    /// Per node: the answer (the user's total) to each presence change
    /// whose record the node has not yet cleared, so that a change retried
    /// after a lost answer is not counted twice.
    pub fn node_presence_ops(&self, node: &str) -> String {
        format!("{}nodeops:{node}", self.prefix)
    }

    /// Per user: the number and direction (`s`, `o`) of the last presence
    /// transition decided for them, kept an hour. Whether an `online` and
    /// `offline` waiting to be announced on one node may cancel (nothing
    /// came between them on another), and whether a node bringing a user
    /// back after Redis forgot its counts must announce them online.
    pub fn presence_last(&self, user: &str) -> String {
        format!("{}presencelast:{user}", self.prefix)
    }

    /// The number the latest presence transition took, cluster-wide: each
    /// announcement carries its own, so that a gateway hearing of a user's
    /// transitions out of order (two gateways announced them) keeps the
    /// latest.
    pub fn presence_seq(&self) -> String {
        format!("{}presenceseq", self.prefix)
    }

    /// A live gateway's lease (with a TTL).
    pub fn node_alive(&self, node: &str) -> String {
        format!("{}nodealive:{node}", self.prefix)
    }

    /// The set of gateways that announced themselves.
    pub fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// Whether `channel` is one of a node's own (its replies, presence,
    /// `chatlists`) rather than a chat's or a user's, of which a node
    /// holds thousands.
    pub fn is_node_wide(&self, channel: &str) -> bool {
        let Some(name) = channel.strip_prefix(&self.prefix) else { return false };
        !name.starts_with("ev:") && !name.starts_with("user:")
    }

    /// The chat id a chat channel names, if it is one.
    pub fn chat_of_channel(&self, channel: &str) -> Option<ChatId> {
        channel.strip_prefix(&self.prefix)?.strip_prefix("ev:")?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_and_channels() {
        let keys = Keys::new("t1:", 16);
        assert_eq!(keys.shard_of(17), 1);
        assert_eq!(keys.command_stream(3), "t1:cmd:3");
        assert_eq!(keys.chat_of_channel(&keys.chat_channel(42)), Some(42));
        assert_eq!(keys.chat_of_channel("t1:user:42"), None);
        assert_eq!(keys.chat_of_channel("other:ev:42"), None);
        for node_wide in [keys.node_channel("gw-1"), keys.presence_channel(), keys.chat_lists_channel()] {
            assert!(keys.is_node_wide(&node_wide), "{node_wide}");
        }
        for one_of_many in [keys.chat_channel(42), keys.user_channel("alice"), "other:presence".into()] {
            assert!(!keys.is_node_wide(&one_of_many), "{one_of_many}");
        }
    }
}
