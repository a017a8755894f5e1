//! `loadtest`: drives many WebSocket connections against the native
//! protocol. `loadtest run SCENARIO` is the coordinator a person starts;
//! it runs `loadtest agent SPEC` processes (each on its own 127.0.0.x
//! address, under the per-process file limit) and merges their results.

mod agent;
mod charts;
mod conn;
mod coordinator;
mod floor;
mod incoming;
mod layout;
mod outbox;
mod plan;
mod procstat;
mod progress_target;
mod report;
mod seen;
mod state;
mod stats;
mod stop;
mod summary;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loadtest", version, about = "Load tool for the chat gateway's native protocol")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario and report.
    Run(Box<plan::Plan>),
    /// Measure the kernel's cost of small loopback writes alone: the floor
    /// under a server's CPU per delivery on this machine.
    Floor(floor::FloorArgs),
    /// One table of every run report in the given folders.
    Summary(summary::SummaryArgs),
    /// Internal: one agent process of a run.
    #[command(hide = true)]
    Agent { spec: std::path::PathBuf },
    /// Internal: the reading end of `floor`.
    #[command(hide = true)]
    FloorSink { address: String, connections: usize },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Every connection is a file: take the whole allowance the system grants.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match Cli::parse().command {
        Command::Run(plan) => coordinator::run(*plan).await,
        Command::Floor(args) => floor::run(args).await,
        Command::Summary(args) => summary::run(args),
        Command::FloorSink { address, connections } => floor::sink(address, connections).await,
        Command::Agent { spec } => {
            let text = std::fs::read(&spec)?;
            // It holds the JWT secret: on disk no longer than it must be.
            let _ = std::fs::remove_file(&spec);
            let spec: plan::AgentSpec = serde_json::from_slice(&text)?;
            agent::run(spec).await?;
            // Exit now: a blocking read of stdin would hold the runtime open.
            use std::io::Write;
            let _ = std::io::stdout().flush();
            std::process::exit(0)
        }
    }
}
