//! The load tool, in small, against a real standalone gateway over real
//! WebSockets: a reconnect storm must come back exact, and the report must
//! be able to say so.

use std::process::Stdio;

use clap::Parser;
use gateway::config::Cli;
use gateway::node::Node;
use serde_json::Value;

const SECRET: &str = "loadtest-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_comes_back_with_every_event_once_and_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Cli::parse_from(["gateway"]).settings;
    settings.listen = "127.0.0.1:0".parse().expect("addr");
    settings.data_dir = dir.path().display().to_string();
    settings.database_url = Some(format!("sqlite://{}/chat.db", dir.path().display()));
    let listener = gateway::server::listen(settings.listen).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let node = Node::standalone(settings, SECRET.as_bytes(), shared::telemetry::Telemetry::get()).await.expect("node");
    let server = tokio::spawn(gateway::server::run(listener, node, std::future::pending()));

    let report = dir.path().join("report.json");
    let charts = dir.path().join("charts");
    let ran = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["run", "reconnect", "--connections", "60", "--group-size", "10", "--rate", "300", "--duration", "4"])
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
    server.abort();

    let report: Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON report");
    let counters = &report["counters"];
    assert_eq!(counters["connected"], 120, "each client connected before the storm and after: {counters}");
    assert_eq!(counters["synced"], 60, "each came back with a sync that was answered: {counters}");
    let acked = counters["acked"].as_u64().expect("acked");
    assert!(acked > 0, "messages were sent: {counters}");
    assert_eq!(counters["sent"], acked, "every send was acked, retried ones included: {counters}");
    assert_eq!(report["expected_deliveries"], acked * 10);
    assert_eq!(
        counters["deliveries"], report["expected_deliveries"],
        "each message reached each member once: {counters}"
    );
    for count in ["duplicates", "out_of_order", "filled_in", "never_arrived", "errors", "connect_failures"] {
        assert_eq!(counters[count], 0, "{count}: {counters}");
    }
    assert!(charts.join("latency.png").exists() && charts.join("throughput.png").exists(), "the charts were drawn");
}
