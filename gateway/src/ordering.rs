//! Per-chat order on a node: every chat event carries the chat's event id
//! (consecutive, from 1). The hub remembers the last id it delivered per
//! chat and classifies each arriving event with [`classify`]: the next one
//! is delivered, an old one is a duplicate (a worker re-published after a
//! redelivery), and one further ahead reveals a gap (events lost in
//! transit) that is filled from the store before it is delivered.

use shared::model::EventId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Deliver,
    Duplicate,
    /// Events `after+1 ..= before-1` are missing.
    Gap {
        after: EventId,
        before: EventId,
    },
}

pub fn classify(last_delivered: EventId, id: EventId) -> Next {
    if id <= last_delivered {
        Next::Duplicate
    } else if id == last_delivered + 1 {
        Next::Deliver
    } else {
        Next::Gap { after: last_delivered, before: id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_duplicate_and_gap() {
        assert_eq!(classify(4, 5), Next::Deliver);
        assert_eq!(classify(4, 4), Next::Duplicate);
        assert_eq!(classify(4, 2), Next::Duplicate);
        assert_eq!(classify(4, 8), Next::Gap { after: 4, before: 8 });
        assert_eq!(classify(0, 1), Next::Deliver);
    }
}
