//! A run ended early, by a person or by the server under measurement,
//! still reports what it measured, says why it ended, and fails.

mod common;

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

/// Reads `child`'s stderr until a line says the measured phase runs.
async fn until_running(child: &mut tokio::process::Child) {
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = BufReader::new(stderr).lines();
    while let Some(line) = lines.next_line().await.expect("stderr") {
        if line.contains("running") {
            // Keep reading, so the child never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return;
        }
    }
    panic!("the run never reached its measured phase");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ctrl_c_ends_the_run_with_its_report_and_leaves_no_secret_behind() {
    let gateway = common::gateway(|_| {}).await;
    // Its own temporary folder, where the agents' specs go.
    let temp = gateway.dir.path().join("tmp");
    std::fs::create_dir(&temp).expect("temp");
    let (report, charts) = (gateway.dir.path().join("r.json"), gateway.dir.path().join("c"));
    let mut child = common::loadtest(&gateway, &["idle", "--connections", "10", "--duration", "60"], &report, &charts)
        .env("TMPDIR", &temp)
        .spawn()
        .expect("loadtest");
    until_running(&mut child).await;
    let pid = nix::unistd::Pid::from_raw(child.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("ends within the agents' 10 s to finish")
        .expect("status");
    assert!(!status.success(), "an interrupted run fails: {status}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    assert_eq!(report["interrupted"], true, "{report}");
    assert_eq!(report["counters"]["connected"], 10, "what it measured: {report}");
    let left: Vec<_> = std::fs::read_dir(&temp).expect("temp").flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "the agents' specs hold the JWT secret: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_process_that_exits_mid_run_ends_it_and_its_figures_are_not_reported() {
    let gateway = common::gateway(|_| {}).await;
    // Stands in for a server process to measure: this test's gateway
    // runs inside the test itself.
    let mut server = tokio::process::Command::new("sleep").arg("600").kill_on_drop(true).spawn().expect("sleep");
    let server_pid = server.id().expect("pid").to_string();
    let (report, charts) = (gateway.dir.path().join("r.json"), gateway.dir.path().join("c"));
    let args = ["idle", "--connections", "10", "--duration", "60", "--server-pid", &server_pid];
    let mut child =
        common::loadtest(&gateway, &args, &report, &charts).stdout(Stdio::piped()).spawn().expect("loadtest");
    until_running(&mut child).await;
    server.kill().await.expect("the server exits");
    let ran = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the run ends")
        .expect("output");
    let said = String::from_utf8_lossy(&ran.stdout);
    assert!(!ran.status.success(), "{said}");
    assert!(said.contains(&format!("server process {server_pid} exited during the run")), "{said}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    assert!(report["server"]["cpu_seconds_measured"].is_null(), "not measured, not zero: {report}");
    assert!(report["server"]["rss_per_connection_bytes"].is_null(), "{report}");
}
