//! The receipts scenario accounts for its marks as for its sends: every
//! `dlvrd` and `read` it sends is answered, and every one acked brings its
//! event to every member.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mark_is_answered_and_its_event_reaches_every_member() {
    let gateway = common::gateway(|_| {}).await;
    let args = ["receipts", "--connections", "20", "--group-size", "10", "--rate", "40", "--duration", "2"];
    let (report, _) = common::run(&gateway, &args).await;
    let counters = &report["counters"];
    let count = |name: &str| counters[name].as_u64().unwrap_or_else(|| panic!("{name}: {counters}"));
    assert!(count("acked") > 0, "{counters}");
    // Each message is marked delivered and read by the nine other members.
    assert_eq!(count("marks_sent"), count("acked") * 9 * 2, "{counters}");
    assert_eq!((count("marks_acked"), count("marks_failed")), (count("marks_sent"), 0), "{counters}");
    assert_eq!(count("mark_events"), count("marks_acked") * 10, "{counters}");
    assert_eq!(report["expected_mark_events"], count("mark_events"), "{report}");
}
