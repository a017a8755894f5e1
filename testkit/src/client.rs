//! A protocol client over a real WebSocket, with the waits tests need.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Generous bound for one expected frame; a healthy server answers in
/// milliseconds, so hitting it means the frame is not coming.
pub const WAIT: Duration = Duration::from_secs(10);

/// Connects `user` to `ws_url` (e.g. ws://127.0.0.1:8080/ws) with `token`
/// and reads the welcome.
pub async fn connect(ws_url: &str, token: &str, user: &str) -> anyhow::Result<Client> {
    let mut client = open(ws_url, token, user).await?;
    let welcome = client.recv().await;
    anyhow::ensure!(welcome["type"] == "welcome", "first frame was {welcome}");
    Ok(client)
}

/// Opens the WebSocket and reads nothing yet.
pub async fn open(ws_url: &str, token: &str, user: &str) -> anyhow::Result<Client> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("{ws_url}?token={token}")).await?;
    Ok(Client { ws, user: user.to_owned() })
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub user: String,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
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

    /// Writes bytes to the socket under the WebSocket layer, as one TCP
    /// write: with [`masked_text_frame`], a frame cut in parts that reach
    /// the server at moments the test chooses.
    pub async fn write_bytes(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let MaybeTlsStream::Plain(socket) = self.ws.get_mut() else { panic!("tests speak plain ws://") };
        socket.write_all(bytes).await.expect("write");
        socket.flush().await.expect("flush");
    }

    /// The next message of any kind; panics if the connection ends or none
    /// comes.
    #[allow(clippy::result_large_err)]
    async fn next_message(&mut self) -> Message {
        tokio::time::timeout(WAIT, self.ws.next())
            .await
            .unwrap_or_else(|_| panic!("{}: no frame within {WAIT:?}", self.user))
            .unwrap_or_else(|| panic!("{}: connection ended", self.user))
            .unwrap_or_else(|e| panic!("{}: {e}", self.user))
    }

    /// The next JSON frame; panics if the connection ends or none comes.
    pub async fn recv(&mut self) -> Value {
        loop {
            match self.next_message().await {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("{}: unexpected {other:?}", self.user),
            }
        }
    }

    /// The payload of the next Pong control frame, skipping JSON frames.
    pub async fn recv_pong(&mut self) -> Vec<u8> {
        loop {
            if let Message::Pong(payload) = self.next_message().await {
                return payload.to_vec();
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

    /// Pings every 50 ms while waiting for the next frame that is not a
    /// pong, so this client stays alive under a short heartbeat timeout.
    pub async fn recv_type_or_ping(&mut self) -> Value {
        loop {
            self.send(json!({"type": "ping"})).await;
            let next = tokio::time::timeout(Duration::from_millis(50), self.recv()).await;
            if let Ok(frame) = next {
                if frame["type"] != "pong" {
                    return frame;
                }
            }
        }
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

/// A client's text frame as it goes on the wire (RFC 6455 5.2): final,
/// masked, with the length in the header's shortest form.
pub fn masked_text_frame(text: &str) -> Vec<u8> {
    let payload = text.as_bytes();
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81];
    match payload.len() {
        short @ 0..=125 => frame.push(0x80 | short as u8),
        medium @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(medium as u16).to_be_bytes());
        }
        long => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(long as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
    frame
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
