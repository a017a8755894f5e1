//! The seam between the gateway and the worker: commands travel in, events
//! travel out. Standalone runs [`memory`]; a cluster plugs in Redis Streams
//! for commands and Redis pub/sub for events behind the same two types,
//! without the gateway's connection code or the worker's rules changing.
//!
//! Every event names its audience (a chat, some users, or one connection),
//! so a node only needs to hear about the chats and users it holds.

pub mod backlog;
pub mod channels;
mod event_json;
pub mod group_info;
pub mod keys;
pub mod memory;
pub mod presence_log;
pub mod redis;
pub mod redis_connection;
pub mod stream_entries;

use std::future::Future;
use std::sync::Arc;

use futures_util::future::Either;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Refusal;
use crate::model::{Applied, ChatAction, ChatEvent, ChatId, ChatSummary, Command, MemberViews, Millis, UserId};

/// Which connection a command came from, so its reply finds the way back,
/// and which of its commands it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    pub node: String,
    pub connection: u64,
    /// The command's number on its connection, counted from 1: the
    /// gateway tells a reply repeated (a redelivered command, answered
    /// again) from a new one by it. 0 from a gateway that did not number
    /// its commands, whose replies are taken as they come.
    #[serde(default)]
    pub sequence: u64,
}

/// One client command on its way to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandEnvelope {
    /// Unique per command (node, connection, sequence). A worker records it
    /// with the command's effects, so a redelivered command is recognised
    /// and answered from the record instead of being applied twice.
    pub id: String,
    pub origin: Origin,
    pub user: UserId,
    /// The client's `ref`, echoed in the reply.
    pub reference: Option<Value>,
    pub command: Command,
    /// When the gateway received it, for the received-to-ack latency.
    pub received_at: Millis,
}

/// Where a command's reply goes, read from an envelope whose command could
/// not be (a newer gateway's command that an older worker does not know):
/// the sender is still told that it was not applied, and its connection's
/// later commands are not held behind one that would never be answered.
#[derive(Debug, Clone, Deserialize)]
pub struct ReplyAddress {
    pub origin: Origin,
    pub reference: Option<Value>,
    pub received_at: Millis,
}

impl ReplyAddress {
    /// The reply to a command no worker could read.
    pub fn unreadable(self) -> Event {
        let refusal = Refusal::new(
            crate::error::ErrorCode::Internal,
            "the worker could not read this command (a gateway newer than the workers?); it was not applied",
        );
        Event::Reply {
            origin: self.origin,
            reference: self.reference,
            result: Err(refusal),
            received_at: self.received_at,
        }
    }
}

/// The form of [`Event::ChatListToMany`] this release publishes and reads:
/// 2 since `239aa446` (members not told named by exception, unread counts
/// in the member list's order). A gateway names it in its liveness key, and
/// the shared event goes out only while every live gateway reads it
/// (`gateway::fleet_forms`). A release that changes the form raises it, and
/// must still read the form before.
pub const CHAT_LIST_FORM: u32 = 2;

/// Everything a gateway may need to push to its connections. Serialized
/// (JSON) when it crosses Redis; the field names are internal, not wire.
/// Read back field by field (`event_json`), in the JSON serde derives.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// A persisted event, for every member's connections.
    Chat(Arc<ChatEvent>),
    /// Ephemeral: `user` is typing in `chat`; for the other members.
    Typing { chat: ChatId, user: UserId },
    /// Ephemeral: `user` came online or went offline cluster-wide; for the
    /// other members of `chats` (the user's), each told once however many
    /// of them they share. Naming chats rather than people keeps the event
    /// a user's chat count long, and each gateway finds the members it
    /// holds from the chats it already follows. `seq` orders one user's
    /// announcements when several gateways make them (a user leaving one
    /// gateway for another): a gateway drops one older than what it last
    /// applied for the user. 0 where one announcer orders them all
    /// (standalone), or from a gateway that predates the field.
    Presence {
        user: UserId,
        online: bool,
        last_seen: Millis,
        chats: Arc<[ChatId]>,
        #[serde(default)]
        seq: u64,
    },
    /// A chat appeared, changed or disappeared for `user`. `version`: the
    /// chat's membership version after the change (0 from a gateway older
    /// than the numbering: always applied).
    ChatList {
        user: UserId,
        action: ChatAction,
        chat: Box<ChatSummary>,
        #[serde(default)]
        version: i64,
    },
    /// A chat appeared, changed or disappeared for each of its members but
    /// `untold` at once, in form [`CHAT_LIST_FORM`]: [`Event::ChatList`] for a large group, where one
    /// event per member, each naming every member, would cost the square
    /// of the group's size. Goes to every gateway (in a cluster, one
    /// channel they all hear); each tells the members it holds, each the
    /// chat as they see it. `untold`: members this event is not for: the
    /// newcomer of an addition, told `created` on their own, and anyone
    /// added by a change made meanwhile, which tells them itself. Named by
    /// exception so that the event names each member once.
    ChatListToMany { untold: Arc<[UserId]>, action: ChatAction, chat: Arc<MemberViews>, version: i64 },
    /// The answer to one command, for the connection that sent it.
    Reply { origin: Origin, reference: Option<Value>, result: Result<Applied, Refusal>, received_at: Millis },
}

/// What a gateway implements to receive events. It must not block: it
/// hands events to bounded per-connection queues, or writes them to
/// sockets without waiting, and returns.
pub trait EventSink: Send + Sync {
    fn deliver(&self, event: Event);
    /// The events of one batch the worker committed, in order: how much
    /// arrives at once tells the sink how far behind its load the node is.
    fn deliver_all(&self, events: Vec<Event>) {
        events.into_iter().for_each(|event| self.deliver(event));
    }
    /// Presence announcements read again from their log after the broker
    /// subscribed (`presence_log`), in the order they were made. Those of
    /// users in many chats come without them (`chats` empty), for the sink
    /// to look up.
    fn presence_reread(&self, events: Vec<Event>) {
        self.deliver_all(events);
    }
    /// The broker (re)subscribed to these chats: events published while it
    /// was not listening may be missing at the tail; the sink checks the
    /// store and fills in.
    fn resync(&self, _chats: Vec<ChatId>) {}
    /// The broker (re)connected: replies to commands published while it
    /// was not listening are lost, so no connection should wait for one.
    fn replies_may_be_lost(&self) {}
    /// The broker (re)connected: membership changes announced (on users'
    /// channels and `chatlists`) while it was not listening are lost; the
    /// sink reads its users' chats again.
    fn memberships_may_be_stale(&self) {}
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the command queue is closed (shutting down)")]
    Closed,
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
    /// The command's shard has this many commands or more waiting for the
    /// workers (`bus::backlog`); the command was not appended.
    #[error("{0} or more commands wait in the shard's stream")]
    Backlogged(u64),
}

/// Where gateways put client commands.
#[derive(Clone)]
pub enum CommandQueue {
    Memory(memory::MemoryCommands),
    Redis(redis::RedisCommands),
}

impl CommandQueue {
    /// Hands a command to the workers. Waits while the queue is full, which
    /// slows the sending client down rather than dropping its command.
    ///
    /// Not an `async fn`, which would keep the envelope beside the inner
    /// future holding it too; Redis's future is boxed (a round trip dwarfs
    /// the allocation). See [`memory::MemoryCommands::submit`] for why the
    /// size counts.
    ///
    /// `while_waiting` makes what is held while the caller waits: for the
    /// in-process queue only when it is full
    /// ([`memory::MemoryCommands::submit`]); for Redis always, as every
    /// append is a round trip, and one waits its turn on the shared
    /// connection (up to the response timeout) when Redis is behind.
    pub fn submit<G: Send + 'static>(
        &self,
        envelope: CommandEnvelope,
        while_waiting: impl FnOnce() -> G,
    ) -> impl Future<Output = Result<(), BusError>> + '_ {
        match self {
            CommandQueue::Memory(q) => Either::Left(q.submit(envelope, while_waiting)),
            CommandQueue::Redis(q) => {
                let waiting = while_waiting();
                Either::Right(Box::pin(async move {
                    let appended = q.submit(envelope).await;
                    drop(waiting);
                    appended
                }))
            }
        }
    }

    /// The lane `chat`'s commands take: commands of one lane are applied in
    /// the order submitted, those of two lanes in no order between them.
    /// In process there is one lane; over Redis, one per shard stream.
    pub fn lane_of(&self, chat: ChatId) -> u32 {
        match self {
            CommandQueue::Memory(_) => 0,
            CommandQueue::Redis(q) => q.keys().shard_of(chat),
        }
    }
}

/// Where workers and gateways publish events, and gateways subscribe.
#[derive(Clone)]
pub enum Broker {
    Memory(memory::MemoryBroker),
    Redis(redis::RedisBroker),
}

impl Broker {
    pub async fn publish(&self, event: Event) -> Result<(), BusError> {
        self.publish_or_keep(event).await.map_err(|(e, _)| e)
    }

    /// [`Broker::publish`], handing the event back when it did not go out,
    /// for a caller that tries it again later (without a copy made for
    /// every event that went out).
    pub async fn publish_or_keep(&self, event: Event) -> Result<(), (BusError, Event)> {
        match self {
            Broker::Memory(b) => {
                b.publish(event);
                Ok(())
            }
            Broker::Redis(b) => b.publish(&event).await.map_err(|e| (e, event)),
        }
    }

    /// Publishes `events` in order, over Redis in one round trip.
    pub async fn publish_all(&self, events: Vec<Event>) -> Result<(), BusError> {
        match self {
            Broker::Memory(b) => {
                b.publish_all(events);
                Ok(())
            }
            Broker::Redis(b) => b.publish_all(&events).await,
        }
    }

    /// Publishes presence announcements in order, over Redis in one round
    /// trip and each kept in the presence log too (`redis::RedisBroker::publish_presence`).
    pub async fn publish_presence(&self, announcements: Vec<Event>) -> Result<(), BusError> {
        match self {
            Broker::Memory(b) => {
                b.publish_all(announcements);
                Ok(())
            }
            Broker::Redis(b) => b.publish_presence(&announcements).await,
        }
    }

    /// The node wants `chat`'s events from now on (its first local member
    /// connected). In memory everything reaches the one node anyway.
    pub fn subscribe_chat(&self, chat: ChatId) {
        if let Broker::Redis(b) = self {
            b.want(b.keys().chat_channel(chat), true);
        }
    }
    /// The node's last local member of `chat` left.
    pub fn unsubscribe_chat(&self, chat: ChatId) {
        if let Broker::Redis(b) = self {
            b.want(b.keys().chat_channel(chat), false);
        }
    }
    pub fn subscribe_user(&self, user: &str) {
        if let Broker::Redis(b) = self {
            b.want(b.keys().user_channel(user), true);
        }
    }
    /// Waits (up to `limit`) until `user`'s channel, subscribed with
    /// [`Broker::subscribe_user`], is live: what is published to it from
    /// then on arrives. Whether it is; in process at once. While the
    /// subscription is not listening (Redis does not answer), says no at
    /// once rather than hold the caller `limit`.
    pub async fn user_subscribed(&self, user: &str, limit: std::time::Duration) -> bool {
        match self {
            Broker::Memory(_) => true,
            Broker::Redis(b) if !b.channels().is_listening() => false,
            Broker::Redis(b) => b.channels().wait(&b.keys().user_channel(user), limit).await,
        }
    }
    /// [`Broker::user_subscribed`], waiting through a reconnect.
    pub async fn user_subscribed_eventually(&self, user: &str, limit: std::time::Duration) -> bool {
        match self {
            Broker::Memory(_) => true,
            Broker::Redis(b) => b.channels().wait(&b.keys().user_channel(user), limit).await,
        }
    }
    pub fn unsubscribe_user(&self, user: &str) {
        if let Broker::Redis(b) = self {
            b.want(b.keys().user_channel(user), false);
        }
    }
}
