//! The worker's settings: every one by flag and by environment variable.

use clap::{Args, Parser, Subcommand};
use shared::config::ClusterArgs;

// No `Debug`: the database and Redis URLs may carry passwords, which any
// `{:?}` would print; what is logged of them is redacted (`redact_url`).
#[derive(Parser)]
#[command(name = "worker", version, about = "Chat worker: applies commands from Redis Streams to PostgreSQL")]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the database migrations and exit (for a Kubernetes Job).
    Migrate,
}

// No `Debug`: the database and Redis URLs may carry passwords, which any
// `{:?}` would print; what is logged of them is redacted (`redact_url`).
#[derive(Clone, Args)]
pub struct Settings {
    /// PostgreSQL, e.g. postgres://user:pass@host/db.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    #[command(flatten)]
    pub common: shared::config::CommonArgs,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// This worker's name in Redis and logs (default: generated).
    #[arg(long, env = "WORKER_ID", global = true, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub worker_id: Option<String>,

    /// A shard lease lasts this long unless renewed (ms). A dead worker's
    /// shards, and the commands it left pending, move to a live worker
    /// within about this time.
    #[arg(long, env = "LEASE_TTL_MS", default_value_t = 5_000, global = true,
          value_parser = clap::value_parser!(u64).range(300..=600_000))]
    pub lease_ttl_ms: u64,

    /// Under load, how long a small transaction waits for more shards'
    /// batches before it commits (µs; 0, the default, never waits). It
    /// applies only while commits follow each other within 5 ms and the
    /// transaction holds fewer than 8 commands. 500 took about 30 % off
    /// PostgreSQL's CPU for about 1.5 ms more at the median and up to 3 ms
    /// at the p99 (docs/operations.md): for a deployment whose database,
    /// not its latency, is what it runs short of.
    #[arg(long, env = "GROUP_COMMIT_HOLD_US", default_value_t = 0, global = true,
          value_parser = clap::value_parser!(u64).range(0..=50_000))]
    pub group_commit_hold_us: u64,

    /// Address of the admin listener: /metrics, /healthz, /readyz.
    #[arg(long, env = "ADMIN_LISTEN", default_value = "127.0.0.1:9091", global = true)]
    pub admin_listen: std::net::SocketAddr,
}
