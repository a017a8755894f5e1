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

use crate::outbound_queue::QueueLimits;

/// The commands of one connection that wait for earlier ones.
#[derive(Debug, Default)]
pub struct CommandOrder {
    /// The lane of the commands in flight, while any are.
    lane: u32,
    /// In the order received, each with its lane; `None` while none wait.
    /// Boxed: every connection's task carries this struct, and the task's
    /// size decides the size class of its allocation (2 KiB when this was
    /// written, a few dozen bytes to spare), while few connections ever
    /// hold a command.
    held: Option<Box<Held>>,
}

#[derive(Debug, Default)]
struct Held {
    commands: VecDeque<(u32, CommandEnvelope)>,
    /// Of the commands, by [`held_size`].
    bytes: usize,
}

/// What a held command keeps of the node's memory: its envelope and what
/// the client wrote into it (text, attachments, ids).
fn held_size(envelope: &CommandEnvelope) -> usize {
    std::mem::size_of::<CommandEnvelope>() + envelope.id.len() + envelope.command.content_bytes()
}

impl CommandOrder {
    /// Whether a command of `lane` may go to the queue now, with
    /// `in_flight` commands of this connection unanswered; if so, it is
    /// taken as sent. Otherwise it must be [`held`](Self::hold).
    ///
    /// The envelope stays with the caller, which awaits its hand-off: a
    /// decision carrying it would keep a second envelope's room in every
    /// connection's task.
    pub fn may_submit(&mut self, lane: u32, in_flight: u32) -> bool {
        let may = self.held.is_none() && (in_flight == 0 || lane == self.lane);
        if may {
            self.lane = lane;
        }
        may
    }

    /// Holds a command behind those before it; false, and dropped, when
    /// as many commands or bytes as `limits` allow wait already (refuse it,
    /// unapplied). Bytes as well as commands: a thousand commands of 64 KiB
    /// would be 64 MiB held for one connection.
    pub fn hold(&mut self, lane: u32, envelope: CommandEnvelope, limits: QueueLimits) -> bool {
        let size = held_size(&envelope);
        if let Some(held) = &self.held {
            if held.commands.len() >= limits.items as usize || held.bytes + size > limits.bytes as usize {
                return false;
            }
        }
        let held = self.held.get_or_insert_with(Box::default);
        held.commands.push_back((lane, envelope));
        held.bytes += size;
        true
    }

    /// Whether commands wait, so that the reader watches for the ones in
    /// flight to be answered.
    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// Once nothing is in flight: the waiting commands that may go now, in
    /// order (the first, and those after it of the same lane). The next one
    /// of another lane waits for these in turn.
    pub fn release(&mut self) -> Vec<CommandEnvelope> {
        let Some(held) = self.held.as_mut() else { return Vec::new() };
        let Some(&(lane, _)) = held.commands.front() else { return Vec::new() };
        self.lane = lane;
        let run = held.commands.iter().take_while(|(l, _)| *l == lane).count();
        let released: Vec<CommandEnvelope> = held.commands.drain(..run).map(|(_, envelope)| envelope).collect();
        held.bytes -= released.iter().map(held_size).sum::<usize>();
        if held.commands.is_empty() {
            self.held = None;
        }
        released
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
            origin: Origin { node: "n".into(), connection: 1, sequence: 1 },
            user: "u".into(),
            reference: None,
            command: Command::Delete { chat_id: 1, message_id: 1 },
            received_at: 0,
        }
    }

    /// What the reader does: submit when it may, hold otherwise. The id of
    /// a command submitted, or `None` when held.
    fn take(order: &mut CommandOrder, lane: u32, sequence: u64, in_flight: u32) -> Option<u64> {
        if order.may_submit(lane, in_flight) {
            return Some(sequence);
        }
        assert!(order.hold(lane, envelope(sequence), QueueLimits::items(8)));
        None
    }

    fn ids(run: Vec<CommandEnvelope>) -> Vec<String> {
        run.into_iter().map(|e| e.id).collect()
    }

    #[test]
    fn one_lane_never_waits() {
        let mut order = CommandOrder::default();
        for (n, in_flight) in [0, 1, 2, 3].into_iter().enumerate() {
            assert_eq!(take(&mut order, 4, n as u64, in_flight), Some(n as u64));
        }
        assert!(!order.is_holding());
    }

    #[test]
    fn another_lane_waits_until_nothing_is_in_flight_and_keeps_the_order() {
        let mut order = CommandOrder::default();
        assert_eq!(take(&mut order, 1, 1, 0), Some(1));
        assert_eq!(take(&mut order, 2, 2, 1), None);
        // Same lane as in flight, but behind a held one: it waits too.
        assert_eq!(take(&mut order, 1, 3, 1), None);
        assert_eq!(take(&mut order, 2, 4, 1), None);
        assert!(order.is_holding());
        assert_eq!(ids(order.release()), ["2"]);
        assert_eq!(ids(order.release()), ["3"]);
        assert_eq!(ids(order.release()), ["4"]);
        assert!(!order.is_holding());
        // Lane 2 is now the one in flight: more of it go at once.
        assert_eq!(take(&mut order, 2, 5, 1), Some(5));
    }

    #[test]
    fn a_run_of_one_lane_is_released_together() {
        let mut order = CommandOrder::default();
        take(&mut order, 1, 1, 0);
        for n in 2..=4 {
            take(&mut order, 2, n, 1);
        }
        take(&mut order, 3, 5, 1);
        assert_eq!(ids(order.release()), ["2", "3", "4"]);
        assert_eq!(ids(order.release()), ["5"]);
    }

    #[test]
    fn past_the_limit_a_command_is_not_held() {
        let mut order = CommandOrder::default();
        assert!(order.may_submit(1, 0));
        assert!(!order.may_submit(2, 1));
        assert!(order.hold(2, envelope(2), QueueLimits::items(2)));
        assert!(order.hold(2, envelope(3), QueueLimits::items(2)));
        assert!(!order.hold(2, envelope(4), QueueLimits::items(2)));
        assert_eq!(ids(order.release()), ["2", "3"]);
    }

    #[test]
    fn past_the_bytes_limit_a_command_is_not_held_until_some_are_released() {
        let large = |sequence: u64, lane: u32| CommandEnvelope {
            command: Command::Send {
                chat_id: lane.into(),
                client_message_id: "c".into(),
                text: "x".repeat(40_000),
                attachments: shared::model::Attachments::none(),
            },
            ..envelope(sequence)
        };
        let limits = QueueLimits { items: 100, bytes: 100_000 };
        let mut order = CommandOrder::default();
        assert!(order.may_submit(1, 0));
        assert!(!order.may_submit(2, 1));
        assert!(order.hold(2, large(2, 2), limits));
        assert!(order.hold(3, large(3, 3), limits));
        assert!(!order.hold(3, large(4, 3), limits), "a third of 40 kB is past 100 kB");
        assert!(order.hold(3, envelope(5), limits), "a small one still fits");
        assert_eq!(ids(order.release()), ["2"]);
        assert!(order.hold(3, large(6, 3), limits), "room again once one went");
        assert_eq!(ids(order.release()), ["3", "5", "6"]);
        assert!(!order.is_holding());
    }
}
