//! WebSocket close codes the server sends, in one place. 4000-4999 are the
//! application range of RFC 6455.

/// No `ping` within `HEARTBEAT_TIMEOUT_MS` (PROTOCOL.md section 6).
pub const HEARTBEAT_TIMEOUT: u16 = 4000;
/// The client read too slowly: its bounded outbound queue overflowed. The
/// client may reconnect and `sync`; nothing persisted is lost.
pub const SLOW_CONSUMER: u16 = 4001;
/// The token the connection was opened with has passed its `exp`:
/// reconnect with a fresh token, then `sync`.
pub const TOKEN_EXPIRED: u16 = 4002;
/// A frame or a fragmented message over the 64 KiB frame limit.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The server is going away without a drain (it could not load the
/// connection's state); reconnect.
pub const GOING_AWAY: u16 = 1001;
/// The node is draining (shutdown or rollout); reconnect, to another node.
pub const SERVICE_RESTART: u16 = 1012;
/// The client broke the WebSocket protocol itself (not our JSON protocol).
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text message that is not UTF-8, in one frame or in fragments: RFC
/// 6455 (8.1) has the connection failed with this code.
pub const INVALID_PAYLOAD: u16 = 1007;
/// Normal close, echoing a client's close.
pub const NORMAL: u16 = 1000;
