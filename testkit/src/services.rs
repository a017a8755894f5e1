//! Private Redis and PostgreSQL servers for tests: each on a free port, in a
//! temporary directory, stopped when dropped. A test can stop and restart
//! one to see how the system behaves, or start one that speaks only TLS,
//! with a certificate from a throwaway [`TestCa`]. The binaries come from
//! Debian's `redis-server`, `postgresql` and `openssl` packages
//! (`scripts/test` installs them).

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

/// A certificate authority made for one test, and a certificate it signed
/// for a server at `localhost` / 127.0.0.1, made with the `openssl` tool.
/// Nothing outside the test trusts it; its files go when it is dropped.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn generate() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let openssl = |args: &[&str]| -> anyhow::Result<()> {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .output()
                .context("running openssl (is it installed? scripts/test installs it)")?;
            anyhow::ensure!(
                output.status.success(),
                "openssl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
            Ok(())
        };
        // P-256 keys: quick to make, and both servers and rustls take them.
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            &[
                &["req", "-x509"][..],
                &key,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=chat test CA"],
                &["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        )?;
        openssl(
            &[&["req"][..], &key, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat(),
        )?;
        std::fs::write(
            dir.path().join("server.ext"),
            "basicConstraints = CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = DNS:localhost, IP:127.0.0.1\n",
        )?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ])?;
        Ok(TestCa { dir })
    }

    /// The authority's certificate (PEM): what a client is told to trust.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server's certificate (PEM), for `localhost` and 127.0.0.1.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server certificate's private key (PEM, unencrypted).
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    /// The certificate, key and CA certificate it serves TLS with: then it
    /// takes TLS only.
    tls: Option<[PathBuf; 3]>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(None)
    }

    /// A server that takes only TLS connections, with the server
    /// certificate `ca` signed; [`RedisServer::url`] is `rediss://localhost`.
    pub fn start_tls(ca: &TestCa) -> anyhow::Result<Self> {
        Self::start_with(Some([ca.server_cert(), ca.server_key(), ca.ca_cert()]))
    }

    fn start_with(tls: Option<[PathBuf; 3]>) -> anyhow::Result<Self> {
        let mut server = RedisServer { port: crate::free_port(), dir: tempfile::tempdir()?, tls, child: None };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &port]),
            // Port 0: no plain listener at all. Clients need no certificate
            // (Redis 7.0 wants a CA file all the same).
            Some([cert, key, ca]) => command
                .args(["--port", "0", "--tls-port", &port, "--tls-auth-clients", "no", "--tls-cert-file"])
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca),
        };
        let child = command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
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
        match self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            // The name the certificate is for: clients check it.
            Some(_) => format!("rediss://localhost:{}", self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
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
    /// The CA certificate clients check the server's against, when it takes
    /// TLS connections only.
    tls_root: Option<PathBuf>,
    child: Option<Child>,
}

impl PostgresServer {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(None)
    }

    /// A server that takes only TLS connections over TCP (`pg_hba.conf`
    /// has `hostssl` lines and no `host` ones), with the server certificate
    /// `ca` signed. [`PostgresServer::admin_url`] asks for `verify-full`
    /// against `ca`'s certificate.
    pub fn start_tls(ca: &TestCa) -> anyhow::Result<Self> {
        Self::start_with(Some(ca))
    }

    fn start_with(tls: Option<&TestCa>) -> anyhow::Result<Self> {
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
        if let Some(ca) = tls {
            serve_tls_only(&dir.path().join("data"), ca, owner)?;
        }
        let tls_root = tls.map(TestCa::ca_cert);
        let mut server = PostgresServer { port: crate::free_port(), dir, bin, owner, tls_root, child: None };
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
        match &self.tls_root {
            None => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            Some(root) => format!(
                "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
                self.port,
                root.display()
            ),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
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

/// Makes the cluster in `data` serve TLS with `ca`'s server certificate
/// and refuse TCP connections without it. The key is copied in: PostgreSQL
/// takes it only when its owner alone may read it.
fn serve_tls_only(data: &Path, ca: &TestCa, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    for (from, to, mode) in [(ca.server_cert(), "server.crt", 0o644), (ca.server_key(), "server.key", 0o600)] {
        let path = data.join(to);
        std::fs::copy(&from, &path).with_context(|| format!("copying {}", from.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        }
    }
    // Appended and rewritten in place, the files keep initdb's owner.
    let mut conf = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf"))?;
    conf.write_all(b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")?;
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
    )?;
    Ok(())
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
    // The query (`sslmode=...&sslrootcert=/a/path`) is kept as it was.
    let (url, query) = admin_url.split_once('?').map_or((admin_url, None), |(url, query)| (url, Some(query)));
    let (base, _) = url.rsplit_once('/').context("admin URL without a database")?;
    Ok(match query {
        None => format!("{base}/{name}"),
        Some(query) => format!("{base}/{name}?{query}"),
    })
}
