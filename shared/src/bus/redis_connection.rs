//! A Redis connection that replaces itself when Redis stops answering.
//!
//! Why: redis-rs's `ConnectionManager` reconnects when its connection
//! breaks, not when a command times out. A connection that goes silent
//! without breaking (Redis failed over and packets to its old address are
//! dropped, or a proxy in between lost its backend) then fails every
//! command with a timeout until TCP gives up, many minutes later: a
//! gateway queued no command and a worker read no stream all that while.
//! Here a timeout retires the manager it came from; the next command goes
//! through a new one, which connects afresh.

use std::sync::{Arc, Mutex};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::sync::lock;

/// Multiplexed and cheap to clone, like the manager it wraps; clones share
/// replacements.
#[derive(Clone)]
pub struct RedisConnection {
    shared: Arc<Shared>,
}

struct Shared {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// The manager in use, and how many were retired before it.
    current: Mutex<(u64, ConnectionManager)>,
}

impl RedisConnection {
    /// Connects now, so that a wrong address fails at once, and so does a
    /// missing password: a Redis that wants one accepts the connection and
    /// refuses each command, which left a worker running for ever with no
    /// shards.
    pub async fn connect(client: redis::Client, config: ConnectionManagerConfig) -> RedisResult<Self> {
        let mut manager = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        redis::cmd("PING").query_async::<()>(&mut manager).await?;
        Ok(RedisConnection { shared: Arc::new(Shared { client, config, current: Mutex::new((0, manager)) }) })
    }

    fn current(&self) -> (u64, ConnectionManager) {
        lock(&self.shared.current).clone()
    }

    /// Retires manager `generation` if `result` is a timeout, unless a
    /// command that timed out with it already did.
    fn retire_if_silent<T>(&self, generation: u64, result: &RedisResult<T>) {
        let Err(e) = result else { return };
        if !e.is_timeout() {
            return;
        }
        let mut current = lock(&self.shared.current);
        if current.0 != generation {
            return;
        }
        match ConnectionManager::new_lazy_with_config(self.shared.client.clone(), self.shared.config.clone()) {
            Ok(fresh) => {
                *current = (generation + 1, fresh);
                metrics::counter!("chat_redis_connections_replaced_total").increment(1);
                tracing::warn!(error = %e, "Redis did not answer in time; replacing the connection");
            }
            Err(e) => tracing::warn!(error = %e, "could not replace a silent Redis connection"),
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut manager) = self.current();
            let result = manager.req_packed_command(cmd).await;
            self.retire_if_silent(generation, &result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut manager) = self.current();
            let result = manager.req_packed_commands(pipeline, offset, count).await;
            self.retire_if_silent(generation, &result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        lock(&self.shared.current).1.get_db()
    }
}
