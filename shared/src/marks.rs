//! Delivered and read marks (PROTOCOL.md section 5) as pure functions.
//!
//! Each (chat, user) has a delivered mark `D` and a read mark `R`, `R <= D`,
//! both only moving forward. Marking message `m` marks the whole range above
//! the old mark with one timestamp, so the history of a member's marks is a
//! list of contiguous ranges, each with one timestamp. The store keeps exactly
//! those ranges, and the receipts endpoint answers "when did this member get
//! message k" from them (store/history.rs): a member's ranges of one kind
//! never overlap, so it is the first of that kind ending at or after k, if
//! that one starts at or before k. The tests check that rule against each
//! message's marks recorded one by one.

use crate::error::Refusal;
use crate::model::{MarkKind, MessageId, Millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Marks {
    pub delivered: MessageId,
    pub read: MessageId,
}

/// Messages `first..=last` got mark `kind` at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkedRange {
    pub kind: MarkKind,
    pub first: MessageId,
    pub last: MessageId,
    pub at: Millis,
}

/// What one `dlvrd`/`read` command changes: the new marks and the ranges
/// newly marked, delivered before read. Empty `ranges` means nothing moved
/// (the command is still acknowledged, and no event goes out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkOutcome {
    pub marks: Marks,
    pub ranges: Vec<MarkedRange>,
}

/// Applies `dlvrd m` or `read m` at time `at` to `current`, in a chat whose
/// last message id is `last_message_id`.
pub fn apply_mark(
    current: Marks,
    kind: MarkKind,
    m: MessageId,
    last_message_id: MessageId,
    at: Millis,
) -> Result<MarkOutcome, Refusal> {
    if m < 1 || m > last_message_id {
        return Err(Refusal::bad_request(format!(
            "messageId {m} is outside this chat's messages 1..={last_message_id}"
        )));
    }
    let mut marks = current;
    let mut ranges = Vec::new();
    // Reading implies having received: `read m` above D first delivers up to
    // m with the same timestamp.
    if m > marks.delivered {
        ranges.push(MarkedRange { kind: MarkKind::Delivered, first: marks.delivered + 1, last: m, at });
        marks.delivered = m;
    }
    if kind == MarkKind::Read && m > marks.read {
        ranges.push(MarkedRange { kind: MarkKind::Read, first: marks.read + 1, last: m, at });
        marks.read = m;
    }
    if kind == MarkKind::Delivered {
        ranges.retain(|r| r.kind == MarkKind::Delivered);
    }
    Ok(MarkOutcome { marks, ranges })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// When message `k` got mark `kind`, by the receipts' rule (see the
    /// module): the first range of that kind ending at or after `k`, if it
    /// starts at or before `k`.
    fn timestamp_of(ranges: &[MarkedRange], kind: MarkKind, k: MessageId) -> Option<Millis> {
        let first_ending_at_or_after = ranges.iter().filter(|r| r.kind == kind && r.last >= k).min_by_key(|r| r.last);
        first_ending_at_or_after.filter(|r| r.first <= k).map(|r| r.at)
    }

    fn mark(current: Marks, kind: MarkKind, m: MessageId, at: Millis) -> MarkOutcome {
        apply_mark(current, kind, m, 100, at).expect("valid mark")
    }

    #[test]
    fn protocol_example_marking_ten_after_five_marks_six_to_ten_at_once() {
        let after_five = mark(Marks::default(), MarkKind::Delivered, 5, 1_000).marks;
        let out = mark(after_five, MarkKind::Delivered, 10, 2_000);
        assert_eq!(out.marks, Marks { delivered: 10, read: 0 });
        assert_eq!(out.ranges, vec![MarkedRange { kind: MarkKind::Delivered, first: 6, last: 10, at: 2_000 }]);
    }

    #[test]
    fn protocol_example_reading_undelivered_marks_both_with_one_timestamp() {
        let out = mark(Marks::default(), MarkKind::Read, 5, 7);
        assert_eq!(out.marks, Marks { delivered: 5, read: 5 });
        assert_eq!(
            out.ranges,
            vec![
                MarkedRange { kind: MarkKind::Delivered, first: 1, last: 5, at: 7 },
                MarkedRange { kind: MarkKind::Read, first: 1, last: 5, at: 7 },
            ]
        );
    }

    #[test]
    fn marking_at_or_below_the_mark_changes_nothing() {
        let current = Marks { delivered: 8, read: 3 };
        let out = mark(current, MarkKind::Delivered, 8, 9);
        assert_eq!(out, MarkOutcome { marks: current, ranges: vec![] });
        let out = mark(current, MarkKind::Read, 2, 9);
        assert_eq!(out, MarkOutcome { marks: current, ranges: vec![] });
    }

    #[test]
    fn read_below_delivered_moves_only_read() {
        let out = mark(Marks { delivered: 8, read: 3 }, MarkKind::Read, 6, 9);
        assert_eq!(out.marks, Marks { delivered: 8, read: 6 });
        assert_eq!(out.ranges, vec![MarkedRange { kind: MarkKind::Read, first: 4, last: 6, at: 9 }]);
    }

    #[test]
    fn out_of_range_is_refused() {
        assert!(apply_mark(Marks::default(), MarkKind::Read, 0, 10, 1).is_err());
        assert!(apply_mark(Marks::default(), MarkKind::Read, 11, 10, 1).is_err());
        assert!(apply_mark(Marks::default(), MarkKind::Delivered, 1, 0, 1).is_err());
    }

    /// Many interleaved marks, checked against a per-message model that
    /// records each message's timestamps one by one.
    #[test]
    fn invariants_hold_over_many_interleaved_marks() {
        // A small deterministic generator keeps the test reproducible.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |bound: i64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as i64
        };
        let last = 60;
        let mut marks = Marks::default();
        let mut ranges = Vec::new();
        let mut per_message: HashMap<(MarkKind, MessageId), Millis> = HashMap::new();
        for at in 1..=400 {
            let kind = if next(2) == 0 { MarkKind::Delivered } else { MarkKind::Read };
            let m = 1 + next(last);
            let before = marks;
            let out = apply_mark(marks, kind, m, last, at).expect("in range");
            assert!(out.marks.read <= out.marks.delivered, "R <= D");
            assert!(out.marks.delivered >= before.delivered, "D never moves back");
            assert!(out.marks.read >= before.read, "R never moves back");
            for r in &out.ranges {
                assert_eq!(r.at, at, "one timestamp per command");
                for k in r.first..=r.last {
                    let previous = per_message.insert((r.kind, k), r.at);
                    assert_eq!(previous, None, "message {k} marked {:?} twice", r.kind);
                }
            }
            let moved = out.marks != before;
            assert_eq!(moved, !out.ranges.is_empty(), "an event exactly when a mark moved");
            marks = out.marks;
            ranges.extend(out.ranges);
        }
        for k in 1..=last {
            for kind in [MarkKind::Delivered, MarkKind::Read] {
                let expected = per_message.get(&(kind, k)).copied();
                assert_eq!(timestamp_of(&ranges, kind, k), expected, "{kind:?} of {k}");
                let mark = if kind == MarkKind::Delivered { marks.delivered } else { marks.read };
                assert_eq!(expected.is_some(), k <= mark, "{kind:?} of {k} matches mark {mark}");
            }
            if let (Some(d), Some(r)) =
                (timestamp_of(&ranges, MarkKind::Delivered, k), timestamp_of(&ranges, MarkKind::Read, k))
            {
                assert!(d <= r, "message {k} delivered after it was read");
            }
        }
    }
}
