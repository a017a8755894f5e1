//! The gateway: holds clients' WebSocket connections, authenticates them,
//! turns their frames into commands for the worker, and fans the resulting
//! events out to every connection of every member.
//!
//! - [`server`]: the router and the serve loop.
//! - [`cors`]: cross-origin REST calls for browser apps (`CORS_ORIGINS`).
//! - [`node`]: one process and what it holds; standalone wiring.
//! - [`client`]: one connection: authentication, then its reader.
//! - [`reassembly`]: fragmented WebSocket messages put back together.
//! - [`writer`]: one connection's writer (batched frames, one write).
//! - [`write_through`]: live events written by the fan-out while the writer is idle.
//! - [`frame_metrics`]: the writer's per-frame metrics, by handle.
//! - [`handle`]: the node's grip on a connection (queue, close, heartbeat).
//! - [`outbound`]: the writer's queue items and per-chat cursors.
//! - [`outbound_queue`]: the bounded queue of those items, under the connection's lock.
//! - [`hub`]: local users, chat subscriptions, fan-out.
//! - [`batched`]: reads many connections ask for at once, many to a statement.
//! - [`chat_lists`], [`sync_pages`]: the two such reads, when connecting and syncing;
//!   [`member_checks`]: memberships, for changes that may have been overtaken.
//! - [`ordering`]: per-chat order and gap detection.
//! - [`presence`]: online/offline tracking and announcements.
//! - [`fleet_forms`]: whether every live gateway reads the shared `chats` event's form.
//! - [`heartbeat`]: the deadline sweep.
//! - [`rest`]: the REST API and health endpoints.
//! - [`command_budget`]: how many commands a connection may send.
//! - [`user_slots`]: how many connections one user may hold on the node.
//! - [`command_order`]: a connection's commands applied in order across shards.
//! - [`config`], [`secret`]: settings and the JWT secret.

pub mod batched;
pub mod chat_lists;
pub mod client;
pub mod command_budget;
pub mod command_order;
pub mod config;
pub mod cors;
pub mod fleet_forms;
pub mod frame_metrics;
pub mod handle;
pub mod heartbeat;
pub mod hub;
pub mod latest;
pub mod member_checks;
pub mod node;
pub mod ordering;
pub mod outbound;
pub mod outbound_queue;
pub mod owed_replies;
pub mod presence;
pub mod reassembly;
pub mod rest;
pub mod secret;
pub mod server;
pub mod sync_pages;
#[cfg(test)]
mod test_store;
pub mod user_slots;
pub mod write_through;
pub mod writer;
