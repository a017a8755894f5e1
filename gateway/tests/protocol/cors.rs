//! A web app on another origin calling the REST API (`CORS_ORIGINS`, the
//! project's choice where the contract is silent: docs/protocol.md,
//! section 7).

use reqwest::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use reqwest::{Method, Response};

use crate::common::TestServer;

const APP: &str = "https://app.example.com";

async fn preflight(server: &TestServer, origin: &str) -> Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, server.url("/v1/chats"))
        .header(ORIGIN, origin)
        .header(ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(ACCESS_CONTROL_REQUEST_HEADERS, "authorization,content-type,idempotency-key")
        .send()
        .await
        .expect("http")
}

fn allowed_origin(response: &Response) -> Option<&str> {
    response.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).and_then(|v| v.to_str().ok())
}

/// A page from a named origin gets its preflight answered, and its calls'
/// answers marked for it, errors included (so it can read their JSON); a
/// page from any other origin gets neither.
#[tokio::test]
async fn the_origins_named_may_call_the_rest_api_from_a_browser() {
    let server = TestServer::start_with(|s| s.cors_origins = Some(gateway::cors::parse(APP).expect("origins"))).await;
    let answer = preflight(&server, APP).await;
    assert!(answer.status().is_success(), "{}", answer.status());
    assert_eq!(allowed_origin(&answer), Some(APP));
    let methods = answer.headers().get(ACCESS_CONTROL_ALLOW_METHODS).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(methods.contains("POST") && methods.contains("DELETE"), "{methods}");
    let headers = answer.headers().get(ACCESS_CONTROL_ALLOW_HEADERS).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(headers.contains("authorization") && headers.contains("idempotency-key"), "{headers}");

    let http = reqwest::Client::new();
    let listed = http.get(server.url("/v1/chats")).bearer_auth(server.token("alice")).header(ORIGIN, APP).send().await;
    let listed = listed.expect("http");
    assert_eq!((listed.status().as_u16(), allowed_origin(&listed)), (200, Some(APP)));
    let refused = http.get(server.url("/v1/chats")).header(ORIGIN, APP).send().await.expect("http");
    assert_eq!((refused.status().as_u16(), allowed_origin(&refused)), (401, Some(APP)));

    let stranger = preflight(&server, "https://elsewhere.example.com").await;
    assert_eq!(allowed_origin(&stranger), None);
}

/// A page past its allowance can read how long to wait: `Retry-After` is
/// exposed to it, as a browser hides every header not named so.
#[tokio::test]
async fn a_page_refused_as_rate_limited_can_read_how_long_to_wait() {
    let server = TestServer::start_with(|s| {
        s.cors_origins = Some(gateway::cors::parse(APP).expect("origins"));
        s.rest_rate = 1;
        s.rest_burst = 1;
    })
    .await;
    let http = reqwest::Client::new();
    let mut refused = None;
    for _ in 0..10 {
        let answer = http.get(server.url("/v1/chats")).bearer_auth(server.token("alice")).header(ORIGIN, APP).send();
        let answer = answer.await.expect("http");
        if answer.status() == 429 {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("a call past a burst of one is refused");
    let header = |name| refused.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(header(reqwest::header::RETRY_AFTER), "1");
    assert_eq!(header(ACCESS_CONTROL_ALLOW_ORIGIN), APP);
    assert!(
        header(ACCESS_CONTROL_EXPOSE_HEADERS).to_ascii_lowercase().contains("retry-after"),
        "{:?}",
        refused.headers()
    );
}

/// Unset, no CORS headers: a preflight is an OPTIONS like any other,
/// refused as a method the route does not take.
#[tokio::test]
async fn without_cors_origins_no_page_elsewhere_is_let_in() {
    let server = TestServer::start().await;
    let answer = preflight(&server, APP).await;
    assert_eq!((answer.status().as_u16(), allowed_origin(&answer)), (405, None));
}
