//! A database out of reach is named by its cause. The pool retries a
//! refused connection until its deadline and then says only "pool timed
//! out"; the health check logs once, as an outage starts, what one direct
//! attempt met (`Store::why_unreachable`).
//!
//! Needs `TEST_DATABASE_URL`: run through `./scripts/test`.

use shared::store::Store;
use testkit::proxy::Proxy;

#[tokio::test]
async fn a_database_out_of_reach_is_named_by_its_cause() {
    let admin = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL (run ./scripts/test)");
    let (proxy, through_proxy) = Proxy::fresh_database_behind(&admin).await.expect("a database behind a proxy");
    let store = Store::connect(&through_proxy).await.expect("store");
    assert_eq!(store.why_unreachable().await, None, "it takes new connections");

    proxy.cut();
    let cause = store.why_unreachable().await.expect("a cause");
    assert!(!cause.is_empty() && !cause.contains("pool timed out"), "{cause}");

    proxy.mend();
    assert_eq!(store.why_unreachable().await, None, "it takes them again");
}
