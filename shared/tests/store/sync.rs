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

/// A page of large events ends after about a mebibyte, however many fewer
/// than its limit that is, and the pages after it carry on without a gap
/// or a repeat; read one client at a time or many at once.
#[tokio::test]
async fn a_sync_page_of_large_events_is_cut_by_size() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let other = group(&store, "carol", &["bob"]).await;
        let big = shared::model::Attachments::from_value(&json!([{"kind": "file", "blob": "x".repeat(60_000)}]));
        let sends: Vec<_> = (1..=40)
            .map(|i| {
                let command = Command::Send {
                    chat_id: chat,
                    client_message_id: format!("big{i}"),
                    text: "m".into(),
                    attachments: big.clone(),
                };
                ("alice".to_string(), command)
            })
            .collect();
        store.apply_pairs(&sends, 10).await.expect("sent");
        store.apply_pairs(&[("carol".to_string(), send(other, "o1", "m"))], 10).await.expect("sent");

        let mut read = Vec::new();
        let mut pages = 0;
        while read.len() < 40 {
            let since = read.last().copied().unwrap_or(0);
            let page = store.events_after(chat, "bob", since, 500).await.expect("a page");
            assert!(!page.events.is_empty(), "a page has one event at least");
            assert!(page.events.len() < 20, "{} events of 60 KB in one page", page.events.len());
            read.extend(page.events.iter().map(|e| e.id));
            pages += 1;
        }
        assert_eq!(read, (1..=40).collect::<Vec<_>>(), "in order, none missing or repeated");
        assert!(pages >= 3, "{pages} pages");

        // Many at once: the large chat's page is cut, the small one whole.
        let requests = [
            PageRequest { chat, user: "bob".into(), since: 0 },
            PageRequest { chat: other, user: "bob".into(), since: 0 },
        ];
        let together = store.events_after_many(&requests, 500).await.expect("read");
        let first = together[0].as_ref().expect("a page");
        let alone = store.events_after(chat, "bob", 0, 500).await.expect("a page");
        assert_eq!(first.events.len(), alone.events.len());
        assert_eq!(together[1].as_ref().expect("a page").events.len(), 1);
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

/// The bounds a sync reads before its pages agree with the pages: for each
/// chat a client names, the last event id its first page would report, or
/// the refusal that page would get; for several clients at once, each in
/// the order it named its chats.
#[tokio::test]
async fn replay_bounds_are_what_each_chats_first_page_would_say() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let quiet = group(&store, "carol", &["bob"]).await;
        let sends: Vec<_> = (1..=5).map(|i| ("alice".to_string(), send(chat, &format!("b{i}"), "m"))).collect();
        store.apply_pairs(&sends, 10).await.expect("sent");
        let bob = BoundsRequest {
            user: "bob".into(),
            since: vec![(chat, 2), (quiet, 0), (chat + 1_000, 0), (chat, 5), (chat, 9)],
        };
        let eve = BoundsRequest { user: "eve".into(), since: vec![(chat, 0)] };
        let alice = BoundsRequest { user: "alice".into(), since: vec![] };
        let read = store.replay_bounds(&[bob.clone(), alice, eve.clone()]).await.expect("read");
        assert_eq!(read.len(), 3);
        assert!(read[1].is_empty(), "a sync naming no chat has no bounds");
        for (request, bounds) in [(&bob, &read[0]), (&eve, &read[2])] {
            assert_eq!(bounds.len(), request.since.len());
            for (&(chat, since), bound) in request.since.iter().zip(bounds) {
                let page = store.events_after(chat, &request.user, since, 2).await.map(|p| p.last_event_id);
                let page = page.map_err(|e| match e {
                    StoreRefusal::Refused(refusal) => refusal.code,
                    StoreRefusal::Failed(e) => panic!("{e}"),
                });
                assert_eq!(bound.clone().map_err(|r| r.code), page, "{} in {chat} after {since}", request.user);
            }
        }
        let codes: Vec<_> = read[0].iter().map(|b| b.clone().map_err(|r| r.code)).collect();
        assert_eq!(
            codes,
            vec![Ok(5), Ok(0), Err(ErrorCode::NotFound), Ok(5), Err(ErrorCode::SyncGap)],
            "behind, quiet, missing, caught up, beyond"
        );
        assert_eq!(read[2][0].clone().map_err(|r| r.code), Err(ErrorCode::Forbidden));
    }
}
