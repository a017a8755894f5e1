//! The schema: migrations applied and reported, databases of an older
//! schema upgraded, and SQLite's log checkpointed.

use super::*;

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
        let new = |text: &str| EventKind::New {
            client_message_id: text.into(),
            text: text.into(),
            attachments: shared::model::Attachments::none(),
        };
        let events = [
            event(1, 1, new("one")),
            event(2, 2, new("two")),
            event(
                3,
                1,
                EventKind::Edit { text: "one, edited".into(), attachments: shared::model::Attachments::none() },
            ),
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
