//! A test server and test clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use gateway::config::{Cli, Settings};
use gateway::node::Node;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &[u8] = b"test-secret";
/// Generous bound for one expected frame; a healthy server answers in
/// milliseconds, so hitting it means the frame is not coming.
const WAIT: Duration = Duration::from_secs(10);

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
        let listener = tokio::net::TcpListener::bind(settings.listen).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let node = Node::standalone(settings, SECRET, gateway::metrics::handle()).await.expect("node");
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
        let url = format!("ws://{}/ws?token={}", self.addr, self.token(user));
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
        let mut client = Client { ws, user: user.to_owned() };
        let welcome = client.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        client
    }

    /// A REST call as `user`; returns the status and the JSON body (Null
    /// when there is none).
    pub async fn call(&self, method: &str, user: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, self.url(path)).bearer_auth(self.token(user));
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

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub user: String,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Closed(u16),
    Dropped,
}

impl Client {
    pub async fn send(&mut self, frame: Value) {
        self.ws.send(Message::text(frame.to_string())).await.expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next JSON frame; panics if the connection ends or none comes.
    #[allow(clippy::result_large_err)]
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: no frame within {WAIT:?}", self.user))
                .unwrap_or_else(|| panic!("{}: connection ended", self.user))
                .unwrap_or_else(|e| panic!("{}: {e}", self.user));
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("{}: unexpected {other:?}", self.user),
            }
        }
    }

    /// The next frame of `kind`, skipping others (presence, chats...).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// A round trip: everything the server queued for this connection before
    /// the ping arrives first. Returns those frames.
    pub async fn drain(&mut self) -> Vec<Value> {
        let marker = format!("barrier-{}", rand_suffix());
        self.send(json!({"type": "ping", "ref": marker})).await;
        let mut before = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == "pong" && frame["ref"] == marker {
                return before;
            }
            before.push(frame);
        }
    }

    /// Sends `command` with a fresh ref and returns the reply owed to it
    /// (`ack` or `error`), skipping unrelated frames.
    pub async fn request(&mut self, mut command: Value) -> Value {
        let reference = format!("r-{}", rand_suffix());
        command["ref"] = json!(reference);
        self.send(command).await;
        loop {
            let frame = self.recv().await;
            if frame["ref"] == reference && (frame["type"] == "ack" || frame["type"] == "error") {
                return frame;
            }
        }
    }

    pub async fn send_message(&mut self, chat: i64, client_id: &str, text: &str) -> Value {
        let ack =
            self.request(json!({"type": "new", "chatId": chat, "clientMessageId": client_id, "message": text})).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        ack
    }

    /// Waits for the server to end the connection.
    pub async fn ended(&mut self) -> Ended {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("connection should end") {
                Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => return Ended::Closed(u16::from(code)),
                Some(Ok(Message::Close(None))) => return Ended::Closed(1005),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ended::Dropped,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })).await;
        // Read until the server's close reply so the server saw it.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, self.ws.next()).await {}
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
