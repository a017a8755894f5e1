//! The `gateway` binary started bare, as the README has a newcomer start
//! it: no settings but `--listen` (PROTOCOL.md 8), in an empty directory.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use testkit::process::{binary, Service};

/// Standalone with the contract's defaults: its data in an SQLite file
/// under `./data`, a generated node id and signing secret (tokens from
/// `gateway token` in the same directory are accepted), a 20 s heartbeat,
/// and liveness and readiness answered.
#[tokio::test]
async fn a_bare_gateway_runs_standalone_with_the_contract_defaults() {
    let dir = tempfile::tempdir().expect("dir");
    let (mut gateway, listen) = start_bare(dir.path(), &HashMap::new()).await;
    let live = reqwest::get(format!("http://{listen}/healthz")).await.expect("healthz");
    assert_eq!(live.status(), 200);
    assert!(dir.path().join("data/chat.db").is_file(), "the default database file");
    // Every message is in there: readable by this user only.
    let mode = |name: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.path().join(name)).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
    };
    assert_eq!(mode("data"), 0o700, "the data folder");
    for file in ["data/chat.db", "data/chat.db-wal", "data/chat.db-shm", "data/jwt-secret"] {
        assert_eq!(mode(file), 0o600, "{file}");
    }

    let token = token_in(dir.path(), "alice");
    let mut alice = testkit::client::open(&format!("ws://{listen}/ws"), &token, "alice").await.expect("accepted");
    let welcome = alice.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["heartbeatTimeout"], 20_000, "{welcome}");
    assert!(welcome["node"].as_str().is_some_and(|node| node.starts_with("gw-") && node.len() > 3), "{welcome}");
    alice.close().await;
    assert_eq!(gateway.terminate(Duration::from_secs(20)).expect("stops"), Some(0), "{}", gateway.log());
}

/// A gateway stalls past the heartbeat deadline while its clients go on
/// pinging: the pings wait unread in the sockets. When the gateway carries
/// on, no client may be closed for them (the first sweep closed every
/// connection of a gateway, 2 ms after SIGCONT, in an audit).
#[tokio::test]
async fn clients_that_pinged_through_a_gateway_s_stall_are_not_closed_for_it() {
    const CLIENTS: usize = 50;
    let dir = tempfile::tempdir().expect("dir");
    let settings = HashMap::from([("HEARTBEAT_TIMEOUT_MS".to_string(), "2000".to_string())]);
    let (mut gateway, listen) = start_bare(dir.path(), &settings).await;
    let token = token_in(dir.path(), "alice");
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = testkit::client::open(&format!("ws://{listen}/ws"), &token, "alice").await.expect("accepted");
        assert_eq!(client.recv().await["type"], "welcome");
        clients.push(client);
    }

    gateway.pause().expect("SIGSTOP");
    // Twice the deadline, pinging as a client must (the pause is the
    // scenario, not a wait for something to happen).
    for n in 0..8 {
        for client in &mut clients {
            client.send(serde_json::json!({"type": "ping", "ref": n})).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    gateway.resume().expect("SIGCONT");
    for client in &mut clients {
        client.send(serde_json::json!({"type": "ping", "ref": 8})).await;
        for n in 0..=8 {
            let pong = client.recv().await;
            assert_eq!((&pong["type"], &pong["ref"]), (&"pong".into(), &n.into()), "{pong}\n{}", gateway.log());
        }
    }
    assert_eq!(gateway.terminate(Duration::from_secs(20)).expect("stops"), Some(0), "{}", gateway.log());
}

/// A standalone gateway killed (kill -9) with users online records no
/// departure for them, so its next start records them as last seen then.
/// Before, `GET /v1/presence` answered `lastSeen: null` for a user never
/// seen leave, and for one who had left once, that older departure,
/// though both had been online until the kill (found by a presence audit).
#[tokio::test]
async fn users_online_when_a_standalone_gateway_was_killed_are_last_seen_at_its_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let (mut gateway, listen) = start_bare(dir.path(), &HashMap::new()).await;
    let ws = format!("ws://{listen}/ws");
    let (ann, ben) = (token_in(dir.path(), "ann"), token_in(dir.path(), "ben"));
    let http = reqwest::Client::new();
    let created = http
        .post(format!("http://{listen}/v1/chats"))
        .bearer_auth(&ann)
        .json(&serde_json::json!({"type": "dialog", "members": ["ben"]}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let mut ann_ws = testkit::client::connect(&ws, &ann, "ann").await.expect("ann");
    // ben leaves once, then comes back. Each announcement ann hears went
    // out after the store recorded it (and ann's own coming before it).
    let ben_once = testkit::client::connect(&ws, &ben, "ben").await.expect("ben");
    assert_eq!(ann_ws.recv_type("online").await["userId"], "ben");
    ben_once.close().await;
    assert_eq!(ann_ws.recv_type("offline").await["userId"], "ben");
    let _ben_again = testkit::client::connect(&ws, &ben, "ben").await.expect("ben again");
    assert_eq!(ann_ws.recv_type("online").await["userId"], "ben");
    let killed_at = shared::clock::now_ms();
    gateway.kill9();

    let (mut gateway, listen) = start_bare(dir.path(), &HashMap::new()).await;
    for user in ["ann", "ben"] {
        let (online, last_seen) = presence(&http, &listen, &ann, user).await;
        assert!(!online, "{user}");
        let last_seen = last_seen.unwrap_or_else(|| panic!("{user} was seen\n{}", gateway.log()));
        assert!(last_seen >= killed_at, "{user} last seen {last_seen}, before the kill at {killed_at}");
    }
    assert_eq!(gateway.terminate(Duration::from_secs(20)).expect("stops"), Some(0), "{}", gateway.log());
}

/// `user`'s `online` and `lastSeen` from `GET /v1/presence`.
async fn presence(http: &reqwest::Client, listen: &str, token: &str, user: &str) -> (bool, Option<i64>) {
    let response = http
        .get(format!("http://{listen}/v1/presence?users={user}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("presence");
    let body: serde_json::Value = response.json().await.expect("json");
    let view = &body["users"][0];
    (view["online"].as_bool().expect("online"), view["lastSeen"].as_i64())
}

/// A token for `user` from `gateway token`, run in `dir` as a newcomer would.
fn token_in(dir: &Path, user: &str) -> String {
    let token = std::process::Command::new(binary("gateway"))
        .args(["token", "--user", user])
        .current_dir(dir)
        .env_clear()
        .output()
        .expect("gateway token");
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    String::from_utf8(token.stdout).expect("token text").trim().to_owned()
}

/// Starts `gateway --listen 127.0.0.1:PORT` in `dir`, with `settings` in
/// its environment, and waits until it is ready. A port found free can be
/// taken by another test's process before the gateway binds it; then it is
/// started again on another.
async fn start_bare(dir: &Path, settings: &HashMap<String, String>) -> (Service, String) {
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let listen = format!("127.0.0.1:{}", testkit::free_port());
        let mut gateway = Service::spawn_in("gateway", &binary("gateway"), &["--listen", &listen], settings, dir, dir)
            .expect("gateway");
        let started = Instant::now();
        loop {
            // Readiness has no push signal to await. Ours is the one that
            // refuses a request without a token.
            let ready = http.get(format!("http://{listen}/readyz")).send().await.is_ok_and(|r| r.status() == 200);
            let ours =
                async { http.get(format!("http://{listen}/v1/chats")).send().await.is_ok_and(|r| r.status() == 401) };
            if ready && ours.await && gateway.is_running() {
                return (gateway, listen);
            }
            if !gateway.is_running() {
                assert!(gateway.log().contains("in use"), "gateway exited:\n{}", gateway.log());
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "gateway not ready:\n{}", gateway.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("the gateway found no port of its own in five tries");
}
