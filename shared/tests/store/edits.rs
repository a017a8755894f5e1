//! Edits and deletes: who may, what a no-op edit answers, and how a
//! deleted message is redacted.

use super::*;

/// An edit that changes nothing (say, one resent after its ack was lost)
/// is acknowledged as of when the message got that content, with no event;
/// attachments compare as JSON, whatever the order of their keys.
#[tokio::test]
async fn an_edit_that_changes_nothing_makes_no_event() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let edit = |text: &str, attachments: serde_json::Value| {
            (
                "alice".to_string(),
                Command::Edit {
                    chat_id: chat,
                    message_id: 1,
                    text: text.into(),
                    attachments: shared::model::Attachments::from_value(&attachments),
                },
            )
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

#[tokio::test]
async fn edit_delete_rules_and_sync_with_retention() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        store.apply_pairs(&[("alice".to_string(), send(chat, "c1", "secret"))], 1).await.expect("ok");
        let edit = |user: &str, text: &str| {
            (
                user.to_string(),
                Command::Edit {
                    chat_id: chat,
                    message_id: 1,
                    text: text.into(),
                    attachments: shared::model::Attachments::none(),
                },
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
        store.prune(Retention { max_age_ms: 1_000_000, max_events_per_chat: 4 }, 5_000, 2).await.expect("pruned");
        assert_eq!(store.events_after(chat, "bob", 0, 100).await.expect("all kept").events.len(), 8);
        // ...old by age: the newest 4 (5..=8) stay.
        store.prune(Retention { max_age_ms: 10, max_events_per_chat: 4 }, 5_000, 2).await.expect("pruned");
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
                    attachments: shared::model::Attachments::from_value(&json!([1])),
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
        let redacted: Vec<_> =
            [1, 2, 3, 4, 5, 2].into_iter().map(|m| (m, "", shared::model::Attachments::none())).collect();
        assert_eq!(contents, redacted, "every new and edit of a deleted message is emptied");
    }
}
