//! The node: one gateway process and everything it holds. Standalone wires
//! the in-process bus, the embedded worker and the SQLite store into it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use shared::auth::{AuthError, Authenticator};
use shared::bus::{memory, Broker, CommandQueue};
use shared::protocol::close;
use shared::store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::handle::Rejected;
use crate::hub::Hub;
use crate::outbound::Outbound;
use crate::presence::Presence;
use crate::rest::auth::ApiError;

/// How long shutdown waits for connections to take their last frames.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

pub struct Node {
    pub id: String,
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
    worker: JoinHandle<()>,
    stop_worker: CancellationToken,
    others: Vec<JoinHandle<()>>,
    stop_others: CancellationToken,
}

impl Node {
    /// A standalone node: in-process bus, embedded worker, store at
    /// `settings.database_url()`.
    pub async fn standalone(
        settings: Settings,
        secret: &[u8],
        metrics: PrometheusHandle,
    ) -> anyhow::Result<Arc<Node>> {
        let store = Store::connect(&settings.database_url()).await?;
        let memory_broker = memory::MemoryBroker::new();
        let broker = Broker::Memory(memory_broker.clone());
        let (commands, command_rx) = memory::command_channel(settings.command_queue);
        let hub = Arc::new(Hub::new(broker.clone()));
        memory_broker.attach(hub.clone());
        let presence = Presence::new();

        let stop_worker = CancellationToken::new();
        let worker = tokio::spawn(
            worker::Processor::new(store.clone(), broker.clone())
                .run_memory(command_rx, stop_worker.clone()),
        );
        let stop_others = CancellationToken::new();
        let others = vec![
            tokio::spawn(presence.clone().announce(
                store.clone(),
                broker.clone(),
                stop_others.clone(),
            )),
            tokio::spawn(crate::heartbeat::sweep(
                hub.clone(),
                settings.heartbeat_timeout_ms,
                stop_others.clone(),
            )),
            tokio::spawn(worker::retention::run(
                store.clone(),
                settings.retention(),
                Duration::from_secs(60),
                stop_others.clone(),
            )),
        ];
        let id = settings.node_id.clone().unwrap_or_else(generated_node_id);
        Ok(Arc::new(Node {
            id,
            auth: Authenticator::new(secret),
            store,
            hub,
            broker,
            commands: CommandQueue::Memory(commands),
            presence,
            next_connection: AtomicU64::new(1),
            connections: TaskTracker::new(),
            stop_reading: CancellationToken::new(),
            metrics,
            draining: AtomicBool::new(false),
            background: std::sync::Mutex::new(Some(Background {
                worker,
                stop_worker,
                others,
                stop_others,
            })),
            settings,
        }))
    }

    pub fn authenticate(&self, token: Option<&str>) -> Result<String, ApiError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing);
        token
            .and_then(|t| self.auth.verify(t))
            .map_err(|e| ApiError::unauthorized(&e.to_string()))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Stops the node without losing what it accepted: refuse new
    /// connections, stop reading commands, let the worker apply everything
    /// queued and its replies reach their sockets, then close every
    /// connection with 1001 and stop the rest.
    pub async fn shutdown(&self) {
        self.draining.store(true, Ordering::Release);
        self.stop_reading.cancel();
        let Some(background) = self
            .background
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        background.stop_worker.cancel();
        if let Err(e) = background.worker.await {
            tracing::error!(error = %e, "the worker task failed");
        }
        for handle in self.hub.handles() {
            // Behind the replies already queued; a full queue closes at once.
            if handle.push(Outbound::Close(close::GOING_AWAY, "server shutting down"))
                == Err(Rejected::Slow)
            {
                handle.close(close::GOING_AWAY);
            }
        }
        self.connections.close();
        if tokio::time::timeout(CLOSE_GRACE, self.connections.wait())
            .await
            .is_err()
        {
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
