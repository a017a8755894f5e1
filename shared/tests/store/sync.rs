//! Sync pages: cut at their limit, read by members only, and many read
//! at once each what one read gives.

use super::*;

/// A sync page is the events after `since`, at most `limit` of them, with
/// the chat's last event id; only a member reads it, and a chat that does
/// not exist is not found (on PostgreSQL all of it comes from one
/// statement, whose rows repeat the chat's for each event).
#[tokio::test]
async fn a_sync_page_is_cut_at_its_limit_and_read_by_members_only() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let sends: Vec<_> = (1..=5).map(|i| ("alice".to_string(), send(chat, &format!("p{i}"), "m"))).collect();
        store.apply_pairs(&sends, 10).await.expect("sent");
        let ids = |page: &shared::store::SyncPage| page.events.iter().map(|e| e.id).collect::<Vec<_>>();
        let first = store.events_after(chat, "bob", 0, 2).await.expect("first page");
        assert_eq!((ids(&first), first.last_event_id), (vec![1, 2], 5));
        let next = store.events_after(chat, "bob", 2, 2).await.expect("next page");
        assert_eq!(ids(&next), vec![3, 4]);
        let last = store.events_after(chat, "bob", 4, 2).await.expect("last page");
        assert_eq!(ids(&last), vec![5]);
        let done = store.events_after(chat, "bob", 5, 2).await.expect("up to date");
        assert_eq!((ids(&done), done.last_event_id), (vec![], 5));
        let stranger = store.events_after(chat, "eve", 0, 2).await.expect_err("not a member");
        assert!(matches!(stranger, StoreRefusal::Refused(ref r) if r.code == ErrorCode::Forbidden));
        let missing = store.events_after(chat + 1_000, "bob", 0, 2).await.expect_err("no such chat");
        assert!(matches!(missing, StoreRefusal::Refused(ref r) if r.code == ErrorCode::NotFound));
    }
}

/// Many clients' sync pages read at once are each what the client's read
/// alone gives: its page, or its refusal (not a member, no such chat,
/// `since` beyond the log), in the order asked.
#[tokio::test]
async fn many_sync_pages_read_at_once_are_each_what_one_read_gives() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let other = group(&store, "carol", &["bob"]).await;
        let sends: Vec<_> = (1..=5).map(|i| ("alice".to_string(), send(chat, &format!("q{i}"), "m"))).collect();
        store.apply_pairs(&sends, 10).await.expect("sent");
        store.apply_pairs(&[("carol".to_string(), send(other, "o1", "m"))], 10).await.expect("sent");
        let asks = [
            (chat, "bob", 0),
            (other, "bob", 0),
            (chat, "bob", 3),
            (chat, "eve", 0),
            (chat + 1_000, "bob", 0),
            (chat, "alice", 9),
            (chat, "alice", 5),
        ];
        let requests: Vec<PageRequest> =
            asks.iter().map(|&(chat, user, since)| PageRequest { chat, user: user.into(), since }).collect();
        let together = store.events_after_many(&requests, 2).await.expect("read");
        assert_eq!(together.len(), asks.len());
        for (&(chat, user, since), page) in asks.iter().zip(together) {
            let alone = store.events_after(chat, user, since, 2).await.map_err(|e| match e {
                StoreRefusal::Refused(refusal) => refusal.code,
                StoreRefusal::Failed(e) => panic!("{e}"),
            });
            assert_eq!(page.map_err(|r| r.code), alone, "{user} in {chat} after {since}");
        }
        let first = store.events_after_many(&requests[..1], 2).await.expect("read one");
        assert_eq!(first[0].as_ref().expect("a page").events.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2]);
    }
}
