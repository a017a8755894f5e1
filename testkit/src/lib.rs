//! Test support shared by the workspace's integration tests.
//!
//! - [`client`]: a protocol client over a real WebSocket.
//! - [`services`]: private Redis and PostgreSQL servers on free ports, which
//!   a test may stop and restart, and fresh databases on a shared server.
//! - [`process`]: the gateway and worker binaries as real processes.

#![allow(clippy::unwrap_used)]

pub mod client;
pub mod process;
pub mod services;

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A string unique within this test run, for key prefixes and names.
pub fn unique(label: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{label}{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
