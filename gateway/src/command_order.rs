//! One connection's commands applied in the order sent (PROTOCOL.md 3),
//! also when they go to different queues. In a cluster each chat's
//! commands go to its shard's stream, and two streams are applied by
//! different workers at their own pace: a `new` in one chat followed by a
//! `new` in another could be applied, and answered, the other way round.
//!
//! So a command waits at the gateway while commands of this connection for
//! another lane are unanswered, and goes once they all are. Commands for the
//! lane already in flight go at once: one stream keeps them in order. A
//! client that keeps to one chat, or one shard, never waits; one that
//! alternates between chats of different shards waits a round trip at each
//! switch. In process (standalone) there is one lane and nothing waits.

use std::collections::VecDeque;

use shared::bus::CommandEnvelope;

/// The commands of one connection that wait for earlier ones.
#[derive(Debug, Default)]
pub struct CommandOrder {
    /// The lane of the commands in flight, while any are.
    lane: u32,
    /// In the order received; each with its lane.
    held: VecDeque<(u32, CommandEnvelope)>,
}

/// What to do with a command now.
#[derive(Debug)]
pub enum Admission {
    /// Hand it to the queue now.
    Submit(CommandEnvelope),
    /// It waits behind earlier commands; nothing to do now.
    Held,
    /// Too many wait already: refuse it, unapplied.
    Full(CommandEnvelope),
}

impl CommandOrder {
    /// Decides for a command of `lane`, with `in_flight` commands of this
    /// connection unanswered; at most `limit` wait at once.
    pub fn admit(&mut self, lane: u32, envelope: CommandEnvelope, in_flight: u32, limit: usize) -> Admission {
        if self.held.is_empty() && (in_flight == 0 || lane == self.lane) {
            self.lane = lane;
            return Admission::Submit(envelope);
        }
        if self.held.len() >= limit {
            return Admission::Full(envelope);
        }
        self.held.push_back((lane, envelope));
        Admission::Held
    }

    /// Whether commands wait, so that the reader watches for the ones in
    /// flight to be answered.
    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Once nothing is in flight: the waiting commands that may go now, in
    /// order (the first, and those after it of the same lane). The next one
    /// of another lane waits for these in turn.
    pub fn release(&mut self) -> Vec<CommandEnvelope> {
        let Some(&(lane, _)) = self.held.front() else { return Vec::new() };
        self.lane = lane;
        let run = self.held.iter().take_while(|(l, _)| *l == lane).count();
        self.held.drain(..run).map(|(_, envelope)| envelope).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::bus::Origin;
    use shared::model::Command;

    fn envelope(sequence: u64) -> CommandEnvelope {
        CommandEnvelope {
            id: sequence.to_string(),
            origin: Origin { node: "n".into(), connection: 1 },
            user: "u".into(),
            reference: None,
            command: Command::Delete { chat_id: 1, message_id: 1 },
            received_at: 0,
        }
    }

    fn submitted(admission: Admission) -> Option<String> {
        match admission {
            Admission::Submit(envelope) => Some(envelope.id),
            _ => None,
        }
    }

    #[test]
    fn one_lane_never_waits() {
        let mut order = CommandOrder::default();
        for (n, in_flight) in [0, 1, 2, 3].into_iter().enumerate() {
            assert_eq!(submitted(order.admit(4, envelope(n as u64), in_flight, 8)), Some(n.to_string()));
        }
        assert!(!order.is_holding());
    }

    #[test]
    fn another_lane_waits_until_nothing_is_in_flight_and_keeps_the_order() {
        let mut order = CommandOrder::default();
        assert!(submitted(order.admit(1, envelope(1), 0, 8)).is_some());
        assert!(matches!(order.admit(2, envelope(2), 1, 8), Admission::Held));
        // Same lane as in flight, but behind a held one: it waits too.
        assert!(matches!(order.admit(1, envelope(3), 1, 8), Admission::Held));
        assert!(matches!(order.admit(2, envelope(4), 1, 8), Admission::Held));
        assert!(order.is_holding());
        let ids = |run: Vec<CommandEnvelope>| run.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(order.release()), ["2"]);
        assert_eq!(ids(order.release()), ["3"]);
        assert_eq!(ids(order.release()), ["4"]);
        assert!(!order.is_holding());
        // Lane 2 is now the one in flight: more of it go at once.
        assert!(submitted(order.admit(2, envelope(5), 1, 8)).is_some());
    }

    #[test]
    fn a_run_of_one_lane_is_released_together() {
        let mut order = CommandOrder::default();
        order.admit(1, envelope(1), 0, 8);
        for n in 2..=4 {
            order.admit(2, envelope(n), 1, 8);
        }
        order.admit(3, envelope(5), 1, 8);
        assert_eq!(order.release().len(), 3);
        assert_eq!(order.release().len(), 1);
    }

    #[test]
    fn past_the_limit_a_command_is_handed_back() {
        let mut order = CommandOrder::default();
        order.admit(1, envelope(1), 0, 2);
        assert!(matches!(order.admit(2, envelope(2), 1, 2), Admission::Held));
        assert!(matches!(order.admit(2, envelope(3), 1, 2), Admission::Held));
        assert!(matches!(order.admit(2, envelope(4), 1, 2), Admission::Full(e) if e.id == "4"));
    }
}
