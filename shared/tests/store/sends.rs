//! `new`: consecutive ids, retries, and the batched paths (a run of
//! sends, PostgreSQL's one-statement first batch) giving what each `new`
//! would get alone.

use super::*;

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

/// A retry applied on its own leaves the chat's activity, and so its place
/// in the chat list, where the latest message put it.
#[tokio::test]
async fn a_single_retried_new_leaves_the_chat_list_order() {
    for (store, _dir) in stores().await {
        let older = group(&store, "alice", &["bob"]).await;
        let newer = group(&store, "alice", &["carol"]).await;
        for (chat, cid, at) in [(older, "c1", 10), (older, "c2", 15), (newer, "c3", 20), (older, "c1", 30)] {
            let applied = store.apply_pairs(&[("alice".into(), send(chat, cid, "x"))], at).await.expect("applied");
            applied[0].as_ref().expect("ok");
        }
        let list: Vec<_> =
            store.summaries("alice").await.expect("listed").iter().map(|c| (c.id, c.last_activity_at)).collect();
        assert_eq!(list, [(newer, 20), (older, 15)], "the retry at 30 is no activity");
    }
}

/// A sender removed from a chat after a message was stored gets that
/// message's first reply for a retry, alone or in a run of sends, since it
/// was accepted then; a message not stored before is refused.
#[tokio::test]
async fn a_retry_after_the_sender_left_gets_its_first_reply() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob", "carol"]).await;
        let first = store.apply_pairs(&[("bob".into(), send(chat, "b1", "one"))], 10).await.expect("applied");
        let first = first[0].as_ref().expect("ok").applied.clone();
        store.remove_member(chat, "bob", "bob").await.expect("left");
        let alone = store.apply_pairs(&[("bob".into(), send(chat, "b1", "one"))], 20).await.expect("applied");
        let run: Vec<_> = ["b1", "b2", "b1"].iter().map(|cid| ("bob".to_string(), send(chat, cid, "x"))).collect();
        let run = store.apply_pairs(&run, 30).await.expect("applied");
        let alone = alone[0].as_ref().expect("the retry is acked");
        assert_eq!((&alone.applied, alone.events.len()), (&first, 0));
        assert_eq!(run[0].as_ref().expect("acked in a run").applied, first);
        assert_eq!(run[1].as_ref().expect_err("a new message").code, ErrorCode::Forbidden);
        assert_eq!(run[2].as_ref().expect("acked in a run").applied, first);
        let next = store.apply_pairs(&[("alice".into(), send(chat, "a1", "two"))], 40).await.expect("applied");
        assert_eq!(next[0].as_ref().expect("ok").applied.message_id, 2, "nothing allocated for bob");
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
        attachments: shared::model::Attachments::from_value(&json!([{"id": 0, "message_id": 0}])),
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
        let edit = Command::Edit {
            chat_id: a,
            message_id: 2,
            text: "edited".into(),
            attachments: shared::model::Attachments::none(),
        };
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
