//! A cluster of real processes for one test: its own key prefix in Redis,
//! its own database in PostgreSQL (or private servers it can restart).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::client::Client;
use testkit::process::{binary, Service};
use testkit::proxy::Proxy;
use testkit::services::{fresh_database, PostgresServer, RedisServer, TestCa};

pub const SECRET: &str = "cluster-test-secret";

#[derive(Default)]
pub struct Options {
    /// Start a private Redis this test may restart (default: the shared one).
    pub private_redis: bool,
    /// Start a private PostgreSQL this test may restart.
    pub private_postgres: bool,
    pub heartbeat_timeout_ms: Option<u64>,
    /// Gateways and workers reach Redis through a proxy the test may
    /// silence.
    pub redis_through_proxy: bool,
    /// Private Redis and PostgreSQL servers that take TLS connections only,
    /// with certificates from a CA made for the test. The processes reach
    /// them at `rediss://localhost` and with `sslmode=verify-full`, and
    /// trust the CA through `SSL_CERT_FILE` (Redis) and `sslrootcert`
    /// (PostgreSQL). Not with `redis_through_proxy`; [`Cluster::publish`]
    /// connects without the CA.
    pub tls: bool,
    /// Settings every gateway is started with, besides the cluster's.
    pub gateway_env: Vec<(&'static str, String)>,
}

pub struct Gateway {
    pub service: Service,
    pub port: u16,
}

pub struct Cluster {
    pub logs: tempfile::TempDir,
    pub redis_url: String,
    pub database_url: String,
    pub prefix: String,
    pub gateways: Vec<Gateway>,
    pub workers: Vec<Service>,
    /// Each worker's /metrics, /healthz, /readyz port.
    pub worker_admin_ports: Vec<u16>,
    pub redis: Option<RedisServer>,
    pub postgres: Option<PostgresServer>,
    /// Between the processes and Redis, when asked for.
    pub redis_proxy: Option<Proxy>,
    /// The CA behind the servers' certificates, with TLS.
    pub ca: Option<TestCa>,
    heartbeat_timeout_ms: u64,
    gateway_env: Vec<(&'static str, String)>,
    http: reqwest::Client,
}

impl Cluster {
    pub async fn start(options: Options, gateways: usize, workers: usize) -> Cluster {
        assert!(!(options.tls && options.redis_through_proxy), "the proxy passes plain Redis only");
        let ca = options.tls.then(|| TestCa::generate().expect("test CA"));
        let redis = match &ca {
            Some(ca) => Some(RedisServer::start_tls(ca).expect("private redis with TLS")),
            None => options.private_redis.then(|| RedisServer::start().expect("private redis")),
        };
        let postgres = match &ca {
            Some(ca) => Some(PostgresServer::start_tls(ca).expect("private postgres with TLS")),
            None => options.private_postgres.then(|| PostgresServer::start().expect("private postgres")),
        };
        let redis_url = match &redis {
            Some(r) => r.url(),
            None => std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL (run ./scripts/test)"),
        };
        let admin = match &postgres {
            Some(p) => p.admin_url(),
            None => std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL (run ./scripts/test)"),
        };
        let database_url = fresh_database(&admin).await.expect("database");
        let redis_proxy = match options.redis_through_proxy {
            true => {
                let address = redis_url.trim_start_matches("redis://").split('/').next().expect("host:port");
                let target = tokio::net::lookup_host(address).await.expect("redis address").next().expect("an address");
                Some(Proxy::start(target).await.expect("proxy"))
            }
            false => None,
        };
        let mut cluster = Cluster {
            logs: tempfile::tempdir().expect("log dir"),
            redis_url,
            database_url,
            prefix: format!("{}:", testkit::unique("t")),
            gateways: Vec::new(),
            workers: Vec::new(),
            worker_admin_ports: Vec::new(),
            redis,
            postgres,
            redis_proxy,
            ca,
            heartbeat_timeout_ms: options.heartbeat_timeout_ms.unwrap_or(20_000),
            gateway_env: options.gateway_env,
            http: reqwest::Client::new(),
        };
        for _ in 0..workers {
            cluster.start_worker();
        }
        for _ in 0..gateways {
            cluster.start_gateway().await;
        }
        cluster
    }

    /// What every process of the cluster is started with.
    pub fn common_env(&self) -> HashMap<String, String> {
        let mut env = HashMap::from([
            (
                "REDIS_URL".into(),
                self.redis_proxy.as_ref().map_or(self.redis_url.clone(), |p| format!("redis://{}", p.addr)),
            ),
            ("DATABASE_URL".into(), self.database_url.clone()),
            ("REDIS_PREFIX".into(), self.prefix.clone()),
        ]);
        if let Some(ca) = &self.ca {
            // What the system's trust store is read from (rustls-native-certs).
            env.insert("SSL_CERT_FILE".into(), ca.ca_cert().display().to_string());
        }
        env
    }

    pub fn start_worker(&mut self) {
        self.start_worker_with(&[]);
    }

    /// Starts a worker with `settings` over the cluster's own (all but
    /// `ADMIN_LISTEN`).
    pub fn start_worker_with(&mut self, settings: &[(&str, String)]) {
        let index = self.workers.len();
        let mut env = self.common_env();
        env.insert("WORKER_ID".into(), format!("worker-{index}"));
        // Short leases: a dead worker's shards move within about a second.
        env.insert("LEASE_TTL_MS".into(), "1000".into());
        env.extend(settings.iter().map(|(name, value)| (name.to_string(), value.clone())));
        let admin_port = testkit::free_port();
        env.insert("ADMIN_LISTEN".into(), format!("127.0.0.1:{admin_port}"));
        self.worker_admin_ports.push(admin_port);
        let name = format!("worker-{index}");
        let worker = Service::spawn(&name, &binary("worker"), &[], &env, self.logs.path()).expect("worker");
        self.workers.push(worker);
    }

    /// Starts a gateway and waits until it is ready. A port found free can
    /// be taken before the gateway binds it, by another test's process
    /// (tests run in parallel); then the gateway exits, or a worker's admin
    /// listener (which answers `/readyz` too) holds the port, and the
    /// gateway is started again on another port.
    pub async fn start_gateway(&mut self) -> usize {
        let index = self.gateways.len();
        let gateway = self.spawn_gateway(index, &format!("gw-{index}")).await;
        self.gateways.push(gateway);
        index
    }

    /// Starts gateway `index` again, as a new process under the same
    /// `NODE_ID`, in place of the one the test stopped.
    pub async fn restart_gateway(&mut self, index: usize) {
        self.gateways[index] = self.spawn_gateway(index, &format!("gw-{index}-again")).await;
    }

    async fn spawn_gateway(&self, index: usize, name: &str) -> Gateway {
        for _ in 0..5 {
            let port = testkit::free_port();
            let mut env = self.common_env();
            env.insert("LISTEN_ADDR".into(), format!("127.0.0.1:{port}"));
            env.insert("JWT_SECRET".into(), SECRET.into());
            env.insert("NODE_ID".into(), format!("gw-{index}"));
            env.insert("HEARTBEAT_TIMEOUT_MS".into(), self.heartbeat_timeout_ms.to_string());
            env.insert("DATA_DIR".into(), self.logs.path().join(format!("gw-{index}")).display().to_string());
            env.extend(self.gateway_env.iter().map(|(name, value)| (name.to_string(), value.clone())));
            let mut service = Service::spawn(name, &binary("gateway"), &[], &env, self.logs.path()).expect("gateway");
            if self.wait_ready(&mut service, port).await {
                return Gateway { service, port };
            }
        }
        panic!("{name} found no port of its own in five tries");
    }

    /// Polls `/readyz` (readiness has no push signal to await) until the
    /// gateway on `port` is ready: true. False if the port turned out to be
    /// someone else's.
    async fn wait_ready(&self, service: &mut Service, port: u16) -> bool {
        let started = Instant::now();
        loop {
            let url = format!("http://127.0.0.1:{port}/readyz");
            if let Ok(response) = self.http.get(&url).send().await {
                if response.status() == 200 {
                    return self.is_gateway(port).await && service.is_running();
                }
            }
            if !service.is_running() {
                assert!(service.log().contains("in use"), "gateway exited:\n{}", service.log());
                return false;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "gateway not ready:\n{}", service.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether a gateway answers on `port`: its REST API refuses a request
    /// without a token with 401, where a worker's admin listener has no
    /// such route (404).
    async fn is_gateway(&self, port: u16) -> bool {
        let url = format!("http://127.0.0.1:{port}/v1/chats");
        matches!(self.http.get(&url).send().await, Ok(response) if response.status() == 401)
    }

    pub fn token(&self, user: &str) -> String {
        let exp = (shared::clock::now_ms() / 1000) as u64 + 3600;
        shared::auth::Authenticator::new(SECRET.as_bytes()).mint(user, exp)
    }

    pub async fn connect(&self, gateway: usize, user: &str) -> Client {
        let url = format!("ws://127.0.0.1:{}/ws", self.gateways[gateway].port);
        testkit::client::connect(&url, &self.token(user), user).await.expect("connect")
    }

    /// A connection to `gateway` as `user`, with the reply address its
    /// welcome gives: for commands written into a stream by hand.
    pub async fn connect_with_origin(&self, gateway: usize, user: &str) -> (Client, shared::bus::Origin) {
        let url = format!("ws://127.0.0.1:{}/ws", self.gateways[gateway].port);
        let mut client = testkit::client::open(&url, &self.token(user), user).await.expect("open");
        let welcome = client.recv().await;
        let origin = shared::bus::Origin {
            node: welcome["node"].as_str().expect("node").into(),
            connection: welcome["connectionId"].as_str().and_then(|id| id.parse().ok()).expect("connectionId"),
            sequence: 0,
        };
        (client, origin)
    }

    pub async fn call(
        &self,
        gateway: usize,
        method: &str,
        user: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("http://127.0.0.1:{}{path}", self.gateways[gateway].port);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, url).bearer_auth(self.token(user));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("http");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("json") })
    }

    pub async fn group(&self, gateway: usize, creator: &str, others: &[&str]) -> i64 {
        let body = serde_json::json!({"type": "group", "name": "g", "members": others});
        let (status, chat) = self.call(gateway, "POST", creator, "/v1/chats", Some(body)).await;
        assert_eq!(status, 201, "{chat}");
        chat["id"].as_i64().expect("id")
    }

    /// The cluster's Redis names (its prefix, the default shard count).
    /// Two groups of `creator` and `others` whose commands go to different
    /// shards' streams.
    pub async fn groups_on_two_shards(&self, gateway: usize, creator: &str, others: &[&str]) -> (i64, i64) {
        let keys = self.keys();
        let first = self.group(gateway, creator, others).await;
        let mut second = self.group(gateway, creator, others).await;
        while keys.shard_of(second) == keys.shard_of(first) {
            second = self.group(gateway, creator, others).await;
        }
        (first, second)
    }

    pub fn keys(&self) -> shared::bus::keys::Keys {
        shared::bus::keys::Keys::new(&self.prefix, shared::config::DEFAULT_STREAM_SHARDS)
    }

    /// A connection to the cluster's Redis, for looking behind its back.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        let client = match &self.ca {
            None => redis::Client::open(self.redis_url.as_str()),
            Some(ca) => redis::Client::build_with_tls(
                self.redis_url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(ca.ca_cert()).expect("CA certificate")),
                },
            ),
        };
        client.expect("redis url").get_multiplexed_async_connection().await.expect("redis")
    }

    /// Publishes `event` where the cluster's processes would, through the
    /// same broker: for announcements in an order none would make.
    pub async fn publish(&self, event: shared::bus::Event) {
        let connection = shared::bus::redis::connect(&self.redis_url).await.expect("redis");
        let broker = shared::bus::redis::RedisBroker::new(&self.redis_url, connection, self.keys());
        broker.publish(&event).await.expect("published");
    }

    /// Publishes a `chats` event for `user`, as a gateway would after a
    /// membership change: for announcements late or out of order.
    pub async fn publish_chat_list(
        &self,
        user: &str,
        action: shared::model::ChatAction,
        chat: shared::model::ChatSummary,
        version: i64,
    ) {
        self.publish(shared::bus::Event::ChatList { user: user.into(), action, chat: Box::new(chat), version }).await;
    }

    /// Appends `payload` to `chat`'s command stream, as a gateway would a
    /// command: for entries no gateway would write.
    pub async fn append_command(&self, chat: i64, payload: String) {
        let keys = self.keys();
        let _: String = redis::cmd("XADD")
            .arg(keys.command_stream(keys.shard_of(chat)))
            .arg("*")
            .arg("c")
            .arg(payload)
            .query_async(&mut self.redis().await)
            .await
            .expect("XADD");
    }

    /// The id of the worker holding the lease of `chat`'s shard, waiting
    /// for one to hold it.
    pub async fn shard_owner(&self, chat: i64) -> String {
        let keys = self.keys();
        let mut redis = self.redis().await;
        let started = Instant::now();
        loop {
            let owner: Option<String> = redis::cmd("GET")
                .arg(keys.shard_lease(keys.shard_of(chat)))
                .query_async(&mut redis)
                .await
                .expect("GET");
            if let Some(owner) = owner {
                return owner;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no worker took shard of chat {chat}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `process`'s log contains `text` (an event only the log
    /// shows).
    pub async fn wait_for_log(&self, process: &Service, text: &str) {
        let started = Instant::now();
        while !process.log().contains(text) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} never logged {text:?}:\n{}",
                process.name,
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls gateway `gateway`'s `/metrics` until it has the line `line`:
    /// for what a client cannot see.
    pub async fn wait_for_metric(&self, gateway: usize, line: &str) {
        self.wait_for_metric_at(self.gateways[gateway].port, line).await
    }

    /// [`Cluster::wait_for_metric`] for the process whose metrics are at
    /// `port` (a worker's admin port, say), which may still be starting.
    pub async fn wait_for_metric_at(&self, port: u16, line: &str) {
        let started = Instant::now();
        loop {
            let page = self.http.get(format!("http://127.0.0.1:{port}/metrics")).send().await;
            let metrics = match page {
                Ok(page) => page.text().await.unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            if metrics.lines().any(|l| l == line) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no {line} in:\n{metrics}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GET a plain-text page (metrics) from `port`.
    pub async fn text(&self, port: u16, path: &str) -> (u16, String) {
        let response = self.http.get(format!("http://127.0.0.1:{port}{path}")).send().await.expect("http");
        (response.status().as_u16(), response.text().await.expect("body"))
    }

    /// Every process's log, for a failing assertion's message.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for g in &self.gateways {
            all.push_str(&format!("--- {}\n{}\n", g.service.name, g.service.log()));
        }
        for w in &self.workers {
            all.push_str(&format!("--- {}\n{}\n", w.name, w.log()));
        }
        all
    }
}
