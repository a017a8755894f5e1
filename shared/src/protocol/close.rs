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
/// The user's chats changed while the node could not hear it (Redis
/// restarted or the subscription dropped), so the `chats` frames owed for
/// those changes never came: reconnect, `sync`, and read the chat list.
pub const CHATS_CHANGED: u16 = 4003;
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

/// The code to answer a client's Close frame with (RFC 6455 5.5.1, 7.4):
/// its own payload is empty, or a code a peer may send followed by UTF-8
/// text. Anything else fails the connection: 1002 for a one-byte payload or
/// a code no peer may send (1004-1006, 1015, unassigned ones), 1007 for a
/// reason that is not UTF-8. Echoed as it came, such a close was answered
/// 1000 (found by a hostile-client audit).
pub fn reply_to(payload: &[u8]) -> u16 {
    match payload {
        [] => NORMAL,
        [_] => PROTOCOL_ERROR,
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                PROTOCOL_ERROR
            } else if std::str::from_utf8(reason).is_err() {
                INVALID_PAYLOAD
            } else {
                NORMAL
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_is_answered_by_what_its_payload_holds() {
        assert_eq!(reply_to(b""), NORMAL);
        assert_eq!(reply_to(&[0x03]), PROTOCOL_ERROR, "a lone byte");
        for code in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert_eq!(reply_to(&code.to_be_bytes()), NORMAL, "{code}");
        }
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert_eq!(reply_to(&code.to_be_bytes()), PROTOCOL_ERROR, "{code}");
        }
        assert_eq!(reply_to(b"\x03\xe8bye"), NORMAL);
        assert_eq!(reply_to(b"\x03\xe8\xff"), INVALID_PAYLOAD);
    }
}
