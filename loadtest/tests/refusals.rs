//! A run that cannot measure what was asked says why and fails, rather
//! than ending with figures that look like a result.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_that_do_not_divide_the_connections_are_refused_before_connecting() {
    let gateway = common::gateway(|_| {}).await;
    let args = ["fanout", "--connections", "25", "--group-size", "10", "--rate", "20", "--duration", "1"];
    let (said, report) = common::run_failing(&gateway, &args).await;
    assert!(said.contains("must be a multiple of --group-size"), "{said}");
    assert!(report.is_none(), "nothing ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_refused_by_the_server_fail_the_run_and_say_why() {
    let gateway = common::gateway(|_| {}).await;
    let args = ["idle", "--connections", "5", "--duration", "1", "--jwt-secret", "not-the-servers-secret"];
    let (said, report) = common::run_failing(&gateway, &args).await;
    assert!(said.contains("5 connection(s) failed to open"), "{said}");
    assert!(said.contains("401"), "the server's answer is named: {said}");
    let report = report.expect("the report of what was measured");
    assert_eq!(report["counters"]["connect_failures"], 5, "{report}");
}

/// Silent clients whose `offline` never comes (the server's heartbeat
/// timeout is longer than the run) are counted and fail the run; with the
/// server's timeout, every one comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_run_counts_the_offlines_that_came() {
    // Watchers ping four times per timeout: a stalled machine must not
    // have them closed too.
    let args = ["silent", "--connections", "20", "--group-size", "10", "--ping-ms", "500", "--duration", "4"];
    let quick = common::gateway(|settings| settings.heartbeat_timeout_ms = 2000).await;
    let (report, _) = common::run(&quick, &[&args[..], &["--heartbeat-timeout-ms", "2000"]].concat()).await;
    let counters = &report["counters"];
    assert_eq!((&counters["silent"], &counters["silent_offline"]), (&18.into(), &18.into()), "{counters}");
    // Closed by the heartbeat, with its code (4000).
    assert_eq!(counters["closes"], serde_json::json!({"4000": 18}), "{counters}");

    let slow = common::gateway(|_| {}).await;
    let (said, report) = common::run_failing(&slow, &[&args[..], &["--heartbeat-timeout-ms", "2000"]].concat()).await;
    assert!(said.contains("18 of 18 silent clients' offline never came"), "{said}");
    assert_eq!(report.expect("report")["counters"]["silent_offline"], 0);
}

/// A server whose heartbeat timeout is shorter than the run was told closes
/// silent clients before the deadline the run times from: each `offline`
/// would time as 0, a perfect result. The run counts them early and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offlines_before_the_deadline_fail_a_silent_run() {
    let args = ["silent", "--connections", "20", "--group-size", "10", "--ping-ms", "250", "--duration", "6"];
    let quick = common::gateway(|settings| settings.heartbeat_timeout_ms = 1000).await;
    let (said, report) = common::run_failing(&quick, &[&args[..], &["--heartbeat-timeout-ms", "4000"]].concat()).await;
    assert!(said.contains("18 silent clients' offline came before their deadline"), "{said}");
    assert_eq!(report.expect("report")["counters"]["silent_offline_early"], 18);
}
