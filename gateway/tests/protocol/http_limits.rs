//! What one HTTP request may hold (found by a hostile-client audit):
//! a REST request that never completes gets a JSON 408 once
//! `REQUEST_TIMEOUT` is up, and a shutdown does not wait for it past
//! `SHUTDOWN_GRACE` (announced bodies that never came filled a gateway's
//! files and kept it from stopping); headers are buffered up to about
//! `MAX_HEAD_BYTES` (slow, huge ones held 500 KB each before any token was
//! checked).

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::TestServer;

/// Sends a chat creation's headers, announcing a body it never sends, and
/// returns once the server waits for that body: asked to, hyper answers
/// `100 Continue` when the handler first reads it.
async fn request_without_its_body(server: &TestServer) -> TcpStream {
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "POST /v1/chats HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n",
        server.token("alice")
    );
    tcp.write_all(head.as_bytes()).await.expect("headers sent");
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        interim.push(tcp.read_u8().await.expect("an interim answer"));
    }
    assert!(interim.starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&interim));
    tcp
}

#[tokio::test]
async fn a_request_whose_body_never_comes_is_answered_408_in_json() {
    let server = TestServer::start().await;
    let mut tcp = request_without_its_body(&server).await;
    let wait = gateway::server::REQUEST_TIMEOUT + Duration::from_secs(10);
    let mut answer = Vec::new();
    let read = tokio::time::timeout(wait, tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer within {wait:?}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).expect("a body")).expect("JSON");
    assert_eq!(body["code"], "bad_request", "{body}");
}

#[tokio::test]
async fn a_shutdown_does_not_wait_for_a_request_that_never_completes() {
    let mut server = TestServer::start().await;
    let _tcp = request_without_its_body(&server).await;
    let bound = gateway::server::SHUTDOWN_GRACE + Duration::from_secs(10);
    assert!(bound < gateway::server::REQUEST_TIMEOUT, "the test tells the grace from the request timeout");
    assert!(tokio::time::timeout(bound, server.stop()).await.is_ok(), "still stopping after {bound:?}");
}

/// A request whose line and headers pass `MAX_HEAD_BYTES` is refused (431)
/// rather than buffered, before any token is checked. (hyper checks the
/// bound when a read leaves the headers unfinished, so a head just past it
/// may complete in the read that crosses it: twice the bound here, well
/// under hyper's default of about 400 KB.)
#[tokio::test]
async fn headers_past_the_bound_are_refused() {
    let server = TestServer::start().await;
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    let padding = "x".repeat(2 * gateway::server::MAX_HEAD_BYTES);
    let head = format!("GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Padding: {padding}\r\n\r\n");
    // The server may answer and close before it has read it all.
    let _ = tcp.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

/// A client that asks for a large answer and takes none of it is dropped
/// by the kernel once `SEND_STALL` has passed (`TCP_USER_TIMEOUT`), rather
/// than held with its answer for good: reading after that meets the end of
/// the connection long before the whole answer.
#[tokio::test]
async fn an_answer_never_read_is_dropped_after_the_send_stall() {
    let server = TestServer::start().await;
    let chat = server.group("alice", &["bob"]).await;
    let mut alice = server.connect("alice").await;
    let (text, attachments) = ("x".repeat(16_000), serde_json::json!([{"k": "y".repeat(44_000)}]));
    for i in 0..200 {
        let ack = alice
            .request(serde_json::json!({"type": "new", "chatId": chat, "clientMessageId": format!("c{i}"),
                "message": text, "attachments": attachments}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    let path = format!("/v1/chats/{chat}/messages?limit=200");
    let whole =
        reqwest::Client::new().get(server.url(&path)).bearer_auth(server.token("bob")).send().await.expect("answer");
    let whole = whole.bytes().await.expect("read whole").len();

    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("a small window");
    let mut tcp = socket.connect(server.addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        server.token("bob")
    );
    tcp.write_all(request.as_bytes()).await.expect("request sent");
    // The scenario: a client that reads nothing for longer than the stall.
    tokio::time::sleep(gateway::server::SEND_STALL + Duration::from_secs(10)).await;
    let (mut received, mut chunk) = (0, vec![0u8; 1 << 16]);
    while let Ok(n @ 1..) = tcp.read(&mut chunk).await {
        received += n;
    }
    assert!(received < whole, "{received} bytes of an answer of {whole}: the connection was kept");
}
