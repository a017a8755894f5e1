//! A chat's row keeps how many members it has (migration 0009), which a
//! chat list reads instead of counting them, as long as it was counted at
//! the chat's membership version now; otherwise the list counts.

use super::*;

/// How many members `user`'s only chat has, as their chat list says.
async fn listed_members(store: &Store, user: &str) -> i64 {
    let heads = store.chat_heads(user).await.expect("heads");
    assert_eq!(heads.len(), 1, "{user} is in one chat");
    heads[0].members
}

/// The chat's kept count, the version it was counted at, its membership
/// version and its members counted, underneath.
async fn underneath(conn: &mut sqlx::AnyConnection, chat: i64) -> (Option<i64>, Option<i64>, i64, i64) {
    sqlx::query_as(
        "SELECT member_count, member_count_version, membership_version, \
           (SELECT COUNT(*) FROM members WHERE chat_id = $1) FROM chats WHERE id = $1",
    )
    .bind(chat)
    .fetch_one(conn)
    .await
    .expect("read underneath")
}

/// Runs `sql` on chat `$1` underneath the store, as another binary would.
async fn write_underneath(conn: &mut sqlx::AnyConnection, sql: &str, chat: i64) {
    sqlx::query(sql).bind(chat).execute(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn a_chat_list_reads_the_member_count_kept_at_the_chat_s_membership_version() {
    for (store, _dir, url) in stores_with_urls().await {
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
        let chat = group(&store, "alice", &["bob", "carol"]).await;
        assert_eq!(underneath(&mut conn, chat).await, (Some(3), Some(1), 1, 3), "kept at the creation");
        store.add_member(chat, "bob", "dave", 2).await.expect("added");
        assert_eq!(underneath(&mut conn, chat).await, (Some(4), Some(2), 2, 4), "kept at an addition");
        store.remove_member(chat, "alice", "bob").await.expect("removed");
        assert_eq!(underneath(&mut conn, chat).await, (Some(3), Some(3), 3, 3), "kept at a removal");
        store.remove_member(chat, "carol", "carol").await.expect("left");
        assert_eq!(underneath(&mut conn, chat).await, (Some(2), Some(4), 4, 2), "kept when a member leaves");
        assert_eq!(listed_members(&store, "alice").await, 2);

        // The list reads the kept count: one that is wrong shows.
        write_underneath(&mut conn, "UPDATE chats SET member_count = 7 WHERE id = $1", chat).await;
        assert_eq!(listed_members(&store, "alice").await, 7, "the kept count, not a count");
        // A binary older than the count adds a member: the version moves
        // past the count's, and the list counts again.
        write_underneath(&mut conn, "INSERT INTO members (chat_id, user_id, joined_at) VALUES ($1, 'erin', 5)", chat)
            .await;
        write_underneath(&mut conn, "UPDATE chats SET membership_version = membership_version + 1 WHERE id = $1", chat)
            .await;
        assert_eq!(listed_members(&store, "alice").await, 3, "counted: the kept count is of an earlier version");
        // A chat made before the migration keeps no count.
        write_underneath(
            &mut conn,
            "UPDATE chats SET member_count = NULL, member_count_version = NULL WHERE id = $1",
            chat,
        )
        .await;
        assert_eq!(listed_members(&store, "alice").await, 3, "counted: no kept count");
        store.add_member(chat, "alice", "frank", 6).await.expect("added");
        assert_eq!(underneath(&mut conn, chat).await, (Some(4), Some(6), 6, 4), "kept again from the next change");
    }
}
