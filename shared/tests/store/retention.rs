//! Retention moves a chat's window up a step per transaction, and every
//! event below it goes.

use super::*;

/// Nine events, all old, of which the newest two are kept: the window
/// moves from 1 to 8 in steps of 3 (to 4, 7 and 8), and exactly the seven
/// below it are deleted, none left in the table.
#[tokio::test]
async fn a_prune_in_steps_deletes_every_event_below_the_window() {
    for (store, _dir, url) in stores_with_urls().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let other = group(&store, "alice", &["bob"]).await;
        for c in [chat, other] {
            let sends: Vec<_> = (1..=9).map(|i| ("alice".to_string(), send(c, &format!("m{i}"), "m"))).collect();
            store.apply_pairs(&sends, 10).await.expect("sent");
        }
        let retention = Retention { max_age_ms: 0, max_events_per_chat: 2 };
        assert_eq!(store.prune(retention, 1_000, 3).await.expect("pruned"), 14, "seven of each chat");
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
        let ids: Vec<(i64,)> = sqlx::query_as("SELECT id FROM events WHERE chat_id = $1 ORDER BY id")
            .bind(chat)
            .fetch_all(&mut conn)
            .await
            .expect("read");
        assert_eq!(ids, vec![(8,), (9,)]);
        let gap = store.events_after(chat, "bob", 6, 100).await.expect_err("a gap below the window");
        assert!(matches!(gap, StoreRefusal::Refused(ref r) if r.code == ErrorCode::SyncGap));
        let page = store.events_after(chat, "bob", 7, 100).await.expect("no gap from the window on");
        assert_eq!(page.events.iter().map(|e| e.id).collect::<Vec<_>>(), vec![8, 9]);
        assert_eq!(store.prune(retention, 1_000, 3).await.expect("pruned again"), 0);
    }
}

/// Ten events in each of two chats, the i-th sent at 10·i. Where the age
/// window keeps more (recent from 8, the count window from 9), its first
/// event is found at the count window's very bound. Then one chat gets
/// four more, and where the count window keeps more (from 11 of 14;
/// recent only from 13) the search below its bound finds nothing and the
/// bound stands.
#[tokio::test]
async fn a_prune_keeps_whichever_window_holds_more() {
    for (store, _dir, url) in stores_with_urls().await {
        let by_age = group(&store, "alice", &["bob"]).await;
        let by_count = group(&store, "alice", &["bob"]).await;
        for chat in [by_age, by_count] {
            for i in 1..=10 {
                let sent = store.apply_pairs(&[("alice".to_string(), send(chat, &format!("m{i}"), "m"))], 10 * i).await;
                sent.expect("applied").remove(0).expect("sent");
            }
        }
        let age_keeps_more = Retention { max_age_ms: 1_000 - 80, max_events_per_chat: 2 };
        assert_eq!(store.prune(age_keeps_more, 1_000, 100).await.expect("pruned"), 7 + 7, "both chats, to event 8");
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
        let kept =
            |chat: i64| sqlx::query_as::<_, (i64,)>("SELECT id FROM events WHERE chat_id = $1 ORDER BY id").bind(chat);
        assert_eq!(kept(by_age).fetch_all(&mut conn).await.expect("read"), vec![(8,), (9,), (10,)]);

        let count_keeps_more = Retention { max_age_ms: 1_000 - 130, max_events_per_chat: 4 };
        for i in 11..=14 {
            let sent = store.apply_pairs(&[("alice".to_string(), send(by_count, &format!("m{i}"), "m"))], 10 * i).await;
            sent.expect("applied").remove(0).expect("sent");
        }
        assert_eq!(store.prune(count_keeps_more, 1_000, 100).await.expect("pruned"), 3, "8 to 10, of one chat");
        assert_eq!(kept(by_count).fetch_all(&mut conn).await.expect("read"), vec![(11,), (12,), (13,), (14,)]);
    }
}
