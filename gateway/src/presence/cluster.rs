//! Presence across gateways, in Redis. Per user, a hash of node -> open
//! connections on that node; per node, the set of its users; per node, a
//! lease key with a TTL that the node renews. The scripts below change a
//! count and report the user's total atomically, so exactly one node sees
//! each 0->1 and 1->0 transition.
//!
//! A node whose lease lapsed died without a word: any live node reaps it
//! (atomically, so only one does), dropping its counts and announcing
//! offline for the users left with none. A node restarting under the same
//! `NODE_ID` reaps its own previous entries before taking connections.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use shared::bus::keys::Keys;
use tokio_util::sync::CancellationToken;

use super::Presence;

/// A node's lease lasts this long unless renewed; it is renewed every
/// second, and dead nodes are looked for every second, so a dead node's
/// users go offline within about this plus a second.
pub const NODE_LEASE: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_secs(1);

const CONNECT: &str = r#"
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('SADD', KEYS[2], ARGV[2])
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
return total
"#;

const DISCONNECT: &str = r#"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[2])
end
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
return total
"#;

/// KEYS: the node's user set, the node set, the node's lease.
/// ARGV: node, key prefix, "force" to reap even with a live lease.
const REAP: &str = r#"
if ARGV[3] ~= 'force' and redis.call('EXISTS', KEYS[3]) == 1 then return {} end
local gone = {}
for _, user in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2] .. 'online:' .. user
  redis.call('HDEL', key, ARGV[1])
  if redis.call('HLEN', key) == 0 then table.insert(gone, user) end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return gone
"#;

/// Re-asserts this node's counts after Redis lost them (a restart).
const RESTORE: &str = r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
return 1
"#;

pub struct ClusterPresence {
    redis: ConnectionManager,
    keys: Keys,
    prefix: String,
    node: String,
}

impl ClusterPresence {
    pub fn new(redis: ConnectionManager, keys: Keys, prefix: &str, node: &str) -> Self {
        ClusterPresence { redis, keys, prefix: prefix.to_owned(), node: node.to_owned() }
    }

    async fn count(&self, script: &str, user: &str) -> redis::RedisResult<i64> {
        let mut redis = self.redis.clone();
        redis::Script::new(script)
            .key(self.keys.online(user))
            .key(self.keys.node_users(&self.node))
            .arg(&self.node)
            .arg(user)
            .invoke_async(&mut redis)
            .await
    }

    /// Whether this connection made the user online cluster-wide.
    pub async fn connected(&self, user: &str) -> bool {
        self.moved_to(CONNECT, user, 1).await
    }

    /// Whether this disconnect made the user offline cluster-wide.
    pub async fn disconnected(&self, user: &str) -> bool {
        self.moved_to(DISCONNECT, user, 0).await
    }

    /// Runs a counting script; true if it left the user's total at `total`.
    /// A Redis error counts as no transition (logged and counted).
    async fn moved_to(&self, script: &str, user: &str, total: i64) -> bool {
        match self.count(script, user).await {
            Ok(now) => now == total,
            Err(e) => {
                metrics::counter!("chat_redis_errors_total", "op" => "presence").increment(1);
                tracing::warn!(error = %e, "presence not recorded");
                false
            }
        }
    }

    pub async fn is_online(&self, user: &str) -> bool {
        let mut redis = self.redis.clone();
        let fields: redis::RedisResult<i64> = redis.hlen(self.keys.online(user)).await;
        fields.map(|n| n > 0).unwrap_or(false)
    }

    async fn reap(&self, node: &str, force: bool) -> redis::RedisResult<Vec<String>> {
        let mut redis = self.redis.clone();
        redis::Script::new(REAP)
            .key(self.keys.node_users(node))
            .key(self.keys.nodes())
            .key(self.keys.node_alive(node))
            .arg(node)
            .arg(&self.prefix)
            .arg(if force { "force" } else { "" })
            .invoke_async(&mut redis)
            .await
    }

    /// Clears what a previous process under this node's id left behind;
    /// returns the users that leaves offline.
    pub async fn reap_previous_self(&self) -> redis::RedisResult<Vec<String>> {
        self.reap(&self.node, true).await
    }

    /// Renews this node's lease and reaps dead nodes, every second, until
    /// `stop`; then gives the lease up and clears this node's entries.
    pub async fn run(self: Arc<Self>, presence: Arc<Presence>, stop: CancellationToken) {
        let (this, presence) = (&*self, &*presence);
        shared::periodic::every(TICK, stop, move || async move {
            if let Err(e) = this.tick(presence).await {
                metrics::counter!("chat_redis_errors_total", "op" => "presence").increment(1);
                tracing::warn!(error = %e, "presence lease round failed");
            }
            std::ops::ControlFlow::Continue(())
        })
        .await;
        // Leaving: this node's users have all disconnected by now.
        let mut redis = self.redis.clone();
        let _: redis::RedisResult<()> = redis.del(self.keys.node_alive(&self.node)).await;
        let _: redis::RedisResult<()> = redis.del(self.keys.node_users(&self.node)).await;
        let _: redis::RedisResult<()> = redis.srem(self.keys.nodes(), &self.node).await;
    }

    async fn tick(&self, presence: &Presence) -> redis::RedisResult<()> {
        let mut redis = self.redis.clone();
        let _: () = redis
            .set_options(
                self.keys.node_alive(&self.node),
                1,
                redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(NODE_LEASE.as_millis() as u64)),
            )
            .await?;
        let added: i64 = redis.sadd(self.keys.nodes(), &self.node).await?;
        if added == 1 {
            // Redis forgot this node (it restarted empty, or reaped us after
            // a stall): put our users' counts back.
            for (user, count) in presence.local_counts() {
                let _: i64 = redis::Script::new(RESTORE)
                    .key(self.keys.online(&user))
                    .key(self.keys.node_users(&self.node))
                    .arg(&self.node)
                    .arg(&user)
                    .arg(count)
                    .invoke_async(&mut redis)
                    .await?;
            }
        }
        let nodes: Vec<String> = redis.smembers(self.keys.nodes()).await?;
        for node in nodes.into_iter().filter(|n| *n != self.node) {
            let alive: bool = redis.exists(self.keys.node_alive(&node)).await?;
            if !alive {
                let gone = self.reap(&node, false).await?;
                if !gone.is_empty() {
                    tracing::info!(node, users = gone.len(), "reaped a dead gateway");
                }
                presence.reaped(gone);
            }
        }
        Ok(())
    }
}
