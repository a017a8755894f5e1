//! The node: one gateway process and everything it holds. Standalone wires
//! the in-process bus, the embedded worker and the SQLite store into it; a
//! cluster node wires Redis (commands, events, presence) and PostgreSQL.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shared::auth::{AuthError, Authenticator, Identity};
use shared::bus::backlog::Backlogs;
use shared::bus::redis::{RedisBroker, RedisCommands};
use shared::bus::{memory, Broker, CommandQueue};
use shared::health::Health;
use shared::protocol::close;
use shared::store::{Backend, Store};
use shared::sync::lock;
use shared::telemetry::Telemetry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::chat_lists::ChatLists;
use crate::config::Settings;
use crate::fleet_forms::FleetForms;
use crate::handle::Rejected;
use crate::hub::{Hub, HubSink};
use crate::outbound::Outbound;
use crate::presence::cluster::ClusterPresence;
use crate::presence::Presence;
use crate::rest::allowance::RestAllowance;
use crate::rest::auth::ApiError;
use crate::sync_pages::SyncPages;
use crate::user_slots::UserSlots;

/// How long a draining connection waits for the replies to its commands
/// already submitted before it is closed anyway.
const REPLY_GRACE: Duration = Duration::from_secs(5);
/// How long shutdown waits, after the last batch, for connections to take
/// their last frames.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How many connections of a cluster node may load their chats and record
/// their presence (or record their leaving) at once. A reconnect storm
/// otherwise starts all of them together: their PostgreSQL reads queue for
/// the pool and their Redis calls for the runtime, long enough for the
/// presence scripts to time out (2 s) and go unrecorded, thousands of them
/// in a storm of 19,000 clients over two gateways (docs/benchmarks-journal.md,
/// tenth session). Past this, connections wait their turn, first come first
/// served. Standalone has no such calls and no limit.
pub const SETUP_CONCURRENCY: usize = 128;
/// The longest the gateway waits for one call to the store (a chat list,
/// a sync page, a REST read or write, a presence lookup) before answering
/// that the database is unavailable: shorter than readiness's default
/// grace (`UNREACHABLE_GRACE_MS`, 10 s), so a client hears of the outage
/// before its pod leaves rotation, and hundreds of times the slowest such
/// call measured under load. See [`shared::store::within`].
pub const STORE_DEADLINE: Duration = Duration::from_secs(5);
/// Drain batches are this far apart.
const DRAIN_STEP: Duration = Duration::from_millis(100);

/// How long the background tasks get to stop once told. A task still
/// waiting then, on a database or Redis that does not answer, is
/// abandoned, so that a stopping gateway exits within its grace period.
/// The presence announcer is the one that waits longest: with the
/// database silent, each batch of its last announcements waits for the
/// store twice (`STORE_DEADLINE`), one batch after another, and a node
/// drained of 10,000 users (40 batches) would wait minutes. What is cut
/// off is the live `offline` frames and last-seen times not yet written;
/// whether a user is online is counted apart from them (in Redis, in a
/// cluster), so `GET /v1/presence` stays right.
const BACKGROUND_STOP_LIMIT: Duration = Duration::from_secs(6);

pub struct Node {
    pub id: String,
    /// Distinguishes this process from an earlier one with the same id, in
    /// command ids.
    pub incarnation: String,
    pub settings: Settings,
    pub auth: Authenticator,
    /// Each user's REST calls on this node (`rest::allowance`).
    pub rest_allowance: RestAllowance,
    pub store: Store,
    /// Loads the chat lists of connections setting up.
    pub chat_lists: ChatLists,
    /// Reads the pages of connections' `sync`.
    pub sync_pages: SyncPages,
    pub hub: Arc<Hub>,
    pub broker: Broker,
    pub commands: CommandQueue,
    pub presence: Arc<Presence>,
    /// Whether every live gateway reads the shared `chats` event.
    pub fleet_forms: Arc<FleetForms>,
    /// The next connection's number, from [`first_connection_number`].
    pub next_connection: AtomicU64,
    /// Every connection's task, so shutdown can wait for them.
    pub connections: TaskTracker,
    /// Connections setting up or tearing down at once (see
    /// [`SETUP_CONCURRENCY`]).
    pub setup_permits: tokio::sync::Semaphore,
    /// Each user's connections here, capped (`USER_CONNECTIONS`).
    pub user_slots: Arc<UserSlots>,
    pub metrics: Telemetry,
    pub health: Arc<Health>,
    draining: AtomicBool,
    background: std::sync::Mutex<Option<Background>>,
}

/// The node's long-running tasks, stopped in order at shutdown.
struct Background {
    /// The embedded worker (standalone only).
    worker: Option<(JoinHandle<()>, CancellationToken)>,
    /// Named for the log, should one not stop in time.
    others: Vec<(&'static str, JoinHandle<()>)>,
    stop_others: CancellationToken,
}

impl Node {
    /// Standalone without `REDIS_URL`, cluster with it.
    pub async fn start(settings: Settings, secret: &[u8], metrics: Telemetry) -> anyhow::Result<Arc<Node>> {
        match settings.cluster.redis_url.clone() {
            None => Self::standalone(settings, secret, metrics).await,
            Some(url) => Self::cluster(settings, &url, secret, metrics).await,
        }
    }

    /// A standalone node: in-process bus, embedded worker, store at
    /// `settings.database_url()`.
    pub async fn standalone(settings: Settings, secret: &[u8], metrics: Telemetry) -> anyhow::Result<Arc<Node>> {
        let store = Store::connect(&settings.database_url()).await?;
        // A previous run that died with users online (kill -9, a power
        // loss) recorded no departure for them.
        let left_online = store.settle_left_online(shared::clock::now_ms()).await?;
        if left_online > 0 {
            tracing::info!(users = left_online, "recorded users a previous run left online as last seen now");
        }
        let memory_broker = memory::MemoryBroker::new();
        let broker = Broker::Memory(memory_broker.clone());
        let (commands, command_rx) = memory::command_channel(settings.command_queue);
        let hub = Hub::new(broker.clone(), store.clone());
        memory_broker.attach(Arc::new(HubSink(hub.clone())));
        let presence = Presence::standalone();

        let stop_worker = CancellationToken::new();
        let processor = worker::Processor::new(store.clone());
        let worker = spawn_embedded_worker(processor, broker.clone(), command_rx, stop_worker.clone(), store.backend());
        let stop_others = CancellationToken::new();
        let mut others = vec![(
            "retention",
            tokio::spawn(worker::retention::run(
                store.clone(),
                settings.common.retention(),
                Duration::from_secs(60),
                worker::turns::Turns::Every,
                stop_others.clone(),
            )),
        )];
        if store.backend() == Backend::Sqlite {
            others.push((
                "checkpoints",
                tokio::spawn(worker::checkpoint::run(store.clone(), CHECKPOINT_EVERY, stop_others.clone())),
            ));
        }
        let health = Health::new(settings.common.unreachable_grace_ms, false);
        others.push(("health checks", tokio::spawn(health.clone().watch(store.clone(), None, stop_others.clone()))));
        let background = Background { worker: Some((worker, stop_worker)), others, stop_others };
        let node_id = settings.node_id.clone().unwrap_or_else(generated_node_id);
        let commands = CommandQueue::Memory(commands);
        Ok(Self::assemble(
            node_id, settings, secret, metrics, health, store, hub, broker, commands, presence, background,
        ))
    }

    /// A cluster node: commands to Redis Streams, events from Redis
    /// pub/sub, presence in Redis, storage in PostgreSQL.
    pub async fn cluster(
        settings: Settings,
        redis_url: &str,
        secret: &[u8],
        metrics: Telemetry,
    ) -> anyhow::Result<Arc<Node>> {
        let store = Store::connect(&settings.database_url()).await?;
        let keys = settings.cluster.keys();
        let redis = shared::bus::redis::connect(redis_url).await?;
        let node_id = settings.node_id.clone().unwrap_or_else(generated_node_id);
        let redis_broker = RedisBroker::new(redis_url, redis.clone(), keys.clone());
        let broker = Broker::Redis(redis_broker.clone());
        let hub = Hub::new(broker.clone(), store.clone());
        redis_broker.want(keys.node_channel(&node_id), true);
        redis_broker.want(keys.presence_channel(), true);
        redis_broker.want(keys.chat_lists_channel(), true);

        let cluster_presence =
            Arc::new(ClusterPresence::new(redis.clone(), keys.clone(), &settings.cluster.redis_prefix, &node_id));
        let presence = Presence::clustered_with(cluster_presence.clone());
        // A previous process under this id may have died with users online.
        let at = shared::clock::now_ms();
        let (seq, stale) = cluster_presence.reap_previous_self(at).await?;
        if !stale.is_empty() {
            tracing::info!(users = stale.len(), "cleared presence left by a previous run of this node");
        }
        presence.reaped(stale, seq, at);
        // The first lease round before serving, so that the node starts
        // knowing which form of shared event the others read.
        if let Err(e) = cluster_presence.tick(&presence).await {
            metrics::counter!("chat_redis_errors_total", "op" => "presence").increment(1);
            tracing::warn!(error = %e, "presence lease round failed");
        }

        let health = Health::new(settings.common.unreachable_grace_ms, true);
        let backlogs = Backlogs::new(keys.shards(), settings.command_backlog_limit);
        let stop_others = CancellationToken::new();
        let others = vec![
            (
                "event subscription",
                tokio::spawn(redis_broker.listen(Arc::new(HubSink(hub.clone())), stop_others.clone())),
            ),
            ("cluster presence", tokio::spawn(cluster_presence.run(presence.clone(), stop_others.clone()))),
            (
                "health checks",
                tokio::spawn(health.clone().watch(store.clone(), Some(redis.clone()), stop_others.clone())),
            ),
            (
                "command backlogs",
                tokio::spawn(backlogs.clone().watch(redis.clone(), keys.clone(), stop_others.clone())),
            ),
        ];
        let background = Background { worker: None, others, stop_others };
        let commands = CommandQueue::Redis(RedisCommands::new(redis, keys, backlogs));
        Ok(Self::assemble(
            node_id, settings, secret, metrics, health, store, hub, broker, commands, presence, background,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        id: String,
        settings: Settings,
        secret: &[u8],
        metrics: Telemetry,
        health: Arc<Health>,
        store: Store,
        hub: Arc<Hub>,
        broker: Broker,
        commands: CommandQueue,
        presence: Arc<Presence>,
        mut background: Background,
    ) -> Arc<Node> {
        background.others.push((
            "presence announcements",
            tokio::spawn(presence.clone().announce(store.clone(), broker.clone(), background.stop_others.clone())),
        ));
        background.others.push((
            "heartbeat sweep",
            tokio::spawn(crate::heartbeat::sweep(
                hub.clone(),
                settings.heartbeat_timeout_ms,
                background.stop_others.clone(),
            )),
        ));
        let setup_concurrency = match broker {
            Broker::Redis(_) => SETUP_CONCURRENCY,
            Broker::Memory(_) => tokio::sync::Semaphore::MAX_PERMITS,
        };
        Arc::new(Node {
            id,
            incarnation: format!("{:016x}", rand::random::<u64>()),
            auth: Authenticator::new(secret),
            rest_allowance: RestAllowance::new(settings.rest_allowance()),
            chat_lists: ChatLists::start(store.clone()),
            sync_pages: SyncPages::start(store.clone()),
            store,
            hub,
            broker,
            commands,
            fleet_forms: presence.fleet_forms(),
            presence,
            next_connection: AtomicU64::new(first_connection_number()),
            connections: TaskTracker::new(),
            setup_permits: tokio::sync::Semaphore::new(setup_concurrency),
            user_slots: UserSlots::new(settings.user_connections),
            metrics,
            health,
            draining: AtomicBool::new(false),
            background: std::sync::Mutex::new(Some(background)),
            settings,
        })
    }

    pub fn authenticate(&self, token: Option<&str>) -> Result<Identity, ApiError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing);
        token.and_then(|t| self.auth.verify(t)).map_err(|e| ApiError::unauthorized(&e.to_string()))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Drains and stops the node without losing what it accepted: readiness
    /// goes false and new upgrades are refused; connections are closed in
    /// paced batches within `DRAIN_SECONDS`, each one after it stopped taking
    /// commands and got the replies to those it sent, with 1012 so the
    /// client reconnects elsewhere; then the embedded worker (standalone)
    /// and the background tasks stop.
    pub async fn shutdown(&self) {
        self.draining.store(true, Ordering::Release);
        self.health.stopping();
        let Some(background) = lock(&self.background).take() else { return };
        let handles = self.hub.handles();
        let steps =
            (Duration::from_secs(self.settings.drain_seconds).as_millis() / DRAIN_STEP.as_millis()).max(1) as usize;
        let batch = handles.len().div_ceil(steps).max(1);
        tracing::info!(connections = handles.len(), seconds = self.settings.drain_seconds, "draining");
        let closing = TaskTracker::new();
        for (i, chunk) in handles.chunks(batch).enumerate() {
            if i > 0 {
                tokio::time::sleep(DRAIN_STEP).await;
            }
            for handle in chunk {
                closing.spawn(drain_one(handle.clone()));
            }
        }
        // Anyone who slipped in while the list was taken.
        for handle in self.hub.handles() {
            closing.spawn(drain_one(handle));
        }
        closing.close();
        closing.wait().await;
        self.connections.close();
        if tokio::time::timeout(CLOSE_GRACE, self.connections.wait()).await.is_err() {
            tracing::warn!("some connections did not close in time");
        }
        if let Some((worker, stop_worker)) = background.worker {
            stop_worker.cancel();
            if let Err(e) = worker.await {
                tracing::error!(error = %e, "the worker task failed");
            }
        }
        background.stop_others.cancel();
        let stopped_by = tokio::time::Instant::now() + BACKGROUND_STOP_LIMIT;
        for (name, mut task) in background.others {
            if tokio::time::timeout_at(stopped_by, &mut task).await.is_err() {
                tracing::warn!(task = name, "a background task did not stop in time; abandoned");
                task.abort();
            }
        }
        self.store.close_before_exit().await;
    }
}

/// Stops one connection's reading, waits for the replies it is owed, and
/// queues its 1012 close behind them.
async fn drain_one(handle: Arc<crate::handle::ClientHandle>) {
    handle.stop_reading();
    let deadline = tokio::time::Instant::now() + REPLY_GRACE;
    while handle.commands_in_flight() > 0 && tokio::time::Instant::now() < deadline && !handle.is_closed() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if handle.push(Outbound::Close(close::SERVICE_RESTART, "server restarting; reconnect")) == Err(Rejected::Slow) {
        handle.close(close::SERVICE_RESTART);
    }
}

/// How often standalone checkpoints SQLite's log beside the writer. Each
/// checkpoint's `fsync`s stall the writer's appends to the log, and a
/// larger checkpoint stalls them longer: at 20,000 deliveries/s on a
/// virtual disk, 50 ms made a lower p99 than 100 ms in six of seven
/// alternating pairs (1 s made it two to three times higher), and at
/// saturation delivered more in each of three. Shorter still costs the
/// writer at saturation: after each complete checkpoint it starts the log
/// over and syncs the log's header, and at 25 ms that came four times as
/// often (docs/benchmarks-journal.md, seventh session of 2026-12-03).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// The embedded worker. On SQLite it runs on a thread and runtime of its
/// own, and that thread runs its SQLite statements itself
/// (vendor/sqlx-sqlite/PATCHED.md) instead of handing each to sqlx's
/// connection thread and back: on the shared runtime every hand-back waited
/// in line behind the connection tasks, and each hand-off cost two thread
/// switches (docs/benchmarks-journal.md). A PostgreSQL connection's socket belongs
/// to the runtime that opened it, so that backend stays on the shared
/// runtime.
fn spawn_embedded_worker(
    processor: worker::Processor,
    broker: Broker,
    commands: tokio::sync::mpsc::Receiver<shared::bus::CommandEnvelope>,
    stop: CancellationToken,
    backend: Backend,
) -> JoinHandle<()> {
    let work = processor.run_memory(broker, commands, stop);
    if backend != Backend::Sqlite {
        return tokio::spawn(work);
    }
    let shared_runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(own) => {
            shared::store::run_statements_on_this_thread();
            own.block_on(work)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no runtime of its own for the embedded worker; sharing the main one");
            shared_runtime.block_on(work)
        }
    })
}

/// Where this process starts numbering its connections: a random multiple
/// of 2^32, plus one. A reply finds its connection by node id and number
/// alone, and a worker may still answer commands that an earlier process
/// with the same `NODE_ID` left in the streams when it died; numbered from
/// 1 each time, those answers went to whichever new connection took the
/// number, another user's perhaps. Two processes' ranges meet only if one
/// opens 2^32 connections or both draw the same start (one in 2^32).
fn first_connection_number() -> u64 {
    (u64::from(rand::random::<u32>()) << 32) | 1
}

fn generated_node_id() -> String {
    format!("gw-{:08x}", rand::random::<u32>())
}
