//! A minimal interactive client for trying the protocol by hand: prints
//! every frame it receives and sends each line you type (a JSON command) as
//! a text frame. It pings every 10 s so the connection stays open.
//!
//!     cargo run -p gateway --example client -- ws://127.0.0.1:8080/ws "$TOKEN"

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(token)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: client WS_URL TOKEN");
    };
    let (ws, _) = tokio_tungstenite::connect_async(format!("{url}?token={token}")).await?;
    let (mut tx, mut rx) = ws.split();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            frame = rx.next() => match frame {
                Some(Ok(Message::Text(text))) => println!("< {text}"),
                Some(Ok(Message::Close(close))) => { println!("closed: {close:?}"); return Ok(()) }
                Some(Ok(_)) => {}
                Some(Err(e)) => anyhow::bail!(e),
                None => return Ok(()),
            },
            line = lines.next_line() => match line? {
                Some(line) if !line.trim().is_empty() => tx.send(Message::text(line)).await?,
                Some(_) => {}
                None => return Ok(()),
            },
            _ = heartbeat.tick() => tx.send(Message::text(r#"{"type":"ping"}"#)).await?,
        }
    }
}
