//! The cluster end to end: real `gateway` and `worker` processes sharing
//! only Redis and PostgreSQL, driven over real WebSockets and HTTP, and the
//! failures the system must survive (a worker or gateway killed, Redis or
//! PostgreSQL restarted).
//!
//! Needs the workspace's binaries built and Redis/PostgreSQL reachable:
//! run through `./scripts/test`.

mod harness;

mod chat_changes;
mod failures;
mod first_load;
mod leases;
mod presence;
mod protocol;
mod replies;
mod standalone;
mod streams;
mod tls;
