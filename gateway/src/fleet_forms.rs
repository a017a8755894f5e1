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
//! serves), nothing is known and changes go per member.

use std::sync::atomic::{AtomicU32, Ordering};

use shared::bus::CHAT_LIST_FORM;

pub struct FleetForms {
    /// The oldest form a live gateway reads; 0 for not known yet.
    oldest: AtomicU32,
}

impl FleetForms {
    /// Standalone: this process is the fleet.
    pub fn standalone() -> Self {
        FleetForms { oldest: AtomicU32::new(CHAT_LIST_FORM) }
    }

    /// A cluster's gateway, before its first lease round.
    pub fn unknown() -> Self {
        FleetForms { oldest: AtomicU32::new(0) }
    }

    /// What a lease round read: the oldest form among the live gateways,
    /// this one included.
    pub fn observed(&self, oldest: u32) {
        self.oldest.store(oldest, Ordering::Relaxed);
        metrics::gauge!("chat_fleet_chat_list_form").set(f64::from(oldest));
    }

    /// Whether the shared event may go out: every live gateway reads it.
    pub fn shared_event_read_everywhere(&self) -> bool {
        self.oldest.load(Ordering::Relaxed) >= CHAT_LIST_FORM
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
        assert!(!forms.shared_event_read_everywhere(), "not known yet");
        forms.observed(form_of("1"));
        assert!(!forms.shared_event_read_everywhere(), "an older gateway lives");
        forms.observed(CHAT_LIST_FORM);
        assert!(forms.shared_event_read_everywhere());
        forms.observed(CHAT_LIST_FORM + 1);
        assert!(forms.shared_event_read_everywhere(), "newer ones read this one's too");
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
