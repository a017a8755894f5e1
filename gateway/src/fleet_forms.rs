//! Whether every live gateway reads the shared `chats` event
//! ([`shared::bus::Event::ChatListToMany`]) in the form this release
//! publishes.
//!
//! A release that changes that form could not roll out by itself: its
//! gateways' shared events were dropped, undecodable, by the gateways of
//! the release before while both ran (members there missed the change, a
//! removed one went on receiving the chat), and the operator had to set
//! `SHARED_ANNOUNCE_FROM=0` for the rollout and back after. So each gateway
//! writes the form it reads into its liveness key, which the presence
//! lease round renews every second, and reads every other live gateway's
//! in the same round (`presence::cluster`). While any reads an older form,
//! or wrote none (a release before this one writes `1`), a change is
//! announced per member, a form every release reads. A release that
//! changes the form must still read the one before, which the older
//! gateways go on publishing until they are gone.
//!
//! Until the first round has read the others (at start, before the node
//! serves), nothing is known and changes go per member; and so they do
//! once the last reading is older than a node's lease (Redis failing the
//! rounds), in which an older gateway may have arrived unseen.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use shared::bus::CHAT_LIST_FORM;
use shared::clock::now_ms;
use shared::model::Millis;

use crate::presence::cluster::NODE_LEASE;

pub struct FleetForms {
    /// The oldest form a live gateway reads; 0 for not known yet.
    oldest: AtomicU32,
    /// When that was read.
    read_at: AtomicI64,
}

impl FleetForms {
    /// Standalone: this process is the fleet, for good.
    pub fn standalone() -> Self {
        FleetForms { oldest: AtomicU32::new(CHAT_LIST_FORM), read_at: AtomicI64::new(Millis::MAX) }
    }

    /// A cluster's gateway, before its first lease round.
    pub fn unknown() -> Self {
        FleetForms { oldest: AtomicU32::new(0), read_at: AtomicI64::new(0) }
    }

    /// What a lease round read at `at`: the oldest form among the live
    /// gateways, this one included.
    pub fn observed(&self, oldest: u32, at: Millis) {
        self.oldest.store(oldest, Ordering::Relaxed);
        self.read_at.store(at, Ordering::Relaxed);
        metrics::gauge!("chat_fleet_chat_list_form").set(f64::from(oldest));
    }

    /// Whether the shared event may go out: every live gateway reads it,
    /// as read within a lease.
    pub fn shared_event_read_everywhere(&self) -> bool {
        self.read_everywhere_at(now_ms())
    }

    fn read_everywhere_at(&self, now: Millis) -> bool {
        let fresh = now.saturating_sub(self.read_at.load(Ordering::Relaxed)) < NODE_LEASE.as_millis() as Millis;
        fresh && self.oldest.load(Ordering::Relaxed) >= CHAT_LIST_FORM
    }
}

/// The form a gateway's liveness key names: its value, or 1 where it is
/// not a form (a release before the forms wrote `1` whatever it read).
pub fn form_of(alive: &str) -> u32 {
    alive.parse().unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_event_goes_out_only_while_every_gateway_reads_its_form() {
        let forms = FleetForms::unknown();
        assert!(!forms.read_everywhere_at(1_000), "not known yet");
        forms.observed(form_of("1"), 1_000);
        assert!(!forms.read_everywhere_at(1_000), "an older gateway lives");
        forms.observed(CHAT_LIST_FORM, 1_000);
        assert!(forms.read_everywhere_at(1_000));
        forms.observed(CHAT_LIST_FORM + 1, 1_000);
        assert!(forms.read_everywhere_at(1_000), "newer ones read this one's too");
        let lease = NODE_LEASE.as_millis() as Millis;
        assert!(forms.read_everywhere_at(1_000 + lease - 1));
        assert!(!forms.read_everywhere_at(1_000 + lease), "read a lease ago: an older one may have come since");
        assert!(FleetForms::standalone().shared_event_read_everywhere());
    }

    #[test]
    fn a_liveness_value_that_is_no_form_reads_as_the_oldest() {
        assert_eq!(form_of("2"), 2);
        assert_eq!(form_of("1"), 1);
        assert_eq!(form_of("0"), 1);
        assert_eq!(form_of("alive"), 1);
        assert_eq!(form_of(""), 1);
    }
}
