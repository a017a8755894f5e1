//! A connection's sends that have not been answered yet, kept as a real
//! client keeps them: when the connection drops, whatever the server did
//! not acknowledge is sent again on the next one, with the same
//! `clientMessageId`. The server either stores it then or, if it had
//! stored it before the drop and only the ack was lost, answers with the
//! original message and broadcasts nothing (PROTOCOL.md, idempotent
//! retry). Without this a storm's in-flight sends count as never acked,
//! and the run cannot tell a lost message from a lost ack.

use std::collections::VecDeque;

use serde_json::Value;

#[derive(Default)]
pub struct Outbox {
    /// (ref, frame), in the order sent. Rarely more than one or two.
    waiting: VecDeque<(String, Value)>,
}

impl Outbox {
    /// Remembers a `new` about to be written; other frames need no answer
    /// that a retry could give.
    pub fn sending(&mut self, frame: &Value) {
        if frame["type"] != "new" {
            return;
        }
        if let Some(reference) = frame["ref"].as_str() {
            self.waiting.push_back((reference.to_owned(), frame.clone()));
        }
    }

    /// An `ack` or `error` answered `reference`: an error is an answer too,
    /// and retrying what the server refused would only be refused again.
    pub fn answered(&mut self, reference: &str) {
        if let Some(at) = self.waiting.iter().position(|(r, _)| r == reference) {
            self.waiting.remove(at);
        }
    }

    /// What is still unanswered, ready to send again. A retry's ref starts
    /// with `r`, not `s`: its ack still counts, but the time since the first
    /// attempt spans the drop and would say nothing about the server's
    /// send→ack latency.
    pub fn into_retries(self) -> Vec<Value> {
        self.waiting
            .into_iter()
            .map(|(reference, mut frame)| {
                frame["ref"] = Value::from(format!("r{}", reference.trim_start_matches('s')));
                frame
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Outbox;

    fn new(reference: &str, client_id: &str) -> serde_json::Value {
        json!({"type": "new", "ref": reference, "chatId": 1, "clientMessageId": client_id, "message": "m"})
    }

    #[test]
    fn unanswered_sends_come_back_once_each_with_a_retry_ref_and_their_client_id() {
        let mut outbox = Outbox::default();
        outbox.sending(&new("s10", "a"));
        outbox.sending(&json!({"type": "ping"}));
        outbox.sending(&new("s11", "b"));
        // Two sends in one microsecond share a ref; each answer takes one.
        outbox.sending(&new("s11", "c"));
        outbox.sending(&new("s12", "d"));
        outbox.answered("s11");
        outbox.answered("s12");
        outbox.answered("s99");
        let retries = outbox.into_retries();
        let kept: Vec<_> = retries.iter().map(|f| (f["ref"].as_str(), f["clientMessageId"].as_str())).collect();
        assert_eq!(kept, vec![(Some("r10"), Some("a")), (Some("r11"), Some("c"))]);
        assert_eq!(retries[0]["message"], "m");
    }

    #[test]
    fn a_fully_answered_outbox_retries_nothing() {
        let mut outbox = Outbox::default();
        outbox.sending(&new("s1", "a"));
        outbox.answered("s1");
        assert!(outbox.into_retries().is_empty());
    }
}
