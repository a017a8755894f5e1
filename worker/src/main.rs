use anyhow::Context;
use clap::Parser as _;
use shared::store::Store;
use tokio_util::sync::CancellationToken;
use worker::cluster::Worker;
use worker::config::{Cli, Command, Settings};
use worker::turns::{Claim, Turns};

/// How often the store's housekeeping comes round, one worker's turn at a
/// time.
const HOUSEKEEPING_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Exit status for invalid configuration (EX_USAGE).
const EXIT_CONFIG: i32 = 64;

/// The gateway's allocator (see its main.rs): the worker allocates per
/// command as the gateway does, decoding and encoding JSON.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // An invalid setting: exit 64, naming it (clap's message does).
            std::process::exit(if e.use_stderr() { EXIT_CONFIG } else { 0 });
        }
    };
    shared::process::init_logging(&cli.settings.common.log_format);
    let Some(database_url) = cli.settings.database_url.clone().filter(|u| shared::config::is_postgres_url(u)) else {
        eprintln!("worker: DATABASE_URL must be a postgres:// (or postgresql://) URL");
        std::process::exit(EXIT_CONFIG);
    };
    // Through the log, so that the migration Job's output is JSON like
    // every other line when LOG_FORMAT=json. The store names each
    // migration as it applies it, and the total when done.
    if let Some(Command::Migrate) = cli.command {
        let database = shared::config::redact_url(&database_url);
        tracing::info!(%database, "bringing the schema up to date");
        match Store::connect_migrated(&database_url).await {
            Ok((_, migrated)) if migrated.applied.is_empty() => {
                tracing::info!(version = migrated.version, "nothing to apply; the schema is up to date")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "migration failed");
                std::process::exit(1);
            }
        }
        return;
    }
    let Some(redis_url) = cli.settings.cluster.redis_url.clone() else {
        eprintln!("worker: REDIS_URL is required");
        std::process::exit(EXIT_CONFIG);
    };
    if let Err(e) = cli.settings.cluster.check_redis_url() {
        eprintln!("worker: {e}");
        std::process::exit(EXIT_CONFIG);
    }
    if let Err(e) = run(cli.settings, database_url, redis_url).await {
        tracing::error!("{}", shared::process::describe(e.as_ref()));
        std::process::exit(1);
    }
}

async fn run(settings: Settings, database_url: String, redis_url: String) -> anyhow::Result<()> {
    let admin = tokio::net::TcpListener::bind(settings.admin_listen).await.with_context(|| {
        format!(
            "cannot listen on {} (ADMIN_LISTEN): each worker on one host needs its own address",
            settings.admin_listen
        )
    })?;
    let telemetry = shared::telemetry::Telemetry::get();
    let store = Store::connect(&database_url).await?;
    let redis = shared::bus::redis::connect(&redis_url).await?;
    let stop = CancellationToken::new();
    let health = shared::health::Health::new(settings.common.unreachable_grace_ms, true);
    let watching = tokio::spawn(health.clone().watch(store.clone(), Some(redis.clone()), stop.clone()));
    let stop_admin = CancellationToken::new();
    tracing::info!(admin = %settings.admin_listen, "metrics at /metrics, health at /healthz and /readyz");
    let admin = tokio::spawn(worker::admin::serve(admin, health.clone(), telemetry, stop_admin.clone()));
    let id = settings.worker_id.clone().unwrap_or_else(|| format!("wk-{:08x}", rand::random::<u32>()));
    let housekeeping_turns = Turns::Claimed(Claim::new(
        redis.clone(),
        settings.cluster.keys().housekeeping_turn(),
        id.clone(),
        HOUSEKEEPING_EVERY * 9 / 10,
    ));
    let retention = tokio::spawn(worker::retention::run(
        store.clone(),
        settings.common.retention(),
        HOUSEKEEPING_EVERY,
        housekeeping_turns,
        stop.clone(),
    ));
    let worker = Worker {
        id,
        keys: settings.cluster.keys(),
        redis_url,
        lease_ttl_ms: settings.lease_ttl_ms,
        commit_hold: worker::group_commit::Hold::up_to(std::time::Duration::from_micros(settings.group_commit_hold_us)),
        store: store.clone(),
        redis,
        health: health.clone(),
        unreachable_grace_ms: settings.common.unreachable_grace_ms,
    };
    let running = tokio::spawn(worker.run(stop.clone()));
    shared::process::shutdown_signal().await;
    tracing::info!("stopping: finishing batches in hand, releasing shards");
    health.stopping();
    stop.cancel();
    let _ = running.await;
    let _ = retention.await;
    let _ = watching.await;
    stop_admin.cancel();
    let _ = admin.await;
    store.close_before_exit().await;
    Ok(())
}
