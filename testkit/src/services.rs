//! Private Redis and PostgreSQL servers for tests: each on a free port, in a
//! temporary directory, stopped when dropped. A test can stop and restart
//! one to see how the system behaves. The binaries come from Debian's
//! `redis-server` and `postgresql` packages (`scripts/test` installs them).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::signal::{self, Signal};

/// How long a server may take to accept connections after starting.
const STARTUP: Duration = Duration::from_secs(30);

fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > STARTUP {
            bail!("nothing listens on port {port} after {STARTUP:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn stop_child(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> anyhow::Result<Self> {
        let mut server = RedisServer { port: crate::free_port(), dir: tempfile::tempdir()?, child: None };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed? scripts/test installs it)")?;
        self.child = Some(child);
        wait_for_port(self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server: like a crash, it keeps nothing.
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    /// Starts it again on the same port, empty.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct PostgresServer {
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// PostgreSQL refuses to run as root: when the tests do, the server
    /// runs as the `postgres` user.
    owner: Option<(u32, u32)>,
    child: Option<Child>,
}

impl PostgresServer {
    pub fn start() -> anyhow::Result<Self> {
        let bin = postgres_bin_dir()?;
        let dir = tempfile::tempdir()?;
        let owner = if is_root() { Some(user_ids("postgres")?) } else { None };
        if let Some((uid, _)) = owner {
            let status = Command::new("chown").arg("-R").arg(uid.to_string()).arg(dir.path()).status()?;
            anyhow::ensure!(status.success(), "chown of the data directory failed");
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(dir.path().join("data")).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        let output = as_owner(&mut initdb, owner).stdout(Stdio::null()).output().context("running initdb")?;
        anyhow::ensure!(output.status.success(), "initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        let mut server = PostgresServer { port: crate::free_port(), dir, bin, owner, child: None };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut postgres = Command::new(self.bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(self.dir.path())
            // Durability is not under test here; speed is welcome.
            .args(["-c", "fsync=off", "-c", "max_connections=300"]);
        let child = as_owner(&mut postgres, self.owner).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        self.child = Some(child);
        wait_for_port(self.port)
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Kills the postmaster and every backend, like a crash. PostgreSQL's
    /// children each lead their own process group, so they are found by
    /// parent: the postmaster is frozen first (it can fork no more), its
    /// children killed, then it. A backend left running would still commit
    /// a transaction already on its connection.
    pub fn stop(&mut self) {
        if let Some(child) = &self.child {
            let pid = child.id();
            let _ = signal::send(pid, Signal::STOP);
            for backend in signal::children_of(pid).unwrap_or_default() {
                let _ = signal::send(backend, Signal::KILL);
            }
        }
        stop_child(&mut self.child);
    }

    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.spawn()
    }

    /// Stops the postmaster and every backend without ending them, as a
    /// frozen VM or a stuck disk would: connections stay open and the
    /// kernel still acknowledges what clients send, but nothing answers.
    pub fn freeze(&self) {
        if let Some(child) = &self.child {
            let pid = child.id();
            let _ = signal::send(pid, Signal::STOP);
            for process in signal::children_of(pid).unwrap_or_default() {
                let _ = signal::send(process, Signal::STOP);
            }
        }
    }

    /// Lets a frozen server run on.
    pub fn thaw(&self) {
        if let Some(child) = &self.child {
            let pid = child.id();
            for process in signal::children_of(pid).unwrap_or_default() {
                let _ = signal::send(process, Signal::CONT);
            }
            let _ = signal::send(pid, Signal::CONT);
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn as_owner(command: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

fn user_ids(name: &str) -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 3 && fields[0] == name {
            return Ok((fields[2].parse()?, fields[3].parse()?));
        }
    }
    bail!("no user {name:?} (the postgresql package creates it)")
}

/// The newest installed PostgreSQL's bin directory.
fn postgres_bin_dir() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .context("PostgreSQL is not installed (scripts/test installs it)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context("no PostgreSQL with initdb under /usr/lib/postgresql")
}

/// A new, empty database on the server at `admin_url`; returns its URL.
pub async fn fresh_database(admin_url: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let name = crate::unique("chat_test_");
    // A server just started may accept connections before it takes queries.
    let started = Instant::now();
    let mut admin = loop {
        match sqlx::PgConnection::connect(admin_url).await {
            Ok(connection) => break connection,
            Err(e) if started.elapsed() < STARTUP => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
    let (base, _) = admin_url.rsplit_once('/').context("admin URL without a database")?;
    Ok(format!("{base}/{name}"))
}
