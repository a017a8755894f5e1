//! A deleted chat's history is purged in steps by the housekeeping, and
//! nothing of any other chat's.

use super::*;

/// How many rows of each history table `chat` has, looked at underneath.
async fn history_rows(conn: &mut sqlx::AnyConnection, chat: i64) -> [i64; 3] {
    let mut counts = [0; 3];
    for (count, table) in counts.iter_mut().zip(["messages", "events", "mark_ranges"]) {
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table} WHERE chat_id = $1"))
            .bind(chat)
            .fetch_one(&mut *conn)
            .await
            .expect("counted");
        *count = n;
    }
    counts
}

/// Each history table holds more rows than a step, and bob's and carol's
/// read ranges end at the same message, so steps meet a shared key.
#[tokio::test]
async fn a_deleted_chat_s_history_is_purged_in_steps_and_no_other_chat_s() {
    for (store, _dir, url) in stores_with_urls().await {
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
        let deleted = group(&store, "alice", &["bob", "carol"]).await;
        let kept = group(&store, "alice", &["bob", "carol"]).await;
        let mut at = 10;
        for chat in [deleted, kept] {
            for i in 1..=7 {
                let sent = store.apply_pairs(&[("alice".into(), send(chat, &format!("c{i}"), "m"))], at).await;
                sent.expect("applied").remove(0).expect("sent");
                at += 1;
            }
            for (user, upto) in [("bob", 3), ("carol", 3), ("bob", 5), ("carol", 7)] {
                let marked = store.apply_pairs(&[(user.into(), mark(chat, upto, MarkKind::Read))], at).await;
                marked.expect("applied").remove(0).expect("marked");
                at += 1;
            }
        }
        let kept_before = history_rows(&mut conn, kept).await;
        store.delete_chat(deleted, "alice", at).await.expect("deleted");
        let left = history_rows(&mut conn, deleted).await;
        assert!(left.iter().all(|&n| n > 3), "the deletion leaves the history to the purge: {left:?}");

        let purged = store.purge_deleted_chats(3).await.expect("purged");
        assert_eq!(purged.len(), 1, "{purged:?}");
        assert_eq!((purged[0].chat, purged[0].deleted_at), (deleted, at));
        assert_eq!(purged[0].rows, left.iter().sum::<i64>() as u64, "every row counted once");
        assert_eq!(history_rows(&mut conn, deleted).await, [0, 0, 0]);
        assert_eq!(history_rows(&mut conn, kept).await, kept_before, "the other chat's history stays");
        assert_eq!(store.purge_deleted_chats(3).await.expect("purged again"), vec![], "the chat is forgotten");
        let history = store.messages(kept, "bob", HistoryQuery::default()).await.map_err(|e| format!("{e:?}"));
        assert_eq!(history.expect("the other chat reads").len(), 7);
    }
}

/// A retried `new` to a deleted chat is `not_found`, as any send to it,
/// while the chat's messages are still there to be purged: alone, and in
/// a run of sends (store/sends.rs), which finds retries its own way.
#[tokio::test]
async fn a_retry_to_a_deleted_chat_is_not_answered_from_its_unpurged_messages() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let sends: Vec<_> = (1..=3).map(|i| ("alice".to_string(), send(chat, &format!("r{i}"), "m"))).collect();
        for result in store.apply_pairs(&sends, 10).await.expect("applied") {
            result.expect("sent");
        }
        store.delete_chat(chat, "alice", 20).await.expect("deleted");
        let alone = store.apply_pairs(&sends[..1], 30).await.expect("applied");
        let run = store.apply_pairs(&sends, 30).await.expect("applied");
        for result in alone.into_iter().chain(run) {
            assert_eq!(result.expect_err("refused").code, ErrorCode::NotFound);
        }
    }
}
