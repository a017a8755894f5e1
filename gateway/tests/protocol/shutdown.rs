//! Graceful drain: on stop, every client is closed with 1012 (reconnect
//! elsewhere) after the replies it is owed, and nothing acknowledged is
//! lost.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Client, Ended, TestServer};

/// Reads until the close; returns how it ended and the messageIds acked.
async fn acks_until_close(client: &mut Client) -> (Ended, HashSet<i64>) {
    let mut acked = HashSet::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), client.ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(&text).expect("json");
                assert_ne!(frame["type"], "error", "nothing accepted is refused while draining: {frame}");
                if frame["type"] == "ack" {
                    acked.insert(frame["messageId"].as_i64().expect("id"));
                }
            }
            Ok(Some(Ok(Message::Close(Some(close))))) => return (Ended::Closed(u16::from(close.code)), acked),
            Ok(Some(Ok(_))) => {}
            _ => return (Ended::Dropped, acked),
        }
    }
}

#[tokio::test]
async fn draining_closes_every_client_with_1012_and_keeps_every_acked_message() {
    let mut server = TestServer::start_with(|s| s.drain_seconds = 1).await;
    let chat = server.group("alice", &["bob"]).await;
    let mut clients = Vec::new();
    for n in 0..20 {
        let user = if n % 2 == 0 { "alice" } else { "bob" };
        clients.push(server.connect(user).await);
    }
    for (n, client) in clients.iter_mut().enumerate() {
        for i in 1..=20 {
            let id = format!("c{n}-{i}");
            client.send(json!({"type": "new", "chatId": chat, "clientMessageId": id, "message": "m"})).await;
        }
    }
    // Stop once the server is provably in the middle of the burst.
    clients[0].recv_type("ack").await;
    let readers = futures_util::future::join_all(clients.iter_mut().map(acks_until_close));
    let (outcomes, ()) = tokio::join!(readers, server.stop());
    let mut acked = HashSet::new();
    for (ended, ids) in outcomes {
        assert_eq!(ended, Ended::Closed(1012), "every client is told to reconnect elsewhere");
        acked.extend(ids);
    }

    let restarted = TestServer::start_in(server.dir.clone(), |_| {}).await;
    let mut stored = HashSet::new();
    let mut after = 0;
    loop {
        let path = format!("/v1/chats/{chat}/messages?limit=200&after={after}");
        let (_, page) = restarted.call("GET", "bob", &path, None).await;
        let ids: Vec<i64> = page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["messageId"].as_i64().expect("id"))
            .collect();
        let Some(last) = ids.last().copied() else { break };
        stored.extend(ids);
        after = last;
    }
    assert!(acked.is_subset(&stored), "acked but not stored: {:?}", acked.difference(&stored).collect::<Vec<_>>());
    assert_eq!(stored, (1..=stored.len() as i64).collect(), "no gaps");
}
