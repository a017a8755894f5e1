//! A scenario that asks more of a connection than the gateway allows: the
//! report counts the sends refused as `rate_limited`, stays exact about the
//! rest, and the run fails, since the load applied is not the load asked.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_past_the_gateways_allowance_are_counted_as_rate_limited() {
    let gateway = common::gateway(|settings| {
        settings.command_rate = 5;
        settings.command_burst = 5;
    })
    .await;
    // Ten connections at 200 messages a second: 20 each, four times the allowance.
    let args = ["fanout", "--connections", "10", "--group-size", "10", "--rate", "200", "--duration", "2"];
    let (said, report) = common::run_failing(&gateway, &args).await;
    assert!(said.contains("rate_limited: the load applied is not the load asked"), "{said}");
    let report = report.expect("the report of what was measured");

    let counters = &report["counters"];
    let count = |name: &str| counters[name].as_u64().unwrap_or_else(|| panic!("{name}: {counters}"));
    assert!(count("rate_limited") > count("acked"), "most sends were refused: {counters}");
    assert_eq!(count("errors"), count("rate_limited"), "no other error: {counters}");
    assert_eq!(count("sent"), count("acked") + count("rate_limited"), "each send got one answer: {counters}");
    assert_eq!(count("deliveries"), count("acked") * 10, "only what was acked was delivered: {counters}");
    for name in ["duplicates", "out_of_order", "never_arrived"] {
        assert_eq!(count(name), 0, "{name}: {counters}");
    }
}
