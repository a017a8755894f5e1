//! The node: one gateway process and everything it holds. Standalone wires
//! the in-process bus, the embedded worker and the SQLite store into it; a
//! cluster node wires Redis (commands, events, presence) and PostgreSQL.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use shared::auth::{AuthError, Authenticator};
use shared::bus::redis::{RedisBroker, RedisCommands};
use shared::bus::{memory, Broker, CommandQueue};
use shared::protocol::close;
use shared::store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::handle::Rejected;
use crate::hub::{Hub, HubSink};
use crate::outbound::Outbound;
use crate::presence::cluster::ClusterPresence;
use crate::presence::Presence;
use crate::rest::auth::ApiError;

/// How long shutdown waits for replies to commands already submitted.
const REPLY_GRACE: Duration = Duration::from_secs(10);
/// How long shutdown waits for connections to take their last frames.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

pub struct Node {
    pub id: String,
    /// Distinguishes this process from an earlier one with the same id, in
    /// command ids.
    pub incarnation: String,
    pub settings: Settings,
    pub auth: Authenticator,
    pub store: Store,
    pub hub: Arc<Hub>,
    pub broker: Broker,
    pub commands: CommandQueue,
    pub presence: Arc<Presence>,
    pub next_connection: AtomicU64,
    /// Every connection's task, so shutdown can wait for them.
    pub connections: TaskTracker,
    /// Cancelled first at shutdown: readers stop taking commands.
    pub stop_reading: CancellationToken,
    pub metrics: PrometheusHandle,
    draining: AtomicBool,
    background: std::sync::Mutex<Option<Background>>,
}

/// The node's long-running tasks, stopped in order at shutdown.
struct Background {
    /// The embedded worker (standalone only).
    worker: Option<(JoinHandle<()>, CancellationToken)>,
    others: Vec<JoinHandle<()>>,
    stop_others: CancellationToken,
}

impl Node {
    /// Standalone without `REDIS_URL`, cluster with it.
    pub async fn start(settings: Settings, secret: &[u8], metrics: PrometheusHandle) -> anyhow::Result<Arc<Node>> {
        match settings.cluster.redis_url.clone() {
            None => Self::standalone(settings, secret, metrics).await,
            Some(url) => Self::cluster(settings, &url, secret, metrics).await,
        }
    }

    /// A standalone node: in-process bus, embedded worker, store at
    /// `settings.database_url()`.
    pub async fn standalone(settings: Settings, secret: &[u8], metrics: PrometheusHandle) -> anyhow::Result<Arc<Node>> {
        let store = Store::connect(&settings.database_url()).await?;
        let memory_broker = memory::MemoryBroker::new();
        let broker = Broker::Memory(memory_broker.clone());
        let (commands, command_rx) = memory::command_channel(settings.command_queue);
        let hub = Hub::new(broker.clone(), store.clone());
        memory_broker.attach(Arc::new(HubSink(hub.clone())));
        let presence = Presence::standalone();

        let stop_worker = CancellationToken::new();
        let worker = tokio::spawn(
            worker::Processor::new(store.clone(), broker.clone()).run_memory(command_rx, stop_worker.clone()),
        );
        let stop_others = CancellationToken::new();
        let others = vec![tokio::spawn(worker::retention::run(
            store.clone(),
            settings.retention(),
            Duration::from_secs(60),
            stop_others.clone(),
        ))];
        let background = Background { worker: Some((worker, stop_worker)), others, stop_others };
        let node_id = settings.node_id.clone().unwrap_or_else(generated_node_id);
        Ok(Self::assemble(
            node_id,
            settings,
            secret,
            metrics,
            store,
            hub,
            broker,
            CommandQueue::Memory(commands),
            presence,
            background,
        ))
    }

    /// A cluster node: commands to Redis Streams, events from Redis
    /// pub/sub, presence in Redis, storage in PostgreSQL.
    pub async fn cluster(
        settings: Settings,
        redis_url: &str,
        secret: &[u8],
        metrics: PrometheusHandle,
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

        let cluster_presence =
            Arc::new(ClusterPresence::new(redis.clone(), keys.clone(), &settings.cluster.redis_prefix, &node_id));
        let presence = Presence::clustered_with(cluster_presence.clone());
        // A previous process under this id may have died with users online.
        let stale = cluster_presence.reap_previous_self().await?;
        if !stale.is_empty() {
            tracing::info!(users = stale.len(), "cleared presence left by a previous run of this node");
        }
        presence.reaped(stale);

        let stop_others = CancellationToken::new();
        let others = vec![
            tokio::spawn(redis_broker.listen(Arc::new(HubSink(hub.clone())), stop_others.clone())),
            tokio::spawn(cluster_presence.run(presence.clone(), stop_others.clone())),
        ];
        let background = Background { worker: None, others, stop_others };
        let commands = CommandQueue::Redis(RedisCommands::new(redis, keys));
        Ok(Self::assemble(node_id, settings, secret, metrics, store, hub, broker, commands, presence, background))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        id: String,
        settings: Settings,
        secret: &[u8],
        metrics: PrometheusHandle,
        store: Store,
        hub: Arc<Hub>,
        broker: Broker,
        commands: CommandQueue,
        presence: Arc<Presence>,
        mut background: Background,
    ) -> Arc<Node> {
        background.others.push(tokio::spawn(presence.clone().announce(
            store.clone(),
            broker.clone(),
            background.stop_others.clone(),
        )));
        background.others.push(tokio::spawn(crate::heartbeat::sweep(
            hub.clone(),
            settings.heartbeat_timeout_ms,
            background.stop_others.clone(),
        )));
        Arc::new(Node {
            id,
            incarnation: format!("{:016x}", rand::random::<u64>()),
            auth: Authenticator::new(secret),
            store,
            hub,
            broker,
            commands,
            presence,
            next_connection: AtomicU64::new(1),
            connections: TaskTracker::new(),
            stop_reading: CancellationToken::new(),
            metrics,
            draining: AtomicBool::new(false),
            background: std::sync::Mutex::new(Some(background)),
            settings,
        })
    }

    pub fn authenticate(&self, token: Option<&str>) -> Result<String, ApiError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing);
        token.and_then(|t| self.auth.verify(t)).map_err(|e| ApiError::unauthorized(&e.to_string()))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Stops the node without losing what it accepted: refuse new
    /// connections, stop reading commands, wait for the replies to what was
    /// submitted (standalone: the embedded worker drains its queue), then
    /// close every connection with 1001 behind its last replies, and stop
    /// the rest.
    pub async fn shutdown(&self) {
        self.draining.store(true, Ordering::Release);
        self.stop_reading.cancel();
        let Some(background) = self.background.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        if let Some((worker, stop_worker)) = background.worker {
            stop_worker.cancel();
            if let Err(e) = worker.await {
                tracing::error!(error = %e, "the worker task failed");
            }
        }
        let deadline = tokio::time::Instant::now() + REPLY_GRACE;
        while self.hub.commands_in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for handle in self.hub.handles() {
            // Behind the replies already queued; a full queue closes at once.
            if handle.push(Outbound::Close(close::GOING_AWAY, "server shutting down")) == Err(Rejected::Slow) {
                handle.close(close::GOING_AWAY);
            }
        }
        self.connections.close();
        if tokio::time::timeout(CLOSE_GRACE, self.connections.wait()).await.is_err() {
            tracing::warn!("some connections did not close in time");
        }
        background.stop_others.cancel();
        for task in background.others {
            let _ = task.await;
        }
        self.store.close().await;
    }
}

fn generated_node_id() -> String {
    format!("gw-{:08x}", rand::random::<u32>())
}
