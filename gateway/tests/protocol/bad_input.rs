//! Bad input gets the protocol's `error` and the connection stays open.

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Ended, TestServer};

#[tokio::test]
async fn every_kind_of_bad_frame_gets_an_error_and_the_connection_lives_on() {
    let server = TestServer::start_with(|s| s.max_message_bytes = 100).await;
    let chat = server.group("alice", &["bob"]).await;
    let foreign = server.group("carol", &["dave"]).await;
    let mut alice = server.connect("alice").await;

    let raw_cases = [
        ("{not json", "bad_request"),
        ("[1,2,3]", "bad_request"),
        ("\"text\"", "bad_request"),
        (r#"{"ref":1}"#, "bad_request"),
        (r#"{"type":42}"#, "bad_request"),
    ];
    for (raw, code) in raw_cases {
        alice.send_raw(Message::text(raw)).await;
        let error = alice.recv().await;
        assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("error"), Some(code)), "{raw}: {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    let cases = [
        (json!({"type": "teleport"}), "bad_request"),
        (json!({"type": "new", "chatId": chat, "message": "x"}), "bad_request"),
        (json!({"type": "new", "chatId": "one", "clientMessageId": "c", "message": "x"}), "bad_request"),
        (json!({"type": "new", "chatId": chat, "clientMessageId": "", "message": "x"}), "bad_request"),
        (json!({"type": "new", "chatId": chat, "clientMessageId": "c".repeat(65), "message": "x"}), "bad_request"),
        (json!({"type": "new", "chatId": chat, "clientMessageId": "c", "message": 5}), "bad_request"),
        (
            json!({"type": "new", "chatId": chat, "clientMessageId": "c", "message": "x", "attachments": "no"}),
            "bad_request",
        ),
        (json!({"type": "new", "chatId": chat, "clientMessageId": "c", "message": "x".repeat(101)}), "too_large"),
        (json!({"type": "edit", "chatId": chat, "messageId": -1, "message": "x"}), "bad_request"),
        (json!({"type": "read", "chatId": chat}), "bad_request"),
        (json!({"type": "sync", "since": [1]}), "bad_request"),
        (json!({"type": "new", "chatId": 999, "clientMessageId": "c", "message": "x"}), "not_found"),
        (json!({"type": "new", "chatId": foreign, "clientMessageId": "c", "message": "x"}), "forbidden"),
        (json!({"type": "dlvrd", "chatId": foreign, "messageId": 1}), "forbidden"),
        (json!({"type": "read", "chatId": chat, "messageId": 1}), "bad_request"),
    ];
    for (frame, code) in cases {
        let error = alice.request(frame.clone()).await;
        assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("error"), Some(code)), "{frame}: {error}");
    }

    alice.send_raw(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(alice.recv().await["code"], "bad_request");
    // Still open, and still working.
    alice.send_message(chat, "ok", "still here").await;
}

#[tokio::test]
async fn a_frame_over_64_kib_closes_with_1009() {
    let server = TestServer::start().await;
    let mut alice = server.connect("alice").await;
    let mut exactly = server.connect("alice").await;
    let limit = shared::config::MAX_FRAME_BYTES;
    // A frame of exactly the limit is read (and refused as too large text).
    let padding = "x".repeat(limit - r#"{"type":"ping","ref":""}"#.len());
    exactly.send_raw(Message::text(format!(r#"{{"type":"ping","ref":"{padding}"}}"#))).await;
    assert_eq!(exactly.recv().await["code"], "bad_request", "an over-long ref is refused, the frame was read");
    alice.send_raw(Message::text("x".repeat(limit + 1))).await;
    assert_eq!(alice.ended().await, Ended::Closed(1009));

    // A binary message in fragments, each under the limit, is held to it
    // as a whole, as text is.
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let mut binary = server.connect("alice").await;
    let part =
        |data: Data, fin: bool| Message::Frame(Frame::message(vec![1u8; limit / 2 + 1], OpCode::Data(data), fin));
    binary.send_raw(part(Data::Binary, false)).await;
    binary.send_raw(part(Data::Continue, true)).await;
    assert_eq!(binary.ended().await, Ended::Closed(1009));
}

/// A message split into frames (RFC 6455, 5.4) is put back together, with
/// control frames allowed between its parts; a data frame out of sequence
/// fails the connection with 1002 rather than dropping half a command.
#[tokio::test]
async fn fragmented_messages_are_reassembled_and_frames_out_of_sequence_close_with_1002() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let part =
        |bytes: &str, data: Data, fin: bool| Message::Frame(Frame::message(bytes.to_owned(), OpCode::Data(data), fin));

    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    let send = format!(r#"{{"type":"new","ref":"split","chatId":{chat},"clientMessageId":"c1","message":"in parts"}}"#);
    let (head, tail) = send.split_at(send.len() / 2);
    let (middle, tail) = tail.split_at(tail.len() / 2);
    alice.send_raw(part(head, Data::Text, false)).await;
    alice.send_raw(Message::Ping(vec![7].into())).await;
    alice.send_raw(part(middle, Data::Continue, false)).await;
    alice.send_raw(part(tail, Data::Continue, true)).await;
    let (mut ack, mut new) = (None, None);
    while ack.is_none() || new.is_none() {
        let frame = alice.recv().await;
        match frame["type"].as_str() {
            Some("ack") => ack = Some(frame),
            Some("new") => new = Some(frame),
            _ => {}
        }
    }
    assert_eq!(ack.expect("ack")["ref"], "split");
    let new = new.expect("new");
    assert_eq!((new["message"].as_str(), new["clientMessageId"].as_str()), (Some("in parts"), Some("c1")));

    // Binary in parts: one refusal when it ends, and the connection lives on.
    alice.send_raw(part("\u{1}", Data::Binary, false)).await;
    alice.send_raw(part("\u{2}", Data::Continue, true)).await;
    let refusal = alice.recv_type("error").await;
    assert_eq!(refusal["code"], "bad_request");
    alice.send(json!({"type": "ping", "ref": "alive"})).await;
    assert_eq!(alice.recv_type("pong").await["ref"], "alive");

    // A new message before the last one ended.
    alice.send_raw(part(r#"{"type":"#, Data::Text, false)).await;
    alice.send_raw(part(r#"{"type":"ping"}"#, Data::Text, true)).await;
    assert_eq!(alice.ended().await, Ended::Closed(1002));

    // A continuation with nothing to continue.
    let mut bob = server.connect("bob").await;
    bob.send_raw(part("}", Data::Continue, true)).await;
    assert_eq!(bob.ended().await, Ended::Closed(1002));
}

/// A client frame without its mask fails the connection with 1002 (RFC
/// 6455, 5.1: the server must close it), its payload not acted on. Taken
/// as it came, the unmasked ping was answered and the connection lived on.
#[tokio::test]
async fn an_unmasked_frame_closes_with_1002() {
    let server = TestServer::start().await;
    let mut alice = server.connect("alice").await;
    let ping = br#"{"type":"ping","ref":"unmasked"}"#;
    let mut frame = vec![0x81, ping.len() as u8];
    frame.extend_from_slice(ping);
    alice.write_bytes(&frame).await;
    assert_eq!(alice.ended().await, Ended::Closed(1002));
}

/// A Close frame is answered by what it holds (RFC 6455 5.5.1, 7.4): 1000
/// to a valid one, 1002 to a lone byte or a code no peer may send, 1007 to
/// a reason that is not UTF-8. Each was answered 1000.
#[tokio::test]
async fn a_close_frame_is_answered_by_what_it_holds() {
    let server = TestServer::start().await;
    let cases: [(&[u8], u16); 5] =
        [(b"\x03\xe8bye", 1000), (b"\x03", 1002), (b"\x03\xed", 1002), (b"\x13\x88", 1002), (b"\x03\xe8\xff", 1007)];
    for (payload, answer) in cases {
        let mut alice = server.connect("alice").await;
        // Masked by hand: the client library refuses to send such frames.
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut frame = vec![0x88, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
        alice.write_bytes(&frame).await;
        assert_eq!(alice.ended().await, Ended::Closed(answer), "{payload:?}");
    }
}

/// Text that is not UTF-8 fails the connection with 1007 (RFC 6455, 8.1),
/// in one frame or in fragments; a character split between fragments is
/// read whole.
#[tokio::test]
async fn text_that_is_not_utf8_closes_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let part =
        |bytes: &[u8], data: Data, fin: bool| Message::Frame(Frame::message(bytes.to_vec(), OpCode::Data(data), fin));

    let server = TestServer::start().await;
    let mut alice = server.connect("alice").await;
    let ping = r#"{"type":"ping","ref":"é"}"#.as_bytes();
    let split = ping.iter().position(|&b| b == 0xc3).expect("é") + 1;
    alice.send_raw(part(&ping[..split], Data::Text, false)).await;
    alice.send_raw(part(&ping[split..], Data::Continue, true)).await;
    assert_eq!(alice.recv_type("pong").await["ref"], "é");
    alice.send_raw(part(b"{\"type\":\"ping\",\"ref\":\"\xc3", Data::Text, false)).await;
    alice.send_raw(part(b"\"}", Data::Continue, true)).await;
    assert_eq!(alice.ended().await, Ended::Closed(1007));

    let mut bob = server.connect("bob").await;
    bob.send_raw(part(b"{\"type\":\"ping\",\"ref\":\"\xff\"}", Data::Text, true)).await;
    assert_eq!(bob.ended().await, Ended::Closed(1007));
}

/// The reader's replies leave in the order of the frames they answer,
/// whether each is written to the socket at once (pongs and errors, while
/// nothing is queued) or goes through the writer (a `sync`'s ack), and
/// whatever the writer still holds when the next one comes.
#[tokio::test]
async fn replies_keep_the_order_of_the_frames_they_answer() {
    use futures_util::StreamExt;

    let server = TestServer::start().await;
    let mut alice = server.connect("alice").await;
    let mut expected = Vec::new();
    for i in 0..400 {
        match i % 4 {
            3 => {
                alice.send(json!({"type": "sync", "ref": i, "since": {}})).await;
                expected.push(format!("ack {i}"));
            }
            0 => {
                alice.send(json!({"type": "ping", "ref": i})).await;
                expected.push(format!("pong {i}"));
            }
            1 => {
                alice.send(json!({"type": "teleport", "ref": i})).await;
                expected.push(format!("error {i}"));
            }
            _ => {
                alice.send_raw(Message::Ping(i.to_string().into_bytes().into())).await;
                expected.push(format!("control {i}"));
            }
        }
    }
    let mut answered = Vec::new();
    while answered.len() < expected.len() {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), alice.ws.next())
            .await
            .expect("a reply within 10 s")
            .expect("the connection open")
            .expect("a frame");
        match message {
            Message::Text(text) => {
                let frame: serde_json::Value = serde_json::from_str(&text).expect("JSON");
                answered.push(format!("{} {}", frame["type"].as_str().unwrap_or("?"), frame["ref"]));
            }
            Message::Pong(payload) => {
                answered.push(format!("control {}", String::from_utf8_lossy(&payload)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(answered, expected);
}

/// Past its burst, a connection's commands are refused with `rate_limited`
/// (each with its own ref) and not applied; pings still answer, and the
/// connection stays open.
#[tokio::test]
async fn commands_past_the_allowance_are_refused_and_not_applied() {
    let server = TestServer::start_with(|s| {
        s.command_rate = 1;
        s.command_burst = 10;
    })
    .await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    const SENT: usize = 15;
    for i in 0..SENT {
        alice
            .send(json!({"type": "new", "ref": i, "chatId": chat, "clientMessageId": format!("c{i}"), "message": "hi"}))
            .await;
    }
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    while acked.len() + refused.len() < SENT {
        let frame = alice.recv().await;
        match frame["type"].as_str() {
            Some("ack") => acked.push(frame["ref"].as_u64().expect("ref")),
            Some("error") => {
                assert_eq!(frame["code"], "rate_limited", "{frame}");
                refused.push(frame["ref"].as_u64().expect("ref"));
            }
            _ => {}
        }
    }
    // At one command a second, only a stall of seconds would let more through.
    assert!(acked.len() >= 10 && !refused.is_empty(), "acked {acked:?}, refused {refused:?}");
    assert!((0..10).all(|r| acked.contains(&r)), "the burst is the first ten: {acked:?}");
    alice.send(json!({"type": "ping", "ref": "still"})).await;
    assert_eq!(alice.recv_type("pong").await["ref"], "still");
    let (_, history) = server.call("GET", "bob", &format!("/v1/chats/{chat}/messages"), None).await;
    assert_eq!(history["messages"].as_array().expect("messages").len(), acked.len(), "refused ones were not stored");
    // Counted by frame type, for the operator looking for the client.
    let metrics = reqwest::get(server.url("/metrics")).await.expect("metrics").text().await.expect("text");
    let counted =
        metrics.lines().find_map(|line| line.strip_prefix(r#"chat_commands_rate_limited_total{type="new"} "#));
    assert!(counted.and_then(|n| n.trim().parse::<f64>().ok()) >= Some(refused.len() as f64), "{metrics}");
}

/// A `sync` costs one command and one more per 100 chats it names: with
/// five to spend, one naming 200 chats (three) is answered, and a second
/// straight after it is refused, not read.
#[tokio::test]
async fn a_sync_naming_many_chats_costs_more_of_the_allowance() {
    let server = TestServer::start_with(|s| {
        s.command_rate = 1;
        s.command_burst = 5;
    })
    .await;
    let mut alice = server.connect("alice").await;
    let since: serde_json::Map<String, serde_json::Value> =
        (1..=200).map(|chat| (chat.to_string(), json!(0))).collect();
    alice.send(json!({"type": "sync", "ref": "first", "since": since})).await;
    let ack = alice.recv_type("ack").await;
    assert_eq!((&ack["ref"], &ack["synced"]), (&json!("first"), &json!({})), "every chat refused as not found");
    alice.send(json!({"type": "sync", "ref": "second", "since": since})).await;
    let refusal = alice.recv_type("error").await;
    assert_eq!((&refusal["ref"], &refusal["code"]), (&json!("second"), &json!("rate_limited")), "{refusal}");
}
