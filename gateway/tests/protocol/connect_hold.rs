//! A new connection holds live chat events until its first frame (at most
//! 1 s), and releases them once more than `OUTBOUND_QUEUE` are held
//! (docs/protocol.md, "The connect hold"). A burst larger than that,
//! arriving at once, must be released: it used to be queued for the
//! connection's writer to hold, and the queue's bound closed a client that
//! read promptly with 4001 before the writer had run (found by a client
//! developer's audit: 17 events closed a connection in 2 runs of 3).

use serde_json::{json, Value};

use crate::common::TestServer;

/// Each round, a fresh connection of bob's is welcomed and sends nothing,
/// and alice sends twice the queue's bound at once: the first eight are
/// held, the ninth is held too and queues their release, and the rest
/// queue behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_bound_during_the_connect_hold_is_released_in_order() {
    const QUEUE: usize = 8;
    const BURST: usize = 2 * QUEUE;
    let server = TestServer::start_with(|s| s.outbound_queue = QUEUE).await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    for round in 0..40 {
        let mut bob = server.connect("bob").await;
        // Sent without waiting for acks, they are applied together and
        // reach bob's connection in one fan-out.
        for i in 0..BURST {
            let id = format!("r{round}-{i}");
            alice.send(json!({"type": "new", "chatId": chat, "clientMessageId": id, "message": "x"})).await;
        }
        for _ in 0..BURST {
            assert_eq!(alice.recv_type("ack").await["chatId"], chat);
        }
        let mut received = Vec::new();
        while received.len() < BURST {
            let frame: Value = bob.recv().await;
            assert_ne!(frame["type"], "error", "{frame}");
            if frame["type"] == "new" {
                received.push(frame["clientMessageId"].as_str().expect("clientMessageId").to_owned());
            }
        }
        let sent: Vec<String> = (0..BURST).map(|i| format!("r{round}-{i}")).collect();
        assert_eq!(received, sent, "round {round}: every event once, in order");
        assert!(bob.drain().await.iter().all(|f| f["type"] != "new"), "round {round}: no duplicates later");
        bob.close().await;
    }
}
