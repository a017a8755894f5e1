//! Delivered and read marks: status, receipts, missed counts, and runs
//! of marks applied together.

use super::*;

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
        assert_eq!(page[4].reached(MarkKind::Read).collect::<Vec<_>>(), ["bob"]);
        assert_eq!(page[6].status, DeliveryStatus::Sent);
        assert_eq!(page[6].reached(MarkKind::Delivered).collect::<Vec<_>>(), ["bob"]);

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

/// Marks only move forward (PROTOCOL.md 5), across a removal too: a member
/// added back resumes the marks their events announced, rather than
/// starting from 0 and having their next mark events go back on them.
#[tokio::test]
async fn a_member_added_back_resumes_their_marks() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let sends = |range: std::ops::RangeInclusive<i32>| -> Vec<(String, Command)> {
            range.map(|i| ("alice".to_string(), send(chat, &format!("c{i}"), "m"))).collect()
        };
        store.apply_pairs(&sends(1..=3), 10).await.expect("sent");
        store.apply_pairs(&[("bob".to_string(), mark(chat, 3, MarkKind::Delivered))], 20).await.expect("ok");
        store.apply_pairs(&[("bob".to_string(), mark(chat, 2, MarkKind::Read))], 30).await.expect("ok");
        store.remove_member(chat, "bob", "bob").await.expect("left");
        store.apply_pairs(&sends(4..=5), 40).await.expect("sent while bob was away");
        store.add_member(chat, "alice", "bob", 50).await.expect("added back");

        let bob_view = store.summary(chat, "bob").await.expect("ok").expect("member");
        assert_eq!(bob_view.missed, 3, "messages 3 to 5 are above his read mark, 2");
        let receipts = |m| store.receipts(chat, "alice", m);
        let bob_of =
            |r: Vec<shared::model::Receipt>| r.into_iter().map(|r| (r.delivered_at, r.read_at)).collect::<Vec<_>>();
        assert_eq!(bob_of(receipts(2).await.expect("receipts")), [(Some(20), Some(30))]);
        assert_eq!(bob_of(receipts(4).await.expect("receipts")), [(None, None)]);

        let r = store.apply_pairs(&[("bob".to_string(), mark(chat, 3, MarkKind::Delivered))], 60).await.expect("ok");
        assert!(r[0].as_ref().expect("ok").events.is_empty(), "delivered through 3 already");
        let r = store.apply_pairs(&[("bob".to_string(), mark(chat, 5, MarkKind::Read))], 70).await.expect("ok");
        let events = &r[0].as_ref().expect("ok").events;
        assert_eq!(
            events.iter().map(|e| (e.message_id, e.kind.clone())).collect::<Vec<_>>(),
            [(5, EventKind::Mark { mark: MarkKind::Delivered }), (5, EventKind::Mark { mark: MarkKind::Read })]
        );
        assert_eq!(bob_of(receipts(3).await.expect("receipts")), [(Some(20), Some(70))]);
        assert_eq!(bob_of(receipts(4).await.expect("receipts")), [(Some(70), Some(70))]);
    }
}

/// On PostgreSQL a mark of a member's committed alongside their removal can
/// leave a range the members row never recorded. Added back, the member
/// resumes from that range too: marking it again must not take its key (a
/// refused insert a worker would retry for ever, its shard stalled).
#[tokio::test]
async fn a_member_added_back_resumes_over_a_range_left_behind() {
    for (store, _dir, url) in stores_with_urls().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let sends: Vec<_> = (1..=3).map(|i| ("alice".to_string(), send(chat, &format!("c{i}"), "m"))).collect();
        store.apply_pairs(&sends, 10).await.expect("sent");
        store.remove_member(chat, "bob", "bob").await.expect("left");
        // What that race leaves behind.
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
        write_delivered_range(&mut conn, chat, "bob", 2, 15).await;

        store.add_member(chat, "alice", "bob", 20).await.expect("added back");
        let delivered_at = |r: Vec<shared::model::Receipt>| r.into_iter().map(|r| r.delivered_at).collect::<Vec<_>>();
        assert_eq!(delivered_at(store.receipts(chat, "alice", 2).await.expect("receipts")), [Some(15)]);
        let marked = store.apply_pairs(&[("bob".to_string(), mark(chat, 2, MarkKind::Delivered))], 30).await;
        assert!(marked.expect("applied")[0].as_ref().expect("ok").events.is_empty(), "delivered through 2 already");
        let marked = store.apply_pairs(&[("bob".to_string(), mark(chat, 3, MarkKind::Delivered))], 40).await;
        assert_eq!(marked.expect("applied")[0].as_ref().expect("marked").events.len(), 1);
        assert_eq!(delivered_at(store.receipts(chat, "alice", 3).await.expect("receipts")), [Some(40)]);
    }
}
