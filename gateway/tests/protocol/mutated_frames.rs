//! Bad input at random: valid commands with fields removed, replaced by
//! values of every JSON type and size, or the frame cut short. Whatever
//! comes, the server answers each frame once at most, never with a ref it
//! was not sent, and the connection and the server carry on.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::TestServer;

const FRAMES: u64 = 600;

fn odd_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(-9.5e300),
        json!(1.5),
        json!(""),
        json!("x".repeat(70)),
        json!("😀".repeat(20)),
        json!("\u{0}"),
        json!([]),
        json!({}),
        json!([1, [2, [3]]]),
        json!({"1": {"2": []}}),
    ]
}

/// What a mutated frame still is.
#[derive(PartialEq)]
enum Kind {
    /// A JSON object with its numeric ref: answered with that ref.
    Object,
    /// An object whose `type` is `typing`: no answer if it is let through.
    Typing,
    /// Cut short or not an object: an error without a ref.
    Broken,
}

/// One mutated frame as text, and what it still is.
fn mutated(rng: &mut StdRng, chat: i64, reference: u64) -> (String, Kind) {
    let bases = [
        json!({"type": "new", "chatId": chat, "clientMessageId": "c", "message": "hi", "attachments": [{"a": 1}]}),
        json!({"type": "edit", "chatId": chat, "messageId": 1, "message": "x"}),
        json!({"type": "delete", "chatId": chat, "messageId": 1}),
        json!({"type": "dlvrd", "chatId": chat, "messageId": 1}),
        json!({"type": "read", "chatId": chat, "messageId": 1}),
        json!({"type": "typing", "chatId": chat}),
        json!({"type": "sync", "since": {chat.to_string(): 0}}),
        json!({"type": "ping"}),
    ];
    let keys = ["type", "chatId", "messageId", "clientMessageId", "message", "attachments", "since", "extra"];
    let odd = odd_values();
    let mut frame = bases.choose(rng).expect("a base").clone();
    for _ in 0..rng.gen_range(0..=3) {
        let key = *keys.choose(rng).expect("a key");
        if rng.gen_bool(0.3) {
            frame.as_object_mut().expect("object").remove(key);
        } else {
            frame[key] = odd.choose(rng).expect("a value").clone();
        }
    }
    frame["ref"] = json!(reference);
    let text = frame.to_string();
    match rng.gen_range(0..100) {
        0..=2 => (text[..rng.gen_range(0..text.len())].to_owned(), Kind::Broken),
        3 => ("[".repeat(200) + &"]".repeat(200), Kind::Broken),
        _ if frame["type"] == "typing" => (text, Kind::Typing),
        _ => (text, Kind::Object),
    }
}

#[tokio::test]
async fn mutated_frames_get_one_answer_at_most_and_the_connection_carries_on() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    alice.send_message(chat, "first", "so that message 1 exists").await;

    let mut rng = StdRng::seed_from_u64(24);
    let (mut objects, mut typing, mut broken) = (0, 0, 0);
    for reference in 0..FRAMES {
        let (text, kind) = mutated(&mut rng, chat, reference);
        match kind {
            Kind::Object => objects += 1,
            Kind::Typing => typing += 1,
            Kind::Broken => broken += 1,
        }
        alice.send_raw(Message::text(text)).await;
    }
    // Commands are answered in the order sent: once this one's ack is in,
    // every earlier command's answer is too.
    let last =
        json!({"type": "new", "ref": "last", "chatId": chat, "clientMessageId": "last", "message": "still here"});
    alice.send(last).await;

    let mut answers: HashMap<u64, usize> = HashMap::new();
    let mut without_ref = 0;
    loop {
        let frame = alice.recv().await;
        if !matches!(frame["type"].as_str(), Some("ack" | "error" | "pong")) {
            continue;
        }
        if frame["ref"] == "last" {
            assert_eq!(frame["type"], "ack", "{frame}");
            break;
        }
        match frame.get("ref") {
            None => without_ref += 1,
            Some(reference) => {
                let reference = reference.as_u64().unwrap_or_else(|| panic!("a ref never sent: {frame}"));
                assert!(reference < FRAMES, "a ref never sent: {frame}");
                *answers.entry(reference).or_default() += 1;
            }
        }
    }
    assert!(answers.values().all(|&n| n == 1), "a frame answered twice: {answers:?}");
    // Every object is answered with its ref, bar a `typing` let through;
    // every broken frame gets an error without one.
    let answered = answers.len();
    assert!(
        (objects..=objects + typing).contains(&answered),
        "{answered} answered: {objects} objects, {typing} typing"
    );
    assert_eq!(without_ref, broken, "one error without a ref for each broken frame");
    let (status, _) = server.call("GET", "alice", "/v1/chats", None).await;
    assert_eq!(status, 200);
}
