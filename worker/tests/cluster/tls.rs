//! Redis and PostgreSQL over TLS, as managed services offer them: the
//! processes reach servers that take nothing else, check the servers'
//! certificates, and the chat works end to end.

use std::collections::HashMap;
use std::time::Duration;

use shared::store::Store;
use testkit::process::{binary, Service};

use crate::harness::{Cluster, Options};

#[tokio::test]
async fn the_cluster_runs_on_redis_and_postgres_that_take_only_tls() {
    let cluster = Cluster::start(Options { tls: true, ..Options::default() }, 1, 1).await;
    assert!(cluster.redis_url.starts_with("rediss://localhost:"), "{}", cluster.redis_url);
    assert!(cluster.database_url.contains("sslmode=verify-full"), "{}", cluster.database_url);

    // Neither server takes a plain connection, so what works below went
    // over TLS.
    let redis_port = cluster.redis.as_ref().expect("private redis").port();
    let plain_redis = async {
        let client = redis::Client::open(format!("redis://localhost:{redis_port}"))?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut connection).await
    };
    let plain_redis = tokio::time::timeout(Duration::from_secs(5), plain_redis).await;
    assert!(!matches!(plain_redis, Ok(Ok(_))), "Redis answered a plain connection: {plain_redis:?}");
    let plain_database = cluster.database_url.replace("sslmode=verify-full", "sslmode=disable");
    let refused = Store::connect(&plain_database).await.expect_err("PostgreSQL took a plain connection");
    assert!(refused.to_string().contains("no encryption"), "refused for another reason: {refused}");

    // A message goes from one member's connection, through Redis and
    // PostgreSQL, to the other's.
    let chat = cluster.group(0, "alice", &["bob"]).await;
    assert_eq!(cluster.shard_owner(chat).await, "worker-0", "the worker holds its lease in this Redis");
    let mut alice = cluster.connect(0, "alice").await;
    let mut bob = cluster.connect(0, "bob").await;
    let ack = alice.send_message(chat, "c1", "over TLS").await;
    let new = bob.recv_type("new").await;
    assert_eq!((new["id"].clone(), new["message"].as_str()), (ack["messageId"].clone(), Some("over TLS")));

    // The certificates are checked: trusted only through SSL_CERT_FILE
    // (Redis) and sslrootcert (PostgreSQL), the test's CA is refused
    // without them.
    let without_ca = cluster.database_url.split('&').next().expect("URL").to_owned();
    assert!(without_ca.ends_with("sslmode=verify-full"), "{without_ca}");
    let refused = Store::connect(&without_ca).await.expect_err("PostgreSQL's certificate trusted without the CA");
    assert!(refused.to_string().contains("invalid peer certificate"), "refused for another reason: {refused}");
    let mut env: HashMap<String, String> =
        cluster.common_env().into_iter().filter(|(name, _)| name != "SSL_CERT_FILE").collect();
    env.insert("ADMIN_LISTEN".into(), format!("127.0.0.1:{}", testkit::free_port()));
    let mut untrusting =
        Service::spawn("worker-untrusting", &binary("worker"), &[], &env, cluster.logs.path()).expect("worker");
    let code = untrusting.wait_exit(Duration::from_secs(10)).expect("a worker that cannot reach Redis exits");
    assert_eq!(code, Some(1), "{}", untrusting.log());
    assert!(untrusting.log().contains("invalid peer certificate"), "{}", untrusting.log());
}
