//! A real standalone gateway in this process, and the load tool's binary
//! run against it over real WebSockets, for the load tool's own tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use clap::Parser;
use gateway::config::{Cli, Settings};
use gateway::node::Node;
use serde_json::Value;

const SECRET: &str = "loadtest-secret";

pub struct Gateway {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A standalone gateway with default settings but those `adjust` changes.
pub async fn gateway(adjust: impl FnOnce(&mut Settings)) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Cli::parse_from(["gateway"]).settings;
    settings.listen = "127.0.0.1:0".parse().expect("addr");
    settings.data_dir = dir.path().display().to_string();
    settings.database_url = Some(format!("sqlite://{}/chat.db", dir.path().display()));
    adjust(&mut settings);
    let listener = gateway::server::listen(settings.listen).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let node = Node::standalone(settings, SECRET.as_bytes(), shared::telemetry::Telemetry::get()).await.expect("node");
    let server = tokio::spawn(gateway::server::run(listener, node, std::future::pending()));
    Gateway { addr, dir, server }
}

/// Runs `loadtest run ARGS...` against `gateway`; returns its JSON report
/// and where it drew its charts.
pub async fn run(gateway: &Gateway, args: &[&str]) -> (Value, PathBuf) {
    let report = gateway.dir.path().join("report.json");
    let charts = gateway.dir.path().join("charts");
    let addr = gateway.addr;
    let ran = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .arg("run")
        .args(args)
        .args(["--ws-url", &format!("ws://{addr}/ws"), "--http-url", &format!("http://{addr}")])
        .args(["--jwt-secret", SECRET, "--report"])
        .arg(&report)
        .arg("--charts")
        .arg(&charts)
        .stdout(Stdio::null())
        .status()
        .await
        .expect("loadtest ran");
    assert!(ran.success(), "loadtest failed: {ran}");
    let report = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON report");
    (report, charts)
}
