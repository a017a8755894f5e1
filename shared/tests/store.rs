//! The store against real databases: a temporary SQLite file always, and
//! PostgreSQL too when `TEST_DATABASE_URL` names one (the test command sets
//! it up; each test gets its own schema-free database by name prefix).

use serde_json::json;
use shared::error::ErrorCode;
use shared::model::{ChatEvent, ChatKind, Command, DeliveryStatus, EventKind, MarkKind};
use shared::store::{
    Checkpointed, Delivery, HistoryQuery, NewChat, Outcome, PageRequest, Retention, Store, StoreRefusal, Submitted,
};

/// A fresh SQLite store, and a fresh PostgreSQL one when `TEST_DATABASE_URL`
/// names a server: every store test runs against both.
async fn stores() -> Vec<(Store, tempfile::TempDir)> {
    stores_with_urls().await.into_iter().map(|(store, dir, _)| (store, dir)).collect()
}

/// [`stores`] with each one's URL, for a test that also looks underneath.
async fn stores_with_urls() -> Vec<(Store, tempfile::TempDir, String)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let mut stores = vec![(Store::connect(&url).await.expect("sqlite store"), dir, url)];
    if let Ok(admin) = std::env::var("TEST_DATABASE_URL") {
        let url = testkit::services::fresh_database(&admin).await.expect("a fresh database");
        let store = Store::connect(&url).await.expect("postgres store");
        assert_eq!(store.backend(), shared::store::Backend::Postgres);
        stores.push((store, tempfile::tempdir().expect("tempdir"), url));
    }
    stores
}

/// A new database gets every migration, named and in order; opening it
/// again applies none and reports the same version.
#[tokio::test]
async fn opening_a_store_says_which_migrations_it_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut urls = vec![format!("sqlite://{}/t.db", dir.path().display())];
    if let Ok(admin) = std::env::var("TEST_DATABASE_URL") {
        urls.push(testkit::services::fresh_database(&admin).await.expect("a fresh database"));
    }
    for url in urls {
        let (store, first) = Store::connect_migrated(&url).await.expect("store");
        let versions: Vec<i64> = first.applied.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=first.version).collect::<Vec<_>>(), "{url}");
        assert_eq!(first.applied[3].to_string(), "0004 chat creations");
        store.close().await;
        let (_, again) = Store::connect_migrated(&url).await.expect("store again");
        assert_eq!((again.applied.len(), again.version), (0, first.version), "{url}");
    }
}

/// The tests name commands as (user, command) pairs; each gets a fresh
/// command id here.
trait ApplyPairs {
    async fn apply_pairs(
        &self,
        batch: &[(String, Command)],
        now: i64,
    ) -> Result<Vec<Result<Outcome, shared::error::Refusal>>, shared::store::StoreError>;
}

impl ApplyPairs for Store {
    async fn apply_pairs(
        &self,
        batch: &[(String, Command)],
        now: i64,
    ) -> Result<Vec<Result<Outcome, shared::error::Refusal>>, shared::store::StoreError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let ids: Vec<String> =
            batch.iter().map(|_| format!("cmd-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))).collect();
        let submitted: Vec<Submitted> =
            batch.iter().zip(&ids).map(|((user, command), id)| Submitted { id, user, command }).collect();
        self.apply_batch(&submitted, now, Delivery::Repeat).await
    }
}

fn send(chat: i64, cid: &str, text: &str) -> Command {
    Command::Send { chat_id: chat, client_message_id: cid.into(), text: text.into(), attachments: json!([]) }
}

fn mark(chat: i64, m: i64, mark: MarkKind) -> Command {
    Command::Mark { chat_id: chat, message_id: m, mark }
}

async fn group(store: &Store, creator: &str, others: &[&str]) -> i64 {
    let request = NewChat {
        kind: ChatKind::Group,
        name: Some("g".into()),
        photo_url: None,
        members: others.iter().map(|s| s.to_string()).collect(),
        idempotency_key: None,
    };
    store.create_chat(creator, request, 1).await.map_err(|e| e.0).expect("created").chat_id
}

/// A chat creation retried under its idempotency key gets the chat the
/// first created, also when both run at once; another key, or the same
/// key of another creator, creates its own. A retry after the chat was
/// deleted is told so rather than given a new one.
#[tokio::test]
async fn a_creation_retried_under_its_idempotency_key_creates_one_chat() {
    for (store, _dir) in stores().await {
        let request = |key: &str| NewChat {
            kind: ChatKind::Group,
            name: Some("g".into()),
            photo_url: None,
            members: vec!["bob".into()],
            idempotency_key: Some(key.into()),
        };
        let (first, second) =
            tokio::join!(store.create_chat("alice", request("k1"), 1), store.create_chat("alice", request("k1"), 1));
        let (first, second) = (first.map_err(|e| e.0).expect("first"), second.map_err(|e| e.0).expect("second"));
        assert_eq!(first.chat_id, second.chat_id, "{:?}", store.backend());
        assert_ne!(first.earlier, second.earlier, "one created it, the other found it");
        assert_eq!((first.members.clone(), second.members), (vec!["alice".into(), "bob".into()], first.members));
        let later = store.create_chat("alice", request("k1"), 2).await.map_err(|e| e.0).expect("later retry");
        assert_eq!((later.chat_id, later.earlier), (first.chat_id, true));
        let restated = NewChat { members: vec!["bob".into(), "alice".into()], ..request("k1") };
        let restated = store.create_chat("alice", restated, 2).await.map_err(|e| e.0).expect("same request");
        assert_eq!((restated.chat_id, restated.earlier), (first.chat_id, true), "the creator named, or not");
        let renamed = NewChat { name: Some("h".into()), ..request("k1") };
        match store.create_chat("alice", renamed, 2).await {
            Err((StoreRefusal::Refused(refusal), None)) => assert_eq!(refusal.code, ErrorCode::Conflict, "{refusal:?}"),
            other => panic!("a key reused for another request: {other:?}"),
        }

        let other_key = store.create_chat("alice", request("k2"), 3).await.map_err(|e| e.0).expect("k2");
        let other_creator = store.create_chat("bob", request("k1"), 3).await.map_err(|e| e.0).expect("bob's k1");
        let ids = [first.chat_id, other_key.chat_id, other_creator.chat_id];
        assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2], "three chats: {ids:?}");
        assert!(!other_key.earlier && !other_creator.earlier);
        assert_eq!(store.summaries("alice").await.expect("alice's chats").len(), 2, "k1's once, and k2's");

        // One key, two different requests at once: one creates, the other is refused.
        let named = |name: &str| NewChat { name: Some(name.into()), ..request("k3") };
        let (a, b) = tokio::join!(store.create_chat("alice", named("a"), 5), store.create_chat("alice", named("b"), 5));
        let refused = |r: &Result<_, (StoreRefusal, _)>| matches!(r, Err((StoreRefusal::Refused(refusal), None)) if refusal.code == ErrorCode::Conflict);
        assert!(a.is_ok() != b.is_ok() && (refused(&a) || refused(&b)), "{a:?} {b:?}");

        store.delete_chat(first.chat_id, "alice").await.expect("deleted");
        match store.create_chat("alice", request("k1"), 4).await {
            Err((StoreRefusal::Refused(refusal), None)) => assert_eq!(refusal.code, ErrorCode::NotFound, "{refusal:?}"),
            other => panic!("a retry after the chat was deleted: {other:?}"),
        }
    }
}

/// A key stored by a binary older than the request digest (no digest) is
/// not compared: a retry under it gets its chat whatever it asks.
#[tokio::test]
async fn a_key_stored_without_a_digest_is_not_compared() {
    for (store, _dir, url) in stores_with_urls().await {
        let request = |name: &str| NewChat {
            kind: ChatKind::Group,
            name: Some(name.into()),
            photo_url: None,
            members: vec!["bob".into()],
            idempotency_key: Some("old".into()),
        };
        let first = store.create_chat("alice", request("g"), 1).await.map_err(|e| e.0).expect("created");
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
        sqlx::query("UPDATE chat_creations SET request_digest = NULL").execute(&mut conn).await.expect("forgotten");
        let retry = store.create_chat("alice", request("renamed"), 2).await.map_err(|e| e.0).expect("answered");
        assert_eq!((retry.chat_id, retry.earlier), (first.chat_id, true));
    }
}

#[tokio::test]
async fn ids_are_consecutive_and_retries_are_idempotent() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let batch = vec![
            ("alice".to_string(), send(chat, "c1", "one")),
            ("bob".to_string(), send(chat, "c1", "two")),
            ("alice".to_string(), send(chat, "c1", "again")),
        ];
        let results = store.apply_pairs(&batch, 10).await.expect("applied");
        let first = results[0].as_ref().expect("ok");
        let second = results[1].as_ref().expect("ok");
        let retry = results[2].as_ref().expect("ok");
        assert_eq!((first.applied.message_id, first.events[0].id), (1, 1));
        assert_eq!((second.applied.message_id, second.events[0].id), (2, 2));
        assert_eq!(retry.applied.message_id, 1, "same clientMessageId, same message");
        assert!(retry.events.is_empty(), "a retry broadcasts nothing");
        let outsider = store.apply_pairs(&[("eve".to_string(), send(chat, "x", "hi"))], 11).await.expect("ran");
        assert_eq!(outsider[0].as_ref().expect_err("refused").code, ErrorCode::Forbidden);
        let unknown = store.apply_pairs(&[("eve".to_string(), send(999, "x", "hi"))], 11).await.expect("ran");
        assert_eq!(unknown[0].as_ref().expect_err("refused").code, ErrorCode::NotFound);
    }
}

/// A `new` applied on its own (not in a run): a retry gets the first reply,
/// broadcasts nothing and leaves no gap in the ids.
#[tokio::test]
async fn a_single_retried_new_keeps_its_reply_and_the_ids_consecutive() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let first = store.apply_pairs(&[("alice".into(), send(chat, "c1", "one"))], 10).await.expect("applied");
        let retry = store.apply_pairs(&[("alice".into(), send(chat, "c1", "one"))], 20).await.expect("applied");
        let next = store.apply_pairs(&[("bob".into(), send(chat, "c1", "two"))], 30).await.expect("applied");
        let (first, retry, next) =
            (first[0].as_ref().expect("ok"), retry[0].as_ref().expect("ok"), next[0].as_ref().expect("ok"));
        assert_eq!((first.applied.message_id, first.events[0].id), (1, 1));
        assert_eq!(retry.applied, first.applied, "the first reply, timestamp included");
        assert!(retry.events.is_empty(), "a retry broadcasts nothing");
        assert_eq!((next.applied.message_id, next.events[0].id), (2, 2), "no gap after the retry");
    }
}

/// A `new` whose text and attachments hold zeros under the names of the
/// fields PostgreSQL splices ids into (store/first_sends.rs), where only
/// the top-level keys may match.
fn send_with_zeros_inside(chat_id: i64, cid: &str) -> Command {
    Command::Send {
        chat_id,
        client_message_id: cid.into(),
        text: r#""id":0,"message_id":0"#.into(),
        attachments: json!([{"id": 0, "message_id": 0}]),
    }
}

/// Each result as (message id, event ids), or its refusal's code.
fn ids(results: &[Result<Outcome, shared::error::Refusal>]) -> Vec<Result<(i64, Vec<i64>), ErrorCode>> {
    results
        .iter()
        .map(|r| {
            r.as_ref().map(|o| (o.applied.message_id, o.events.iter().map(|e| e.id).collect())).map_err(|e| e.code)
        })
        .collect()
}

/// A batch of one `new` handed out for the first time is one statement on
/// PostgreSQL (store/first_sends.rs), which splices the ids it allocates into
/// the event and the record: what it stores must be what it replies and
/// publishes, and what it leaves to the general path (a retry, a refusal)
/// must be answered as before.
#[tokio::test]
async fn a_lone_first_new_is_stored_and_recorded_like_any_other() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let send = send_with_zeros_inside;
        let (first_send, retry_send, next_send) = (send(chat, "c1"), send(chat, "c1"), send(chat, "c2"));
        let lone = |id, user, command| [Submitted { id, user, command }];
        let first = store.apply_batch(&lone("lone-1", "alice", &first_send), 10, Delivery::First).await.expect("ran");
        let outcome = first[0].as_ref().expect("ok");
        assert_eq!((outcome.applied.message_id, outcome.events[0].id), (1, 1));
        let page = store.events_after(chat, "bob", 0, 100).await.expect("log");
        assert_eq!(page.events, outcome.events, "the stored event is the one published");
        let again = store.apply_batch(&lone("lone-1", "alice", &first_send), 20, Delivery::Repeat).await;
        assert_eq!(again.expect("ran"), first, "the record answers its redelivery");
        let retry = store.apply_batch(&lone("lone-2", "alice", &retry_send), 30, Delivery::First).await.expect("ran");
        let retry = retry[0].as_ref().expect("ok");
        assert_eq!(retry.applied, outcome.applied, "a retry gets the first reply");
        assert!(retry.events.is_empty(), "a retry broadcasts nothing");
        let outsider = store.apply_batch(&lone("lone-3", "eve", &next_send), 40, Delivery::First).await.expect("ran");
        assert_eq!(outsider[0].as_ref().expect_err("refused").code, ErrorCode::Forbidden);
        let elsewhere = send(999, "c3");
        let unknown = store.apply_batch(&lone("lone-4", "bob", &elsewhere), 40, Delivery::First).await.expect("ran");
        assert_eq!(unknown[0].as_ref().expect_err("refused").code, ErrorCode::NotFound);
        let next = store.apply_batch(&lone("lone-5", "bob", &next_send), 50, Delivery::First).await.expect("ran");
        let next = next[0].as_ref().expect("ok");
        assert_eq!((next.applied.message_id, next.events[0].id), (2, 2), "no gap after the retry and refusals");
        let page = store.events_after(chat, "bob", 0, 100).await.expect("log");
        assert_eq!(page.events[1..], next.events[..]);
    }
}

/// A batch of only `new`s handed out for the first time is one statement
/// on PostgreSQL (store/first_sends.rs): ids per chat in batch order, and
/// stored what was replied and published. A batch holding a retry, a twin
/// or a refusal takes the general path, untouched by the attempt.
#[tokio::test]
async fn a_first_batch_of_only_sends_is_stored_and_recorded_like_any_other() {
    for (store, _dir) in stores().await {
        let a = group(&store, "alice", &["bob"]).await;
        let b = group(&store, "bob", &["carol"]).await;
        let send = send_with_zeros_inside;
        let commands = [send(a, "a1"), send(b, "b1"), send(a, "a2"), send(b, "b2")];
        let senders = [("many-1", "alice"), ("many-2", "bob"), ("many-3", "bob"), ("many-4", "carol")];
        let batch: Vec<Submitted> =
            commands.iter().zip(senders).map(|(command, (id, user))| Submitted { id, user, command }).collect();
        let first = store.apply_batch(&batch, 10, Delivery::First).await.expect("ran");
        assert_eq!(ids(&first), vec![Ok((1, vec![1])), Ok((1, vec![1])), Ok((2, vec![2])), Ok((2, vec![2]))]);
        let published = |chat| -> Vec<ChatEvent> {
            first.iter().flat_map(|r| r.as_ref().expect("ok").events.clone()).filter(|e| e.chat_id == chat).collect()
        };
        assert_eq!(store.events_after(a, "bob", 0, 100).await.expect("log").events, published(a));
        assert_eq!(store.events_after(b, "carol", 0, 100).await.expect("log").events, published(b));
        let again = store.apply_batch(&batch, 20, Delivery::Repeat).await.expect("ran");
        assert_eq!(again, first, "the records answer the redelivery");

        let commands = [send(a, "a3"), send(a, "a1"), send(a, "a3"), send(b, "x"), send(b, "b3")];
        let senders =
            [("mixed-1", "bob"), ("mixed-2", "alice"), ("mixed-3", "bob"), ("mixed-4", "alice"), ("mixed-5", "bob")];
        let batch: Vec<Submitted> =
            commands.iter().zip(senders).map(|(command, (id, user))| Submitted { id, user, command }).collect();
        let mixed = store.apply_batch(&batch, 30, Delivery::First).await.expect("ran");
        assert_eq!(
            ids(&mixed),
            vec![Ok((3, vec![3])), Ok((1, vec![])), Ok((3, vec![])), Err(ErrorCode::Forbidden), Ok((3, vec![3]))]
        );
        let retry = mixed[1].as_ref().expect("ok");
        assert_eq!(retry.applied, first[0].as_ref().expect("ok").applied, "a retry gets the first reply");

        let commands = [send(a, "a4"), send(a, "a5")];
        let batch: Vec<Submitted> = commands
            .iter()
            .zip([("next-1", "alice"), ("next-2", "bob")])
            .map(|(command, (id, user))| Submitted { id, user, command })
            .collect();
        let next = store.apply_batch(&batch, 40, Delivery::First).await.expect("ran");
        assert_eq!(ids(&next), vec![Ok((4, vec![4])), Ok((5, vec![5]))], "no gap after the general path");
        let log = store.events_after(a, "bob", 0, 100).await.expect("log");
        assert_eq!(
            log.events.iter().map(|e| (e.id, e.message_id)).collect::<Vec<_>>(),
            [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]
        );
    }
}

/// A batch's consecutive `new`s are applied together (store/sends.rs); what
/// each gets must be what it would get alone, in order.
#[tokio::test]
async fn a_run_of_sends_gets_what_each_would_get_alone() {
    for (store, _dir) in stores().await {
        let a = group(&store, "alice", &["bob"]).await;
        let b = group(&store, "bob", &["carol"]).await;
        store.apply_pairs(&[("alice".into(), send(a, "old", "stored before"))], 5).await.expect("applied");
        let edit = Command::Edit { chat_id: a, message_id: 2, text: "edited".into(), attachments: json!([]) };
        let batch: Vec<(String, Command)> = vec![
            ("alice".into(), send(a, "a1", "new in a")),
            ("bob".into(), send(b, "b1", "new in b")),
            ("alice".into(), send(a, "old", "retry of a stored one")),
            ("carol".into(), send(a, "x", "not a member")),
            ("bob".into(), send(a, "a2", "second new in a")),
            ("alice".into(), send(a, "a1", "retry within the run")),
            ("bob".into(), send(999, "y", "no such chat")),
            ("carol".into(), send(b, "b2", "second new in b")),
            // Ends the run, and must find the message the run stored.
            ("alice".into(), edit),
        ];
        let results = store.apply_pairs(&batch, 10).await.expect("applied");
        assert_eq!(
            ids(&results),
            vec![
                Ok((2, vec![2])),
                Ok((1, vec![1])),
                Ok((1, vec![])),
                Err(ErrorCode::Forbidden),
                Ok((3, vec![3])),
                Ok((2, vec![])),
                Err(ErrorCode::NotFound),
                Ok((2, vec![2])),
                Ok((2, vec![4])),
            ]
        );
        let log = |chat| {
            let store = store.clone();
            async move {
                let page = store.events_after(chat, "bob", 0, 100).await.expect("log");
                page.events.iter().map(|e| (e.id, e.message_id)).collect::<Vec<_>>()
            }
        };
        assert_eq!(log(a).await, vec![(1, 1), (2, 2), (3, 3), (4, 2)]);
        assert_eq!(log(b).await, vec![(1, 1), (2, 2)]);
        let history = store.messages(a, "bob", HistoryQuery::default()).await.expect("history");
        let mut texts: Vec<(i64, &str)> = history.iter().map(|m| (m.message_id, m.text.as_str())).collect();
        texts.sort();
        assert_eq!(texts, [(1, "stored before"), (2, "edited"), (3, "second new in a")]);
        let next = store.apply_pairs(&[("bob".into(), send(a, "a3", "next"))], 11).await.expect("applied");
        let next = next[0].as_ref().expect("ok");
        assert_eq!((next.applied.message_id, next.events[0].id), (4, 5), "the counters continue after the run");
    }
}

/// A `new` and its edit: a batch whose second application would show if
/// it were applied again, the edit then changing nothing and answered
/// without its event.
fn send_and_fix(chat: i64) -> [Command; 2] {
    let edit = Command::Edit { chat_id: chat, message_id: 1, text: "fixed".into(), attachments: json!([]) };
    [send(chat, "c1", "typo"), edit]
}

/// `commands` sent by alice under the command ids `ids`.
fn by_alice<'a>(commands: &'a [Command; 2], ids: [&'a str; 2]) -> Vec<Submitted<'a>> {
    commands.iter().zip(ids).map(|(command, id)| Submitted { id, user: "alice", command }).collect()
}

#[tokio::test]
async fn a_redelivered_command_is_answered_from_its_record() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let commands = send_and_fix(chat);
        let batch = by_alice(&commands, ["redeliver-1", "redeliver-2"]);
        let first = store.apply_batch(&batch, 10, Delivery::Repeat).await.expect("applied");
        let again = store.apply_batch(&batch, 20, Delivery::Repeat).await.expect("applied again");
        assert_eq!(first, again, "same replies, same events (to publish again)");
        let page = store.events_after(chat, "alice", 0, 100).await.expect("log");
        assert_eq!(page.events.len(), 2, "applied once");
        assert_eq!(page.last_event_id, 2);
    }
}

/// An edit that changes nothing (say, one resent after its ack was lost)
/// is acknowledged as of when the message got that content, with no event;
/// attachments compare as JSON, whatever the order of their keys.
#[tokio::test]
async fn an_edit_that_changes_nothing_makes_no_event() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let edit = |text: &str, attachments: serde_json::Value| {
            ("alice".to_string(), Command::Edit { chat_id: chat, message_id: 1, text: text.into(), attachments })
        };
        store.apply_pairs(&[("alice".into(), send(chat, "c1", "hello"))], 10).await.expect("sent")[0]
            .as_ref()
            .expect("acked");
        let results = store
            .apply_pairs(
                &[
                    edit("hello", json!([])),
                    edit("fixed", json!([{"url": "a", "size": 1}])),
                    edit("fixed", json!([{"size": 1, "url": "a"}])),
                    edit("fixed", json!([])),
                ],
                20,
            )
            .await
            .expect("applied");
        let answers: Vec<(i64, usize)> =
            results.iter().map(|r| r.as_ref().map(|o| (o.applied.timestamp, o.events.len())).expect("acked")).collect();
        assert_eq!(answers, [(10, 0), (20, 1), (20, 0), (20, 1)], "as sent; changed; unchanged; attachments changed");
        let later = store.apply_pairs(&[edit("fixed", json!([]))], 30).await.expect("applied");
        let later = later[0].as_ref().expect("acked");
        assert_eq!((later.applied.timestamp, later.events.len()), (20, 0), "the time of the last edit");
        let page = store.events_after(chat, "alice", 0, 100).await.expect("log");
        assert_eq!(page.last_event_id, 3, "new and two edits: {:?}", page.events);
    }
}

/// A first delivery skips the look-up but is recorded, so that its
/// redelivery is still answered from the record.
#[tokio::test]
async fn a_first_delivery_is_recorded_for_its_redelivery() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let commands = send_and_fix(chat);
        let batch = by_alice(&commands, ["first-1", "first-2"]);
        let first = store.apply_batch(&batch, 10, Delivery::First).await.expect("applied");
        let again = store.apply_batch(&batch, 20, Delivery::Repeat).await.expect("applied again");
        assert_eq!(first, again, "same replies, same events (to publish again)");
        let page = store.events_after(chat, "alice", 0, 100).await.expect("log");
        assert_eq!(page.events.len(), 2, "applied once: {:?}", page.events);
    }
}

/// Should a command taken for a first delivery have been applied before,
/// its record's key refuses the batch (nothing of it is committed), and the
/// batch retried as a redelivery is answered from the record.
#[tokio::test]
async fn a_recorded_command_taken_for_new_fails_the_batch_instead_of_applying_twice() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let commands = send_and_fix(chat);
        let batch = by_alice(&commands, ["twice-1", "twice-2"]);
        let first = store.apply_batch(&batch, 10, Delivery::First).await.expect("applied");
        let refused = store.apply_batch(&batch, 20, Delivery::First).await;
        assert!(refused.is_err(), "the record's key refuses it: {refused:?}");
        let page = store.events_after(chat, "alice", 0, 100).await.expect("log");
        assert_eq!(page.events.len(), 2, "nothing of the refused batch stays: {:?}", page.events);
        let retried = store.apply_batch(&batch, 30, Delivery::Repeat).await.expect("retried");
        assert_eq!(first, retried);
    }
}

#[tokio::test]
async fn a_command_queued_twice_in_one_batch_is_applied_once() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let commands = [send(chat, "c1", "hello")];
        let edit = Command::Edit { chat_id: chat, message_id: 1, text: "edited".into(), attachments: json!([]) };
        let batch = [
            Submitted { id: "twin-send", user: "alice", command: &commands[0] },
            Submitted { id: "twin-edit", user: "alice", command: &edit },
            Submitted { id: "twin-edit", user: "alice", command: &edit },
        ];
        let results = store.apply_batch(&batch, 10, Delivery::Repeat).await.expect("applied");
        assert_eq!(results[1], results[2], "the twin is answered like the first");
        let page = store.events_after(chat, "alice", 0, 100).await.expect("log");
        assert_eq!(page.events.len(), 2, "one new, one edit: {:?}", page.events);
    }
}

#[tokio::test]
async fn marks_change_status_receipts_and_missed() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob", "carol"]).await;
        let sends: Vec<_> = (1..=10).map(|i| ("alice".to_string(), send(chat, &format!("c{i}"), "m"))).collect();
        store.apply_pairs(&sends, 100).await.expect("sent");
        let r = store.apply_pairs(&[("bob".to_string(), mark(chat, 5, MarkKind::Delivered))], 200).await.expect("ok");
        assert_eq!(r[0].as_ref().expect("ok").events.len(), 1);
        let r = store.apply_pairs(&[("bob".to_string(), mark(chat, 8, MarkKind::Read))], 300).await.expect("ok");
        let events = &r[0].as_ref().expect("ok").events;
        assert_eq!(events.len(), 2, "read above delivered marks both");
        assert_eq!(events[0].kind, EventKind::Mark { mark: MarkKind::Delivered });
        assert_eq!(events[1].kind, EventKind::Mark { mark: MarkKind::Read });
        let r = store.apply_pairs(&[("bob".to_string(), mark(chat, 3, MarkKind::Read))], 400).await.expect("ok");
        assert!(r[0].as_ref().expect("ok").events.is_empty(), "below the mark: no event");
        let r = store.apply_pairs(&[("bob".to_string(), mark(chat, 11, MarkKind::Read))], 400).await.expect("ok");
        assert_eq!(r[0].as_ref().expect_err("refused").code, ErrorCode::BadRequest);

        let receipts = store.receipts(chat, "carol", 4).await.expect("receipts");
        let bob = receipts.iter().find(|r| r.user_id == "bob").expect("bob");
        assert_eq!((bob.delivered_at, bob.read_at), (Some(200), Some(300)));
        let receipts = store.receipts(chat, "carol", 7).await.expect("receipts");
        let bob = receipts.iter().find(|r| r.user_id == "bob").expect("bob");
        assert_eq!((bob.delivered_at, bob.read_at), (Some(300), Some(300)));
        let carol = receipts.iter().find(|r| r.user_id == "carol").expect("carol");
        assert_eq!((carol.delivered_at, carol.read_at), (None, None));
        assert!(receipts.iter().all(|r| r.user_id != "alice"), "the author has no receipt");

        store.apply_pairs(&[("carol".to_string(), mark(chat, 6, MarkKind::Delivered))], 500).await.expect("ok");
        let page = store.messages(chat, "alice", HistoryQuery::default()).await.expect("history");
        assert_eq!(page.len(), 10);
        assert_eq!(page[4].status, DeliveryStatus::Delivered);
        assert_eq!(page[4].read_members, vec!["bob".to_string()]);
        assert_eq!(page[6].status, DeliveryStatus::Sent);
        assert_eq!(page[6].delivered_members, vec!["bob".to_string()]);

        let bob_view = store.summary(chat, "bob").await.expect("ok").expect("member");
        assert_eq!(bob_view.missed, 2);
        assert_eq!(bob_view.last_message_status, Some(DeliveryStatus::Sent));
        assert!(!bob_view.is_mine);
        let alice_view = store.summary(chat, "alice").await.expect("ok").expect("member");
        assert!(alice_view.is_mine);
        assert_eq!(alice_view.missed, 0);
        assert_eq!(alice_view.last_event_id, 14);
    }
}

/// A command's reply as the mark tests compare it: its events' (id,
/// message id, kind), or the refusal's code.
type Shape = Result<Vec<(i64, i64, EventKind)>, ErrorCode>;

/// A batch's consecutive marks are applied together (store/mark_runs.rs):
/// the same commands applied one batch each must give the same replies,
/// events and receipts.
#[tokio::test]
async fn a_run_of_marks_gets_what_each_would_get_alone() {
    for (store, _dir) in stores().await {
        // Two identical pairs of chats: one gets the marks as one batch, the
        // other one command per batch.
        let mut setups = Vec::new();
        for _ in 0..2 {
            let group_chat = group(&store, "alice", &["bob", "carol"]).await;
            let other_chat = group(&store, "bob", &["carol"]).await;
            let mut sends: Vec<(String, Command)> =
                (1..=10).map(|i| ("alice".to_string(), send(group_chat, &format!("c{i}"), "m"))).collect();
            sends.extend((1..=2).map(|i| ("bob".to_string(), send(other_chat, &format!("o{i}"), "m"))));
            store.apply_pairs(&sends, 100).await.expect("sent");
            setups.push((group_chat, other_chat));
        }
        let marks = |(g, o): (i64, i64)| -> Vec<(String, Command)> {
            vec![
                ("bob".into(), mark(g, 5, MarkKind::Delivered)),
                ("bob".into(), mark(g, 8, MarkKind::Read)),
                ("bob".into(), mark(g, 3, MarkKind::Read)),
                ("carol".into(), mark(o, 2, MarkKind::Delivered)),
                ("carol".into(), mark(g, 6, MarkKind::Delivered)),
                ("eve".into(), mark(g, 1, MarkKind::Read)),
                ("bob".into(), mark(g, 11, MarkKind::Read)),
                ("bob".into(), mark(999, 1, MarkKind::Delivered)),
                ("carol".into(), mark(g, 2, MarkKind::Read)),
            ]
        };
        let together = store.apply_pairs(&marks(setups[0]), 200).await.expect("applied");
        let mut alone = Vec::new();
        for command in marks(setups[1]) {
            alone.extend(store.apply_pairs(&[command], 200).await.expect("applied"));
        }
        let shape = |results: &[Result<Outcome, shared::error::Refusal>]| -> Vec<Shape> {
            results
                .iter()
                .map(|r| {
                    r.as_ref()
                        .map(|o| o.events.iter().map(|e| (e.id, e.message_id, e.kind.clone())).collect())
                        .map_err(|e| e.code)
                })
                .collect()
        };
        assert_eq!(shape(&together), shape(&alone));
        let delivered = EventKind::Mark { mark: MarkKind::Delivered };
        let read = EventKind::Mark { mark: MarkKind::Read };
        assert_eq!(
            shape(&together),
            vec![
                Ok(vec![(11, 5, delivered.clone())]),
                Ok(vec![(12, 8, delivered.clone()), (13, 8, read.clone())]),
                Ok(vec![]),
                Ok(vec![(3, 2, delivered.clone())]),
                Ok(vec![(14, 6, delivered.clone())]),
                Err(ErrorCode::Forbidden),
                Err(ErrorCode::BadRequest),
                Err(ErrorCode::NotFound),
                Ok(vec![(15, 2, read.clone())]),
            ]
        );
        for (setup_a, setup_b) in [(setups[0].0, setups[1].0), (setups[0].1, setups[1].1)] {
            for message in [1, 2, 6, 8] {
                let a = store.receipts(setup_a, "bob", message).await;
                let b = store.receipts(setup_b, "bob", message).await;
                let view = |r: Result<Vec<shared::model::Receipt>, StoreRefusal>| {
                    r.map(|rs| rs.into_iter().map(|r| (r.user_id, r.delivered_at, r.read_at)).collect::<Vec<_>>())
                        .map_err(|_| ())
                };
                assert_eq!(view(a), view(b), "receipts of message {message}");
            }
        }
        let next = store.apply_pairs(&[("carol".into(), mark(setups[0].0, 9, MarkKind::Read))], 300).await.expect("ok");
        let ids: Vec<i64> = next[0].as_ref().expect("ok").events.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![16, 17], "counters and marks continue after the run");
    }
}

#[tokio::test]
async fn edit_delete_rules_and_sync_with_retention() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        store.apply_pairs(&[("alice".to_string(), send(chat, "c1", "secret"))], 1).await.expect("ok");
        let edit = |user: &str, text: &str| {
            (
                user.to_string(),
                Command::Edit { chat_id: chat, message_id: 1, text: text.into(), attachments: json!([]) },
            )
        };
        let del = |user: &str| (user.to_string(), Command::Delete { chat_id: chat, message_id: 1 });
        let r = store
            .apply_pairs(
                &[
                    edit("bob", "x"),
                    edit("alice", "edited"),
                    del("bob"),
                    del("alice"),
                    del("alice"),
                    edit("alice", "y"),
                ],
                2,
            )
            .await
            .expect("ok");
        assert_eq!(r[0].as_ref().expect_err("not author").code, ErrorCode::Forbidden);
        assert_eq!(r[1].as_ref().expect("edited").events.len(), 1);
        assert_eq!(r[2].as_ref().expect_err("not author").code, ErrorCode::Forbidden);
        assert_eq!(r[3].as_ref().expect("deleted").events.len(), 1);
        assert!(r[4].as_ref().expect("idempotent delete").events.is_empty());
        assert_eq!(r[5].as_ref().expect_err("deleted").code, ErrorCode::Conflict);

        let page = store.events_after(chat, "bob", 0, 100).await.expect("sync");
        assert_eq!(page.events.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2, 3]);
        match &page.events[0].kind {
            EventKind::New { text, .. } => {
                assert_eq!(text, "", "deleted text is redacted from the log")
            }
            other => panic!("unexpected {other:?}"),
        }
        let history = store.messages(chat, "bob", HistoryQuery::default()).await.expect("history");
        assert!(history[0].deleted && history[0].text.is_empty());

        let sends: Vec<_> = (2..=6).map(|i| ("bob".to_string(), send(chat, &format!("b{i}"), "m"))).collect();
        store.apply_pairs(&sends, 1_000).await.expect("sent");
        // Events 1..=3 at t<=2, 4..=8 at t=1000. Both windows must be
        // exceeded: recent by age keeps everything...
        store.prune(Retention { max_age_ms: 1_000_000, max_events_per_chat: 4 }, 5_000).await.expect("pruned");
        assert_eq!(store.events_after(chat, "bob", 0, 100).await.expect("all kept").events.len(), 8);
        // ...old by age: the newest 4 (5..=8) stay.
        store.prune(Retention { max_age_ms: 10, max_events_per_chat: 4 }, 5_000).await.expect("pruned");
        let gap = store.events_after(chat, "bob", 3, 100).await.expect_err("gap");
        assert!(matches!(gap, StoreRefusal::Refused(ref r) if r.code == ErrorCode::SyncGap));
        let page = store.events_after(chat, "bob", 4, 100).await.expect("no gap");
        assert_eq!(page.events.iter().map(|e| e.id).collect::<Vec<_>>(), vec![5, 6, 7, 8]);
        let ahead = store.events_after(chat, "bob", 9, 100).await.expect_err("ahead of the log");
        assert!(matches!(ahead, StoreRefusal::Refused(ref r) if r.code == ErrorCode::SyncGap));
        let page = store.events_after(chat, "bob", 8, 100).await.expect("up to date");
        assert!(page.events.is_empty());
    }
}

/// A sync page is the events after `since`, at most `limit` of them, with
/// the chat's last event id; only a member reads it, and a chat that does
/// not exist is not found (on PostgreSQL all of it comes from one
/// statement, whose rows repeat the chat's for each event).
#[tokio::test]
async fn a_sync_page_is_cut_at_its_limit_and_read_by_members_only() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let sends: Vec<_> = (1..=5).map(|i| ("alice".to_string(), send(chat, &format!("p{i}"), "m"))).collect();
        store.apply_pairs(&sends, 10).await.expect("sent");
        let ids = |page: &shared::store::SyncPage| page.events.iter().map(|e| e.id).collect::<Vec<_>>();
        let first = store.events_after(chat, "bob", 0, 2).await.expect("first page");
        assert_eq!((ids(&first), first.last_event_id), (vec![1, 2], 5));
        let next = store.events_after(chat, "bob", 2, 2).await.expect("next page");
        assert_eq!(ids(&next), vec![3, 4]);
        let last = store.events_after(chat, "bob", 4, 2).await.expect("last page");
        assert_eq!(ids(&last), vec![5]);
        let done = store.events_after(chat, "bob", 5, 2).await.expect("up to date");
        assert_eq!((ids(&done), done.last_event_id), (vec![], 5));
        let stranger = store.events_after(chat, "eve", 0, 2).await.expect_err("not a member");
        assert!(matches!(stranger, StoreRefusal::Refused(ref r) if r.code == ErrorCode::Forbidden));
        let missing = store.events_after(chat + 1_000, "bob", 0, 2).await.expect_err("no such chat");
        assert!(matches!(missing, StoreRefusal::Refused(ref r) if r.code == ErrorCode::NotFound));
    }
}

/// Many clients' sync pages read at once are each what the client's read
/// alone gives: its page, or its refusal (not a member, no such chat,
/// `since` beyond the log), in the order asked.
#[tokio::test]
async fn many_sync_pages_read_at_once_are_each_what_one_read_gives() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let other = group(&store, "carol", &["bob"]).await;
        let sends: Vec<_> = (1..=5).map(|i| ("alice".to_string(), send(chat, &format!("q{i}"), "m"))).collect();
        store.apply_pairs(&sends, 10).await.expect("sent");
        store.apply_pairs(&[("carol".to_string(), send(other, "o1", "m"))], 10).await.expect("sent");
        let asks = [
            (chat, "bob", 0),
            (other, "bob", 0),
            (chat, "bob", 3),
            (chat, "eve", 0),
            (chat + 1_000, "bob", 0),
            (chat, "alice", 9),
            (chat, "alice", 5),
        ];
        let requests: Vec<PageRequest> =
            asks.iter().map(|&(chat, user, since)| PageRequest { chat, user: user.into(), since }).collect();
        let together = store.events_after_many(&requests, 2).await.expect("read");
        assert_eq!(together.len(), asks.len());
        for (&(chat, user, since), page) in asks.iter().zip(together) {
            let alone = store.events_after(chat, user, since, 2).await.map_err(|e| match e {
                StoreRefusal::Refused(refusal) => refusal.code,
                StoreRefusal::Failed(e) => panic!("{e}"),
            });
            assert_eq!(page.map_err(|r| r.code), alone, "{user} in {chat} after {since}");
        }
        let first = store.events_after_many(&requests[..1], 2).await.expect("read one");
        assert_eq!(first[0].as_ref().expect("a page").events.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2]);
    }
}

/// The chat lists of many users read at once are each the user's own,
/// with the chats' last event ids; a user in no chat is absent.
#[tokio::test]
async fn many_users_chat_lists_read_at_once_are_each_their_own() {
    for (store, _dir) in stores().await {
        let both = group(&store, "alice", &["bob"]).await;
        let alone = group(&store, "alice", &[]).await;
        store.apply_pairs(&[("bob".to_string(), send(both, "l1", "m"))], 10).await.expect("sent");
        let lists = store.chats_of_users(&["alice", "bob", "nobody"]).await.expect("read");
        let sorted = |mut chats: Vec<(i64, i64)>| {
            chats.sort();
            chats
        };
        assert_eq!(sorted(lists["alice"].clone()), vec![(both, 1), (alone, 0)]);
        assert_eq!(lists["bob"], vec![(both, 1)]);
        assert!(!lists.contains_key("nobody"));
        let alone_read = store.chats_of_users(&["bob"]).await.expect("read alone");
        assert_eq!(alone_read["bob"], lists["bob"], "the same read alone");
    }
}

/// A message's `new` event is found through the id the message keeps
/// (migration 0003), which each way of storing a `new` must fill in; a
/// message stored by an older binary keeps none and is redacted as well.
#[tokio::test]
async fn a_deleted_message_is_redacted_however_it_was_stored() {
    for (store, _dir, url) in stores_with_urls().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let alice = |command| ("alice".to_string(), command);
        let run: Vec<_> = (1..=3).map(|i| alice(send(chat, &format!("r{i}"), "secret"))).collect();
        store.apply_pairs(&run, 1).await.expect("a run of sends");
        let lone_send = send(chat, "lone", "secret");
        let lone = [Submitted { id: "lone-1", user: "alice", command: &lone_send }];
        store.apply_batch(&lone, 2, Delivery::First).await.expect("a lone first send");
        store.apply_pairs(&[alice(send(chat, "single", "secret"))], 3).await.expect("a single send");
        store
            .apply_pairs(
                &[alice(Command::Edit {
                    chat_id: chat,
                    message_id: 2,
                    text: "secret".into(),
                    attachments: json!([1]),
                })],
                4,
            )
            .await
            .expect("edited");
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
        let kept: Vec<(i64, Option<i64>)> =
            sqlx::query_as("SELECT message_id, new_event_id FROM messages WHERE chat_id = $1 ORDER BY message_id")
                .bind(chat)
                .fetch_all(&mut conn)
                .await
                .expect("read underneath");
        assert_eq!(kept, (1..=5).map(|m| (m, Some(m))).collect::<Vec<_>>(), "each message keeps its new event's id");
        sqlx::query("UPDATE messages SET new_event_id = NULL WHERE chat_id = $1 AND message_id = 3")
            .bind(chat)
            .execute(&mut conn)
            .await
            .expect("as an older binary stores it");
        let deletes: Vec<_> = (1..=5).map(|m| alice(Command::Delete { chat_id: chat, message_id: m })).collect();
        let deleted = store.apply_pairs(&deletes, 5).await.expect("deleted");
        assert!(deleted.iter().all(|r| r.as_ref().is_ok_and(|o| o.events.len() == 1)), "{deleted:?}");

        let page = store.events_after(chat, "bob", 0, 100).await.expect("sync");
        let contents: Vec<_> = page
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::New { text, attachments, .. } | EventKind::Edit { text, attachments } => {
                    Some((e.message_id, text.as_str(), attachments.clone()))
                }
                _ => None,
            })
            .collect();
        let redacted: Vec<_> = [1, 2, 3, 4, 5, 2].into_iter().map(|m| (m, "", json!([]))).collect();
        assert_eq!(contents, redacted, "every new and edit of a deleted message is emptied");
    }
}

#[tokio::test]
async fn dialogs_are_unique_and_membership_rules_hold() {
    for (store, _dir) in stores().await {
        let dialog = NewChat {
            kind: ChatKind::Dialog,
            name: None,
            photo_url: None,
            members: vec!["bob".into()],
            idempotency_key: None,
        };
        let created = store.create_chat("alice", dialog.clone(), 1).await.map_err(|e| e.0).expect("created");
        let reverse = NewChat { members: vec!["alice".into()], ..dialog.clone() };
        let (err, existing) = store.create_chat("bob", reverse, 2).await.expect_err("conflict");
        assert!(matches!(err, StoreRefusal::Refused(ref r) if r.code == ErrorCode::Conflict));
        assert_eq!(existing, Some(created.chat_id));
        let summary = store.summary(created.chat_id, "alice").await.expect("ok").expect("member");
        assert_eq!(summary.name, "bob", "a dialog is named after the other member");

        let chat = group(&store, "alice", &["bob"]).await;
        assert!(store.add_member(chat, "bob", "carol", 3).await.is_ok(), "any member adds");
        let err = store.remove_member(chat, "bob", "carol").await.expect_err("only creator removes others");
        assert!(matches!(err, StoreRefusal::Refused(ref r) if r.code == ErrorCode::Forbidden));
        assert!(store.remove_member(chat, "carol", "carol").await.is_ok(), "anyone leaves");
        let err = store.delete_chat(chat, "bob").await.expect_err("only creator deletes");
        assert!(matches!(err, StoreRefusal::Refused(ref r) if r.code == ErrorCode::Forbidden));
        assert_eq!(
            store.delete_chat(chat, "alice").await.expect("deleted"),
            vec!["alice".to_string(), "bob".to_string()]
        );
        assert!(store.summary(chat, "alice").await.expect("ok").is_none());
        let co = store.co_members_of(&["bob", "alice", "nobody"]).await.expect("ok");
        assert_eq!(co.get("bob"), Some(&vec!["alice".to_string()]));
        assert_eq!(co.get("alice"), Some(&vec!["bob".to_string()]));
        assert_eq!(co.len(), 2, "a user who shares no chat is absent: {co:?}");

        // PostgreSQL's text cannot hold U+0000: refused on either backend.
        let nul_name = NewChat {
            kind: ChatKind::Group,
            name: Some("a\0b".into()),
            photo_url: None,
            members: vec![],
            idempotency_key: None,
        };
        let nul_photo = NewChat { name: Some("g".into()), photo_url: Some("\0".into()), ..nul_name.clone() };
        for (request, field) in [(nul_name, "name"), (nul_photo, "photoUrl")] {
            let (err, _) = store.create_chat("alice", request, 4).await.expect_err("refused");
            let StoreRefusal::Refused(refusal) = err else { panic!("{field}: not a refusal: {err:?}") };
            assert_eq!(refusal.message, format!("{field} must not contain U+0000"));
        }
    }
}

/// Presence asks who shares a chat with each of a batch of users: every
/// co-member once, whichever and however many chats they share.
#[tokio::test]
async fn co_members_are_everyone_sharing_any_chat_once() {
    for (store, _dir) in stores().await {
        group(&store, "ann", &["bob", "cat"]).await;
        group(&store, "ann", &["bob", "dan"]).await;
        group(&store, "eve", &["bob"]).await;
        group(&store, "fay", &[]).await;
        let mut co = store.co_members_of(&["ann", "eve", "fay", "zed"]).await.expect("ok");
        let mut ann = co.remove("ann").expect("ann shares chats");
        ann.sort();
        assert_eq!(ann, ["bob", "cat", "dan"], "bob, in two of ann's chats, once");
        assert_eq!(co.remove("eve"), Some(vec!["bob".to_string()]));
        assert!(co.is_empty(), "fay is alone in hers, zed in none: {co:?}");
    }
}

/// The presence announcer persists a batch of users' last-seen times in
/// one statement: new users are inserted, known ones updated.
#[tokio::test]
async fn last_seen_times_are_recorded_for_a_whole_batch() {
    for (store, _dir) in stores().await {
        store.set_last_seen_all(&[("alice", 10)]).await.expect("first");
        store.set_last_seen_all(&[("alice", 20), ("bob", 30), ("q\"uote", 40)]).await.expect("batch");
        store.set_last_seen_all(&[]).await.expect("nothing to record");
        for (user, at) in [("alice", Some(20)), ("bob", Some(30)), ("q\"uote", Some(40)), ("carol", None)] {
            assert_eq!(store.last_seen(user).await.expect("read"), at, "{user} on {:?}", store.backend());
        }
    }
}

/// Standalone checkpoints SQLite's log beside the writer
/// (store/checkpoint.rs); PostgreSQL needs no such thing. Once the log is
/// all copied and nothing is written, checkpoints are skipped; the next
/// write is checkpointed again.
#[tokio::test]
async fn a_checkpoint_copies_the_sqlite_log_and_is_not_needed_on_postgres() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        store.apply_pairs(&[("alice".into(), send(chat, "c1", "one"))], 10).await.expect("applied");
        let done = store.checkpoint().await.expect("checkpoint");
        if store.backend() == shared::store::Backend::Postgres {
            assert_eq!(done, None);
            continue;
        }
        assert_copied_whole_log(done);
        // The writer's connection goes back to its pool in a task of its
        // own, which runs at the first checkpoint's await at the latest:
        // its mark may cost one more checkpoint, not two.
        let _ = store.checkpoint().await.expect("checkpoint");
        for _ in 0..2 {
            assert_eq!(store.checkpoint().await.expect("checkpoint"), Some(Checkpointed::NothingNew));
        }
        store.apply_pairs(&[("alice".into(), send(chat, "c2", "two"))], 11).await.expect("applied");
        assert_copied_whole_log(store.checkpoint().await.expect("checkpoint after a write"));
    }
}

fn assert_copied_whole_log(done: Option<Checkpointed>) {
    let Some(Checkpointed::Ran { log_pages, copied_pages }) = done else {
        panic!("SQLite checkpoints what was written: {done:?}");
    };
    assert!(log_pages > 0, "the commits are in the log: {done:?}");
    assert_eq!(copied_pages, log_pages, "no reader held the copy back: {done:?}");
}

/// Migration 0003 on SQLite fills in the id of each stored message's `new`
/// event, through the index it then drops; on PostgreSQL it adds the
/// column only and keeps the index. Either way a database of the schema
/// before it, upgraded by the store, redacts its messages as one made
/// since.
#[tokio::test]
async fn an_upgraded_database_keeps_each_message_s_new_event() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut databases = vec![(format!("sqlite://{}/old.db?mode=rwc", dir.path().display()), "sqlite")];
    if let Ok(admin) = std::env::var("TEST_DATABASE_URL") {
        databases.push((testkit::services::fresh_database(&admin).await.expect("a fresh database"), "postgres"));
    }
    for (url, backend) in databases {
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected");
        let mut before = match backend {
            "sqlite" => sqlx::migrate!("./migrations/sqlite"),
            _ => sqlx::migrate!("./migrations/postgres"),
        };
        before.migrations = before.migrations.iter().filter(|m| m.version < 3).cloned().collect::<Vec<_>>().into();
        before.run(&mut conn).await.expect("the schema before 0003");
        let event = |id, message_id, kind| ChatEvent {
            chat_id: 1,
            id,
            user_id: "alice".into(),
            message_id,
            timestamp: 1,
            kind,
        };
        let new =
            |text: &str| EventKind::New { client_message_id: text.into(), text: text.into(), attachments: json!([]) };
        let events = [
            event(1, 1, new("one")),
            event(2, 2, new("two")),
            event(3, 1, EventKind::Edit { text: "one, edited".into(), attachments: json!([]) }),
        ];
        for statement in [
            "INSERT INTO chats (kind, name, creator, last_message_id, last_event_id, created_at, last_activity_at) \
             VALUES ('group', 'g', 'alice', 2, 3, 1, 1)",
            "INSERT INTO members (chat_id, user_id, joined_at) VALUES (1, 'alice', 1)",
            "INSERT INTO messages (chat_id, message_id, user_id, client_message_id, body, attachments, created_at) \
             VALUES (1, 1, 'alice', 'one', 'one, edited', '[]', 1), (1, 2, 'alice', 'two', 'two', '[]', 1)",
        ] {
            sqlx::query(statement).execute(&mut conn).await.expect("stored before");
        }
        for e in &events {
            let kind = if matches!(e.kind, EventKind::New { .. }) { "new" } else { "edit" };
            sqlx::query(
                "INSERT INTO events (chat_id, id, message_id, kind, payload, created_at) VALUES (1, $1, $2, $3, $4, 1)",
            )
            .bind(e.id)
            .bind(e.message_id)
            .bind(kind)
            .bind(serde_json::to_string(e).expect("encoded"))
            .execute(&mut conn)
            .await
            .expect("logged before");
        }

        let store = Store::connect(&url).await.expect("upgraded");
        let kept: Vec<(i64, Option<i64>)> =
            sqlx::query_as("SELECT message_id, new_event_id FROM messages ORDER BY message_id")
                .fetch_all(&mut conn)
                .await
                .expect("read");
        let filled_in = |id| (backend == "sqlite").then_some(id);
        assert_eq!(kept, vec![(1, filled_in(1)), (2, filled_in(2))], "{backend}");
        let deleted = store
            .apply_pairs(&[("alice".to_string(), Command::Delete { chat_id: 1, message_id: 1 })], 2)
            .await
            .expect("deleted");
        assert!(deleted[0].is_ok(), "{backend}: {deleted:?}");
        let page = store.events_after(1, "alice", 0, 100).await.expect("sync");
        let texts: Vec<_> = page
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::New { text, .. } | EventKind::Edit { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, ["", "two", ""], "{backend}: the deleted message's new and edit are emptied, no other");
    }
}
