//! Test support shared by the workspace's integration tests.
//!
//! - [`client`]: a protocol client over a real WebSocket.
//! - [`services`]: private Redis and PostgreSQL servers on free ports, which
//!   a test may stop and restart, and fresh databases on a shared server.
//! - [`process`]: the gateway and worker binaries as real processes.
//! - [`signal`]: signals to those processes, and their children.
//! - [`proxy`]: a TCP proxy whose open connections a test can silence.

#![allow(clippy::unwrap_used)]

pub mod client;
pub mod process;
pub mod proxy;
pub mod services;
pub mod signal;

/// A TCP port free on 127.0.0.1 right now, for a server a test starts.
///
/// Chosen at random below the kernel's ephemeral range, never from it: a
/// port found free there (by binding port 0) goes back to the pool that
/// outgoing connections draw their local ports from, so in the moment
/// before the server binds it, or while a test has stopped the server to
/// restart it on the same port, a client's socket can take it, even as a
/// connection to itself (the bench scripts' picker, scripts/lib/services.sh,
/// lost a port that way). Ports this process handed out are not handed
/// out again, nor those another test process holds ([`reserve`]).
pub fn free_port() -> u16 {
    use std::collections::BTreeSet;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    const LOWEST: u32 = 10_000;
    let below = ephemeral_range_start().max(LOWEST + 1_000);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for attempt in 0..10_000u64 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(attempt);
        let port = (LOWEST + (hasher.finish() % u64::from(below - LOWEST)) as u32) as u16;
        if !handed_out.contains(&port) && reserve(port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free port between {LOWEST} and {below}")
}

/// Reserves `port` for this process, against every other process that
/// picks ports here: a lock on a file named after it, which the kernel
/// releases when the process ends, however it ends. Why: tests run as
/// many processes at once, each with its own memory of what it handed
/// out, and two of them drew the same port in the moment before either
/// bound it (one full run in five failed so). `false` if another holds
/// it; where no lock file can be made, `true`, as before reservations.
fn reserve(port: u16) -> bool {
    use std::sync::Mutex;
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let Ok(file) = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(lock_path(port)) else {
        return true;
    };
    match try_lock(&file) {
        Ok(()) => {
            HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(file);
            true
        }
        Err(error) => error != rustix::io::Errno::WOULDBLOCK,
    }
}

/// An exclusive `flock` on `file`, without waiting. rustix's, not std's
/// `File::try_lock`, which needs Rust 1.89 (the workspace keeps 1.88).
fn try_lock(file: &std::fs::File) -> rustix::io::Result<()> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
}

/// The file whose lock reserves `port`, in a directory all users may
/// write to (made once, shared by every test run on the machine). The
/// files stay, empty, one per port ever drawn: removing one would race a
/// process about to lock it.
fn lock_path(port: u16) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("testkit-ports");
    if std::fs::create_dir(&dir).is_ok() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
    }
    dir.join(port.to_string())
}

/// The first port of the kernel's ephemeral range (Linux's default where
/// it cannot be read).
fn ephemeral_range_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A string unique within this test run, for key prefixes and names.
pub fn unique(label: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    // scripts/test sets TEST_RUN_ID so that what a run leaves on servers it
    // was given (databases, Redis keys) can be found and removed after it.
    let run = std::env::var("TEST_RUN_ID").unwrap_or_default();
    format!("{label}{run}{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_bindable_distinct_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| super::free_port()).collect();
        let start = super::ephemeral_range_start();
        for &port in &ports {
            assert!(u32::from(port) < start, "{port} is in the ephemeral range from {start}");
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("still free");
        }
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "a port handed out twice: {ports:?}");
    }

    /// What another process would meet: a lock of its own on a handed-out
    /// port's file is refused (locks of two opens conflict as two
    /// processes' do).
    #[test]
    fn a_handed_out_port_is_reserved_against_other_processes() {
        let port = super::free_port();
        let other = std::fs::File::open(super::lock_path(port)).expect("the port's lock file");
        assert_eq!(super::try_lock(&other), Err(rustix::io::Errno::WOULDBLOCK), "port {port} not reserved");
        assert!(!super::reserve(port), "port {port} reserved twice");
    }
}
