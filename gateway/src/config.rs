//! The gateway's settings: every one by flag and by environment variable,
//! with its default shown in `--help`.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use shared::config as defaults;

/// The most `COMMAND_BACKLOG_LIMIT` may be: a tenth below the streams' cap,
/// room for what the fleet appends between two reads of the backlog.
const BACKLOG_LIMIT_MAX: u64 = shared::bus::redis::STREAM_MAX_LEN / 10 * 9;

// No `Debug`: it holds secrets (the JWT secret, URLs with passwords) that
// any `{:?}` would print; what is logged of the URLs is redacted
// (`redact_url`).
#[derive(Parser)]
#[command(name = "gateway", version, about = "Chat gateway: WebSocket and REST front of the chat service")]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a JWT for a user, signed with the configured secret.
    Token {
        /// The user id (the token's `sub`).
        #[arg(long)]
        user: String,
        /// How long the token is valid: 30s, 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = defaults::parse_duration)]
        ttl: std::time::Duration,
    },
}

// No `Debug`: it holds secrets (the JWT secret, URLs with passwords) that
// any `{:?}` would print; what is logged of the URLs is redacted
// (`redact_url`).
#[derive(Clone, Args)]
pub struct Settings {
    /// Address to listen on for WebSocket and HTTP.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080", global = true)]
    pub listen: SocketAddr,

    /// Storage. Standalone default: an SQLite file in the data directory.
    /// Cluster: a postgres:// URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    /// Where standalone keeps its SQLite file and generated JWT secret.
    #[arg(long, env = "DATA_DIR", default_value = defaults::DEFAULT_DATA_DIR, global = true)]
    pub data_dir: String,

    /// HS256 secret for client tokens. Standalone creates one in the data
    /// directory when unset.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,

    /// This node's name in `welcome` and logs (default: generated).
    #[arg(long, env = "NODE_ID", global = true, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub node_id: Option<String>,

    /// Close a connection that sent no ping for this long (ms).
    #[arg(long, env = "HEARTBEAT_TIMEOUT_MS", default_value_t = defaults::DEFAULT_HEARTBEAT_TIMEOUT_MS, global = true,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub heartbeat_timeout_ms: u64,

    /// Longest message text in bytes; longer gets `too_large`. At most the
    /// 64 KiB a WebSocket message may have.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = defaults::DEFAULT_MAX_MESSAGE_BYTES, global = true,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=defaults::MAX_FRAME_BYTES as u64))]
    pub max_message_bytes: usize,

    /// Frames one connection may have queued before it is closed as a slow
    /// consumer (close code 4001); in a cluster also the commands it may
    /// have held for order (`command_order`) before more are refused.
    #[arg(long, env = "OUTBOUND_QUEUE", default_value_t = 1024, global = true,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(8..=1_000_000))]
    pub outbound_queue: usize,

    /// Bytes of frames one connection may have queued, or held back for a
    /// `sync` or its first frame, before it is closed as a slow consumer
    /// (4001), whatever the count of frames: about what a client that does
    /// not read keeps of the node's memory at most, and one account up to
    /// `USER_CONNECTIONS` times it. Replays of a `sync` are bounded apart
    /// (two pages of 1 MiB at most). At least 1 MiB: the fan-out may leave
    /// a connection 256 KiB of one batch to finish.
    #[arg(long, env = "OUTBOUND_BYTES", default_value_t = 4 * 1024 * 1024, global = true,
          value_parser = clap::value_parser!(u32).range(1_048_576..=1_073_741_824))]
    pub outbound_bytes: u32,

    /// Commands waiting for the embedded worker before senders wait.
    #[arg(long, env = "COMMAND_QUEUE", default_value_t = 8192, global = true,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub command_queue: usize,

    /// Commands (all but `ping`, and `typing` into chats the node knows the
    /// sender is in) one connection may send a second, sustained; past it
    /// they are refused with `rate_limited`. 0 for no limit.
    #[arg(long, env = "COMMAND_RATE", default_value_t = 200, global = true)]
    pub command_rate: u32,

    /// Commands one connection may send at once after a quiet spell (or
    /// right after connecting), beyond `COMMAND_RATE`.
    #[arg(long, env = "COMMAND_BURST", default_value_t = 2000, global = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub command_burst: u32,

    /// Connections one user may hold open on this node at once; an upgrade
    /// past it is refused with 429 `rate_limited`. Each connection has its
    /// own command allowance, sync and queues, so without a cap one token
    /// multiplies them. 0 for no limit.
    #[arg(long, env = "USER_CONNECTIONS", default_value_t = 100, global = true)]
    pub user_connections: usize,

    /// Membership changes telling this many members or more are published
    /// once, for every gateway, instead of once per member, while every
    /// live gateway reads that event's form. 0: never (for a rolling
    /// upgrade from a release whose gateways do not hear that).
    #[arg(long, env = "SHARED_ANNOUNCE_FROM", default_value_t = 100, global = true)]
    pub shared_announce_from: usize,

    /// In a cluster, commands to a shard are refused (`internal`, not
    /// applied) while this many or more wait for the workers in its stream,
    /// rather than appended until the stream's cap (1,000,000) trims the
    /// oldest unapplied ones. Read every second, up to 256 shards at a time
    /// (`shared::bus::backlog`).
    #[arg(long, env = "COMMAND_BACKLOG_LIMIT", default_value_t = 500_000, global = true,
          value_parser = clap::value_parser!(u64).range(1..=BACKLOG_LIMIT_MAX))]
    pub command_backlog_limit: u64,

    /// REST calls one user may make a second on this node, sustained; past
    /// it they are refused with 429 `rate_limited`. 0 for no limit.
    #[arg(long, env = "REST_RATE", default_value_t = 20, global = true)]
    pub rest_rate: u32,

    /// REST calls one user may make at once after a quiet spell, beyond
    /// `REST_RATE`.
    #[arg(long, env = "REST_BURST", default_value_t = 200, global = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rest_burst: u32,

    /// On SIGTERM, close connections (1012) in paced batches, 100 ms apart,
    /// that take at most this many seconds, so clients reconnect elsewhere
    /// without a stampede.
    #[arg(long, env = "DRAIN_SECONDS", default_value_t = 10, global = true,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_seconds: u64,

    /// Origins whose web pages may call the REST API (CORS): `*`, or
    /// origins separated by commas, such as `https://app.example.com`.
    /// Unset, no CORS headers are sent (an app on the gateway's own origin,
    /// or behind a proxy that serves both, needs none).
    #[arg(long, env = "CORS_ORIGINS", value_parser = crate::cors::parse, global = true)]
    pub cors_origins: Option<crate::cors::Origins>,

    #[command(flatten)]
    pub common: shared::config::CommonArgs,

    #[command(flatten)]
    pub cluster: shared::config::ClusterArgs,
}

impl Settings {
    pub fn command_allowance(&self) -> crate::command_budget::Allowance {
        crate::command_budget::Allowance { per_second: self.command_rate, burst: self.command_burst }
    }

    pub fn rest_allowance(&self) -> crate::command_budget::Allowance {
        crate::command_budget::Allowance { per_second: self.rest_rate, burst: self.rest_burst }
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| defaults::default_database_url(&self.data_dir))
    }
}
