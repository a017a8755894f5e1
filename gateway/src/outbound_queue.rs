//! A connection's outbound queue: what its writer has yet to write, in
//! order, bounded in items and in bytes.
//!
//! Why bytes too: items differ in size a thousandfold, and a client that
//! does not read keeps its items alive: the rest of a write the fan-out
//! began, a copy of its own, and shared frames that every other recipient
//! has long written. At 1,024 items of 64 KiB messages, a hundred such
//! connections of one account held gigabytes (found by a hostile-client
//! audit). Live events held back for a first frame or a `sync` count
//! against the same bytes (`outbound::Cursors`): released, they are
//! encoded for the connection at once.
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

/// The fields are 32-bit so that the queue, with the byte counts, keeps
/// the size it had (`ClientHandle` fills its allocation's size class).
pub struct OutboundQueue {
    items: VecDeque<Outbound>,
    /// How many items, and bytes, the writer took last and may still be
    /// writing: they count against the limits until it comes back for
    /// more, so that a client that does not read is closed after as much as
    /// before the writer began taking everything at once.
    with_writer: u32,
    with_writer_bytes: u32,
    /// Bytes of the frames queued.
    bytes: u32,
    limits: QueueLimits,
    /// The writer has ended: nothing queued would be written.
    ended: bool,
}

/// How much one connection may have queued (`OUTBOUND_QUEUE`,
/// `OUTBOUND_BYTES`).
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub items: u32,
    pub bytes: u32,
}

impl QueueLimits {
    /// Limited in items only.
    pub const fn items(items: u32) -> Self {
        QueueLimits { items, bytes: u32::MAX }
    }
}

/// What became of an item offered to [`OutboundQueue::push`].
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue holds as many items or bytes as it may already.
    Full,
    /// The writer has ended.
    Ended,
}

impl OutboundQueue {
    pub fn new(limits: QueueLimits) -> Self {
        OutboundQueue { items: VecDeque::new(), with_writer: 0, with_writer_bytes: 0, bytes: 0, limits, ended: false }
    }

    pub fn push(&mut self, item: Outbound) -> Pushed {
        if self.ended {
            Pushed::Ended
        } else if self.is_full() {
            Pushed::Full
        } else {
            self.bytes = self.bytes.saturating_add(item.queued_bytes());
            self.items.push_back(item);
            Pushed::Queued
        }
    }

    /// What the queue holds at most (`OUTBOUND_QUEUE`, `OUTBOUND_BYTES`),
    /// which also bounds the live events a connection holds back.
    pub fn limits(&self) -> QueueLimits {
        self.limits
    }

    pub fn is_full(&self) -> bool {
        self.items.len() as u64 + u64::from(self.with_writer) >= u64::from(self.limits.items)
            || u64::from(self.bytes) + u64::from(self.with_writer_bytes) >= u64::from(self.limits.bytes)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Everything queued, for the writer to write in one go, which it asks
    /// for once it has written what it took before; the queue is left
    /// empty, without an allocation.
    pub fn take_all(&mut self) -> VecDeque<Outbound> {
        self.with_writer = self.items.len() as u32;
        self.with_writer_bytes = std::mem::take(&mut self.bytes);
        std::mem::take(&mut self.items)
    }

    pub fn take_front(&mut self) -> Option<Outbound> {
        let item = self.items.pop_front()?;
        self.bytes = self.bytes.saturating_sub(item.queued_bytes());
        Some(item)
    }

    pub fn front(&self) -> Option<&Outbound> {
        self.items.front()
    }

    /// Replaces the first item, if there is one.
    pub fn replace_front(&mut self, item: Outbound) {
        if let Some(first) = self.items.front_mut() {
            self.bytes = self.bytes.saturating_sub(first.queued_bytes()).saturating_add(item.queued_bytes());
            *first = item;
        }
    }

    /// The writer has ended: drops what is queued and refuses what comes.
    pub fn end(&mut self) {
        self.ended = true;
        self.items = VecDeque::new();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_keeps_order_up_to_its_limit_counting_what_the_writer_holds() {
        let mut queue = OutboundQueue::new(QueueLimits::items(2));
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

    #[test]
    fn a_queue_is_full_past_its_bytes_counting_what_the_writer_holds() {
        let mut queue = OutboundQueue::new(QueueLimits { items: 100, bytes: 10 });
        let rest = |n: usize| Outbound::Rest(vec![0; n].into_boxed_slice());
        assert_eq!(queue.push(rest(6)), Pushed::Queued);
        assert_eq!(queue.push(rest(6)), Pushed::Queued, "room left before it: one item may go past");
        assert_eq!(queue.push(rest(1)), Pushed::Full);
        assert_eq!(queue.take_all().len(), 2);
        assert_eq!(queue.push(rest(1)), Pushed::Full, "the writer is still writing 12 bytes");
        assert!(queue.take_all().is_empty());
        assert_eq!(queue.push(rest(9)), Pushed::Queued);
        assert_eq!(queue.take_front().map(|item| item.queued_bytes()), Some(9));
        assert_eq!(queue.push(rest(9)), Pushed::Queued, "what is taken off the front no longer counts");
    }
}
