//! REST calls past a user's allowance (`REST_RATE`, `REST_BURST`) are
//! refused with 429 `rate_limited`, and other users' calls go on.

use crate::common::{ws_status, TestServer};

#[tokio::test]
async fn rest_calls_past_a_users_allowance_are_refused_and_others_go_on() {
    let server = TestServer::start_with(|s| {
        s.rest_rate = 1;
        s.rest_burst = 2;
    })
    .await;
    // Two at once, then one a second: ten calls in a row meet a refusal
    // unless they take eight seconds.
    let http = reqwest::Client::new();
    let mut answers = Vec::new();
    for _ in 0..10 {
        let answer = http.get(server.url("/v1/chats")).bearer_auth(server.token("alice")).send().await.expect("http");
        let wait = answer.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let status = answer.status().as_u16();
        answers.push((status, wait, answer.json::<serde_json::Value>().await.expect("json")));
    }
    assert_eq!(answers[0].0, 200, "{:?}", answers[0]);
    let (_, wait, refusal) = answers.iter().find(|(status, ..)| *status == 429).expect("a call refused");
    assert_eq!(refusal["code"], "rate_limited", "{refusal}");
    assert_eq!(wait.as_deref(), Some("1"), "a refusal says how long to wait");
    let (status, body) = server.call("GET", "bob", "/v1/chats", None).await;
    assert_eq!(status, 200, "bob's allowance is his own: {body}");
    let metrics = reqwest::get(server.url("/metrics")).await.expect("metrics").text().await.expect("text");
    let counted = metrics.lines().find_map(|line| line.strip_prefix("chat_rest_rate_limited_total "));
    assert!(counted.and_then(|n| n.trim().parse::<f64>().ok()) >= Some(1.0), "{metrics}");
}

/// A WebSocket upgrade takes a call of the same allowance: each new
/// connection costs the user's chats loaded and presence told, so a client
/// reconnecting in a loop is refused with 429 `rate_limited`. The
/// connection it holds and other users' upgrades go on.
#[tokio::test]
async fn upgrades_past_a_users_allowance_are_refused_and_others_go_on() {
    let server = TestServer::start_with(|s| {
        s.rest_rate = 1;
        s.rest_burst = 2;
    })
    .await;
    let mut held = server.connect("alice").await;
    let bearer = format!("Bearer {}", server.token("alice"));
    let mut refusal = None;
    for _ in 0..10 {
        let (status, body) = ws_status(&server, "", Some(&bearer)).await;
        if status == 429 {
            refusal = Some(body);
            break;
        }
        assert_eq!(status, 101, "{body}");
    }
    let refusal = refusal.expect("an upgrade refused");
    assert_eq!(refusal["code"], "rate_limited", "{refusal}");
    held.send(serde_json::json!({"type": "ping", "ref": 1})).await;
    assert_eq!(held.recv_type("pong").await["ref"], 1, "the connection held goes on");
    let (status, body) = ws_status(&server, "", Some(&format!("Bearer {}", server.token("bob")))).await;
    assert_eq!(status, 101, "bob's allowance is his own: {body}");
}
