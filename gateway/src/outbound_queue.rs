//! A connection's outbound queue: what its writer has yet to write, in
//! order, bounded.
//!
//! It lives under the connection's write lock (`handle`, `write_through`)
//! rather than in a channel. Every push took that lock already, to keep
//! the fan-out's writes and the writer's in order, so a channel's own
//! synchronisation was paid twice; and tokio's channel allocates its
//! first block of 32 slots (1,056 bytes) and its shared state (384) with
//! the channel, for every connection, about a fifth of an idle
//! connection's memory (docs/benchmarks.md). Empty, this queue holds no
//! allocation.

use std::collections::VecDeque;

use crate::outbound::Outbound;

pub struct OutboundQueue {
    items: VecDeque<Outbound>,
    /// How many items the writer took last and may still be writing: they
    /// count against the limit until it comes back for more, so that a
    /// client that does not read is closed after as many items as before
    /// the writer began taking them all at once.
    with_writer: usize,
    limit: usize,
    /// The writer has ended: nothing queued would be written.
    ended: bool,
}

/// What became of an item offered to [`OutboundQueue::push`].
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue holds `limit` items already.
    Full,
    /// The writer has ended.
    Ended,
}

impl OutboundQueue {
    pub fn new(limit: usize) -> Self {
        OutboundQueue { items: VecDeque::new(), with_writer: 0, limit, ended: false }
    }

    pub fn push(&mut self, item: Outbound) -> Pushed {
        if self.ended {
            Pushed::Ended
        } else if self.is_full() {
            Pushed::Full
        } else {
            self.items.push_back(item);
            Pushed::Queued
        }
    }

    /// Items the queue holds at most (`OUTBOUND_QUEUE`), which also bounds
    /// the live events a connection holds back during a `sync`.
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn is_full(&self) -> bool {
        self.items.len() + self.with_writer >= self.limit
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Everything queued, for the writer to write in one go, which it asks
    /// for once it has written what it took before; the queue is left
    /// empty, without an allocation.
    pub fn take_all(&mut self) -> VecDeque<Outbound> {
        self.with_writer = self.items.len();
        std::mem::take(&mut self.items)
    }

    pub fn take_front(&mut self) -> Option<Outbound> {
        self.items.pop_front()
    }

    /// The first item, to be replaced in place.
    pub fn front_mut(&mut self) -> Option<&mut Outbound> {
        self.items.front_mut()
    }

    /// The writer has ended: drops what is queued and refuses what comes.
    pub fn end(&mut self) {
        self.ended = true;
        self.items = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_keeps_order_up_to_its_limit_counting_what_the_writer_holds() {
        let mut queue = OutboundQueue::new(2);
        assert_eq!(queue.push(Outbound::Close(1, "a")), Pushed::Queued);
        assert_eq!(queue.push(Outbound::Close(2, "b")), Pushed::Queued);
        assert_eq!(queue.push(Outbound::Close(3, "c")), Pushed::Full);
        let taken: Vec<u16> = queue
            .take_all()
            .into_iter()
            .map(|item| match item {
                Outbound::Close(code, _) => code,
                _ => 0,
            })
            .collect();
        assert_eq!(taken, [1, 2]);
        assert!(queue.is_empty());
        assert_eq!(queue.push(Outbound::Release), Pushed::Full, "the writer is still writing what it took");
        assert!(queue.take_all().is_empty());
        assert_eq!(queue.push(Outbound::Release), Pushed::Queued);
        queue.end();
        assert!(queue.is_empty());
        assert_eq!(queue.push(Outbound::Release), Pushed::Ended);
    }
}
