//! A TCP proxy whose open connections a test can silence, as a failover
//! or a dead host does to a client's half-open connections: the
//! connections stay open and nothing comes back, while new connections
//! reach the server. Or it can cut its client off altogether, as a
//! network policy or a broken route does, and mend the path later.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    pub addr: SocketAddr,
    /// Connections accepted in an earlier generation are silent.
    generation: Arc<AtomicU64>,
    /// New connections are closed at once.
    refusing: Arc<AtomicBool>,
    /// Bytes silenced connections were sent and did not pass on.
    dropped: Arc<AtomicU64>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let generation = Arc::new(AtomicU64::new(0));
        let refusing = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accepting = {
            let (generation, refusing, dropped, tasks) =
                (Arc::clone(&generation), Arc::clone(&refusing), Arc::clone(&dropped), Arc::clone(&tasks));
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if refusing.load(Ordering::SeqCst) {
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(target).await else { continue };
                    let born = generation.load(Ordering::SeqCst);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let silenced =
                        Silenced { generation: Arc::clone(&generation), born, dropped: Arc::clone(&dropped) };
                    let up = tokio::spawn(pump(client_read, server_write, silenced.clone()));
                    let down = tokio::spawn(pump(server_read, client_write, silenced));
                    let mut tasks = tasks.lock().unwrap();
                    tasks.push(up.abort_handle());
                    tasks.push(down.abort_handle());
                }
            })
        };
        tasks.lock().unwrap().push(accepting.abort_handle());
        Ok(Proxy { addr, generation, refusing, dropped, tasks })
    }

    /// A proxy in front of the server `url` names (`postgres://…`,
    /// `redis://…`), and `url` with the proxy's address in its place.
    pub async fn in_front_of(url: &str) -> anyhow::Result<(Proxy, String)> {
        let mut url = reqwest::Url::parse(url)?;
        let host = url.host_str().ok_or_else(|| anyhow::anyhow!("{url} names no host"))?;
        let port = url.port().ok_or_else(|| anyhow::anyhow!("{url} names no port"))?;
        let target = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{host} has no address"))?;
        let proxy = Proxy::start(target).await?;
        url.set_host(Some("127.0.0.1"))?;
        url.set_port(Some(proxy.addr.port())).map_err(|()| anyhow::anyhow!("{url} takes no port"))?;
        Ok((proxy, url.to_string()))
    }

    /// A fresh database on the PostgreSQL server `admin_url` names, behind
    /// a proxy of its own; the URL is the proxy's.
    pub async fn fresh_database_behind(admin_url: &str) -> anyhow::Result<(Proxy, String)> {
        let url = crate::services::fresh_database(admin_url).await?;
        Proxy::in_front_of(&url).await
    }

    /// From now on the connections open now carry nothing either way; they
    /// are not closed. Connections made later work.
    pub fn silence_open_connections(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// From now on the open connections are silent and new ones are closed
    /// as soon as they are made, until [`Proxy::mend`].
    pub fn cut(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        self.silence_open_connections();
    }

    /// New connections reach the server again; those open at the cut stay
    /// silent.
    pub fn mend(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }

    /// Bytes sent over silenced connections, in either direction, that
    /// went no further: that something was sent into the silence.
    pub fn bytes_dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// Whether a connection is silenced: its generation is past.
#[derive(Clone)]
struct Silenced {
    generation: Arc<AtomicU64>,
    born: u64,
    dropped: Arc<AtomicU64>,
}

/// Copies `from` to `to` until either end closes; once its connection's
/// generation is past, reads and drops what arrives.
async fn pump(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, silenced: Silenced) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if silenced.generation.load(Ordering::SeqCst) != silenced.born {
            silenced.dropped.fetch_add(n as u64, Ordering::SeqCst);
            continue;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}
