//! The coordinator: sets the run up (tokens, chats), starts agent processes
//! on their own source addresses, shows progress, measures the server, and
//! gathers the agents' results into one report.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::layout::Layout;
use crate::plan::{AgentSpec, Plan, Scenario};
use crate::procstat;
use crate::report::{self, Phases};
use crate::stats::{AgentLine, AgentResult, Counters};
use crate::stop::Stop;

/// Where the agents' specs are written. They hold the JWT secret, so the
/// directory is made new, with a name no one can take first, this user's
/// alone (0700), and removed however the run ends (an abort too:
/// [`Stop`]).
fn spec_dir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    // tempfile makes directories with the umask's permissions unless told.
    tempfile::Builder::new().prefix("loadtest-").permissions(std::fs::Permissions::from_mode(0o700)).tempdir()
}

struct Agent {
    child: Child,
    stdin: ChildStdin,
    users: usize,
    /// Reads the agent's lines until its stdout closes: the result line is
    /// only counted once this ends, which can be after the process exits.
    lines: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    progress: HashMap<usize, Counters>,
    results: HashMap<usize, AgentResult>,
}

pub async fn run(plan: Plan) -> anyhow::Result<()> {
    plan.check()?;
    for &pid in &plan.server_pids {
        anyhow::ensure!(procstat::alive(pid), "--server-pid {pid}: no such process");
    }
    // Found missing only after the run, the report's folder would lose it.
    report::prepare(&plan)?;
    let secret = secret(&plan)?;
    let prefix = plan.user_prefix.clone().unwrap_or_else(|| format!("lt{}-", shared::clock::now_ms() % 1_000_000_000));
    let group = plan.group_size;
    let layout = plan.layout();
    anyhow::ensure!(
        plan.scenario != Scenario::Silent || layout.chats_per_user() <= 1,
        "silent takes one chat per user: a silent client's watcher must be in its agent"
    );
    let chats = create_chats(&plan, &layout, &secret, &prefix).await?;

    // Agents take whole groups, so a silent client and its watcher share one.
    let per_agent = (plan.per_process / group).max(1) * group;
    let agent_count = plan.connections.div_ceil(per_agent).max(1);
    eprintln!(
        "loadtest: {} connections in {agent_count} agent process(es), scenario {:?}",
        plan.connections, plan.scenario
    );
    let baseline = procstat::each(&plan.server_pids);
    let server_names: Vec<String> = plan.server_pids.iter().map(|&pid| procstat::name(pid)).collect();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut agents = Vec::new();
    let spec_dir = spec_dir()?;
    let stop = Stop::watch(spec_dir.path().to_owned(), plan.server_pids.clone());
    for index in 0..agent_count {
        let first = index * per_agent;
        let users = per_agent.min(plan.connections - first);
        let share = users as f64 / plan.connections as f64;
        let rate = match plan.scenario {
            Scenario::Churn => plan.churn_rate as f64 * share,
            _ => plan.rate as f64 * share,
        };
        let spec = AgentSpec {
            plan: plan.clone(),
            secret: secret.clone(),
            index,
            first_user: first,
            user_count: users,
            source_ip: format!("127.0.0.{}", index + 1),
            chats: chats.clone(),
            rate,
            user_prefix: prefix.clone(),
        };
        let path = spec_dir.path().join(format!("agent-{index}.json"));
        std::fs::write(&path, serde_json::to_vec(&spec)?)?;
        agents.push(spawn_agent(index, &path, users, shared.clone())?);
    }
    stop.agents(agents.iter().filter_map(|a| a.child.id()).collect());

    let bar = ProgressBar::with_draw_target(Some(plan.connections as u64), crate::progress_target::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix("connecting");
    let connect_started = Instant::now();
    loop {
        let Counters { connected, connect_failures: failed, .. } = totals(&shared);
        bar.set_position(connected);
        bar.set_message(format!("{failed} failed"));
        if connected + failed >= plan.connections as u64 || stop.now() {
            break;
        }
        anyhow::ensure!(agents_alive(&mut agents), "an agent process exited early");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    bar.finish_with_message(format!("in {connect_seconds:.1}s"));
    // Let the server settle (presence announcements) before measuring memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Silent is left out: its clients' `offline`s begin while it would wait.
    let members_announced = plan.scenario.measures_deliveries()
        || (matches!(plan.scenario, Scenario::Idle | Scenario::Churn) && plan.chats_per_user() > 0);
    if members_announced {
        presence_settled(&shared, &stop).await;
    }
    let connected = procstat::each(&plan.server_pids);
    let agent_pids: Vec<u32> = agents.iter().filter_map(|a| a.child.id()).collect();
    let (agents_connected, machine_connected) = (procstat::sample(&agent_pids), procstat::machine());

    broadcast(&mut agents, "go").await;
    let phase = ProgressBar::with_draw_target(Some(plan.duration), crate::progress_target::stderr());
    phase.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    phase.set_prefix("running");
    let started = Instant::now();
    let mut stormed = false;
    while started.elapsed() < Duration::from_secs(plan.duration) && !stop.now() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if plan.scenario == Scenario::Reconnect
            && !stormed
            && started.elapsed() >= Duration::from_secs(plan.duration / 2)
        {
            stormed = true;
            broadcast(&mut agents, "storm").await;
        }
        let now = totals(&shared);
        phase.set_position(started.elapsed().as_secs());
        phase.set_message(format!("sent {} acked {} delivered {}", now.sent, now.acked, now.deliveries));
    }
    let measured_seconds = started.elapsed().as_secs_f64();
    let end = procstat::each(&plan.server_pids);
    // What ended the measured phase; a signal or an exit after it only
    // cuts the settling short.
    let (interrupted, exited) = (stop.interrupted(), stop.exited());
    let (agents_end, machine_end) = (procstat::sample(&agent_pids), procstat::machine());
    phase.finish();
    broadcast(&mut agents, "stop").await;
    if !stop.now() {
        settle(&plan, &shared, &stop).await;
    }
    broadcast(&mut agents, "finish").await;
    for agent in &mut agents {
        let _ = agent.stdin.shutdown().await;
    }
    eprintln!("loadtest: collecting results");
    for agent in &mut agents {
        let _ = agent.child.wait().await;
        // Its last lines may still be unread when it has exited.
        let _ = (&mut agent.lines).await;
    }
    let results: Vec<AgentResult> =
        std::mem::take(&mut shared.lock().unwrap_or_else(|e| e.into_inner()).results).into_values().collect();
    anyhow::ensure!(results.len() == agents.len(), "only {} of {} agents reported", results.len(), agents.len());
    drop(spec_dir);
    let phases = Phases {
        server_names,
        baseline,
        connected,
        end,
        connect_seconds,
        measured_seconds,
        agents_cpu_seconds: agents_end.cpu_seconds - agents_connected.cpu_seconds,
        idle_share: machine_connected.zip(machine_end).and_then(|(from, to)| from.idle_share_until(to)),
        settling_cut_short: !interrupted && exited.is_empty() && stop.now(),
        exited,
        interrupted,
    };
    let problems = report::write(&plan, results, phases)?;
    anyhow::ensure!(problems.is_empty(), "the run did not measure what was asked (the summary says why)");
    Ok(())
}

/// Waits, showing progress, until what was in flight at `stop` has
/// arrived: every send, sync and mark answered, and every delivery the
/// acked messages owe and every event the acked marks owe received. Gives
/// up once nothing has moved for 10 s (what is missing then is counted
/// lost), or after 5 minutes.
///
/// Why exact: ending on a quiet second (as the agents did) cut off a
/// storm's late deliveries when the server paused for more than that,
/// and the report counted them lost: 174 in a storm of users in 20 chats
/// that a longer run saw arrive, 5 in another run of the twenty-eighth
/// session. Ending 30 s after the stop counted only the syncs answered
/// by then.
async fn settle(plan: &Plan, shared: &Mutex<Shared>, stop: &Stop) {
    const STALLED: Duration = Duration::from_secs(10);
    const BOUND: Duration = Duration::from_secs(300);
    let settling = ProgressBar::with_draw_target(None, crate::progress_target::stderr());
    settling.set_style(
        ProgressStyle::with_template("{prefix:>10} {spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    settling.set_prefix("settling");
    let started = Instant::now();
    let (mut moved, mut last) = (Instant::now(), None);
    while started.elapsed() < BOUND && moved.elapsed() < STALLED && !stop.now() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = totals(shared);
        let expected = report::expected_deliveries(plan, now.acked);
        let answered = now.acked + now.errors;
        let synced = now.synced + now.syncs_failed;
        let syncs =
            if now.syncs_asked > 0 { format!(", syncs answered {synced}/{}", now.syncs_asked) } else { String::new() };
        let marks_answered = now.marks_acked + now.marks_failed;
        let expected_marks = report::expected_mark_events(plan, now.marks_acked);
        let marks = if now.marks_sent > 0 {
            format!(
                ", marks answered {marks_answered}/{}, mark events {}/{expected_marks}",
                now.marks_sent, now.mark_events
            )
        } else {
            String::new()
        };
        settling.set_message(format!(
            "sends answered {answered}/{}{syncs}, deliveries {}/{expected}{marks}",
            now.sent, now.deliveries
        ));
        settling.tick();
        if answered >= now.sent
            && synced >= now.syncs_asked
            && now.deliveries >= expected
            && marks_answered >= now.marks_sent
            && now.mark_events >= expected_marks
        {
            break;
        }
        let progress = (answered, synced, now.deliveries, marks_answered, now.mark_events);
        if last != Some(progress) {
            (moved, last) = (Instant::now(), Some(progress));
        }
    }
    settling.finish();
}

/// The agents' latest counters, summed.
fn totals(shared: &Mutex<Shared>) -> Counters {
    let s = shared.lock().unwrap_or_else(|e| e.into_inner());
    s.progress.values().fold(Counters::default(), |mut sum, c| {
        sum.add(c);
        sum
    })
}

fn secret(plan: &Plan) -> anyhow::Result<String> {
    if let Some(secret) = plan.jwt_secret.clone().filter(|s| !s.is_empty()) {
        return Ok(secret);
    }
    let path = std::path::Path::new(&plan.data_dir).join("jwt-secret");
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| anyhow::anyhow!("no JWT_SECRET and cannot read {}: {e}", path.display()))
}

/// Every chat of the layout, in chat index order; returns their ids.
async fn create_chats(plan: &Plan, layout: &Layout, secret: &str, prefix: &str) -> anyhow::Result<Vec<i64>> {
    let count = layout.chat_count();
    if count == 0 {
        return Ok(Vec::new());
    }
    let auth = shared::auth::Authenticator::new(secret.as_bytes());
    let exp = (shared::clock::now_ms() / 1000) as u64 + 86_400;
    let http = reqwest::Client::new();
    let bar = ProgressBar::with_draw_target(Some(count as u64), crate::progress_target::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix("chats");
    let requests = (0..count).map(|c| {
        // Member 0 of every chat is a user (see `Layout::members`): it creates it.
        let users = layout.members(c);
        let members: Vec<String> = users.iter().skip(1).map(|n| format!("{prefix}{n}")).collect();
        let token = auth.mint(&format!("{prefix}{}", users.first().copied().unwrap_or_default()), exp);
        let (http, url, bar) = (http.clone(), format!("{}/v1/chats", plan.http_url), bar.clone());
        async move {
            let body = json!({"type": "group", "name": format!("load {c}"), "members": members});
            let response = http.post(url).bearer_auth(token).json(&body).send().await?;
            anyhow::ensure!(response.status() == 201, "creating a chat: {}", response.status());
            let chat: serde_json::Value = response.json().await?;
            bar.inc(1);
            chat["id"].as_i64().ok_or_else(|| anyhow::anyhow!("no chat id"))
        }
    });
    let chats: Vec<anyhow::Result<i64>> = futures_util::stream::iter(requests).buffered(32).collect().await;
    bar.finish();
    chats.into_iter().collect()
}

fn spawn_agent(
    index: usize,
    spec: &std::path::Path,
    users: usize,
    shared: Arc<Mutex<Shared>>,
) -> anyhow::Result<Agent> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("agent")
        .arg(spec)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = child.stdin.take().ok_or_else(|| anyhow::anyhow!("agent stdin"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("agent stdout"))?;
    let lines = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<AgentLine>(&line) {
                Ok(AgentLine::Progress { counters }) => {
                    shared.lock().unwrap_or_else(|e| e.into_inner()).progress.insert(index, *counters);
                }
                Ok(AgentLine::Result { result }) => {
                    shared.lock().unwrap_or_else(|e| e.into_inner()).results.insert(index, *result);
                }
                Err(_) => eprintln!("agent {index}: {line}"),
            }
        }
    });
    Ok(Agent { child, stdin, users, lines })
}

/// Waits until the members' `online` frames from connecting have all
/// arrived, so that their fan-out (every member to every co-member: 2,000 ×
/// 999 frames for two chats of 1,000) is not counted as the scenario's CPU.
/// Quiet means no new presence frame over a second of progress lines;
/// waits at most a minute.
async fn presence_settled(shared: &Mutex<Shared>, stop: &Stop) {
    let spinner = ProgressBar::with_draw_target(None, crate::progress_target::stderr());
    spinner.set_style(
        ProgressStyle::with_template("{prefix:>10} {spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_prefix("presence");
    let started = Instant::now();
    let mut last = totals(shared).presence_events;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = totals(shared).presence_events;
        spinner.set_message(format!("{now} presence frames received"));
        if now == last || started.elapsed() > Duration::from_secs(60) || stop.now() {
            break;
        }
        last = now;
    }
    spinner.finish_and_clear();
    eprintln!(
        "loadtest: presence settled: {last} frames received, quiet after {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

fn agents_alive(agents: &mut [Agent]) -> bool {
    agents.iter_mut().all(|a| matches!(a.child.try_wait(), Ok(None)) && a.users > 0)
}

async fn broadcast(agents: &mut [Agent], order: &str) {
    for agent in agents {
        let _ = agent.stdin.write_all(format!("{order}\n").as_bytes()).await;
        let _ = agent.stdin.flush().await;
    }
}
