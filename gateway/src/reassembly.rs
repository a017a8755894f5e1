//! Fragmented WebSocket messages put back together (RFC 6455, 5.4).
//!
//! A client may split one message into a first frame and continuations,
//! with control frames (Ping, Pong, Close) between them but no other data
//! frame. A data frame that breaks that sequence is a protocol error and
//! fails the connection (1002): dropping the unfinished message quietly
//! would lose a command the client believes it sent. A fragmented binary
//! message is refused once, when it ends, like a binary frame; its payload
//! is not kept, only counted, so that it is held to the same size limit
//! as text. A reassembled text message that is not UTF-8 fails the
//! connection (1007), as a single frame's does (the WebSocket library
//! checks those); a character split between fragments is whole again by
//! then.

use std::borrow::Cow;

use fastwebsockets::OpCode;

/// A data message, once its last frame has arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message: the frame's own payload, or the reassembled one.
    Text(Cow<'a, [u8]>),
    /// A binary message; the protocol has no use for its bytes.
    Binary,
    /// A fragment of a message that has not ended yet.
    Unfinished,
}

/// Why a data frame fails the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Violation {
    /// Out of sequence: a continuation with no message to continue, or a new
    /// message before the last one ended (close 1002).
    OutOfSequence,
    /// The reassembled message would exceed the frame limit (close 1009).
    TooLarge,
    /// The reassembled text is not UTF-8 (close 1007).
    NotUtf8,
}

/// The message being reassembled on one connection, if any.
#[derive(Debug, Default)]
pub struct Reassembly {
    unfinished: Option<Unfinished>,
}

#[derive(Debug)]
enum Unfinished {
    Text(Vec<u8>),
    /// The bytes received so far.
    Binary(usize),
}

impl Reassembly {
    /// Takes the next data frame (`Text`, `Binary` or `Continuation`; control
    /// frames do not come here). `limit` bounds a reassembled message.
    pub fn push<'a>(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &'a [u8],
        limit: usize,
    ) -> Result<Message<'a>, Violation> {
        let starts = matches!(opcode, OpCode::Text | OpCode::Binary);
        if starts && self.unfinished.is_some() {
            return Err(Violation::OutOfSequence);
        }
        match (opcode, fin) {
            (OpCode::Text, true) => Ok(Message::Text(Cow::Borrowed(payload))),
            (OpCode::Binary, true) => Ok(Message::Binary),
            (OpCode::Text, false) => {
                self.unfinished = Some(Unfinished::Text(payload.to_vec()));
                Ok(Message::Unfinished)
            }
            (OpCode::Binary, false) => {
                self.unfinished = Some(Unfinished::Binary(payload.len()));
                Ok(Message::Unfinished)
            }
            (OpCode::Continuation, _) => match self.unfinished.take() {
                None => Err(Violation::OutOfSequence),
                Some(Unfinished::Binary(received)) => {
                    let received = received + payload.len();
                    if received > limit {
                        return Err(Violation::TooLarge);
                    }
                    if fin {
                        return Ok(Message::Binary);
                    }
                    self.unfinished = Some(Unfinished::Binary(received));
                    Ok(Message::Unfinished)
                }
                Some(Unfinished::Text(mut text)) => {
                    if text.len() + payload.len() > limit {
                        return Err(Violation::TooLarge);
                    }
                    text.extend_from_slice(payload);
                    if fin {
                        if std::str::from_utf8(&text).is_err() {
                            return Err(Violation::NotUtf8);
                        }
                        return Ok(Message::Text(Cow::Owned(text)));
                    }
                    self.unfinished = Some(Unfinished::Text(text));
                    Ok(Message::Unfinished)
                }
            },
            // Control frames are answered by the reader and never continue
            // or interrupt a message.
            (OpCode::Ping | OpCode::Pong | OpCode::Close, _) => Ok(Message::Unfinished),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 10;

    fn text(bytes: &[u8]) -> Message<'_> {
        Message::Text(Cow::Borrowed(bytes))
    }

    #[test]
    fn a_whole_frame_passes_through_borrowed() {
        let mut reassembly = Reassembly::default();
        assert!(matches!(reassembly.push(OpCode::Text, true, b"abc", LIMIT), Ok(Message::Text(Cow::Borrowed(b"abc")))));
        assert_eq!(reassembly.push(OpCode::Binary, true, b"\x01", LIMIT), Ok(Message::Binary));
    }

    #[test]
    fn fragments_join_into_one_text_message() {
        let mut reassembly = Reassembly::default();
        assert_eq!(reassembly.push(OpCode::Text, false, b"ab", LIMIT), Ok(Message::Unfinished));
        assert_eq!(reassembly.push(OpCode::Continuation, false, b"cd", LIMIT), Ok(Message::Unfinished));
        assert_eq!(reassembly.push(OpCode::Continuation, true, b"ef", LIMIT), Ok(text(b"abcdef")));
        // The next message starts afresh.
        assert_eq!(reassembly.push(OpCode::Text, true, b"g", LIMIT), Ok(text(b"g")));
    }

    #[test]
    fn a_fragmented_binary_message_is_one_binary_message_when_it_ends() {
        let mut reassembly = Reassembly::default();
        assert_eq!(reassembly.push(OpCode::Binary, false, b"\x01", LIMIT), Ok(Message::Unfinished));
        assert_eq!(reassembly.push(OpCode::Continuation, false, b"\x02", LIMIT), Ok(Message::Unfinished));
        assert_eq!(reassembly.push(OpCode::Continuation, true, b"\x03", LIMIT), Ok(Message::Binary));
        assert_eq!(reassembly.push(OpCode::Continuation, true, b"x", LIMIT), Err(Violation::OutOfSequence));
    }

    #[test]
    fn frames_out_of_sequence_are_violations() {
        let mut reassembly = Reassembly::default();
        assert_eq!(reassembly.push(OpCode::Continuation, true, b"x", LIMIT), Err(Violation::OutOfSequence));
        for interrupting in [OpCode::Text, OpCode::Binary] {
            let mut reassembly = Reassembly::default();
            assert_eq!(reassembly.push(OpCode::Text, false, b"a", LIMIT), Ok(Message::Unfinished));
            assert_eq!(reassembly.push(interrupting, true, b"b", LIMIT), Err(Violation::OutOfSequence));
        }
    }

    #[test]
    fn control_frames_leave_an_unfinished_message_alone() {
        let mut reassembly = Reassembly::default();
        assert_eq!(reassembly.push(OpCode::Text, false, b"ab", LIMIT), Ok(Message::Unfinished));
        assert_eq!(reassembly.push(OpCode::Ping, true, b"", LIMIT), Ok(Message::Unfinished));
        assert_eq!(reassembly.push(OpCode::Continuation, true, b"c", LIMIT), Ok(text(b"abc")));
    }

    #[test]
    fn reassembled_text_must_be_utf8_but_may_split_a_character() {
        let mut reassembly = Reassembly::default();
        assert_eq!(reassembly.push(OpCode::Text, false, b"\"\xc3", LIMIT), Ok(Message::Unfinished));
        assert_eq!(reassembly.push(OpCode::Continuation, true, b"\xa9\"", LIMIT), Ok(text("\"é\"".as_bytes())));
        assert_eq!(reassembly.push(OpCode::Text, false, b"\"\xc3", LIMIT), Ok(Message::Unfinished));
        assert_eq!(reassembly.push(OpCode::Continuation, true, b"\"", LIMIT), Err(Violation::NotUtf8));
        // The connection fails then; were it read on, nothing is left over.
        assert_eq!(reassembly.push(OpCode::Text, true, b"g", LIMIT), Ok(text(b"g")));
    }

    #[test]
    fn a_message_may_reach_the_limit_but_not_pass_it() {
        let mut reassembly = Reassembly::default();
        assert_eq!(reassembly.push(OpCode::Text, false, b"12345", LIMIT), Ok(Message::Unfinished));
        assert_eq!(reassembly.push(OpCode::Continuation, true, b"67890", LIMIT), Ok(text(b"1234567890")));
        assert_eq!(reassembly.push(OpCode::Text, false, b"12345", LIMIT), Ok(Message::Unfinished));
        assert_eq!(reassembly.push(OpCode::Continuation, true, b"678901", LIMIT), Err(Violation::TooLarge));
        // Binary too, though its bytes are not kept.
        let mut reassembly = Reassembly::default();
        assert_eq!(reassembly.push(OpCode::Binary, false, b"12345", LIMIT), Ok(Message::Unfinished));
        assert_eq!(reassembly.push(OpCode::Continuation, true, b"67890", LIMIT), Ok(Message::Binary));
        assert_eq!(reassembly.push(OpCode::Binary, false, b"12345", LIMIT), Ok(Message::Unfinished));
        assert_eq!(reassembly.push(OpCode::Continuation, false, b"67890", LIMIT), Ok(Message::Unfinished));
        assert_eq!(reassembly.push(OpCode::Continuation, true, b"1", LIMIT), Err(Violation::TooLarge));
    }
}
