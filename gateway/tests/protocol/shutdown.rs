//! A normal stop loses nothing accepted: what was acked is stored, and
//! clients are told to reconnect (1001) after their last replies.

use std::collections::HashSet;

use serde_json::json;

use crate::common::{Ended, TestServer};

#[tokio::test]
async fn stopping_keeps_every_acked_message_and_closes_with_1001() {
    let mut server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    for i in 1..=200 {
        alice
            .send(json!({"type": "new", "ref": i, "chatId": chat, "clientMessageId": format!("c{i}"), "message": "m"}))
            .await;
    }
    // Stop once the server is provably in the middle of the burst.
    let first = alice.recv_type("ack").await;
    let mut acked: HashSet<i64> = HashSet::from([first["messageId"].as_i64().expect("id")]);
    let collect = async {
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), futures_util::StreamExt::next(&mut alice.ws))
                .await
            {
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) => {
                    let frame: serde_json::Value = serde_json::from_str(&text).expect("json");
                    assert_ne!(frame["type"], "error", "nothing accepted is refused at shutdown: {frame}");
                    if frame["type"] == "ack" {
                        acked.insert(frame["messageId"].as_i64().expect("id"));
                    }
                }
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame)))) => {
                    return frame.map(|f| u16::from(f.code)).map(Ended::Closed).unwrap_or(Ended::Dropped)
                }
                Ok(Some(Ok(_))) => {}
                _ => return Ended::Dropped,
            }
        }
    };
    let (ended, ()) = tokio::join!(collect, server.stop());
    assert_eq!(ended, Ended::Closed(1001));

    let restarted = TestServer::start_in(server.dir.clone(), |_| {}).await;
    let (_, history) = restarted.call("GET", "bob", &format!("/v1/chats/{chat}/messages?limit=200"), None).await;
    let stored: HashSet<i64> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["messageId"].as_i64().expect("id"))
        .collect();
    assert!(acked.is_subset(&stored), "acked but not stored: {:?}", acked.difference(&stored).collect::<Vec<_>>());
    assert_eq!(stored, (1..=stored.len() as i64).collect(), "no gaps");
}
