//! An agent's shared measurement state: counters, histograms, the timeline,
//! and the rules for reading what arrives (delivery order, latencies).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::conn::Behaviour;
use crate::incoming::Incoming;
use crate::seen::{Arrival, Seen};
use crate::stats::{histogram, AgentResult, Counters, Recorded, Second};

pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

#[derive(Default)]
struct Atomics {
    connected: AtomicU64,
    reconnected: AtomicU64,
    connect_failures: AtomicU64,
    disconnects: AtomicU64,
    silent: AtomicU64,
    silent_offline: AtomicU64,
    silent_offline_early: AtomicU64,
    sent: AtomicU64,
    resent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    rate_limited: AtomicU64,
    deliveries: AtomicU64,
    duplicates: AtomicU64,
    out_of_order: AtomicU64,
    filled_in: AtomicU64,
    replayed: AtomicU64,
    never_arrived: AtomicU64,
    /// Between `go` and `stop`: what arrives then counts toward the rates.
    measuring: AtomicBool,
    acked_in_phase: AtomicU64,
    deliveries_in_phase: AtomicU64,
    marks_sent: AtomicU64,
    marks_acked: AtomicU64,
    marks_failed: AtomicU64,
    mark_events: AtomicU64,
    presence_events: AtomicU64,
    presence_in_phase: AtomicU64,
    synced: AtomicU64,
    syncs_asked: AtomicU64,
    syncs_failed: AtomicU64,
}

pub struct AgentState {
    pub ping_ms: u64,
    /// Ping with WebSocket Ping frames instead of JSON `ping`s.
    pub ws_pings: bool,
    pub started: Instant,
    pub user_prefix: String,
    n: Atomics,
    connect: Mutex<Histogram<u64>>,
    ack: Mutex<Histogram<u64>>,
    delivery: Mutex<Histogram<u64>>,
    scenario: Mutex<Histogram<u64>>,
    offline_lag: Mutex<Histogram<u64>>,
    timeline: Mutex<BTreeMap<u64, Second>>,
    /// Silent scenario: when each silent user was welcomed (µs since epoch).
    silent_since: Mutex<HashMap<String, (u64, u64)>>,
    connect_error: Mutex<Option<String>>,
    /// Connections the server closed or lost, by close code.
    closes: Mutex<BTreeMap<u16, u64>>,
    pub heartbeat_timeout_us: u64,
    /// Reconnect scenario: when the storm began.
    pub storm_at: Mutex<Option<Instant>>,
}

impl AgentState {
    pub fn new(ping_ms: u64, ws_pings: bool, heartbeat_timeout_ms: u64, user_prefix: String) -> Self {
        AgentState {
            ping_ms,
            ws_pings,
            started: Instant::now(),
            user_prefix,
            n: Atomics::default(),
            connect: Mutex::new(histogram()),
            ack: Mutex::new(histogram()),
            delivery: Mutex::new(histogram()),
            scenario: Mutex::new(histogram()),
            offline_lag: Mutex::new(histogram()),
            timeline: Mutex::new(BTreeMap::new()),
            silent_since: Mutex::new(HashMap::new()),
            connect_error: Mutex::new(None),
            closes: Mutex::new(BTreeMap::new()),
            heartbeat_timeout_us: heartbeat_timeout_ms * 1000,
            storm_at: Mutex::new(None),
        }
    }

    fn second(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn tick(&self, f: impl FnOnce(&mut Second)) {
        let second = self.second();
        f(self.timeline.lock().unwrap_or_else(|e| e.into_inner()).entry(second).or_default());
    }

    /// A connection opened before the measured phase.
    pub fn connected(&self, took: Duration) {
        self.n.connected.fetch_add(1, Ordering::Relaxed);
        self.record_connect(took);
    }

    /// A connection opened again during the phase (churn, a storm).
    pub fn reconnected(&self, took: Duration) {
        self.n.reconnected.fetch_add(1, Ordering::Relaxed);
        self.record_connect(took);
    }

    fn record_connect(&self, took: Duration) {
        let _ = self.connect.lock().unwrap_or_else(|e| e.into_inner()).record(took.as_micros().max(1) as u64);
    }

    /// Keeps the first failure's reason: a run where every connection
    /// fails should say why, once.
    pub fn connect_failed(&self, why: impl std::fmt::Display) {
        self.n.connect_failures.fetch_add(1, Ordering::Relaxed);
        self.connect_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| why.to_string());
    }

    /// Silent: `user`, welcomed at `since_us`, pings no more; its
    /// co-members' `offline` is awaited. The server's deadline runs from
    /// its welcome, not from the connect attempt, which in a connect burst
    /// came seconds before and made every `offline` look that much later.
    /// `earliest_us`: when the connection began. The server's deadline
    /// cannot start before it, so an `offline` before it plus the timeout
    /// came early for certain, whatever the resolution of the welcome's
    /// time (milliseconds) or the moment it stands for.
    pub fn went_silent(&self, user: String, since_us: u64, earliest_us: u64) {
        self.n.silent.fetch_add(1, Ordering::Relaxed);
        self.silent_since.lock().unwrap_or_else(|e| e.into_inner()).insert(user, (since_us, earliest_us));
    }

    /// The measured phase begins (`go`) or ends (`stop`). Rates count only
    /// what arrives in between: a backlog drained after the load stopped
    /// would otherwise pass for throughput under load.
    pub fn set_measuring(&self, on: bool) {
        self.n.measuring.store(on, Ordering::Relaxed);
    }

    fn measuring(&self) -> bool {
        self.n.measuring.load(Ordering::Relaxed)
    }

    /// The server closed or lost a connection; `code` is its Close
    /// frame's (1005: none given, 1006: no Close frame).
    pub fn disconnected(&self, code: u16) {
        self.n.disconnects.fetch_add(1, Ordering::Relaxed);
        *self.closes.lock().unwrap_or_else(|e| e.into_inner()).entry(code).or_default() += 1;
    }

    pub fn sent(&self) {
        self.n.sent.fetch_add(1, Ordering::Relaxed);
        self.tick(|t| t.sent += 1);
    }

    /// A send the server had not answered went out again on a new
    /// connection. Not counted as sent: it is the same message.
    pub fn resent(&self) {
        self.n.resent.fetch_add(1, Ordering::Relaxed);
    }

    /// At the end of the run, ids a connection will never have.
    pub fn never_arrived(&self, ids: u64) {
        self.n.never_arrived.fetch_add(ids, Ordering::Relaxed);
    }

    /// A reconnected connection sent its `sync`.
    pub fn sync_asked(&self) {
        self.n.syncs_asked.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection's `sync` after the storm was answered.
    fn synced(&self) {
        self.n.synced.fetch_add(1, Ordering::Relaxed);
        let storm_at = *self.storm_at.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = storm_at {
            let took = at.elapsed().as_micros().max(1) as u64;
            let _ = self.scenario.lock().unwrap_or_else(|e| e.into_inner()).record(took);
        }
    }

    fn presence_frame(&self) {
        self.n.presence_events.fetch_add(1, Ordering::Relaxed);
        if self.measuring() {
            self.n.presence_in_phase.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads one frame; returns frames to send in response (marks).
    pub fn observe(&self, user: usize, frame: &Incoming, seen: &mut Seen, behaviour: Behaviour) -> Vec<Value> {
        let now = now_us();
        match frame.kind.as_ref() {
            "new" => {
                self.n.deliveries.fetch_add(1, Ordering::Relaxed);
                if self.measuring() {
                    self.n.deliveries_in_phase.fetch_add(1, Ordering::Relaxed);
                }
                self.tick(|t| t.delivered += 1);
                self.check_order(frame, seen);
                if let Some(sent) = frame.message.as_deref().and_then(|m| m.parse::<u64>().ok()) {
                    let _ =
                        self.delivery.lock().unwrap_or_else(|e| e.into_inner()).record(now.saturating_sub(sent).max(1));
                }
                if behaviour.mark && !self.is_user(frame.user_id.as_deref(), user) {
                    self.n.marks_sent.fetch_add(2, Ordering::Relaxed);
                    let (chat, message) = (frame.chat_id, frame.message_id);
                    return vec![
                        json!({"type": "dlvrd", "ref": "m", "chatId": chat, "messageId": message}),
                        json!({"type": "read", "ref": "m", "chatId": chat, "messageId": message}),
                    ];
                }
            }
            "dlvrd" | "read" => {
                self.n.mark_events.fetch_add(1, Ordering::Relaxed);
                self.check_order(frame, seen);
            }
            "edit" | "delete" => self.check_order(frame, seen),
            "ack" => match frame.reference.as_deref() {
                Some("m") => {
                    self.n.marks_acked.fetch_add(1, Ordering::Relaxed);
                }
                Some("sync") => {
                    seen.sync_answered();
                    self.synced();
                }
                // `s<sent µs>-<sequence>` a first attempt (the sequence
                // tells apart a burst's sends within one µs), `r…` a retry
                // after a reconnect (whose latency is not recorded: it
                // spans the drop).
                Some(reference) => {
                    self.n.acked.fetch_add(1, Ordering::Relaxed);
                    if self.measuring() {
                        self.n.acked_in_phase.fetch_add(1, Ordering::Relaxed);
                    }
                    let took = reference
                        .strip_prefix("s")
                        .and_then(|s| s.split('-').next()?.parse::<u64>().ok())
                        .map(|sent| now.saturating_sub(sent).max(1));
                    self.tick(|t| {
                        t.acked += 1;
                        t.slowest_ack_us = t.slowest_ack_us.max(took.unwrap_or(0));
                    });
                    if let Some(took) = took {
                        let _ = self.ack.lock().unwrap_or_else(|e| e.into_inner()).record(took);
                    }
                }
                None => {}
            },
            // Kept apart from the sends' errors, which the coordinator
            // weighs against what was sent before it ends a run.
            "error" if frame.reference.as_deref() == Some("sync") => {
                self.n.syncs_failed.fetch_add(1, Ordering::Relaxed);
            }
            "error" if frame.reference.as_deref() == Some("m") => {
                self.n.marks_failed.fetch_add(1, Ordering::Relaxed);
            }
            "error" => {
                self.n.errors.fetch_add(1, Ordering::Relaxed);
                if frame.code.as_deref() == Some("rate_limited") {
                    self.n.rate_limited.fetch_add(1, Ordering::Relaxed);
                }
            }
            "online" => self.presence_frame(),
            "offline" => {
                self.presence_frame();
                if let Some(last_seen) = frame.last_seen {
                    // Server and agents share this machine's clock.
                    let lag = now.saturating_sub(u64::try_from(last_seen).unwrap_or(0).saturating_mul(1000));
                    let _ = self.offline_lag.lock().unwrap_or_else(|e| e.into_inner()).record(lag.max(1));
                }
                let silent = frame
                    .user_id
                    .as_deref()
                    .and_then(|u| self.silent_since.lock().unwrap_or_else(|e| e.into_inner()).remove(u));
                if let Some((since, earliest)) = silent {
                    self.n.silent_offline.fetch_add(1, Ordering::Relaxed);
                    if now < earliest + self.heartbeat_timeout_us {
                        self.n.silent_offline_early.fetch_add(1, Ordering::Relaxed);
                    }
                    // How long past its deadline the silent client's offline came.
                    let past = now.saturating_sub(since + self.heartbeat_timeout_us);
                    let _ = self.scenario.lock().unwrap_or_else(|e| e.into_inner()).record(past.max(1));
                }
            }
            _ => {}
        }
        Vec::new()
    }

    /// A chat's persisted events must arrive once each, with consecutive
    /// ids ([`Seen`]).
    fn check_order(&self, frame: &Incoming, seen: &mut Seen) {
        let (Some(chat), Some(id)) = (frame.chat_id, frame.id) else { return };
        if seen.replaying(chat) {
            self.n.replayed.fetch_add(1, Ordering::Relaxed);
        }
        let counter = match seen.arrive(chat, id) {
            // A replay overtaken is counted by what it fills in, or by what
            // never arrives.
            Arrival::InOrder | Arrival::AheadOfReplay => return,
            Arrival::Duplicate => &self.n.duplicates,
            Arrival::OutOfOrder => &self.n.out_of_order,
            Arrival::FilledIn => &self.n.filled_in,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether `user_id` is this agent's user number `user`.
    fn is_user(&self, user_id: Option<&str>, user: usize) -> bool {
        user_id.and_then(|id| id.strip_prefix(self.user_prefix.as_str())).and_then(|n| n.parse::<usize>().ok())
            == Some(user)
    }

    pub fn counters(&self) -> Counters {
        let n = &self.n;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            connected: get(&n.connected),
            reconnected: get(&n.reconnected),
            connect_failures: get(&n.connect_failures),
            disconnects: get(&n.disconnects),
            silent: get(&n.silent),
            silent_offline: get(&n.silent_offline),
            silent_offline_early: get(&n.silent_offline_early),
            sent: get(&n.sent),
            resent: get(&n.resent),
            acked: get(&n.acked),
            errors: get(&n.errors),
            rate_limited: get(&n.rate_limited),
            deliveries: get(&n.deliveries),
            duplicates: get(&n.duplicates),
            out_of_order: get(&n.out_of_order),
            filled_in: get(&n.filled_in),
            replayed: get(&n.replayed),
            never_arrived: Some(get(&n.never_arrived)),
            acked_in_phase: get(&n.acked_in_phase),
            deliveries_in_phase: get(&n.deliveries_in_phase),
            marks_sent: get(&n.marks_sent),
            marks_acked: get(&n.marks_acked),
            marks_failed: get(&n.marks_failed),
            mark_events: get(&n.mark_events),
            closes: self
                .closes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
            presence_events: get(&n.presence_events),
            presence_in_phase: get(&n.presence_in_phase),
            synced: get(&n.synced),
            syncs_asked: get(&n.syncs_asked),
            syncs_failed: get(&n.syncs_failed),
        }
    }

    pub fn result(&self) -> AgentResult {
        let rec = |h: &Mutex<Histogram<u64>>| Recorded::of(&h.lock().unwrap_or_else(|e| e.into_inner()));
        AgentResult {
            counters: self.counters(),
            connect_us: rec(&self.connect),
            ack_us: rec(&self.ack),
            delivery_us: rec(&self.delivery),
            scenario_us: rec(&self.scenario),
            offline_lag_us: rec(&self.offline_lag),
            timeline: self.timeline.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(s, t)| (*s, *t)).collect(),
            connect_error: self.connect_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `offline` is timed from the `lastSeen` it carries; one without it
    /// (or an `online`) is counted but not timed.
    #[test]
    fn an_offline_is_timed_from_its_last_seen() {
        let state = AgentState::new(10_000, false, 30_000, "u".into());
        let behaviour = Behaviour { ping: true, mark: false };
        let last_seen = now_us() / 1000 - 250;
        for text in [
            format!(r#"{{"type":"offline","userId":"u1","lastSeen":{last_seen}}}"#),
            r#"{"type":"offline","userId":"u2"}"#.to_string(),
            r#"{"type":"online","userId":"u3"}"#.to_string(),
        ] {
            let frame = Incoming::parse(&text).expect("parsed");
            state.observe(0, &frame, &mut Seen::default(), behaviour);
        }
        let result = state.result();
        assert_eq!(result.counters.presence_events, 3);
        let mut lag = histogram();
        result.offline_lag_us.into_histogram(&mut lag);
        assert_eq!(lag.len(), 1, "only the offline with a lastSeen is timed");
        // At least the 250 ms it was sent after; at most a generous bound,
        // so that a slow test machine does not fail it.
        assert!((250_000..60_000_000).contains(&lag.max()), "{} µs", lag.max());
    }

    /// A silent client's `offline` before its deadline is counted as early
    /// (it is timed as 0): a server whose timeout is shorter than the
    /// run's would otherwise look perfect. One after it is not.
    #[test]
    fn an_offline_before_the_heartbeat_deadline_is_counted_early() {
        let state = AgentState::new(10_000, false, 30_000, "u".into());
        let behaviour = Behaviour { ping: true, mark: false };
        state.went_silent("u1".into(), now_us(), now_us() - 10_000);
        // Welcomed later than its deadline allows, but connected in time.
        state.went_silent("u2".into(), now_us(), now_us() - 31_000_000);
        for user in ["u1", "u2"] {
            let text = format!(r#"{{"type":"offline","userId":"{user}"}}"#);
            let frame = Incoming::parse(&text).expect("parsed");
            state.observe(0, &frame, &mut Seen::default(), behaviour);
        }
        let counters = state.result().counters;
        assert_eq!((counters.silent_offline, counters.silent_offline_early), (2, 1));
    }
}
