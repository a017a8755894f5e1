use clap::Parser;
use gateway::config::{Cli, Command};
use gateway::node::Node;
use tokio::net::TcpListener;

/// Exit status for invalid configuration (EX_USAGE).
const EXIT_CONFIG: i32 = 64;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_logging(&cli.settings.log_format);
    let secret = match gateway::secret::standalone_secret(
        cli.settings.jwt_secret.as_deref(),
        &cli.settings.data_dir,
    ) {
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
        println!(
            "{}",
            shared::auth::Authenticator::new(&secret).mint(&user, exp)
        );
        return;
    }
    if let Err(e) = serve(cli.settings, &secret).await {
        tracing::error!("{e:#}");
        std::process::exit(1);
    }
}

async fn serve(settings: gateway::config::Settings, secret: &[u8]) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.listen).await?;
    let address = listener.local_addr()?;
    let database = shared::config::redact_url(&settings.database_url());
    let node = Node::standalone(settings, secret, gateway::metrics::handle()).await?;
    tracing::info!(node = %node.id, %database, "standalone: in-process bus, embedded worker");
    tracing::info!("listening on http://{address} (WebSocket at ws://{address}/ws)");
    tracing::info!("get a token with: cargo run --release -p gateway -- token --user alice");
    gateway::server::run(listener, node, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn init_logging(format: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
