//! A test server and test clients.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use gateway::config::{Cli, Settings};
use gateway::node::Node;
use serde_json::{json, Value};
pub use testkit::client::{Client, Ended};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET: &[u8] = b"test-secret";

pub struct TestServer {
    pub addr: SocketAddr,
    pub node: Arc<Node>,
    pub dir: Arc<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    http: reqwest::Client,
}

pub fn settings(dir: &tempfile::TempDir) -> Settings {
    let mut settings = Cli::parse_from(["gateway"]).settings;
    settings.listen = "127.0.0.1:0".parse().expect("addr");
    settings.data_dir = dir.path().display().to_string();
    settings.database_url = Some(format!("sqlite://{}/chat.db", dir.path().display()));
    settings.jwt_secret = None;
    settings.node_id = Some("test-node".into());
    settings
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut Settings)) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::start_in(dir, configure).await
    }

    /// Starts on an existing data directory (a restart).
    pub async fn start_in(dir: Arc<tempfile::TempDir>, configure: impl FnOnce(&mut Settings)) -> TestServer {
        let mut settings = settings(&dir);
        configure(&mut settings);
        let listener = gateway::server::listen(settings.listen).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let node = Node::standalone(settings, SECRET, shared::telemetry::Telemetry::get()).await.expect("node");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway::server::run(listener, node.clone(), async move {
            let _ = stopped.await;
        }));
        TestServer { addr, node, dir, stop: Some(stop), task: Some(task), http: reqwest::Client::new() }
    }

    /// Stops the server the way SIGTERM does, and waits until it has.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran");
        }
    }

    pub fn token(&self, user: &str) -> String {
        token_with(SECRET, user, 3600)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn connect(&self, user: &str) -> Client {
        testkit::client::connect(&format!("ws://{}/ws", self.addr), &self.token(user), user).await.expect("connect")
    }

    /// A REST call as `user`; returns the status and the JSON body (Null
    /// when there is none).
    pub async fn call(&self, method: &str, user: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, user, path, body, &[]).await
    }

    /// [`TestServer::call`] with extra request headers.
    pub async fn call_with(
        &self,
        method: &str,
        user: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, self.url(path)).bearer_auth(self.token(user));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("http");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("json body") })
    }

    /// Creates a group of `creator` and `others`; returns its id.
    pub async fn group(&self, creator: &str, others: &[&str]) -> i64 {
        let (status, chat) = self
            .call("POST", creator, "/v1/chats", Some(json!({"type": "group", "name": "g", "members": others})))
            .await;
        assert_eq!(status, 201, "{chat}");
        chat["id"].as_i64().expect("id")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub fn token_with(secret: &[u8], user: &str, ttl_seconds: i64) -> String {
    let exp = shared::clock::now_ms() / 1000 + ttl_seconds;
    shared::auth::Authenticator::new(secret).mint(user, exp.max(0) as u64)
}

/// The status and JSON body (Null when there is none) of a WebSocket
/// upgrade request to `/ws{query}`, with `header` as its `Authorization`.
pub async fn ws_status(server: &TestServer, query: &str, header: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .get(server.url(&format!("/ws{query}")))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(value) = header {
        request = request.header("Authorization", value);
    }
    let response = request.send().await.expect("http");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
