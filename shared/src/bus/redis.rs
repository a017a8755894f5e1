//! The cluster bus on Redis: commands go into Redis Streams (one per shard,
//! read by workers through a consumer group), events go out over Redis
//! pub/sub on per-chat, per-user and per-node channels.
//!
//! A node subscribes only to what it has local interest in. Subscriptions
//! are kept as a desired set that a single task reconciles with Redis, so
//! the hub's subscribe/unsubscribe calls never wait on the network, and a
//! reconnect simply re-applies the whole set and asks the sink to check the
//! chats for events missed meanwhile. Presence announcements missed
//! meanwhile are read again from their log (`presence_log`).

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use redis::aio::ConnectionManagerConfig;
use redis::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::backlog::Backlogs;
use super::channels::Channels;
use super::keys::Keys;
use super::presence_log;
use super::redis_connection::RedisConnection;
use super::stream_entries::COMMAND_FIELD;
use super::{BusError, CommandEnvelope, Event, EventSink};
use crate::sync::lock;

/// Streams are capped (approximately) at this many entries each, so a
/// stalled cluster cannot fill Redis' memory. Gateways stop appending to a
/// shard whose backlog is at their limit, below this ([`Backlogs`]): the
/// cap trims unapplied commands only if that fails. An entry trimmed unread
/// was never acknowledged to its client, which retries.
pub const STREAM_MAX_LEN: u64 = 1_000_000;
/// How long a Redis command may take before it counts as failed: a client
/// then gets an error quickly instead of hanging during an outage.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Subscriptions per SUBSCRIBE command when re-applying the whole set.
const SUBSCRIBE_CHUNK: usize = 500;
/// The event subscription pings Redis after this long without a message.
/// Redis sends nothing on a quiet subscription, so without pings one whose
/// connection went silent (a failover, a dead host) would wait for events
/// forever. A busy one is not pinged: its messages show it alive, and a
/// pong queued behind a backlog of them could come late.
const SUBSCRIPTION_PING_EVERY: Duration = Duration::from_secs(1);

/// Opens a multiplexed connection to `url` that reconnects when it breaks
/// and is replaced when it goes silent ([`RedisConnection`]).
pub async fn connect(url: &str) -> Result<RedisConnection, BusError> {
    let client = redis::Client::open(url).map_err(unavailable)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    RedisConnection::connect(client, config).await.map_err(unavailable)
}

pub fn unavailable(e: redis::RedisError) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// Gateways put commands here.
#[derive(Clone)]
pub struct RedisCommands {
    connection: RedisConnection,
    keys: Keys,
    backlogs: Arc<Backlogs>,
}

impl RedisCommands {
    /// `backlogs`: refreshed by [`Backlogs::watch`], which the caller runs.
    pub fn new(connection: RedisConnection, keys: Keys, backlogs: Arc<Backlogs>) -> Self {
        RedisCommands { connection, keys, backlogs }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Appends the command to its chat's shard stream. Returns only once
    /// Redis has it; an error means the command was not accepted. Refused
    /// without a round trip while the shard's backlog is at its limit.
    pub async fn submit(&self, envelope: CommandEnvelope) -> Result<(), BusError> {
        let shard = self.keys.shard_of(envelope.command.chat_id());
        if self.backlogs.is_full(shard) {
            return Err(BusError::Backlogged(self.backlogs.limit()));
        }
        let stream = self.keys.command_stream(shard);
        let payload = serde_json::to_string(&envelope).map_err(|e| BusError::Unavailable(e.to_string()))?;
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_MAX_LEN)
            .arg("*")
            .arg(COMMAND_FIELD)
            .arg(payload)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Publishes events and, on a gateway, receives those of its interest.
#[derive(Clone)]
pub struct RedisBroker {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    keys: Keys,
    publisher: RedisConnection,
    /// Channels this node wants, and those changed since the last
    /// reconciliation.
    channels: Channels,
    dirty: Mutex<HashSet<String>>,
    wake: Notify,
}

impl RedisBroker {
    pub fn new(url: &str, publisher: RedisConnection, keys: Keys) -> Self {
        RedisBroker {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                keys,
                publisher,
                channels: Channels::default(),
                dirty: Mutex::new(HashSet::new()),
                wake: Notify::new(),
            }),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The channels wanted, and those Redis confirmed subscribed.
    pub fn channels(&self) -> &Channels {
        &self.inner.channels
    }

    /// The channel an event goes to.
    fn channel(&self, event: &Event) -> String {
        let keys = &self.inner.keys;
        match event {
            Event::Chat(e) => keys.chat_channel(e.chat_id),
            Event::Typing { chat, .. } => keys.chat_channel(*chat),
            Event::Presence { .. } => keys.presence_channel(),
            Event::ChatList { user, .. } => keys.user_channel(user),
            Event::ChatListToMany { .. } => keys.chat_lists_channel(),
            Event::Reply { origin, .. } => keys.node_channel(&origin.node),
        }
    }

    pub async fn publish(&self, event: &Event) -> Result<(), BusError> {
        self.publish_all(std::slice::from_ref(event)).await
    }

    /// Publishes `events` in order in one pipeline: one round trip for a
    /// whole batch instead of one per event, which is what bounds a shard's
    /// throughput and its acks' latency. A single connection keeps them in
    /// order; on error an unknown prefix may have gone out, which the
    /// redelivery that follows repeats (gateways drop chat events they
    /// already delivered by id; a reply may reach its client twice, as it
    /// could when events were published one by one).
    pub async fn publish_all(&self, events: &[Event]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        self.add_publishes(&mut pipeline, events)?;
        let mut publisher = self.inner.publisher.clone();
        let () = pipeline.query_async(&mut publisher).await.map_err(unavailable)?;
        Ok(())
    }

    /// Appends a PUBLISH of each of `events`, in order and with their
    /// replies ignored, to a pipeline the caller sends: Redis runs them
    /// before anything the caller appends after them on the same connection.
    pub fn add_publishes(&self, pipeline: &mut redis::Pipeline, events: &[Event]) -> Result<(), BusError> {
        for event in events {
            pipeline.publish(self.channel(event), encode(event)?).ignore();
        }
        Ok(())
    }

    /// Publishes presence announcements as [`RedisBroker::publish_all`]
    /// does, each appended to the presence log first (`presence_log`).
    /// Replies are read one by one: an append Redis refuses for the log
    /// alone (`OOM`: its memory full; `WRONGTYPE`) must not count as a
    /// failure of the announcement, which went out all the same; any other
    /// refusal (`READONLY`: this connection reaches a demoted primary)
    /// fails the batch.
    pub async fn publish_presence(&self, announcements: &[Event]) -> Result<(), BusError> {
        if announcements.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        pipeline.ignore_errors();
        for announcement in announcements {
            let payload = encode(announcement)?;
            presence_log::append(&mut pipeline, &self.inner.keys, announcement, &payload);
            pipeline.publish(self.channel(announcement), payload);
        }
        let mut publisher = self.inner.publisher.clone();
        let replies: Vec<Value> = pipeline.query_async(&mut publisher).await.map_err(unavailable)?;
        let mut refused_appends = 0;
        // Each announcement's append, then its PUBLISH.
        for (n, reply) in replies.iter().enumerate() {
            match reply {
                Value::ServerError(e) if n % 2 == 0 && matches!(e.code(), "OOM" | "WRONGTYPE") => {
                    refused_appends += 1;
                    if refused_appends == 1 {
                        tracing::warn!(error = %e, "presence log append refused; a gateway resubscribing will miss it");
                    }
                }
                Value::ServerError(e) => return Err(BusError::Unavailable(e.to_string())),
                _ => {}
            }
        }
        if refused_appends > 0 {
            metrics::counter!("chat_redis_errors_total", "op" => "presence_log").increment(refused_appends);
        }
        Ok(())
    }

    /// Marks `channel` as wanted or not; the listener applies it.
    pub fn want(&self, channel: String, wanted: bool) {
        if self.inner.channels.want(&channel, wanted) {
            lock(&self.inner.dirty).insert(channel);
            self.inner.wake.notify_one();
        }
    }

    /// Receives events for `sink` until `stop`, reconnecting as needed.
    pub async fn listen(self, sink: Arc<dyn EventSink>, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        // When the subscription last showed itself alive, to tell when an
        // outage outlasted what the presence log's re-read recovers.
        let mut last_heard = None;
        loop {
            if stop.is_cancelled() {
                return;
            }
            let listened = self.listen_once(&sink, &stop, &mut last_heard).await;
            self.inner.channels.forget_all();
            match listened {
                Ok(()) => return,
                Err(e) => {
                    metrics::counter!("chat_redis_errors_total", "op" => "subscribe").increment(1);
                    tracing::warn!(error = %e, "event subscription lost; reconnecting");
                }
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn listen_once(
        &self,
        sink: &Arc<dyn EventSink>,
        stop: &CancellationToken,
        last_heard: &mut Option<Instant>,
    ) -> Result<(), redis::RedisError> {
        let client = redis::Client::open(self.inner.url.as_str())?;
        let (mut subscriber, mut messages) = answered(client.get_async_pubsub()).await?.split();
        // Everything wanted now is (re)subscribed; later changes arrive as
        // dirty channels.
        lock(&self.inner.dirty).clear();
        // The node-wide channels first, in the first chunk: a user's
        // membership changes come on their own channel and on `chatlists`,
        // and a connecting user whose channel Redis confirmed before that
        // one would have their chats read while changes on it went unheard.
        let (node_wide, others): (Vec<String>, Vec<String>) =
            self.inner.channels.all().into_iter().partition(|c| self.inner.keys.is_node_wide(c));
        let all: Vec<String> = node_wide.into_iter().chain(others).collect();
        for chunk in all.chunks(SUBSCRIBE_CHUNK) {
            answered(subscriber.subscribe(chunk)).await?;
            self.inner.channels.confirm(chunk);
        }
        self.inner.channels.listening();
        tracing::info!(channels = all.len(), "listening for events");
        sink.replies_may_be_lost();
        sink.memberships_may_be_stale();
        sink.resync(all.iter().filter_map(|c| self.inner.keys.chat_of_channel(c)).collect());
        if let Some(unheard) = last_heard.replace(Instant::now()).map(|at| at.elapsed()) {
            if unheard.as_millis() > presence_log::REREAD_MS as u128 {
                tracing::warn!(
                    unheard_for_s = unheard.as_secs(),
                    "presence announcements older than {} s are not read again; co-members may show stale presence",
                    presence_log::REREAD_MS / 1000
                );
            }
        }
        // Read here, between live events rather than beside them: the sink
        // checks an announcement's number and delivers it in two steps, and
        // a second deliverer could slip a later one in between.
        let mut reread = all.contains(&self.inner.keys.presence_channel()).then(RereadSchedule::now);
        let mut ping = tokio::time::interval(SUBSCRIPTION_PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_message = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(reread.as_ref().map_or_else(tokio::time::Instant::now, |r| r.due)), if reread.is_some() => {
                    self.reread_presence_step(&mut reread, sink.as_ref()).await;
                }
                _ = ping.tick() => {
                    // The reconnect that follows a silent ping resyncs every
                    // chat, which recovers what was published meanwhile.
                    if last_message.elapsed() >= SUBSCRIPTION_PING_EVERY {
                        answered(subscriber.ping::<redis::Value>()).await?;
                        *last_heard = Some(Instant::now());
                    }
                }
                message = messages.next() => {
                    let Some(message) = message else {
                        return Err(redis::RedisError::from(std::io::Error::other("subscriber connection closed")));
                    };
                    last_message = Instant::now();
                    *last_heard = Some(last_message);
                    // Whatever else has arrived goes with it, in order, as
                    // one batch: the sink writes each connection once per
                    // batch (a member's receipts from every other member).
                    let mut events = Vec::new();
                    decode_into(&mut events, &message);
                    while events.len() < DELIVER_AT_ONCE {
                        match messages.next().now_or_never() {
                            Some(Some(more)) => decode_into(&mut events, &more),
                            _ => break,
                        }
                    }
                    sink.deliver_all(events);
                }
                _ = self.inner.wake.notified() => {
                    let dirty: Vec<String> = lock(&self.inner.dirty).drain().collect();
                    let (add, remove) = self.inner.channels.partition(dirty);
                    if !remove.is_empty() {
                        answered(subscriber.unsubscribe(&remove)).await?;
                    }
                    if !add.is_empty() {
                        answered(subscriber.subscribe(&add)).await?;
                        self.inner.channels.confirm(&add);
                        let chats: Vec<_> = add.iter().filter_map(|c| self.inner.keys.chat_of_channel(c)).collect();
                        if !chats.is_empty() {
                            sink.resync(chats);
                        }
                    }
                }
                _ = stop.cancelled() => return Ok(()),
            }
        }
    }

    /// Takes the next step of the presence log's re-read
    /// (`presence_log::Reread`), and schedules the one after it: at once,
    /// or after a failure later and later; none once done.
    async fn reread_presence_step(&self, schedule: &mut Option<RereadSchedule>, sink: &dyn EventSink) {
        let Some(reread) = schedule else { return };
        match reread.progress.step(&self.inner.publisher, &self.inner.keys, sink).await {
            Ok(false) => reread.due = tokio::time::Instant::now(),
            Ok(true) => {
                let (read, cut_short) = (reread.progress.read, reread.progress.cut_short);
                *schedule = None;
                metrics::counter!("chat_presence_reread_total").increment(read as u64);
                let window = presence_log::REREAD_MS / 1000;
                tracing::info!(read, "presence announcements of the last {window} s read again");
                if cut_short {
                    tracing::warn!(
                        "more than {} presence announcements in {window} s: the oldest are not read again; co-members may show stale presence",
                        presence_log::MAX_LEN
                    );
                }
            }
            Err(e) => {
                metrics::counter!("chat_redis_errors_total", "op" => "presence_reread").increment(1);
                tracing::warn!(error = %e, retry_in_s = reread.retry.as_secs(), "could not read presence announcements again");
                reread.due = tokio::time::Instant::now() + reread.retry;
                reread.retry = (reread.retry * 2).min(REREAD_RETRY_MAX);
            }
        }
    }
}

/// A re-read of the presence log under way on this subscription.
struct RereadSchedule {
    progress: presence_log::Reread,
    /// When its next step is due.
    due: tokio::time::Instant,
    /// How long it waits after its next failure.
    retry: Duration,
}

impl RereadSchedule {
    fn now() -> Self {
        RereadSchedule { progress: Default::default(), due: tokio::time::Instant::now(), retry: REREAD_RETRY }
    }
}

fn encode(event: &Event) -> Result<String, BusError> {
    serde_json::to_string(event).map_err(|e| BusError::Unavailable(e.to_string()))
}

/// `request`'s answer, or a timeout error once `RESPONSE_TIMEOUT` has
/// passed: the subscription's connection has no response timeout of its
/// own.
async fn answered<T>(request: impl Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
    match tokio::time::timeout(RESPONSE_TIMEOUT, request).await {
        Ok(answer) => answer,
        Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    }
}

/// How long a failed presence re-read step waits before its first retry;
/// the wait doubles up to [`REREAD_RETRY_MAX`] (a log key Redis keeps
/// refusing need not be asked about every second).
const REREAD_RETRY: Duration = Duration::from_secs(1);
const REREAD_RETRY_MAX: Duration = Duration::from_secs(30);

/// The most events of the subscription handed to the sink as one batch.
const DELIVER_AT_ONCE: usize = 256;

fn decode_into(events: &mut Vec<Event>, message: &redis::Msg) {
    match serde_json::from_slice::<Event>(message.get_payload_bytes()) {
        Ok(event) => events.push(event),
        Err(e) => tracing::warn!(error = %e, channel = message.get_channel_name(), "undecodable event dropped"),
    }
}
