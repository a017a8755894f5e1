//! The gateway end to end: a real server on port 0 with a temporary SQLite
//! file, driven over real WebSockets and real HTTP. One module per section
//! of PROTOCOL.md.

mod common;

mod auth;
mod bad_input;
mod chats;
mod connect_hold;
mod cors;
mod heartbeat;
mod http_limits;
mod marks;
mod messaging;
mod mutated_frames;
mod presence;
mod rest_allowance;
mod shutdown;
mod slow_consumer;
mod sync;
mod typing;
