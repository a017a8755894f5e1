//! Unread counts, worked out from the chat's message counter (migration
//! 0008), against the messages counted one by one underneath.

use super::*;

/// Five members: dave has read nothing, carol everything, alice, bob and
/// erin some; alice and erin up to a message bob deleted. Messages by
/// three authors, deleted by each of them above and below the marks; dave
/// and erin write none, which is counted another way. Every member's count in `member_views` and in their
/// own `summary` is the messages by others above their read mark that are
/// not deleted, as counted one by one.
#[tokio::test]
async fn unread_counts_are_the_others_live_messages_above_each_read_mark() {
    for (store, _dir, url) in stores_with_urls().await {
        let chat = group(&store, "alice", &["bob", "carol", "dave", "erin"]).await;
        let authors =
            ["alice", "bob", "alice", "carol", "bob", "bob", "alice", "carol", "alice", "bob", "carol", "bob"];
        let sends: Vec<_> = authors
            .iter()
            .enumerate()
            .map(|(i, a)| (a.to_string(), send(chat, &format!("u{i}"), &format!("m{i}"))))
            .collect();
        store.apply_pairs(&sends, 100).await.expect("sent");
        let marks = [("alice", 6), ("bob", 8), ("carol", 12), ("erin", 6)];
        let marks: Vec<_> = marks.iter().map(|(u, m)| (u.to_string(), mark(chat, *m, MarkKind::Read))).collect();
        store.apply_pairs(&marks, 200).await.expect("marked");
        // Each author deletes some of their own, below and above the marks.
        let deletes = [("alice", 1), ("bob", 2), ("bob", 6), ("alice", 7), ("carol", 11), ("bob", 12)];
        let deletes: Vec<_> =
            deletes.iter().map(|(u, m)| (u.to_string(), Command::Delete { chat_id: chat, message_id: *m })).collect();
        for result in store.apply_pairs(&deletes, 300).await.expect("applied") {
            result.expect("deleted");
        }

        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
        let views = store.member_views(chat).await.expect("read").expect("a chat");
        for member in ["alice", "bob", "carol", "dave", "erin"] {
            let (counted,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM messages s JOIN members m ON m.chat_id = s.chat_id AND m.user_id = $2 \
                 WHERE s.chat_id = $1 AND s.message_id > m.read_mark AND s.user_id <> $2 AND s.deleted_at IS NULL",
            )
            .bind(chat)
            .bind(member)
            .fetch_one(&mut conn)
            .await
            .expect("counted");
            let summary = store.summary(chat, member).await.expect("read").expect("a member");
            assert_eq!(summary.missed, counted, "{member}'s own list");
            assert_eq!(views.as_seen_by(member).expect("a member").missed, counted, "{member} in the members' views");
        }
        // What the counts come to, so that a test of nothing would show.
        let dave = store.summary(chat, "dave").await.expect("read").expect("a member");
        assert_eq!(dave.missed, 6, "twelve messages, six deleted, none dave's");
        let erin = store.summary(chat, "erin").await.expect("read").expect("a member");
        assert_eq!(erin.missed, 3, "above 6: 8, 9 and 10 (7, 11 and 12 deleted)");
        let alice = store.summary(chat, "alice").await.expect("read").expect("a member");
        assert_eq!(
            alice.missed, 2,
            "above 6, which bob deleted: carol's 8 and bob's 10 (11 and 12 deleted, 7 and 9 hers)"
        );
    }
}
