//! A pooled PostgreSQL connection whose far end went away without a word
//! (a failover behind the same address, a route that dropped packets while
//! the server gave up on the connection) is replaced when it is next
//! taken, within about a second, not waited on until the taker's deadline.
//!
//! Needs `TEST_DATABASE_URL`: run through `./scripts/test`.

use std::time::Duration;

use shared::store::Store;
use testkit::proxy::Proxy;

#[tokio::test]
async fn an_idle_connection_gone_silent_is_replaced_by_a_new_one() {
    let admin = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL (run ./scripts/test)");
    let (proxy, through_proxy) = Proxy::fresh_database_behind(&admin).await.expect("a database behind a proxy");
    let store = Store::connect(&through_proxy).await.expect("store");
    assert!(store.ping_within(Duration::from_secs(2)).await, "the database answers through the proxy");

    // Idle long enough to be pinged before its next use (a connection used
    // within the last 500 ms is taken as alive).
    tokio::time::sleep(Duration::from_millis(600)).await;
    proxy.silence_open_connections();
    assert!(store.ping_within(Duration::from_secs(3)).await, "a silent idle connection held its taker");
}
