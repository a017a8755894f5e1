//! A user is in at most `MAX_CHATS_PER_USER` chats: creating a chat with
//! a user who is full, or adding one, is refused, and nothing of it is
//! stored.

use shared::store::MAX_CHATS_PER_USER;

use super::*;

/// Puts `user` into `chats` chats straight in the tables: through the
/// store, ten thousand creations took most of a minute on PostgreSQL.
async fn fill(url: &str, user: &str, chats: usize) {
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url).await.expect("connected underneath");
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO chats (kind, name, creator, created_at, last_activity_at) \
         SELECT 'group', 'filler', $2, 0, 0 FROM n",
    )
    .bind(chats as i64)
    .bind(user)
    .execute(&mut conn)
    .await
    .expect("chats");
    sqlx::query("INSERT INTO members (chat_id, user_id, joined_at) SELECT id, $1, 0 FROM chats WHERE name = 'filler'")
        .bind(user)
        .execute(&mut conn)
        .await
        .expect("memberships");
}

fn refused_for_zed<T: std::fmt::Debug>(result: Result<T, StoreRefusal>) {
    let err = result.expect_err("zed is full");
    let StoreRefusal::Refused(refusal) = err else { panic!("not a refusal: {err:?}") };
    assert_eq!(refusal.code, ErrorCode::Conflict);
    assert_eq!(refusal.message, format!("zed is in {MAX_CHATS_PER_USER} chats already, the most a user may be in"));
}

#[tokio::test]
async fn a_user_in_the_most_chats_joins_no_more() {
    for (store, _dir, url) in stores_with_urls().await {
        fill(&url, "zed", MAX_CHATS_PER_USER - 1).await;
        let last = group(&store, "alice", &["zed"]).await;

        let with_zed = NewChat::group("one too many", ["bob", "zed"]);
        refused_for_zed(store.create_chat("alice", with_zed.clone(), 2).await.map_err(|e| e.0));
        let bob_s = store.chat_ids_of_users(&["bob"]).await.expect("read");
        assert!(bob_s.is_empty(), "nothing of the refused chat is stored: {bob_s:?}");
        let dialog = NewChat::dialog("alice");
        refused_for_zed(store.create_chat("zed", dialog, 2).await.map_err(|e| e.0));

        let chat = group(&store, "alice", &["bob"]).await;
        refused_for_zed(store.add_member(chat, "bob", "zed", 3).await);
        store.remove_member(last, "zed", "zed").await.expect("zed leaves one");
        store.add_member(chat, "bob", "zed", 4).await.expect("room for one again");
        refused_for_zed(store.create_chat("alice", with_zed, 5).await.map_err(|e| e.0));
    }
}

/// On PostgreSQL two joins of a user with room for one more, in
/// transactions that overlap, must not both see the room: the second waits
/// for the first, sees it committed, and is refused. Here the first is a
/// transaction underneath, holding the user's lock as the store takes it.
#[tokio::test]
async fn a_join_waits_for_a_concurrent_join_of_the_same_user() {
    let Some((store, _dir, url)) = postgres_store().await else { return };
    fill(&url, "zed", MAX_CHATS_PER_USER - 1).await;
    let chat = group(&store, "alice", &["bob"]).await;
    let other = group(&store, "alice", &["bob"]).await;
    let mut first = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
    sqlx::query("BEGIN").execute(&mut first).await.expect("begin");
    sqlx::query("SELECT pg_advisory_xact_lock(1667785076, hashtext($1) & 255)")
        .bind("zed")
        .execute(&mut first)
        .await
        .expect("zed's lock");
    sqlx::query("INSERT INTO members (chat_id, user_id, joined_at) VALUES ($1, 'zed', 1)")
        .bind(other)
        .execute(&mut first)
        .await
        .expect("the first join");
    let second = store.add_member(chat, "bob", "zed", 2);
    tokio::pin!(second);
    let mut watcher = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
    until_it_waits_for_a_lock(&mut watcher, second.as_mut(), "the second join").await;
    sqlx::query("COMMIT").execute(&mut first).await.expect("commit");
    refused_for_zed(second.await);
}
