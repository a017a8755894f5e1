//! The run's report: a summary table on the terminal, a JSON file with
//! everything, and PNG charts (latency distribution, throughput over time).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::plan::{Plan, Scenario};
use crate::procstat::{self, ProcStat};
use crate::stats::{histogram, AgentResult, Counters, Second};

/// Server samples at the phase boundaries, one per server process.
#[derive(Default)]
pub struct Phases {
    /// The processes' command names (`gateway`, `worker`), by pid order.
    pub server_names: Vec<String>,
    pub baseline: Vec<ProcStat>,
    pub connected: Vec<ProcStat>,
    pub end: Vec<ProcStat>,
    pub connect_seconds: f64,
    pub measured_seconds: f64,
    /// The load agents' own CPU over the measured phase: on a machine they
    /// share with the server, what they take is not the server's to use.
    pub agents_cpu_seconds: f64,
    /// The machine's idle share over the measured phase (see
    /// [`crate::procstat::MachineTicks::idle_share_until`]).
    pub idle_share: Option<f64>,
    /// Server processes that exited during the run: the server's figures
    /// are not measured then.
    pub exited: Vec<u32>,
    /// Whether a person ended the measured phase early.
    pub interrupted: bool,
    /// Whether a signal or a server's exit after the measured phase cut
    /// the wait for what was in flight short.
    pub settling_cut_short: bool,
}

/// Makes the report's and the charts' folders before the run, so that a
/// wrong path costs nothing but this error.
pub fn prepare(plan: &Plan) -> anyhow::Result<()> {
    let report = std::path::Path::new(&plan.report);
    for folder in [report.parent().filter(|p| !p.as_os_str().is_empty()), Some(std::path::Path::new(&plan.charts))]
        .into_iter()
        .flatten()
    {
        std::fs::create_dir_all(folder).map_err(|e| anyhow::anyhow!("cannot make {}: {e}", folder.display()))?;
    }
    Ok(())
}

fn percentiles(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    let ms = |us: u64| (us as f64) / 1000.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

/// Deliveries the run owes for `acked` messages: every acked message
/// reaches every member's connection, the sender's too (live, or replayed
/// by a sync after a reconnect). None in scenarios that send nothing.
pub fn expected_deliveries(plan: &Plan, acked: u64) -> u64 {
    let fanout = matches!(plan.scenario, Scenario::Fanout | Scenario::Receipts | Scenario::Reconnect);
    if fanout {
        acked * plan.group_size as u64
    } else {
        0
    }
}

/// `dlvrd` and `read` events the run owes for `marks_acked` (receipts):
/// each mark the scenario sends moves its member's mark, since messages
/// arrive in order and each is marked once, and its event goes to every
/// member's connection, the marker's too.
pub fn expected_mark_events(plan: &Plan, marks_acked: u64) -> u64 {
    if plan.scenario == Scenario::Receipts {
        marks_acked * plan.group_size as u64
    } else {
        0
    }
}

/// Deliveries owed that did not come: a duplicate does not make up for
/// one lost (an audit saw 52 lost and 35 duplicated reported as 17 lost).
fn lost_deliveries(expected: u64, c: &Counters) -> u64 {
    expected.saturating_sub(c.deliveries.saturating_sub(c.duplicates))
}

/// Writes the report and the charts and prints the summary; returns what
/// makes the run's figures not mean what was asked, if anything.
pub fn write(plan: &Plan, results: Vec<AgentResult>, phases: Phases) -> anyhow::Result<Vec<String>> {
    let mut counters = Counters::default();
    let mut connect_error = None;
    let (mut connect, mut ack, mut delivery, mut scenario) = (histogram(), histogram(), histogram(), histogram());
    let mut offline_lag = histogram();
    let mut timeline: BTreeMap<u64, Second> = BTreeMap::new();
    for r in results {
        counters.add(&r.counters);
        connect_error = connect_error.or(r.connect_error);
        r.connect_us.into_histogram(&mut connect);
        r.ack_us.into_histogram(&mut ack);
        r.delivery_us.into_histogram(&mut delivery);
        r.scenario_us.into_histogram(&mut scenario);
        r.offline_lag_us.into_histogram(&mut offline_lag);
        for (second, seen) in r.timeline {
            timeline.entry(second).or_default().add(&seen);
        }
    }
    let expected = expected_deliveries(plan, counters.acked);
    let lost = lost_deliveries(expected, &counters);
    let expected_marks = expected_mark_events(plan, counters.marks_acked);
    let (baseline, connected, end) =
        (procstat::total(&phases.baseline), procstat::total(&phases.connected), procstat::total(&phases.end));
    // A process that exited reads as one that uses nothing.
    let measured = phases.exited.is_empty();
    let cpu = end.cpu_seconds - connected.cpu_seconds;
    let per_connection = |at: ProcStat| {
        if counters.connected > 0 {
            at.rss_bytes.saturating_sub(baseline.rss_bytes) as f64 / counters.connected as f64
        } else {
            0.0
        }
    };
    // At the end of an idle phase, what connecting left behind (presence
    // announcements to members of many chats, say) has gone back to the
    // allocator: the memory of holding them, where `connected` can still
    // include the memory of making them.
    let (memory_per_connection, memory_per_connection_at_end) = (per_connection(connected), per_connection(end));
    // A cluster's gateways and workers apart: where the memory and CPU went.
    let processes: Vec<Value> = plan
        .server_pids
        .iter()
        .enumerate()
        .map(|(i, pid)| {
            let at = |samples: &[ProcStat]| samples.get(i).copied().unwrap_or_default();
            json!({
                "pid": pid,
                "name": phases.server_names.get(i),
                "baseline": at(&phases.baseline),
                "connected": at(&phases.connected),
                "end": at(&phases.end),
            })
        })
        .collect();
    // Rates and CPU per delivery count what arrived while the load was
    // offered, the same window the server's CPU seconds cover.
    let deliveries_per_second = counters.deliveries_in_phase as f64 / phases.measured_seconds.max(0.001);
    let server_figure = |value: f64| if measured { json!(value) } else { Value::Null };
    // No deliveries, no cost per delivery (rather than a 0 that reads as
    // free).
    let cpu_per_million = match counters.deliveries_in_phase {
        0 => Value::Null,
        n => server_figure(cpu / n as f64 * 1e6),
    };
    let problems = problems(plan, &counters, lost, &phases, connect_error.as_deref());
    let report = json!({
        "scenario": plan.scenario,
        "plan": plan,
        "counters": counters,
        "connect_error": connect_error,
        "server_exited": phases.exited,
        "interrupted": phases.interrupted,
        "problems": problems,
        "expected_deliveries": expected,
        "lost_deliveries": lost,
        "expected_mark_events": expected_marks,
        "connect_seconds": phases.connect_seconds,
        "connect_rate_per_second": counters.connected as f64 / phases.connect_seconds.max(0.001),
        "measured_seconds": phases.measured_seconds,
        "messages_acked_per_second": counters.acked_in_phase as f64 / phases.measured_seconds.max(0.001),
        "deliveries_per_second": deliveries_per_second,
        "latency": {
            "connect": percentiles(&connect),
            "send_to_ack": percentiles(&ack),
            "send_to_delivery": percentiles(&delivery),
            "scenario": percentiles(&scenario),
            "last_seen_to_offline": percentiles(&offline_lag),
        },
        "server": {
            "pids": plan.server_pids,
            "baseline": baseline,
            "connected": connected,
            "end": end,
            "processes": processes,
            "rss_per_connection_bytes": server_figure(memory_per_connection),
            "rss_per_connection_at_end_bytes": server_figure(memory_per_connection_at_end),
            "cpu_seconds_measured": server_figure(cpu),
            "cpu_seconds_per_million_deliveries": cpu_per_million,
        },
        "machine": {
            "load_agents_cpu_seconds_measured": phases.agents_cpu_seconds,
            "idle_share_measured": phases.idle_share,
        },
        // [second, sent, acked, delivered, slowest send→ack in ms]
        "timeline": timeline
            .iter()
            .map(|(s, t)| json!([s, t.sent, t.acked, t.delivered, t.slowest_ack_us as f64 / 1000.0]))
            .collect::<Vec<_>>(),
    });
    // The file first: a Ctrl-C at a terminal also ends a `| tee` that
    // stdout may go through, and the summary then has nowhere to go.
    std::fs::write(&plan.report, serde_json::to_vec_pretty(&report)?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", plan.report))?;
    print_summary(plan, &report, &problems);
    // Each scenario's own measure: connecting where nothing is sent, the
    // wait for `offline` or for the syncs where that is the point.
    let mut curves = vec![("send→ack", &ack), ("send→delivery", &delivery)];
    match plan.scenario {
        Scenario::Idle | Scenario::Churn => curves.push(("connect", &connect)),
        Scenario::Silent => curves.push(("heartbeat deadline→offline", &scenario)),
        Scenario::Reconnect => curves.push(("drop→synced", &scenario)),
        Scenario::Fanout | Scenario::Receipts => {}
    }
    crate::charts::draw(plan, &curves, &timeline)?;
    eprintln!("report: {}  charts: {}/", plan.report, plan.charts);
    Ok(problems)
}

/// What makes a run's figures not describe the load asked for. `lost`: the
/// deliveries owed that did not come ([`lost_deliveries`]).
fn problems(plan: &Plan, c: &Counters, lost: u64, phases: &Phases, connect_error: Option<&str>) -> Vec<String> {
    let mut found = Vec::new();
    if phases.interrupted {
        found.push(format!(
            "interrupted: the figures cover {:.0} s of the {} s asked",
            phases.measured_seconds, plan.duration
        ));
    }
    if phases.settling_cut_short {
        found.push(
            "the wait for what was in flight was cut short (a signal, or a server's exit): lost and never-arrived \
             counts are not final"
                .to_owned(),
        );
    }
    if plan.scenario.measures_deliveries() && c.acked_in_phase == 0 {
        found.push("no message was acked during the measured phase".to_owned());
    }
    if c.syncs_failed > 0 || c.synced + c.syncs_failed < c.syncs_asked {
        found.push(format!(
            "of {} syncs after the storm, {} failed and {} were never answered",
            c.syncs_asked,
            c.syncs_failed,
            c.syncs_asked.saturating_sub(c.synced + c.syncs_failed)
        ));
    }
    for pid in &phases.exited {
        found.push(format!("server process {pid} exited during the run: the server's figures are not measured"));
    }
    if c.connect_failures > 0 {
        let why = connect_error.map(|e| format!(" (the first: {e})")).unwrap_or_default();
        found.push(format!("{} connection(s) failed to open{why}", c.connect_failures));
    }
    // Silent clients are meant to be closed by the server.
    if c.disconnects > 0 && plan.scenario != Scenario::Silent {
        found.push(format!(
            "the server closed or lost {} connection(s) during the run ({})",
            c.disconnects,
            close_codes(&c.closes)
        ));
    }
    // Counted only in what was answered: a send with neither ack nor
    // error is owed no delivery and timed nowhere, so it would leave the
    // loss and latency figures clean (an audit paused the server past the
    // settling wait: 27 % of the sends unanswered, exit 0).
    let unanswered = c.sent.saturating_sub(c.acked + c.errors);
    if plan.scenario.measures_deliveries() && unanswered > 0 {
        found.push(format!(
            "{unanswered} of {} sends were never answered: the loss and latency figures cover only the answered ones",
            c.sent
        ));
    }
    if c.errors > 0 {
        found.push(format!(
            "the server refused {} send(s), {} of them rate_limited: the load applied is not the load asked",
            c.errors, c.rate_limited
        ));
    }
    // Each expected to be zero (PROTOCOL.md 4): a run that saw any measured
    // a server that broke its delivery guarantee.
    let never_arrived = c.never_arrived.unwrap_or(0);
    if lost + c.duplicates + c.out_of_order + never_arrived > 0 {
        found.push(format!(
            "deliveries broke the guarantee: {lost} lost, {} duplicated, {} out of order (a jump past missing ids), \
             {never_arrived} never arrived",
            c.duplicates, c.out_of_order
        ));
    }
    let marks_unanswered = c.marks_sent.saturating_sub(c.marks_acked + c.marks_failed);
    if marks_unanswered > 0 || c.marks_failed > 0 {
        found.push(format!(
            "of {} marks (dlvrd, read) sent, {} were refused and {marks_unanswered} never answered",
            c.marks_sent, c.marks_failed
        ));
    }
    let marks_owed = expected_mark_events(plan, c.marks_acked);
    let marks_missing = marks_owed.saturating_sub(c.mark_events);
    if marks_missing > 0 {
        found.push(format!(
            "{marks_missing} of the {marks_owed} dlvrd and read events the acked marks owe never arrived"
        ));
    }
    if c.silent_offline_early > 0 {
        found.push(format!(
            "{} silent clients' offline came before their deadline, timed as 0 (is the server's \
             HEARTBEAT_TIMEOUT_MS shorter than --heartbeat-timeout-ms {} ms?)",
            c.silent_offline_early, plan.heartbeat_timeout_ms
        ));
    }
    if c.silent_offline < c.silent {
        found.push(format!(
            "{} of {} silent clients' offline never came (is the server's HEARTBEAT_TIMEOUT_MS {} ms, as \
             --heartbeat-timeout-ms says, and shorter than the run?)",
            c.silent - c.silent_offline,
            c.silent,
            plan.heartbeat_timeout_ms
        ));
    }
    found
}

/// The close codes of connections the server closed or lost, as
/// `4001: 3, 1006 (no Close frame): 1`.
fn close_codes(closes: &BTreeMap<String, u64>) -> String {
    let name = |code: &str| match code {
        "1005" => "1005 (no code)".to_owned(),
        "1006" => "1006 (no Close frame)".to_owned(),
        code => code.to_owned(),
    };
    let codes: Vec<String> = closes.iter().map(|(code, n)| format!("{}: {n}", name(code))).collect();
    if codes.is_empty() {
        "close codes not counted".to_owned()
    } else {
        format!("close codes {}", codes.join(", "))
    }
}

/// `println!` that does not panic when stdout has closed (a `| tee` ended
/// by the same Ctrl-C): the report is written already.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn print_summary(plan: &Plan, r: &Value, problems: &[String]) {
    let c = &r["counters"];
    let row = |name: &str, value: String| out!("  {name:<38} {value}");
    out!("\n== loadtest {:?}: {} connections ==", plan.scenario, plan.connections);
    if plan.chats_per_user() > 0 {
        row("chats per user, members per chat", format!("{}, {}", plan.chats_per_user(), plan.group_size));
    }
    if plan.burst > 1 {
        row("sends per burst, over the chats", format!("{}", plan.burst));
    }
    row("connected / failed", format!("{} / {}", c["connected"], c["connect_failures"]));
    if matches!(plan.scenario, Scenario::Churn | Scenario::Reconnect) {
        row("reconnected during the run", format!("{}", c["reconnected"]));
    }
    if c["disconnects"].as_u64().unwrap_or(0) > 0 {
        let closes = serde_json::from_value(c["closes"].clone()).unwrap_or_default();
        row("closed or lost by the server", format!("{} ({})", c["disconnects"], close_codes(&closes)));
    }
    if plan.scenario == Scenario::Silent {
        row("silent clients / offline seen", format!("{} / {}", c["silent"], c["silent_offline"]));
    }
    row(
        "connect time, rate",
        format!(
            "{:.1}s, {:.0}/s",
            r["connect_seconds"].as_f64().unwrap_or(0.0),
            r["connect_rate_per_second"].as_f64().unwrap_or(0.0)
        ),
    );
    if plan.scenario.measures_deliveries() {
        // Beside what was sent: a run that could not keep its rate (its
        // clients disconnected a while, or short of the CPU) shows it.
        row("messages/s offered, over seconds", format!("{}, {}", plan.rate, plan.duration));
    }
    row("sent / acked / errors", format!("{} / {} / {}", c["sent"], c["acked"], c["errors"]));
    if plan.scenario == Scenario::Receipts {
        row(
            "marks sent / acked / refused",
            format!("{} / {} / {}", c["marks_sent"], c["marks_acked"], c["marks_failed"]),
        );
        row("mark events (expected)", format!("{} ({})", c["mark_events"], r["expected_mark_events"]));
    }
    let rate_limited = c["rate_limited"].as_u64().unwrap_or(0);
    if rate_limited > 0 {
        row("of the errors, rate_limited", format!("{rate_limited} (see below)"));
    }
    if plan.scenario == Scenario::Reconnect || c["resent"].as_u64().unwrap_or(0) > 0 {
        row("unacked sent again after reconnect", format!("{}", c["resent"]));
    }
    row(
        "deliveries (expected, lost)",
        format!("{} ({}, {})", c["deliveries"], r["expected_deliveries"], r["lost_deliveries"]),
    );
    row("presence frames, all / measured", format!("{} / {}", c["presence_events"], c["presence_in_phase"]));
    row("dups / out of order / filled in", format!("{} / {} / {}", c["duplicates"], c["out_of_order"], c["filled_in"]));
    row("event ids never arrived", format!("{}", c["never_arrived"]));
    if plan.scenario == Scenario::Reconnect {
        row(
            "syncs asked / answered / failed",
            format!("{} / {} / {}", c["syncs_asked"], c["synced"], c["syncs_failed"]),
        );
        row("events replayed by the syncs", format!("{}", c["replayed"]));
    }
    row(
        "acked/s, deliveries/s under load",
        format!(
            "{:.0}, {:.0}",
            r["messages_acked_per_second"].as_f64().unwrap_or(0.0),
            r["deliveries_per_second"].as_f64().unwrap_or(0.0)
        ),
    );
    for (name, key) in [
        ("connect", "connect"),
        ("send→ack", "send_to_ack"),
        ("send→delivery", "send_to_delivery"),
        ("scenario", "scenario"),
        ("lastSeen→offline", "last_seen_to_offline"),
    ] {
        let l = &r["latency"][key];
        if l.is_null() {
            continue;
        }
        row(
            &format!("{name} ms p50/90/99/99.9/max"),
            format!("{}/{}/{}/{}/{}", l["p50_ms"], l["p90_ms"], l["p99_ms"], l["p999_ms"], l["max_ms"]),
        );
    }
    let s = &r["server"];
    if s["cpu_seconds_measured"].is_null() {
        row("server figures", "not measured: a server process exited".into());
    } else if !plan.server_pids.is_empty() {
        let figure = |value: &Value, scale: f64| value.as_f64().unwrap_or(0.0) / scale;
        row("server RSS at end (MiB)", format!("{:.1}", figure(&s["end"]["rss_bytes"], 1048576.0)));
        row("server RSS per connection (KiB)", format!("{:.2}", figure(&s["rss_per_connection_bytes"], 1024.0)));
        if plan.scenario == Scenario::Idle {
            row(
                "server RSS per conn. at end (KiB)",
                format!("{:.2}", figure(&s["rss_per_connection_at_end_bytes"], 1024.0)),
            );
        }
        row("server CPU s (measured phase)", format!("{:.2}", figure(&s["cpu_seconds_measured"], 1.0)));
        if plan.scenario.measures_deliveries() {
            row(
                "server CPU s per 1M deliveries",
                s["cpu_seconds_per_million_deliveries"]
                    .as_f64()
                    .map_or("– (none delivered)".into(), |v| format!("{v:.2}")),
            );
        }
        row("server open fds at end", format!("{}", s["end"]["open_fds"]));
    }
    if let Some(processes) = s["processes"].as_array().filter(|p| p.len() > 1) {
        let exited: Vec<&Value> = r["server_exited"].as_array().map(|e| e.iter().collect()).unwrap_or_default();
        for p in processes {
            if exited.contains(&&p["pid"]) {
                row(&format!("  {} {}", p["name"].as_str().unwrap_or("?"), p["pid"]), "exited during the run".into());
                continue;
            }
            let mib = |phase: &str| p[phase]["rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0;
            let cpu =
                p["end"]["cpu_seconds"].as_f64().unwrap_or(0.0) - p["connected"]["cpu_seconds"].as_f64().unwrap_or(0.0);
            row(
                &format!("  {} {}", p["name"].as_str().unwrap_or("?"), p["pid"]),
                format!(
                    "RSS {:.1} → {:.1} → {:.1} MiB (baseline, connected, end), CPU {cpu:.2} s measured",
                    mib("baseline"),
                    mib("connected"),
                    mib("end")
                ),
            );
        }
    }
    let m = &r["machine"];
    row(
        "agents' CPU s (measured phase)",
        format!("{:.2}", m["load_agents_cpu_seconds_measured"].as_f64().unwrap_or(0.0)),
    );
    if let Some(idle) = m["idle_share_measured"].as_f64() {
        row("machine idle (measured phase)", format!("{:.0} %", idle * 100.0));
    }
    if rate_limited > 0 {
        out!(
            "\n  {rate_limited} commands were refused as rate_limited: a connection sent faster than the \
             gateway's COMMAND_RATE / COMMAND_BURST allow. Spread the rate over more connections, or \
             raise those settings on the gateway."
        );
    }
    if !problems.is_empty() {
        out!("\n  The run did not measure what was asked:");
        for problem in problems {
            out!("  - {problem}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan as `loadtest run ARGS...` makes it.
    fn plan(args: &[&str]) -> Plan {
        #[derive(clap::Parser)]
        struct Args {
            #[command(flatten)]
            plan: Plan,
        }
        <Args as clap::Parser>::parse_from(std::iter::once("run").chain(args.iter().copied())).plan
    }

    /// Duplicates are counted apart: they make up for no delivery lost.
    #[test]
    fn a_duplicate_does_not_make_up_for_a_lost_delivery() {
        let counters = Counters { deliveries: 10_013, duplicates: 35, ..Counters::default() };
        assert_eq!(lost_deliveries(10_030, &counters), 52);
        let whole = Counters { deliveries: 10_030, ..Counters::default() };
        assert_eq!(lost_deliveries(10_030, &whole), 0);
    }

    /// A run the server cut connections of says how: a slow consumer's
    /// 4001 is not a crash's missing Close frame.
    #[test]
    fn connections_the_server_closed_are_named_by_close_code() {
        let plan = plan(&["idle"]);
        let counters = Counters {
            disconnects: 4,
            closes: [("4001".into(), 3), ("1006".into(), 1)].into_iter().collect(),
            ..Counters::default()
        };
        assert_eq!(
            problems(&plan, &counters, 0, &Phases::default(), None),
            vec!["the server closed or lost 4 connection(s) during the run (close codes 1006 (no Close frame): 1, 4001: 3)"]
        );
    }

    /// Sends with neither an ack nor an error are owed no delivery and
    /// timed nowhere: the run names them rather than ending clean.
    #[test]
    fn sends_never_answered_make_the_run_fail() {
        let plan = plan(&["fanout", "--group-size", "10"]);
        let answered =
            Counters { sent: 100, acked: 100, acked_in_phase: 100, deliveries: 1_000, ..Counters::default() };
        assert!(problems(&plan, &answered, 0, &Phases::default(), None).is_empty());
        let unanswered = Counters { sent: 130, ..answered };
        assert_eq!(
            problems(&plan, &unanswered, 0, &Phases::default(), None),
            vec!["30 of 130 sends were never answered: the loss and latency figures cover only the answered ones"]
        );
    }
}
