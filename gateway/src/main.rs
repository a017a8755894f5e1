use anyhow::Context;
use clap::Parser as _;
use gateway::config::{Cli, Command, Settings};
use gateway::node::Node;

/// Exit status for invalid configuration (EX_USAGE).
const EXIT_CONFIG: i32 = 64;

/// glibc's malloc was about a fifth of a cluster gateway's samples under
/// load, much of it consolidating freed chunks (docs/benchmarks-journal.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = parse_or_exit();
    shared::process::init_logging(&cli.settings.common.log_format);
    if let Err(e) = cli.settings.cluster.check_redis_url() {
        eprintln!("gateway: {e}");
        std::process::exit(EXIT_CONFIG);
    }
    let secret = match secret(&cli.settings) {
        Ok(secret) => secret,
        Err(e) => {
            eprintln!("gateway: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    if let Some(Command::Token { user, ttl }) = cli.command {
        if !shared::auth::valid_user_id(&user) {
            eprintln!("gateway: {user:?} is not a valid user id (1-128 characters, no commas or control characters)");
            std::process::exit(EXIT_CONFIG);
        }
        let exp = (shared::clock::now_ms() / 1000) as u64 + ttl.as_secs();
        println!("{}", shared::auth::Authenticator::new(&secret).mint(&user, exp));
        return;
    }
    if let Err(e) = serve(cli.settings, &secret).await {
        tracing::error!("{}", shared::process::describe(e.as_ref()));
        std::process::exit(1);
    }
}

/// Parses flags and environment; an invalid setting stops the start with
/// clap's message, which names the setting, and exit status 64.
fn parse_or_exit() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            std::process::exit(EXIT_CONFIG);
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            std::process::exit(0);
        }
    }
}

/// Cluster mode needs the secret every node shares, and PostgreSQL;
/// standalone makes its own secret if none is given.
fn secret(settings: &Settings) -> anyhow::Result<Vec<u8>> {
    if settings.cluster.redis_url.is_none() {
        return gateway::secret::standalone_secret(settings.jwt_secret.as_deref(), &settings.data_dir);
    }
    let Some(secret) = settings.jwt_secret.as_deref().filter(|s| !s.is_empty()) else {
        anyhow::bail!("cluster mode (REDIS_URL is set) requires JWT_SECRET, shared by every gateway");
    };
    if !settings.database_url.as_deref().is_some_and(shared::config::is_postgres_url) {
        anyhow::bail!("cluster mode (REDIS_URL is set) requires a postgres:// (or postgresql://) DATABASE_URL");
    }
    Ok(secret.as_bytes().to_vec())
}

async fn serve(settings: Settings, secret: &[u8]) -> anyhow::Result<()> {
    // Every connection is a file: take the whole allowance the system grants.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open files allowed"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let listener = gateway::server::listen(settings.listen)
        .with_context(|| format!("cannot listen on {} (LISTEN_ADDR, --listen)", settings.listen))?;
    let address = listener.local_addr()?;
    let database = shared::config::redact_url(&settings.database_url());
    let mode = if settings.cluster.redis_url.is_some() {
        "cluster: Redis bus, separate workers"
    } else {
        "standalone: in-process bus, embedded worker"
    };
    let node = Node::start(settings, secret, shared::telemetry::Telemetry::get()).await?;
    tracing::info!(node = %node.id, %database, "{mode}");
    tracing::info!("listening on http://{address} (WebSocket at ws://{address}/ws)");
    tracing::info!("get a token with: cargo run --release -p gateway -- token --user alice");
    gateway::server::run(listener, node, shared::process::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
