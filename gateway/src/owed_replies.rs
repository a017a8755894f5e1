//! The replies one connection is owed: how many of its commands are
//! unanswered, so that a command for another lane waits for them
//! (`command_order`), and which reply is owed at all, so that a reply
//! that comes twice reaches the client once (PROTOCOL.md: "the one reply
//! it owes").
//!
//! Replies come twice because commands are delivered at least once: a
//! worker that took a shard over answers again what its predecessor
//! applied but had not acknowledged, and a stalled worker may publish late
//! what its successor answered. Settled twice, a repeat would also let a
//! held command of another lane go before an earlier one was answered.
//!
//! A connection's replies come in the order it sent the commands: it has
//! one lane in flight at a time, and a lane is one stream applied in
//! order. So a reply numbered no higher than the last one answered is a
//! repeat. Only [`OwedReplies::forget`] breaks that order: commands it
//! let go may be answered before the forgotten ones.
//!
//! Three `u32`s, since every connection carries them: with two `u64`s the
//! connection's handle left the allocator's 256-byte size class. Command
//! numbers are compared as serial numbers (RFC 1982), which holds while
//! the replies compared are less than 2^31 commands apart.

use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug)]
pub struct OwedReplies {
    /// Commands handed to the queue and not answered yet; the top bit
    /// ([`FORGETTING`]) set from [`OwedReplies::forget`] until the next
    /// command is handed over.
    in_flight: AtomicU32,
    /// The latest command number (`Origin::sequence`, its low 32 bits)
    /// answered.
    last_answered: AtomicU32,
    /// The first command number handed over since the replies were last
    /// forgotten (1 until then).
    first_remembered: AtomicU32,
}

const FORGETTING: u32 = 1 << 31;
const KEPT_BEHIND: u32 = 1 << 30;

/// What a reply that arrived is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The first reply to a command waited for: it settles the command.
    Owed,
    /// A reply already given.
    Repeat,
    /// A reply to a command handed over before the replies were
    /// forgotten: given to the client, but no longer counted (nor told
    /// from a repeat).
    Forgotten,
}

impl Default for OwedReplies {
    fn default() -> Self {
        OwedReplies {
            in_flight: AtomicU32::new(0),
            last_answered: AtomicU32::new(0),
            first_remembered: AtomicU32::new(1),
        }
    }
}

/// Whether command number `a` comes after `b`.
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl OwedReplies {
    /// Command `sequence` (its number on the connection) is handed over.
    /// Called by the connection's reader alone.
    pub fn submitted(&self, sequence: u64) {
        let sequence = sequence as u32;
        // A boundary left 2^31 commands behind would compare as ahead:
        // it is kept at most 2^30 behind, further than any reply lags.
        let first = self.first_remembered.load(Ordering::Acquire);
        if after(sequence, first.wrapping_add(KEPT_BEHIND)) {
            self.first_remembered.store(sequence.wrapping_sub(KEPT_BEHIND), Ordering::Release);
        }
        let mut current = self.in_flight.load(Ordering::Acquire);
        loop {
            if current & FORGETTING != 0 {
                self.first_remembered.store(sequence, Ordering::Release);
            }
            // A `forget` in between fails the exchange, and the loop sees it.
            match self.in_flight.compare_exchange(
                current,
                (current & !FORGETTING) + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }

    /// A reply to command `sequence` arrived. Number 0 comes from a worker
    /// that does not pass the numbers on (an older one): such replies are
    /// all owed, as before there were numbers.
    pub fn arrived(&self, sequence: u64) -> Arrival {
        if sequence == 0 {
            return Arrival::Owed;
        }
        let sequence = sequence as u32;
        if self.in_flight.load(Ordering::Acquire) & FORGETTING != 0
            || after(self.first_remembered.load(Ordering::Acquire), sequence)
        {
            return Arrival::Forgotten;
        }
        let before = self
            .last_answered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| after(sequence, last).then_some(sequence));
        if before.is_err() {
            return Arrival::Repeat;
        }
        Arrival::Owed
    }

    /// One command fewer in flight: an owed reply came, or the command was
    /// not accepted. True when it was the last one. Saturating, should a
    /// command be answered both ways (its hand-off failed as far as the
    /// gateway could tell, yet the queue took it).
    pub fn settle(&self) -> bool {
        let before =
            self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n & !FORGETTING > 0).then(|| n - 1));
        before.is_ok_and(|n| n & !FORGETTING == 1)
    }

    /// Replies may have been lost (the broker reconnected): waiting for
    /// them would hold the connection's next commands for good, so none is
    /// waited for any more. True when some were.
    pub fn forget(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n & !FORGETTING > 0).then_some(FORGETTING))
            .is_ok()
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire) & !FORGETTING
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(replies: &OwedReplies, sequences: impl IntoIterator<Item = u64>) {
        sequences.into_iter().for_each(|sequence| replies.submitted(sequence));
    }

    #[test]
    fn a_reply_numbered_no_higher_than_the_last_answered_is_a_repeat() {
        let replies = OwedReplies::default();
        send(&replies, [1, 2, 3]);
        assert_eq!(replies.arrived(1), Arrival::Owed);
        assert_eq!(replies.arrived(1), Arrival::Repeat);
        assert_eq!(replies.arrived(3), Arrival::Owed, "2's reply lost, or 2 refused by the gateway");
        assert_eq!(replies.arrived(2), Arrival::Repeat);
        assert_eq!(replies.arrived(3), Arrival::Repeat);
    }

    #[test]
    fn unnumbered_replies_are_all_owed() {
        let replies = OwedReplies::default();
        send(&replies, [1, 2]);
        assert_eq!(replies.arrived(0), Arrival::Owed);
        assert_eq!(replies.arrived(0), Arrival::Owed);
    }

    /// Numbers past 2^32 wrap, and compare as before.
    #[test]
    fn numbers_compare_across_the_wrap() {
        let replies = OwedReplies::default();
        for far in [1u64 << 30, 1 << 31, 3 << 30] {
            send(&replies, [far]);
            assert_eq!(replies.arrived(far), Arrival::Owed, "{far}");
            assert!(replies.settle());
        }
        let near = (1u64 << 32) - 2;
        send(&replies, near..near + 4);
        for sequence in near..near + 4 {
            assert_eq!(replies.arrived(sequence), Arrival::Owed, "{sequence}");
            assert_eq!(replies.arrived(sequence), Arrival::Repeat, "{sequence}");
        }
        assert_eq!(replies.arrived(near), Arrival::Repeat);
    }

    /// After the replies were forgotten, commands sent since can be
    /// answered before the forgotten ones: those still reach the client,
    /// without settling the new ones' count.
    #[test]
    fn forgotten_replies_are_given_and_not_counted() {
        let replies = OwedReplies::default();
        send(&replies, [1, 2]);
        assert!(replies.forget());
        assert_eq!(replies.in_flight(), 0);
        assert_eq!(replies.arrived(1), Arrival::Forgotten, "before anything was sent since");
        send(&replies, [3]);
        assert_eq!(replies.in_flight(), 1);
        assert_eq!(replies.arrived(3), Arrival::Owed);
        assert!(replies.settle());
        assert_eq!(replies.arrived(2), Arrival::Forgotten);
        assert_eq!(replies.arrived(3), Arrival::Repeat);
        assert!(!replies.forget(), "nothing in flight, nothing to forget");
        send(&replies, [4]);
        assert_eq!(replies.arrived(4), Arrival::Owed);
    }

    #[test]
    fn the_last_settled_says_so() {
        let replies = OwedReplies::default();
        send(&replies, [1, 2]);
        assert!(!replies.settle());
        assert!(replies.settle());
        assert!(!replies.settle(), "saturating");
        assert_eq!(replies.in_flight(), 0);
    }
}
