//! The run's plan: options from the command line, and the part of it each
//! agent process gets.

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::layout::Layout;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Hold N connections with heartbeats.
    Idle,
    /// Groups of --group-size; --rate messages/s in total.
    Fanout,
    /// Fanout where members mark delivered and read as messages arrive.
    Receipts,
    /// Connections open and close at --churn-rate per second.
    Churn,
    /// Clients stop pinging; time until their co-members see `offline`.
    Silent,
    /// Everyone drops and comes back with `sync` at once.
    Reconnect,
}

/// Where a reconnecting client's `sync` starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncFrom {
    /// After the newest event id the client saw, as a client does: the
    /// replay is exactly what it missed, so anything repeated, skipped or
    /// out of order counts.
    #[default]
    Newest,
    /// From the chat's start: every client replays the chat's whole
    /// history, a heavier storm (every `reconnect` run before the
    /// twenty-third session, 2026-12-05).
    Start,
}

fn default_burst() -> u64 {
    1
}

impl Scenario {
    /// Whether the measured phase sends messages and counts deliveries.
    pub fn measures_deliveries(self) -> bool {
        matches!(self, Scenario::Fanout | Scenario::Receipts | Scenario::Reconnect)
    }
}

#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct Plan {
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// The gateways' WebSocket URLs, comma-separated; connections are spread
    /// over them round-robin.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws", value_delimiter = ',')]
    pub ws_url: Vec<String>,
    /// A gateway's HTTP base URL, for creating chats.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub http_url: String,
    /// The JWT secret; default: JWT_SECRET, else DATA_DIR/jwt-secret.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    #[serde(skip)]
    pub jwt_secret: Option<String>,
    /// The server's data folder, whose `jwt-secret` signs the tokens when
    /// neither --jwt-secret nor JWT_SECRET is given (standalone).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: String,
    /// Connections (users) in total.
    #[arg(long, default_value_t = 1000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub connections: usize,
    /// Connections per agent process (each process may open at most 20,000
    /// files).
    #[arg(long, default_value_t = 15_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub per_process: usize,
    /// New connections per second per agent while connecting.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_rate: u64,
    /// Seconds of the measured phase.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: u64,
    /// Members per group (fanout, receipts, silent, reconnect); must divide
    /// --connections, so that every group is full.
    #[arg(long, default_value_t = 10, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub group_size: usize,
    /// Chats each user is a member of, each of --group-size members
    /// (see `layout.rs`); default 1 where messages flow or presence is
    /// watched, 0 (no chats) for idle and churn. More than one is not
    /// supported by silent, whose watcher must share its group's agent.
    #[arg(long)]
    #[serde(default)]
    pub chats_per_user: Option<usize>,
    /// Messages per second, in total (fanout, receipts, reconnect).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: u64,
    /// Messages a sender sends back to back, one to each of its chats in
    /// turn, without waiting for acks: a client pipelining across chats.
    /// --rate still counts messages.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    #[serde(default = "default_burst")]
    pub burst: u64,
    /// Connects (and as many disconnects) per second, in total (churn).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub churn_rate: u64,
    /// Where each client's `sync` starts after the storm (reconnect).
    #[arg(long, value_enum, default_value_t = SyncFrom::Newest)]
    #[serde(default)]
    pub sync_from: SyncFrom,
    /// Ping interval in ms.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub ping_ms: u64,
    /// Ping with WebSocket Ping frames, as many native client libraries
    /// do, instead of the protocol's JSON `ping`.
    #[arg(long)]
    #[serde(default)]
    pub ws_pings: bool,
    /// The server's HEARTBEAT_TIMEOUT_MS (silent: the bound to measure
    /// against).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_timeout_ms: u64,
    /// Server processes to measure (RSS, CPU seconds, open fds); repeatable.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Prefix of user ids, so runs do not collide.
    #[arg(long)]
    pub user_prefix: Option<String>,
    /// Where the JSON report goes.
    #[arg(long, default_value = "loadtest-report.json")]
    pub report: String,
    /// Where the PNG charts go.
    #[arg(long, default_value = "loadtest-charts")]
    pub charts: String,
}

impl Plan {
    /// What the flags cannot say one at a time: a plan whose figures would
    /// not mean what the report says is refused before anything connects.
    pub fn check(&self) -> anyhow::Result<()> {
        for url in &self.ws_url {
            anyhow::ensure!(url.starts_with("ws://"), "--ws-url {url}: a ws:// URL (the load tool speaks no TLS)");
        }
        let chats = self.chats_per_user();
        if chats > 0 {
            // A short last group would owe fewer deliveries per message
            // than the report expects, and count the difference lost.
            anyhow::ensure!(
                self.connections.is_multiple_of(self.group_size),
                "--connections ({}) must be a multiple of --group-size ({}), so that every group is full",
                self.connections,
                self.group_size
            );
        }
        anyhow::ensure!(
            chats > 0 || !self.scenario.measures_deliveries(),
            "{:?} sends messages into chats: --chats-per-user must be at least 1",
            self.scenario
        );
        Ok(())
    }

    /// Chats per user, after the scenario's default.
    pub fn chats_per_user(&self) -> usize {
        let grouped =
            matches!(self.scenario, Scenario::Fanout | Scenario::Receipts | Scenario::Silent | Scenario::Reconnect);
        self.chats_per_user.unwrap_or(usize::from(grouped))
    }

    pub fn layout(&self) -> Layout {
        Layout::new(self.connections, self.group_size, self.chats_per_user())
    }
}

/// One agent process's share of the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSpec {
    pub plan: Plan,
    pub secret: String,
    pub index: usize,
    /// Users `first..first + count` of the run.
    pub first_user: usize,
    pub user_count: usize,
    /// The local address this agent's connections come from (127.0.0.x), so
    /// that several agents do not exhaust one address's ephemeral ports.
    pub source_ip: String,
    /// Chat id of each chat index of the [`Layout`].
    pub chats: Vec<i64>,
    /// Messages per second this agent sends.
    pub rate: f64,
    pub user_prefix: String,
}

impl AgentSpec {
    pub fn user(&self, n: usize) -> String {
        format!("{}{n}", self.user_prefix)
    }
}
