//! PROTOCOL.md 1: identity. Bad tokens get 401 before any upgrade; a
//! connection whose token expires is closed.

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{token_with, ws_status, Ended, TestServer, SECRET};

#[tokio::test]
async fn websocket_refuses_missing_garbage_wrong_key_and_expired_tokens() {
    let server = TestServer::start().await;
    let wrong_key = token_with(b"another-secret", "alice", 3600);
    let expired = token_with(SECRET, "alice", -10);
    let cases = [
        ("missing".to_string(), None),
        ("?token=garbage".to_string(), None),
        (format!("?token={wrong_key}"), None),
        (format!("?token={expired}"), None),
        (String::new(), Some("Bearer garbage".to_string())),
        (String::new(), Some(format!("Bearer {expired}"))),
    ];
    for (query, header) in cases {
        let query = if query == "missing" { String::new() } else { query };
        let (status, body) = ws_status(&server, &query, header.as_deref()).await;
        assert_eq!(status, 401, "{query} {header:?}");
        assert_eq!(body["code"], "unauthorized");
    }
    let good = server.token("alice");
    let (status, _) = ws_status(&server, "", Some(&format!("Bearer {good}"))).await;
    assert_eq!(status, 101, "a header token upgrades");
}

#[tokio::test]
async fn rest_refuses_bad_tokens_with_the_json_error() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let response = http.get(server.url("/v1/chats")).send().await.expect("http");
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "unauthorized");
    assert!(body["message"].is_string());
    let wrong_key = token_with(b"another-secret", "alice", 3600);
    let expired = token_with(SECRET, "alice", -10);
    for token in ["garbage".to_string(), wrong_key, expired] {
        let response = http.get(server.url("/v1/chats")).bearer_auth(&token).send().await.expect("http");
        assert_eq!(response.status(), 401, "{token}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], "unauthorized", "{token}");
    }
}

/// A token query that cannot be read (two `token`s) is a malformed token:
/// 401 before any upgrade, as JSON.
#[tokio::test]
async fn websocket_refuses_a_token_query_it_cannot_read() {
    let server = TestServer::start().await;
    let good = server.token("alice");
    let (status, body) = ws_status(&server, &format!("?token={good}&token={good}"), None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let (status, _) = ws_status(&server, &format!("?token={good}"), None).await;
    assert_eq!(status, 101);
}

/// What the framework refuses before a handler runs (a path segment that
/// is not UTF-8, a body past its limit) is the JSON error too (PROTOCOL.md
/// 1: every REST error has that shape).
#[tokio::test]
async fn errors_the_framework_answers_are_json_too() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let token = server.token("alice");
    let response = http.get(server.url("/v1/chats/%FF/messages")).bearer_auth(&token).send().await.expect("http");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body["code"], "bad_request", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");

    let chat = server.group("alice", &["bob"]).await;
    let huge = vec![b' '; 3 << 20];
    let response = http
        .post(server.url(&format!("/v1/chats/{chat}/members")))
        .bearer_auth(&token)
        .header("Content-Type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("http");
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body["code"], "too_large", "{body}");
}

#[tokio::test]
async fn welcome_and_ping() {
    let server = TestServer::start_with(|s| s.heartbeat_timeout_ms = 15_000).await;
    let url = format!("ws://{}/ws?token={}", server.addr, server.token("alice"));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
    let mut client = crate::common::Client { ws, user: "alice".into() };
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["userId"], "alice");
    assert_eq!(welcome["node"], "test-node");
    assert_eq!(welcome["heartbeatTimeout"], 15_000);
    assert!(welcome["connectionId"].is_string());
    let now = shared::clock::now_ms();
    assert!((welcome["serverTime"].as_i64().expect("serverTime") - now).abs() < 60_000);
    client.send(serde_json::json!({"type": "ping", "ref": 42})).await;
    let pong = client.recv().await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["ref"], 42);
    assert!(pong["ts"].is_i64());
}

/// A user's open connections on one node are capped (`USER_CONNECTIONS`):
/// an upgrade past the cap gets 429 `rate_limited` as JSON, other users
/// are not affected, and a connection closing makes room again.
#[tokio::test]
async fn a_user_s_connections_past_the_cap_are_refused_until_one_closes() {
    let server = TestServer::start_with(|s| s.user_connections = 2).await;
    let first = server.connect("alice").await;
    let _second = server.connect("alice").await;
    let bearer = format!("Bearer {}", server.token("alice"));
    let (status, body) = ws_status(&server, "", Some(&bearer)).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")), "{body}");
    let _bob = server.connect("bob").await;

    first.close().await;
    let started = std::time::Instant::now();
    loop {
        let (status, body) = ws_status(&server, "", Some(&bearer)).await;
        if status == 101 {
            break;
        }
        assert_eq!(status, 429, "{body}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the closed connection never made room");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Upgrades sent all at once are held to the cap too: each takes its
/// place as it is accepted, not once its connection is set up.
#[tokio::test]
async fn a_burst_of_upgrades_gets_no_more_connections_than_the_cap() {
    let server = TestServer::start_with(|s| s.user_connections = 3).await;
    let ws_url = server.url("/ws").replacen("http", "ws", 1);
    let token = server.token("alice");
    let attempts: Vec<_> = (0..30)
        .map(|_| {
            let (ws_url, token) = (ws_url.clone(), token.clone());
            tokio::spawn(async move { testkit::client::open(&ws_url, &token, "alice").await })
        })
        .collect();
    let mut opened = Vec::new();
    for attempt in attempts {
        if let Ok(client) = attempt.await.expect("joined") {
            opened.push(client);
        }
    }
    assert_eq!(opened.len(), 3, "30 upgrades at once for 3 places");
}

/// `exp` is enforced on an open connection too: alice's connections work
/// while her token is valid; the first frame one sends after its last
/// second is answered with the close 4002, but a close is answered as a
/// close (1000); once both are gone bob learns she went offline.
#[tokio::test]
async fn a_connection_is_closed_with_4002_once_its_token_expires() {
    let server = TestServer::start().await;
    server.group("alice", &["bob"]).await;
    let mut bob = server.connect("bob").await;
    // Two seconds and more: time to connect, ping and hear of each other
    // on a loaded machine.
    let valid_through = shared::clock::now_ms() / 1000 + 2;
    let token = shared::auth::Authenticator::new(SECRET).mint("alice", valid_through as u64);
    let url = format!("ws://{}/ws", server.addr);
    let mut alice = testkit::client::connect(&url, &token, "alice").await.expect("connect");
    let mut leaving = testkit::client::connect(&url, &token, "alice").await.expect("connect");
    alice.send(json!({"type": "ping", "ref": "valid"})).await;
    assert_eq!(alice.recv_type("pong").await["ref"], "valid");
    assert_eq!(bob.recv_type("online").await["userId"], "alice");
    // The token's life is what the test is about: wait it out.
    let expired_at = (valid_through + 1) * 1000;
    tokio::time::sleep(std::time::Duration::from_millis((expired_at - shared::clock::now_ms()).max(0) as u64 + 20))
        .await;
    alice.send(json!({"type": "ping", "ref": "expired"})).await;
    assert_eq!(alice.ended().await, Ended::Closed(4002));
    let normal = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    leaving.send_raw(Message::Close(Some(normal))).await;
    assert_eq!(leaving.ended().await, Ended::Closed(1000));
    assert_eq!(bob.recv_type("offline").await["userId"], "alice");
}
