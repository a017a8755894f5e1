//! The worker's group commit (src/group_commit.rs) against a real
//! PostgreSQL: batches waiting together are applied in one transaction,
//! each gets its own results, and a command the database refuses does not
//! take the others down with it.
//!
//! Needs `TEST_DATABASE_URL`: run through `./scripts/test`.

use std::sync::Arc;

use shared::bus::{CommandEnvelope, Origin};
use shared::model::Command;
use shared::store::{NewChat, Store};
use worker::group_commit::{GroupCommit, Hold};
use worker::processor::Results;
use worker::Processor;

async fn store() -> Store {
    let admin = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL (run ./scripts/test)");
    let url = testkit::services::fresh_database(&admin).await.expect("database");
    Store::connect(&url).await.expect("store")
}

async fn group(store: &Store) -> i64 {
    store.create_chat("alice", NewChat::group("g", ["bob"]), 1).await.map_err(|e| e.0).expect("created").chat_id
}

fn send(id: &str, chat: i64, text: &str) -> CommandEnvelope {
    CommandEnvelope {
        id: id.into(),
        origin: Origin { node: "test".into(), connection: 1, sequence: 0 },
        user: "alice".into(),
        reference: None,
        command: Command::Send {
            chat_id: chat,
            client_message_id: id.into(),
            text: text.into(),
            attachments: shared::model::Attachments::none(),
        },
        received_at: 0,
    }
}

/// (chat, message id) of each command, all applied.
fn message_ids(results: Results) -> Vec<(i64, i64)> {
    results.iter().map(|r| r.as_ref().expect("applied")).map(|o| (o.applied.chat_id, o.applied.message_id)).collect()
}

/// Each command's outcome: "applied" or its refusal's code.
fn codes(results: Results) -> Vec<&'static str> {
    results.iter().map(|r| r.as_ref().map_or_else(|refusal| refusal.code.as_str(), |_| "applied")).collect()
}

/// The test's runtime has one thread: all three requests are queued before
/// the committer runs, so it merges them.
#[tokio::test]
async fn a_refused_batch_does_not_take_the_batches_merged_with_it_down() {
    let store = store().await;
    let (one, two) = (group(&store).await, group(&store).await);
    let committer = GroupCommit::start(Processor::with_redelivery(store), Hold::NONE);
    // PostgreSQL's text cannot hold U+0000 (gateways refuse it; a stream
    // written by anything else may still carry it).
    let refused = Arc::new(vec![send("refused", one, "a\0b")]);
    let first = Arc::new(vec![send("one-1", one, "x"), send("one-2", one, "y")]);
    let second = Arc::new(vec![send("two-1", two, "z")]);
    let (refused, first, second) =
        tokio::join!(committer.apply(refused, false), committer.apply(first, false), committer.apply(second, false));
    assert_eq!(codes(refused.expect("answered")), ["internal"]);
    assert_eq!(message_ids(first.expect("applied on its own")), [(one, 1), (one, 2)]);
    assert_eq!(message_ids(second.expect("applied on its own")), [(two, 1)]);
}

/// A command whose data the database refuses is answered `internal`, and
/// the commands around it in its batch are applied, in order.
#[tokio::test]
async fn a_refused_command_is_answered_and_the_rest_of_its_batch_applied() {
    let store = store().await;
    let chat = group(&store).await;
    let committer = GroupCommit::start(Processor::with_redelivery(store), Hold::NONE);
    let batch = Arc::new(vec![send("before", chat, "x"), send("refused", chat, "a\0b"), send("after", chat, "y")]);
    let results = committer.apply(batch, false).await.expect("answered");
    let applied: Vec<(i64, i64)> =
        results.iter().flatten().map(|o| (o.applied.chat_id, o.applied.message_id)).collect();
    assert_eq!(applied, [(chat, 1), (chat, 2)], "in order, and the refused command took no id");
    assert_eq!(codes(results), ["applied", "internal", "applied"]);
}

/// Merged batches that all apply get their own results, in order.
#[tokio::test]
async fn merged_batches_get_their_own_results() {
    let store = store().await;
    let (one, two) = (group(&store).await, group(&store).await);
    let committer = GroupCommit::start(Processor::with_redelivery(store), Hold::NONE);
    let first = Arc::new(vec![send("a-1", one, "x"), send("a-2", two, "y"), send("a-3", one, "z")]);
    let second = Arc::new(vec![send("b-1", two, "w")]);
    let (first, second) = tokio::join!(committer.apply(first, false), committer.apply(second, false));
    assert_eq!(message_ids(first.expect("applied")), [(one, 1), (two, 1), (one, 2)]);
    assert_eq!(message_ids(second.expect("applied")), [(two, 2)]);
}

/// With a hold, a batch that follows a commit closely waits for company;
/// when none comes it is applied once the hold runs out (a hold that never
/// ended would hang here). Batches merged under a hold still get their own
/// results.
#[tokio::test]
async fn a_held_batch_is_applied_with_or_without_company() {
    let store = store().await;
    let (one, two) = (group(&store).await, group(&store).await);
    let hold =
        Hold { wait: std::time::Duration::from_millis(20), busy_within: std::time::Duration::from_secs(60), enough: 8 };
    let committer = GroupCommit::start(Processor::with_redelivery(store), hold);
    let first = committer.apply(Arc::new(vec![send("first", one, "x")]), false).await;
    assert_eq!(message_ids(first.expect("applied")), [(one, 1)]);
    let alone = committer.apply(Arc::new(vec![send("alone", one, "y")]), false).await;
    assert_eq!(message_ids(alone.expect("applied when the hold ran out")), [(one, 2)]);
    let held = Arc::new(vec![send("held", two, "z")]);
    let company = Arc::new(vec![send("c-1", one, "w"), send("c-2", two, "v")]);
    let (held, company) = tokio::join!(committer.apply(held, false), committer.apply(company, false));
    assert_eq!(message_ids(held.expect("applied")), [(two, 1)]);
    assert_eq!(message_ids(company.expect("applied")), [(one, 3), (two, 2)]);
}

/// A committer abandoned (by a worker giving its shards up because the
/// database stopped answering) drops the transaction in progress: a batch
/// waiting on a connection gone silent is answered `Stopped` at once, not
/// after the store's 10 s deadline, which would hold up the batches of a
/// worker that takes shards again.
#[tokio::test]
async fn an_abandoned_committer_lets_go_of_a_transaction_on_a_silent_connection() {
    let admin = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL (run ./scripts/test)");
    let (proxy, through_proxy) =
        testkit::proxy::Proxy::fresh_database_behind(&admin).await.expect("a database behind a proxy");
    let store = Store::connect(&through_proxy).await.expect("store");
    let chat = group(&store).await;
    let committer = GroupCommit::start(Processor::with_redelivery(store), Hold::NONE);
    // Used just now, the connection is taken again without a ping.
    let first = committer.apply(Arc::new(vec![send("first", chat, "one")]), false).await.expect("applied");
    assert_eq!(message_ids(first), [(chat, 1)]);

    proxy.silence_open_connections();
    let waiting = tokio::spawn({
        let committer = committer.clone();
        async move { committer.apply(Arc::new(vec![send("second", chat, "two")]), false).await }
    });
    // Abandoned once its statement went into the silence: in flight, not
    // still queued (a queued request is answered `Stopped` either way).
    let started = std::time::Instant::now();
    while proxy.bytes_dropped() == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "the statement never went out");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    committer.abandon();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(2), waiting)
        .await
        .expect("answered at once")
        .expect("the task ran");
    assert!(matches!(answer, Err(shared::store::StoreError::Stopped)), "{answer:?}");
}
