//! The worker: applies client commands to the store under the protocol's
//! rules and publishes what they changed. Standalone embeds it in the gateway
//! process behind the in-process bus; a cluster runs it as its own process.
//!
//! - [`processor`]: takes commands in batches, applies them in one
//!   transaction, then publishes events and replies.
//! - [`retention`]: prunes the event log to the retention window.

pub mod processor;
pub mod retention;

pub use processor::Processor;
