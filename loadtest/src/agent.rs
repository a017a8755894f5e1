//! One agent process: opens its share of the connections, waits for the
//! coordinator's orders on stdin (`go`, `storm`, `stop`, `finish`), runs the scenario
//! and prints progress and its result as JSON lines on stdout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::conn::{self, Behaviour, Connection, Order};
use crate::plan::{AgentSpec, Scenario, SyncFrom};
use crate::seen::Seen;
use crate::state::{now_us, AgentState};
use crate::stats::AgentLine;

/// One line to the coordinator. Without it there is no one to report to,
/// so the agent ends (quietly: the coordinator says what happened).
fn emit(line: &AgentLine) {
    use std::io::Write;
    let Ok(text) = serde_json::to_string(line) else { return };
    if writeln!(std::io::stdout().lock(), "{text}").is_err() {
        std::process::exit(1);
    }
}

pub async fn run(spec: AgentSpec) -> anyhow::Result<()> {
    // A Ctrl-C in the terminal reaches every process of the group: the
    // coordinator alone decides, and ends the run through stdin.
    let _ignored = (
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?,
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
    );
    let plan = &spec.plan;
    let state =
        Arc::new(AgentState::new(plan.ping_ms, plan.ws_pings, plan.heartbeat_timeout_ms, spec.user_prefix.clone()));
    let auth = shared::auth::Authenticator::new(spec.secret.as_bytes());
    let exp = (shared::clock::now_ms() / 1000) as u64 + 86_400;
    let token = |n: usize| auth.mint(&spec.user(n), exp);

    let progress_state = state.clone();
    let progress = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(500));
        loop {
            every.tick().await;
            emit(&AgentLine::Progress { counters: Box::new(progress_state.counters()) });
        }
    });

    let behaviour_of = |n: usize| {
        let in_group = (n - spec.first_user) % plan.group_size;
        match plan.scenario {
            // Member 0 of each group watches; the others fall silent.
            Scenario::Silent => Behaviour { ping: in_group == 0, mark: false },
            Scenario::Receipts => Behaviour { ping: true, mark: true },
            _ => Behaviour { ping: true, mark: false },
        }
    };
    let url_of = |n: usize| plan.ws_url[n % plan.ws_url.len()].clone();

    // Connect, paced.
    let mut connections: Vec<Option<Connection>> = Vec::with_capacity(spec.user_count);
    let pace = Duration::from_secs_f64(1.0 / plan.connect_rate as f64);
    let mut next = tokio::time::Instant::now();
    let mut pending = Vec::new();
    for n in spec.first_user..spec.first_user + spec.user_count {
        tokio::time::sleep_until(next).await;
        next += pace;
        let (state, url, token, source) = (state.clone(), url_of(n), token(n), spec.source_ip.clone());
        let behaviour = behaviour_of(n);
        let silent = (plan.scenario == Scenario::Silent && !behaviour.ping).then(|| spec.user(n));
        pending.push(tokio::spawn(async move {
            let opened = conn::open(&url, &token, &source, n, behaviour, state.clone(), Seen::default()).await;
            // Counted as it opens, so that the coordinator's progress moves
            // while the rest are still being paced.
            if let Ok(connection) = &opened {
                state.connected(connection.opened_in);
                if let Some(user) = silent {
                    state.went_silent(user, connection.welcomed_at_us, connection.started_at_us);
                }
            }
            opened
        }));
    }
    for opened in pending {
        match opened.await {
            Ok(Ok(connection)) => connections.push(Some(connection)),
            Ok(Err(e)) => {
                state.connect_failed(format!("{e:#}"));
                connections.push(None);
            }
            Err(e) => {
                state.connect_failed(e);
                connections.push(None);
            }
        }
    }

    let mut orders = BufReader::new(tokio::io::stdin()).lines();
    wait_for(&mut orders, "go").await;
    state.set_measuring(true);

    let (stop_tx, mut stop_rx) = mpsc::channel::<String>(4);
    tokio::spawn(async move {
        while let Ok(Some(line)) = orders.next_line().await {
            let _ = stop_tx.send(line).await;
        }
    });

    match plan.scenario {
        Scenario::Idle | Scenario::Silent => {
            while let Some(line) = stop_rx.recv().await {
                if line == "stop" {
                    break;
                }
            }
        }
        Scenario::Fanout | Scenario::Receipts | Scenario::Reconnect => {
            send_messages(&spec, &state, &mut connections, &mut stop_rx, &token).await;
        }
        Scenario::Churn => churn(&spec, &state, &mut connections, &mut stop_rx, &token, &url_of).await,
    }
    state.set_measuring(false);
    // The coordinator, which sees every agent's counts, says when what is
    // in flight has arrived (or stops waiting for it).
    while let Some(line) = stop_rx.recv().await {
        if line == "finish" {
            break;
        }
    }
    // Each connection counts what it never got as it finishes; one that
    // does not finish within the bound is left out of that count.
    let finish = async move {
        for connection in connections.iter().flatten() {
            let _ = connection.orders.send(Order::Finish).await;
        }
        futures_util::future::join_all(connections.into_iter().flatten().map(|c| c.served)).await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), finish).await;
    progress.abort();
    emit(&AgentLine::Result { result: Box::new(state.result()) });
    Ok(())
}

async fn wait_for(orders: &mut tokio::io::Lines<BufReader<tokio::io::Stdin>>, word: &str) {
    while let Ok(Some(line)) = orders.next_line().await {
        if line.trim() == word {
            return;
        }
    }
}

/// Sends this agent's share of the message rate from random members, until
/// `stop`; on `storm`, every connection drops and comes back with `sync`.
/// Each turn one member sends `--burst` messages back to back, to its
/// chats in turn from a random one.
async fn send_messages(
    spec: &AgentSpec,
    state: &Arc<AgentState>,
    connections: &mut [Option<Connection>],
    commands: &mut mpsc::Receiver<String>,
    token: &impl Fn(usize) -> String,
) {
    let layout = spec.plan.layout();
    let burst = spec.plan.burst.max(1);
    let every = Duration::from_secs_f64(burst as f64 / spec.rate.max(0.001));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sequence = 0u64;
    let sending = spec.rate > 0.0 && !connections.is_empty() && layout.chats_per_user() > 0;
    loop {
        tokio::select! {
            _ = ticker.tick(), if sending => {
                let mut random = rand::thread_rng();
                let slot = random.gen_range(0..connections.len());
                let Some(connection) = &connections[slot] else { continue };
                let first_layer = random.gen_range(0..layout.chats_per_user());
                for turn in 0..burst as usize {
                    let layer = (first_layer + turn) % layout.chats_per_user();
                    let Some(chat) = spec.chats.get(layout.chat_of(connection.user, layer)) else { continue };
                    sequence += 1;
                    let sent = now_us();
                    let frame = json!({
                        "type": "new", "ref": format!("s{sent}-{sequence}"), "chatId": chat,
                        "clientMessageId": format!("a{}-{sequence}", spec.index), "message": sent.to_string(),
                    });
                    if connection.orders.try_send(Order::Send(frame)).is_ok() {
                        state.sent();
                    }
                }
            }
            line = commands.recv() => match line.as_deref() {
                Some("storm") => storm(spec, state, connections, token).await,
                Some("stop") | None => return,
                Some(_) => {}
            },
        }
    }
}

/// Every connection drops at once and reconnects with `sync`; records the
/// time from the drop to the sync's ack. As a client would, each syncs
/// from the newest event it saw (unless `--sync-from start`) and sends
/// again what the server had not acknowledged before the drop.
async fn storm(
    spec: &AgentSpec,
    state: &Arc<AgentState>,
    connections: &mut [Option<Connection>],
    token: &impl Fn(usize) -> String,
) {
    *state.storm_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    let layout = spec.plan.layout();
    for connection in connections.iter().flatten() {
        let _ = connection.orders.try_send(Order::Close);
    }
    let mut back = Vec::new();
    for slot in connections.iter_mut() {
        let Some(old) = slot.take() else { continue };
        let n = old.user;
        let (state, url, token, source) =
            (state.clone(), spec.plan.ws_url[n % spec.plan.ws_url.len()].clone(), token(n), spec.source_ip.clone());
        let chats: Vec<i64> = layout.chats_of(n).filter_map(|c| spec.chats.get(c).copied()).collect();
        let sync_from = spec.plan.sync_from;
        back.push(tokio::spawn(async move {
            // A full queue refused the close above; this one waits its turn.
            let _ = old.orders.send(Order::Close).await;
            let left = old.served.await.unwrap_or_default();
            let since = sync_since(&chats, &left.seen, sync_from);
            let seen = match sync_from {
                SyncFrom::Newest => left.seen,
                SyncFrom::Start => Seen::default(),
            };
            let behaviour = Behaviour { ping: true, mark: false };
            let connection = conn::open(&url, &token, &source, n, behaviour, state.clone(), seen).await?;
            if !since.is_empty() {
                connection.orders.send(Order::Send(json!({"type": "sync", "ref": "sync", "since": since}))).await?;
                state.sync_asked();
            }
            for frame in left.retries {
                connection.orders.send(Order::Send(frame)).await?;
                state.resent();
            }
            anyhow::Ok(connection)
        }));
    }
    for (slot, reconnect) in connections.iter_mut().zip(back) {
        match reconnect.await {
            Ok(Ok(connection)) => {
                state.reconnected(connection.opened_in);
                *slot = Some(connection);
            }
            Ok(Err(e)) => state.connect_failed(format!("{e:#}")),
            Err(e) => state.connect_failed(e),
        }
    }
}

/// A reconnecting client's `sync.since`: every chat of the user, from the
/// newest event it saw there or from the start.
fn sync_since(chats: &[i64], seen: &Seen, from: SyncFrom) -> serde_json::Map<String, serde_json::Value> {
    let since = |chat: i64| match from {
        SyncFrom::Newest => seen.resume_from(chat),
        SyncFrom::Start => 0,
    };
    chats.iter().map(|&chat| (chat.to_string(), since(chat).into())).collect()
}

/// Closes and reopens connections at this agent's share of the churn rate.
async fn churn(
    spec: &AgentSpec,
    state: &Arc<AgentState>,
    connections: &mut [Option<Connection>],
    commands: &mut mpsc::Receiver<String>,
    token: &impl Fn(usize) -> String,
    url_of: &impl Fn(usize) -> String,
) {
    let every = Duration::from_secs_f64(1.0 / spec.rate.max(0.001));
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticker.tick(), if !connections.is_empty() => {
                let slot = rand::thread_rng().gen_range(0..connections.len());
                let Some(old) = connections[slot].take() else { continue };
                let _ = old.orders.send(Order::Close).await;
                let n = old.user;
                match conn::open(&url_of(n), &token(n), &spec.source_ip, n, Behaviour { ping: true, mark: false }, state.clone(), Seen::default()).await {
                    Ok(connection) => {
                        state.reconnected(connection.opened_in);
                        connections[slot] = Some(connection);
                    }
                    Err(e) => state.connect_failed(format!("{e:#}")),
                }
            }
            line = commands.recv() => if matches!(line.as_deref(), Some("stop") | None) { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::sync_since;
    use crate::plan::SyncFrom;
    use crate::seen::Seen;

    #[test]
    fn a_sync_names_every_chat_from_where_the_client_left_it() {
        let mut seen = Seen::default();
        for (chat, id) in [(7, 1), (7, 2), (9, 5)] {
            seen.arrive(chat, id);
        }
        let chats = [7, 8, 9];
        assert_eq!(
            serde_json::Value::Object(sync_since(&chats, &seen, SyncFrom::Newest)),
            json!({"7": 2, "8": 0, "9": 5})
        );
        assert_eq!(
            serde_json::Value::Object(sync_since(&chats, &seen, SyncFrom::Start)),
            json!({"7": 0, "8": 0, "9": 0})
        );
    }
}
