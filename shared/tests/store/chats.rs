//! Chats: creation under an idempotency key, dialogs and membership, the
//! lists and co-members that connections and presence read.

use super::*;

/// A chat creation retried under its idempotency key gets the chat the
/// first created, also when both run at once; another key, or the same
/// key of another creator, creates its own. A retry after the chat was
/// deleted is told so rather than given a new one.
#[tokio::test]
async fn a_creation_retried_under_its_idempotency_key_creates_one_chat() {
    for (store, _dir) in stores().await {
        let request = |key: &str| NewChat { idempotency_key: Some(key.into()), ..NewChat::group("g", ["bob"]) };
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

        store.delete_chat(first.chat_id, "alice", 5).await.expect("deleted");
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
        let request = |name: &str| NewChat { idempotency_key: Some("old".into()), ..NewChat::group(name, ["bob"]) };
        let first = store.create_chat("alice", request("g"), 1).await.map_err(|e| e.0).expect("created");
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
        sqlx::query("UPDATE chat_creations SET request_digest = NULL").execute(&mut conn).await.expect("forgotten");
        let retry = store.create_chat("alice", request("renamed"), 2).await.map_err(|e| e.0).expect("answered");
        assert_eq!((retry.chat_id, retry.earlier), (first.chat_id, true));
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

/// The last event ids a gateway checks after subscribing, many chats in
/// one read: each chat's own, and none for a chat that does not exist.
#[tokio::test]
async fn many_chats_last_event_ids_read_at_once_are_each_their_own() {
    for (store, _dir) in stores().await {
        let busy = group(&store, "alice", &["bob"]).await;
        let quiet = group(&store, "alice", &[]).await;
        let sends: Vec<_> = (1..=3).map(|i| ("alice".to_string(), send(busy, &format!("e{i}"), "m"))).collect();
        store.apply_pairs(&sends, 10).await.expect("sent");
        let mut read = store.last_event_ids(&[quiet, busy + 1_000, busy]).await.expect("read");
        read.sort();
        let mut expected = vec![(busy, 3), (quiet, 0)];
        expected.sort();
        assert_eq!(read, expected);
        assert!(store.last_event_ids(&[]).await.expect("read none").is_empty());
    }
}

/// What a gateway filling a gap reads: the chat's events after `after` up
/// to `upto`, at most `limit` of them, from the first.
#[tokio::test]
async fn events_between_reads_a_page_of_the_range_in_order() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let other = group(&store, "alice", &["bob"]).await;
        let sends: Vec<_> = (1..=6)
            .flat_map(|i| [chat, other].map(|c| ("alice".to_string(), send(c, &format!("e{c}-{i}"), "m"))))
            .collect();
        store.apply_pairs(&sends, 10).await.expect("sent");
        let ids = |events: Vec<ChatEvent>| events.iter().map(|e| (e.chat_id, e.id)).collect::<Vec<_>>();
        let read = |after, upto, limit| store.events_between(chat, after, upto, limit);
        assert_eq!(
            ids(read(1, 5, 10).await.expect("range")),
            [2, 3, 4, 5].map(|id| (chat, id)),
            "{:?}",
            store.backend()
        );
        assert_eq!(ids(read(1, 5, 2).await.expect("page")), [(chat, 2), (chat, 3)]);
        assert_eq!(ids(read(3, 100, 10).await.expect("past the last")), [4, 5, 6].map(|id| (chat, id)));
        assert!(read(6, 9, 10).await.expect("none").is_empty());
    }
}

#[tokio::test]
async fn dialogs_are_unique_and_membership_rules_hold() {
    for (store, _dir) in stores().await {
        let dialog = NewChat::dialog("bob");
        let created = store.create_chat("alice", dialog.clone(), 1).await.map_err(|e| e.0).expect("created");
        let reverse = NewChat { members: vec!["alice".into()], ..dialog.clone() };
        let (err, existing) = store.create_chat("bob", reverse, 2).await.expect_err("conflict");
        assert!(matches!(err, StoreRefusal::Refused(ref r) if r.code == ErrorCode::Conflict));
        assert_eq!(existing, Some(created.chat_id));
        let summary = store.summary(created.chat_id, "alice").await.expect("ok").expect("member");
        assert_eq!(summary.name, "bob", "a dialog is named after the other member");

        let chat = group(&store, "alice", &["bob"]).await;
        // Each change counts one more in the chat's membership version; a
        // refused one counts nothing.
        let added = store.add_member(chat, "bob", "carol", 3).await.expect("any member adds");
        assert_eq!(added.version, CREATED_MEMBERSHIP_VERSION + 1);
        let err = store.remove_member(chat, "bob", "carol").await.expect_err("only creator removes others");
        assert!(matches!(err, StoreRefusal::Refused(ref r) if r.code == ErrorCode::Forbidden));
        let left = store.remove_member(chat, "carol", "carol").await.expect("anyone leaves");
        assert_eq!(left.version, CREATED_MEMBERSHIP_VERSION + 2);
        let err = store.delete_chat(chat, "bob", 5).await.expect_err("only creator deletes");
        assert!(matches!(err, StoreRefusal::Refused(ref r) if r.code == ErrorCode::Forbidden));
        assert_eq!(
            store.delete_chat(chat, "alice", 5).await.expect("deleted"),
            MembershipChange {
                members: vec!["alice".to_string(), "bob".to_string()],
                version: CREATED_MEMBERSHIP_VERSION + 3
            }
        );
        assert!(store.summary(chat, "alice").await.expect("ok").is_none());
        let of = store.chat_ids_of_users(&["bob", "alice", "nobody"]).await.expect("ok");
        assert_eq!(of.get("bob"), Some(&vec![created.chat_id]), "the deleted group is gone");
        assert_eq!(of.get("alice"), Some(&vec![created.chat_id]));
        assert_eq!(of.len(), 2, "a user in no chat is absent: {of:?}");

        // PostgreSQL's text cannot hold U+0000: refused on either backend.
        let nul_name = NewChat::group("a\0b", Vec::<&str>::new());
        let nul_photo = NewChat { name: Some("g".into()), photo_url: Some("\0".into()), ..nul_name.clone() };
        for (request, field) in [(nul_name, "name"), (nul_photo, "photoUrl")] {
            let (err, _) = store.create_chat("alice", request, 4).await.expect_err("refused");
            let StoreRefusal::Refused(refusal) = err else { panic!("{field}: not a refusal: {err:?}") };
            assert_eq!(refusal.message, format!("{field} must not contain U+0000"));
        }

        let photo = |bytes: usize| NewChat {
            photo_url: Some(format!("https://cdn.example/{}", "p".repeat(bytes - 20))),
            ..NewChat::group("g", Vec::<&str>::new())
        };
        store.create_chat("alice", photo(2048), 5).await.map_err(|e| e.0).expect("the longest photoUrl");
        let (err, _) = store.create_chat("alice", photo(2049), 5).await.expect_err("refused");
        let StoreRefusal::Refused(refusal) = err else { panic!("not a refusal: {err:?}") };
        assert_eq!(refusal.message, "photoUrl is longer than 2048 bytes");
    }
}

/// Presence asks for the chats of a batch of users: each of theirs once,
/// alone in it or not, and nobody else's.
#[tokio::test]
async fn presence_reads_each_users_chats() {
    for (store, _dir) in stores().await {
        let first = group(&store, "ann", &["bob", "cat"]).await;
        let second = group(&store, "ann", &["bob", "dan"]).await;
        let eves = group(&store, "eve", &["bob"]).await;
        let fays = group(&store, "fay", &[]).await;
        let mut of = store.chat_ids_of_users(&["ann", "eve", "fay", "zed"]).await.expect("ok");
        let mut anns = of.remove("ann").expect("ann has chats");
        anns.sort();
        assert_eq!(anns, [first, second]);
        assert_eq!(of.remove("eve"), Some(vec![eves]), "not bob's other chats");
        assert_eq!(of.remove("fay"), Some(vec![fays]));
        assert!(of.is_empty(), "zed is in none: {of:?}");
    }
}

/// The presence announcer persists a batch of users' last-seen times in
/// one statement: new users are inserted, known ones updated, never to an
/// earlier time.
#[tokio::test]
async fn last_seen_times_are_recorded_for_a_whole_batch() {
    for (store, _dir) in stores().await {
        store.record_presence_all(&[gone("alice", 10)]).await.expect("first");
        store.record_presence_all(&[gone("alice", 20), gone("bob", 30), gone("q\"uote", 40)]).await.expect("batch");
        store.record_presence_all(&[]).await.expect("nothing to record");
        store.record_presence_all(&[gone("bob", 25)]).await.expect("an older time");
        let seen = store.last_seen_all(&["alice", "bob", "q\"uote", "carol", "alice"]).await.expect("read");
        let expected = std::collections::HashMap::from([
            ("alice".to_owned(), 20),
            ("bob".to_owned(), 30),
            ("q\"uote".to_owned(), 40),
        ]);
        assert_eq!(seen, expected, "carol was never seen; on {:?}", store.backend());
        assert!(store.last_seen_all(&[]).await.expect("nobody").is_empty());
    }
}

/// Standalone marks users online in the store; a start after a process
/// that died with them online records them as last seen at that start,
/// leaving a later stored time, and users who went, alone. A mark is
/// cleared by going, so a later start finds nothing.
#[tokio::test]
async fn users_left_online_by_a_dead_process_are_last_seen_at_the_next_start() {
    for (store, _dir) in stores().await {
        let came = |user, at| PresenceChange { user, at, online: true };
        store.record_presence_all(&[gone("alice", 10), gone("dave", 500)]).await.expect("earlier departures");
        store.record_presence_all(&[came("alice", 20), came("bob", 30), came("carol", 40)]).await.expect("online");
        store.record_presence_all(&[gone("carol", 50), came("dave", 600)]).await.expect("carol went");
        // dave's clock was ahead of this start's: his later time stays.
        assert_eq!(store.settle_left_online(100).await.expect("settle"), 3, "alice, bob and dave");
        let seen = store.last_seen_all(&["alice", "bob", "carol", "dave"]).await.expect("read");
        let expected = std::collections::HashMap::from([
            ("alice".to_owned(), 100),
            ("bob".to_owned(), 100),
            ("carol".to_owned(), 50),
            ("dave".to_owned(), 500),
        ]);
        assert_eq!(seen, expected, "on {:?}", store.backend());
        assert_eq!(store.settle_left_online(200).await.expect("again"), 0, "nothing left marked");
    }
}

fn gone(user: &str, at: i64) -> PresenceChange<'_> {
    PresenceChange { user, at, online: false }
}

/// A member row left behind by a chat's deletion (a member added as the
/// chat was deleted, before deletions took the chat's lock) made that
/// member's run of `new`s an error the worker retried for ever; it is a
/// `not_found` refusal.
#[tokio::test]
async fn a_run_of_sends_to_a_chat_deleted_under_its_members_is_refused() {
    for (store, _dir, url) in stores_with_urls().await {
        let chat = group(&store, "alice", &["bob"]).await;
        store.delete_chat(chat, "alice", 5).await.expect("deleted");
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
        sqlx::query("INSERT INTO members (chat_id, user_id, joined_at) VALUES ($1, 'carol', 1)")
            .bind(chat)
            .execute(&mut conn)
            .await
            .expect("an orphan member");
        let run: Vec<_> = (1..=3).map(|i| ("carol".to_string(), send(chat, &format!("c{i}"), "m"))).collect();
        let results = store.apply_pairs(&run, 10).await.expect("applied, not failed");
        for result in results {
            assert_eq!(result.expect_err("refused").code, ErrorCode::NotFound);
        }
    }
}

/// A membership change waits for a worker's transaction in the chat to
/// commit, and then sees its rows: a mark range written by a command
/// applied alongside a removal counts when the member is added back
/// (PostgreSQL; SQLite's one writer orders them anyway).
#[tokio::test]
async fn a_removal_waits_for_a_command_in_flight_and_a_readding_counts_its_mark() {
    let Some((store, _dir, url)) = postgres_store().await else { return };
    let chat = group(&store, "alice", &["bob"]).await;
    store.apply_pairs(&[("alice".to_string(), send(chat, "c1", "m"))], 10).await.expect("sent");
    // A worker's transaction, as far as a mark of bob's: the chat locked,
    // the range written, not yet committed.
    let mut worker = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
    sqlx::query("BEGIN").execute(&mut worker).await.expect("begin");
    sqlx::query("UPDATE chats SET last_event_id = last_event_id WHERE id = $1")
        .bind(chat)
        .execute(&mut worker)
        .await
        .expect("locked");
    write_delivered_range(&mut worker, chat, "bob", 1, 20).await;
    let removal = store.remove_member(chat, "bob", "bob");
    tokio::pin!(removal);
    let mut watcher = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
    until_it_waits_for_a_lock(&mut watcher, removal.as_mut(), "the removal").await;
    sqlx::query("COMMIT").execute(&mut worker).await.expect("commit");
    removal.await.expect("removed");
    store.add_member(chat, "alice", "bob", 30).await.expect("added back");
    let receipts = store.receipts(chat, "alice", 1).await.expect("receipts");
    assert_eq!(receipts.iter().map(|r| r.delivered_at).collect::<Vec<_>>(), [Some(20)]);
    let alice_view = store.summary(chat, "alice").await.expect("ok").expect("member");
    assert_eq!(alice_view.last_message_status, Some(DeliveryStatus::Delivered));
}

/// Announcing a change to a chat's members reads the chat once for all of
/// them (`member_views`); each member must get what `summary` gives them:
/// their own missed count, whether the last message is theirs, a dialog
/// named after the other member.
#[tokio::test]
async fn member_views_give_each_member_their_own_summary() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob", "carol"]).await;
        let authors = ["alice", "bob", "alice", "carol", "bob"];
        let sends: Vec<_> = authors
            .iter()
            .enumerate()
            .map(|(i, a)| (a.to_string(), send(chat, &format!("v{i}"), &format!("m{i}"))))
            .collect();
        store.apply_pairs(&sends, 100).await.expect("sent");
        let marks = [
            ("bob".to_string(), mark(chat, 2, MarkKind::Read)),
            ("carol".to_string(), mark(chat, 4, MarkKind::Delivered)),
            // At another's message: read, so not counted.
            ("carol".to_string(), mark(chat, 1, MarkKind::Read)),
            ("alice".to_string(), mark(chat, 3, MarkKind::Read)),
        ];
        store.apply_pairs(&marks, 200).await.expect("marked");
        // The newest message is deleted: the one before stands for the chat.
        store
            .apply_pairs(&[("bob".to_string(), Command::Delete { chat_id: chat, message_id: 5 })], 300)
            .await
            .expect("ok");

        let dialog = NewChat::dialog("dave");
        let dialog = store.create_chat("carol", dialog, 400).await.map_err(|e| e.0).expect("created").chat_id;
        store.apply_pairs(&[("dave".to_string(), send(dialog, "d1", "hi"))], 500).await.expect("sent");

        for (chat, members) in [(chat, vec!["alice", "bob", "carol"]), (dialog, vec!["carol", "dave"])] {
            let views = store.member_views(chat).await.expect("read").expect("a chat");
            assert_eq!(views.members(), members.as_slice());
            for member in members {
                let summary = store.summary(chat, member).await.expect("read").expect("a member");
                assert_eq!(views.as_seen_by(member), Some(summary), "{member} in chat {chat}");
            }
            assert_eq!(views.as_seen_by("erin"), None, "not a member");
        }
        let bob = store.member_views(chat).await.expect("read").expect("a chat").as_seen_by("bob").expect("bob");
        assert_eq!((bob.missed, bob.last_message_id, bob.last_message_text.as_deref()), (2, 5, Some("m3")));
        assert!(store.member_views(chat + dialog + 1).await.expect("read").is_none(), "no such chat");
    }
}

/// A deletion's caller is checked before the gateway reads every member's
/// view of the chat, with the refusals the deletion itself gives.
#[tokio::test]
async fn may_delete_refuses_as_the_deletion_would() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let code = |r: Result<(), StoreRefusal>| match r {
            Ok(()) => None,
            Err(StoreRefusal::Refused(refusal)) => Some(refusal.code),
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(code(store.may_delete(chat, "alice").await), None);
        assert_eq!(code(store.may_delete(chat, "bob").await), Some(ErrorCode::Forbidden), "a member, not the creator");
        assert_eq!(code(store.may_delete(chat, "mallory").await), Some(ErrorCode::Forbidden), "not a member");
        assert_eq!(code(store.may_delete(chat + 1, "alice").await), Some(ErrorCode::NotFound), "no such chat");
        for by in ["bob", "mallory"] {
            let refused = store.delete_chat(chat, by, 5).await.map(|_| ()).map_err(|e| code(Err(e)));
            assert_eq!(refused, Err(code(store.may_delete(chat, by).await)), "{by}");
        }
    }
}

/// Member lists come sorted by their ids' bytes on both backends, also
/// where PostgreSQL's collation orders text otherwise: here the members
/// column takes ICU's root collation, as a database made in a locale
/// other than C would, which puts `alice` before `Bob`.
#[tokio::test]
async fn member_lists_are_in_byte_order_whatever_the_collation() {
    for (store, _dir, url) in stores_with_urls().await {
        if store.backend() == shared::store::Backend::Postgres {
            sqlx::any::install_default_drivers();
            let mut conn =
                <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
            sqlx::query(r#"ALTER TABLE members ALTER COLUMN user_id SET DATA TYPE TEXT COLLATE "und-x-icu""#)
                .execute(&mut conn)
                .await
                .expect("a locale's collation");
        }
        let chat = group(&store, "alice", &["Bob", "ädam", "carol"]).await;
        store.apply_pairs(&[("carol".to_string(), send(chat, "c1", "hi"))], 100).await.expect("sent");
        let marks: Vec<_> =
            ["alice", "Bob", "ädam"].iter().map(|u| (u.to_string(), mark(chat, 1, MarkKind::Read))).collect();
        store.apply_pairs(&marks, 200).await.expect("marked");

        let sorted = ["Bob", "alice", "carol", "ädam"];
        assert_eq!(store.members(chat).await.expect("members"), sorted);
        let views = store.member_views(chat).await.expect("read").expect("a chat");
        assert_eq!(views.members(), sorted);
        assert_eq!(store.summary(chat, "alice").await.expect("read").expect("a member").members[..], sorted);
        let page = store.messages(chat, "alice", HistoryQuery::default()).await.expect("history");
        assert_eq!(
            page[0].reached(MarkKind::Read).collect::<Vec<_>>(),
            ["Bob", "alice", "ädam"],
            "{:?}",
            store.backend()
        );
        let receipts = store.receipts(chat, "alice", 1).await.expect("receipts");
        let order: Vec<&str> = receipts.iter().map(|r| r.user_id.as_str()).collect();
        assert_eq!(order, ["Bob", "alice", "ädam"]);
    }
}

/// A group of the most members a chat may have holds every one of them
/// (they go in by more than one statement), takes no more, and a member
/// added once there is room is among the members the change names, where
/// a read of the members puts them.
#[tokio::test]
async fn a_group_of_the_most_members_holds_every_one_and_no_more() {
    for (store, _dir) in stores().await {
        let named: Vec<String> = (1..MAX_MEMBERS).map(|i| format!("m{i:05}")).collect();
        let request = NewChat::group("big", named.clone());
        let created = store.create_chat("alice", request, 1).await.map_err(|e| e.0).expect("created");
        let mut everyone = named;
        everyone.push("alice".into());
        everyone.sort();
        // Compared whole, but not printed whole: 10,000 names.
        let backend = store.backend();
        assert!(created.members == everyone, "{backend:?}: {} members named", created.members.len());
        let chat = created.chat_id;
        let stored = store.members(chat).await.expect("members");
        assert!(stored == everyone, "{backend:?}: {} members stored", stored.len());

        let err = store.add_member(chat, "alice", "zoe", 2).await.expect_err("full");
        assert!(matches!(err, StoreRefusal::Refused(ref r) if r.code == ErrorCode::BadRequest), "{err:?}");
        store.remove_member(chat, "alice", "m05000").await.expect("removed");
        let added = store.add_member(chat, "m00001", "bob", 3).await.expect("room for one");
        let stored = store.members(chat).await.expect("members");
        assert_eq!((added.members.len(), stored.len()), (MAX_MEMBERS, MAX_MEMBERS), "{backend:?}");
        assert!(added.members == stored, "{backend:?}: the members named are those stored, in order");
        assert_eq!(added.members[..2], ["alice".to_string(), "bob".to_string()]);
    }
}
