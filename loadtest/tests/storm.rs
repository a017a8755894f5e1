//! The load tool, in small, against a real standalone gateway over real
//! WebSockets: a reconnect storm must come back exact, and the report must
//! be able to say so.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_comes_back_with_every_event_once_and_in_order() {
    let gateway = common::gateway(|_| {}).await;
    let args = ["reconnect", "--connections", "60", "--group-size", "10", "--rate", "300", "--duration", "4"];
    let (report, charts) = common::run(&gateway, &args).await;

    let counters = &report["counters"];
    assert_eq!(counters["connected"], 60, "each client connected before the storm: {counters}");
    assert_eq!(counters["reconnected"], 60, "and again after: {counters}");
    assert_eq!(counters["syncs_asked"], 60, "each came back with a sync: {counters}");
    assert_eq!(counters["synced"], 60, "each came back with a sync that was answered: {counters}");
    let acked = counters["acked"].as_u64().expect("acked");
    assert!(acked > 0, "messages were sent: {counters}");
    assert_eq!(counters["sent"], acked, "every send was acked, retried ones included: {counters}");
    assert_eq!(report["expected_deliveries"], acked * 10);
    assert_eq!(
        counters["deliveries"], report["expected_deliveries"],
        "each message reached each member once: {counters}"
    );
    for count in
        ["duplicates", "out_of_order", "filled_in", "never_arrived", "errors", "syncs_failed", "connect_failures"]
    {
        assert_eq!(counters[count], 0, "{count}: {counters}");
    }
    assert!(charts.join("latency.png").exists() && charts.join("throughput.png").exists(), "the charts were drawn");
}

/// Each user in three chats, sending three messages back to back, one to
/// each: across the storm every message must still reach every member of
/// its chat once, and the bursts' refs must still time their acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_over_several_chats_per_user_comes_back_exact() {
    let gateway = common::gateway(|_| {}).await;
    let args = [
        "reconnect",
        "--connections",
        "60",
        "--group-size",
        "10",
        "--chats-per-user",
        "3",
        "--burst",
        "3",
        "--rate",
        "300",
        "--duration",
        "4",
    ];
    let (report, _) = common::run(&gateway, &args).await;

    let counters = &report["counters"];
    assert_eq!(counters["syncs_asked"], 60, "each came back with a sync: {counters}");
    assert_eq!(counters["synced"], 60, "each came back with a sync that was answered: {counters}");
    let acked = counters["acked"].as_u64().expect("acked");
    assert!(acked > 0, "messages were sent: {counters}");
    assert_eq!(counters["sent"], acked, "every send was acked, retried ones included: {counters}");
    assert_eq!(counters["deliveries"], acked * 10, "each message reached each member of its chat once: {counters}");
    for count in
        ["duplicates", "out_of_order", "filled_in", "never_arrived", "errors", "syncs_failed", "connect_failures"]
    {
        assert_eq!(counters[count], 0, "{count}: {counters}");
    }
    let timed_acks = report["latency"]["send_to_ack"]["count"].as_u64().expect("ack latencies");
    assert!(timed_acks > 0, "first attempts' acks were timed: {report}");
}
