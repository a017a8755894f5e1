//! A real standalone gateway in this process, and the load tool's binary
//! run against it over real WebSockets, for the load tool's own tests.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    let (report, charts) = (gateway.dir.path().join("report.json"), gateway.dir.path().join("charts"));
    let ran = loadtest(gateway, args, &report, &charts).output().await.expect("loadtest ran");
    assert!(ran.status.success(), "loadtest failed: {}: {}", ran.status, String::from_utf8_lossy(&ran.stderr));
    let report = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON report");
    (report, charts)
}

/// Runs `loadtest run ARGS...` against `gateway`, which must fail; returns
/// what it printed (summary, then errors), and its report if it wrote one.
pub async fn run_failing(gateway: &Gateway, args: &[&str]) -> (String, Option<Value>) {
    let (report, charts) = (gateway.dir.path().join("failed.json"), gateway.dir.path().join("failed-charts"));
    let ran = loadtest(gateway, args, &report, &charts).stdout(Stdio::piped()).output().await.expect("loadtest ran");
    let said = format!("{}{}", String::from_utf8_lossy(&ran.stdout), String::from_utf8_lossy(&ran.stderr));
    assert!(!ran.status.success(), "loadtest should have failed: {said}");
    let report = std::fs::read(&report).ok().map(|r| serde_json::from_slice(&r).expect("JSON report"));
    (said, report)
}

/// The command `loadtest run ARGS...` against `gateway`, writing its report
/// and charts where given; stdout discarded, stderr piped.
pub fn loadtest(gateway: &Gateway, args: &[&str], report: &Path, charts: &Path) -> tokio::process::Command {
    let addr = gateway.addr;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"));
    command
        .arg("run")
        .args(args)
        .args(["--ws-url", &format!("ws://{addr}/ws"), "--http-url", &format!("http://{addr}")])
        .arg("--report")
        .arg(report)
        .arg("--charts")
        .arg(charts)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // A test may sign with another secret than the gateway's.
    if !args.contains(&"--jwt-secret") {
        command.args(["--jwt-secret", SECRET]);
    }
    command
}
