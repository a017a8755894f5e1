//! The native protocol, version 1: JSON text frames (PROTOCOL.md sections 2
//! and 3). [`inbound`] turns client frames into core requests with precise
//! `bad_request` messages; [`outbound`] renders core events into frames.

pub mod inbound;
pub mod outbound;
