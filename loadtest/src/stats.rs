//! What an agent measures, in a form that merges across agents: counters,
//! HDR histograms (microseconds) and a per-second time series.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies up to an hour, three significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Counters {
    /// Connections opened before the measured phase: the ones held at
    /// once. Reports from before 2026-12-07 counted a churn's or a storm's
    /// reopenings here too.
    pub connected: u64,
    /// Connections opened again during the phase (churn, a storm).
    #[serde(default)]
    pub reconnected: u64,
    pub connect_failures: u64,
    /// Connections the server closed or lost, not the client.
    pub disconnects: u64,
    /// The same, by the code of the server's Close frame: 1005 when it
    /// gave none, 1006 when the connection ended without one (RFC 6455
    /// 7.1.5). Keys are text: inside the tagged `AgentLine`, JSON map
    /// keys could not come back as numbers. Empty in reports from before
    /// it was counted (2026-12-07).
    #[serde(default)]
    pub closes: BTreeMap<String, u64>,
    /// Silent: clients that went silent, and those whose `offline` came.
    #[serde(default)]
    pub silent: u64,
    #[serde(default)]
    pub silent_offline: u64,
    /// Of those, the `offline` frames that came before the client's
    /// heartbeat deadline: the server's timeout is shorter than the run's.
    #[serde(default)]
    pub silent_offline_early: u64,
    pub sent: u64,
    /// Unanswered sends sent again after a reconnect (same message, same
    /// `clientMessageId`); not part of `sent`.
    #[serde(default)]
    pub resent: u64,
    pub acked: u64,
    pub errors: u64,
    /// Of the errors, commands refused as `rate_limited`: the scenario asks
    /// more of one connection than the gateway's allowance.
    #[serde(default)]
    pub rate_limited: u64,
    pub deliveries: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Events that arrived once but below one already received on the
    /// connection: a `sync` filling in under live delivery (PROTOCOL.md 4).
    #[serde(default)]
    pub filled_in: u64,
    /// Events that arrived in a chat while the connection's `sync` of it
    /// was unanswered: what the replay brought.
    #[serde(default)]
    pub replayed: u64,
    /// Event ids that never arrived on connections open at the end: gaps
    /// never filled, and what a `sync` owed that did not come. `None` in
    /// reports from before it was counted (2026-12-05).
    #[serde(default)]
    pub never_arrived: Option<u64>,
    /// Acks and deliveries that arrived during the measured phase.
    #[serde(default)]
    pub acked_in_phase: u64,
    #[serde(default)]
    pub deliveries_in_phase: u64,
    /// Receipts: `dlvrd` and `read` commands sent, acked, and refused;
    /// and the `dlvrd` and `read` events received. Each mark the scenario
    /// sends moves its member's mark (messages arrive in order, each is
    /// marked once), so each acked one owes an event to every member.
    /// Zero in reports from before they were counted (2026-12-07), but
    /// the acks.
    #[serde(default)]
    pub marks_sent: u64,
    pub marks_acked: u64,
    #[serde(default)]
    pub marks_failed: u64,
    #[serde(default)]
    pub mark_events: u64,
    pub presence_events: u64,
    /// `online` and `offline` frames that arrived during the measured
    /// phase: in a reconnect storm, nearly all the frames the server
    /// sends (zero in reports from before it was counted, 2026-12-06).
    #[serde(default)]
    pub presence_in_phase: u64,
    pub synced: u64,
    /// Syncs sent after the storm, and those answered with an error. Zero
    /// in reports from before they were counted (2026-12-05).
    #[serde(default)]
    pub syncs_asked: u64,
    #[serde(default)]
    pub syncs_failed: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.connected += o.connected;
        self.reconnected += o.reconnected;
        self.connect_failures += o.connect_failures;
        self.disconnects += o.disconnects;
        self.silent += o.silent;
        self.silent_offline += o.silent_offline;
        self.silent_offline_early += o.silent_offline_early;
        self.sent += o.sent;
        self.resent += o.resent;
        self.replayed += o.replayed;
        self.acked += o.acked;
        self.errors += o.errors;
        self.rate_limited += o.rate_limited;
        self.deliveries += o.deliveries;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.filled_in += o.filled_in;
        self.never_arrived = match (self.never_arrived, o.never_arrived) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.acked_in_phase += o.acked_in_phase;
        self.deliveries_in_phase += o.deliveries_in_phase;
        self.marks_sent += o.marks_sent;
        self.marks_acked += o.marks_acked;
        self.marks_failed += o.marks_failed;
        self.mark_events += o.mark_events;
        for (code, n) in &o.closes {
            *self.closes.entry(code.clone()).or_default() += n;
        }
        self.presence_events += o.presence_events;
        self.presence_in_phase += o.presence_in_phase;
        self.synced += o.synced;
        self.syncs_asked += o.syncs_asked;
        self.syncs_failed += o.syncs_failed;
    }
}

/// One second of a run, as the agents saw it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Second {
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    /// The slowest send→ack that arrived in this second: a stall anywhere
    /// on the path shows as a spike here, where the run's percentiles only
    /// say that a tail exists.
    pub slowest_ack_us: u64,
}

impl Second {
    pub fn add(&mut self, o: &Second) {
        self.sent += o.sent;
        self.acked += o.acked;
        self.delivered += o.delivered;
        self.slowest_ack_us = self.slowest_ack_us.max(o.slowest_ack_us);
    }
}

/// A histogram as (value, count) pairs, which JSON carries and which merge.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Recorded(pub Vec<(u64, u64)>);

impl Recorded {
    pub fn of(h: &Histogram<u64>) -> Self {
        Recorded(h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect())
    }

    pub fn into_histogram(self, into: &mut Histogram<u64>) {
        for (value, count) in self.0 {
            let _ = into.record_n(value, count);
        }
    }
}

/// An agent's whole result.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct AgentResult {
    pub counters: Counters,
    pub connect_us: Recorded,
    pub ack_us: Recorded,
    pub delivery_us: Recorded,
    /// Scenario-specific: time from going silent to `offline`, or to being
    /// synced after a reconnect.
    pub scenario_us: Recorded,
    /// From an `offline`'s `lastSeen` to its arrival: how far presence
    /// announcements run behind the connections closing. Empty in reports
    /// from before it was measured (2026-12-06).
    #[serde(default)]
    pub offline_lag_us: Recorded,
    /// (second since start, what happened in it). A list, not a map:
    /// inside the tagged `AgentLine`, JSON map keys could not come back as
    /// numbers.
    pub timeline: Vec<(u64, Second)>,
    /// Why the first connection that failed did, if one did.
    #[serde(default)]
    pub connect_error: Option<String>,
}

/// What an agent prints on stdout, one JSON object per line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentLine {
    Progress { counters: Box<Counters> },
    Result { result: Box<AgentResult> },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_of_two_agents_add_their_counts_and_keep_the_slowest_ack() {
        let mut merged = Second { sent: 1, acked: 2, delivered: 3, slowest_ack_us: 900 };
        merged.add(&Second { sent: 10, acked: 20, delivered: 30, slowest_ack_us: 400 });
        assert_eq!(merged, Second { sent: 11, acked: 22, delivered: 33, slowest_ack_us: 900 });
        merged.add(&Second { slowest_ack_us: 5_000, ..Default::default() });
        assert_eq!(merged.slowest_ack_us, 5_000);
    }

    #[test]
    fn an_agent_line_survives_json() {
        let mut h = histogram();
        h.record(5).expect("in range");
        let second = Second { sent: 1, acked: 2, delivered: 3, slowest_ack_us: 4 };
        let result = AgentResult { ack_us: Recorded::of(&h), timeline: vec![(2, second)], ..Default::default() };
        let text = serde_json::to_string(&AgentLine::Result { result: Box::new(result) }).expect("json");
        let back: AgentLine = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(
            matches!(back, AgentLine::Result { result } if result.timeline == vec![(2, second)] && result.ack_us.0.len() == 1)
        );
    }
}
