//! The worker: applies client commands to the store under the protocol's
//! rules and publishes what they changed. Standalone embeds it in the gateway
//! process behind the in-process bus; a cluster runs it as its own process.
//!
//! - [`processor`]: applies commands in batches, then publishes events and
//!   replies.
//! - [`stream`]: consumes one shard's Redis command stream.
//! - [`stray_entries`]: entries handed out past the consumer, read again.
//! - [`group_commit`]: one transaction for the shards' batches waiting
//!   together.
//! - [`lease`]: the rules of shard ownership.
//! - [`cluster`]: the worker process: leases and one consumer per shard.
//! - [`stand_aside`]: when a worker cut off from its database gives its
//!   shards up.
//! - [`retention`]: the store's housekeeping: prunes the event log to the
//!   retention window and purges deleted chats' histories.
//! - [`turns`]: whose turn the housekeeping is in a cluster.
//! - [`checkpoint`]: standalone's SQLite checkpoints, beside the writer.
//! - [`config`]: the worker's settings.
//! - [`admin`]: the metrics and health listener.

pub mod admin;
pub mod checkpoint;
pub mod cluster;
pub mod config;
pub mod group_commit;
pub mod lease;
pub mod processor;
pub mod retention;
pub mod shard_read;
pub mod stand_aside;
pub mod stray_entries;
pub mod stream;
pub mod stream_trim;
pub mod turns;

pub use processor::Processor;
