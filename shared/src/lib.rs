//! What the gateway and the worker share: the core model of chats, messages,
//! marks and presence, the native wire protocol that frames it, and the two
//! seams that let one process or a cluster run the same logic.
//!
//! - [`model`]: chats, messages, events and commands as the core sees them,
//!   free of any wire format.
//! - [`marks`]: the delivered/read range-marking rules, pure functions.
//! - [`protocol`]: the native protocol v1 (JSON text frames), the only place
//!   that knows field names and frame types; future adapters sit beside it.
//! - [`error`]: the error codes commands and REST answer with.
//! - [`auth`]: JWT verification and minting.
//! - [`config`]: settings shared by both binaries.
//! - [`store`]: durable storage (SQLite standalone, PostgreSQL in a cluster).
//! - [`bus`]: commands in, events out; in-process for standalone.
//! - [`clock`]: wall-clock milliseconds.
//! - [`periodic`]: background chores run at an interval until stopped.
//! - [`process`]: logging set-up and the stop signal of both binaries.
//! - [`telemetry`]: the Prometheus recorder and process metrics.
//! - [`health`]: how long since the database and Redis last answered.
//! - [`sync`]: locking shared std mutexes.

pub mod auth;
pub mod bus;
pub mod clock;
pub mod config;
pub mod error;
pub mod health;
pub mod log_gate;
pub mod marks;
pub mod model;
pub mod periodic;
pub mod process;
pub mod protocol;
pub mod store;
pub mod sync;
pub mod telemetry;
