//! Settings both binaries share, with their defaults in one place.

use std::time::Duration;

use clap::Args;

/// Where standalone keeps its SQLite file and generated secret.
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_HEARTBEAT_TIMEOUT_MS: u64 = 20_000;
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// WebSocket frames (or reassembled fragmented messages) above this close the
/// connection with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
pub const DEFAULT_RETENTION_DAYS: u64 = 7;
pub const DEFAULT_RETENTION_EVENTS: i64 = 10_000;
const MAX_RETENTION_DAYS: u64 = 100_000;

pub const DEFAULT_STREAM_SHARDS: u32 = 16;
pub const DEFAULT_REDIS_PREFIX: &str = "chat:";

/// What every process of a cluster must agree on.
// No `Debug`: the Redis URL may carry a password, which any `{:?}` would
// print.
#[derive(Clone, Args)]
pub struct ClusterArgs {
    /// Redis for commands and events. Set: cluster mode; unset: standalone.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and channel, so deployments can share a
    /// Redis.
    #[arg(long, env = "REDIS_PREFIX", default_value = DEFAULT_REDIS_PREFIX, global = true)]
    pub redis_prefix: String,

    /// Command streams (shards); every gateway and worker must use the same
    /// number.
    #[arg(long, env = "STREAM_SHARDS", default_value_t = DEFAULT_STREAM_SHARDS, global = true,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub stream_shards: u32,
}

/// Whether `url` names a PostgreSQL database, as cluster mode needs.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl ClusterArgs {
    /// A set `REDIS_URL` that cannot be used is a configuration error, found
    /// before anything connects (and never echoed: it may hold a password).
    /// Empty is one too: a Secret whose key is missing must not start a
    /// gateway in standalone mode, or a worker that fails later.
    pub fn check_redis_url(&self) -> Result<(), String> {
        match self.redis_url.as_deref() {
            None => Ok(()),
            Some("") => Err("REDIS_URL is set but empty".into()),
            // redis' parse errors name the part at fault, never the URL.
            Some(url) => redis::Client::open(url).map(|_| ()).map_err(|e| format!("REDIS_URL cannot be used: {e}")),
        }
    }

    pub fn keys(&self) -> crate::bus::keys::Keys {
        crate::bus::keys::Keys::new(&self.redis_prefix, self.stream_shards)
    }
}

/// Settings every binary has the same way.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Keep chat events for `sync` at least this many days (at most
    /// 100,000, about 270 years: "for ever" in milliseconds must not
    /// overflow),
    #[arg(long, env = "RETENTION_DAYS", default_value_t = DEFAULT_RETENTION_DAYS, global = true,
          value_parser = clap::value_parser!(u64).range(0..=MAX_RETENTION_DAYS))]
    pub retention_days: u64,

    /// and at least this many of the newest events per chat.
    #[arg(long, env = "RETENTION_EVENTS", default_value_t = DEFAULT_RETENTION_EVENTS, global = true,
          value_parser = clap::value_parser!(i64).range(0..))]
    pub retention_events: i64,

    /// Not ready once the database (or Redis) has not answered for this
    /// long (ms), at most a day.
    #[arg(long, env = "UNREACHABLE_GRACE_MS", default_value_t = crate::health::DEFAULT_UNREACHABLE_GRACE_MS, global = true,
          value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    pub unreachable_grace_ms: u64,

    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], global = true)]
    pub log_format: String,
}

impl CommonArgs {
    /// An event is pruned only once it is outside both windows.
    pub fn retention(&self) -> crate::store::Retention {
        crate::store::Retention {
            max_age_ms: (self.retention_days * 86_400_000) as i64,
            max_events_per_chat: self.retention_events,
        }
    }
}

/// `sqlite://<data dir>/chat.db`, the standalone default.
pub fn default_database_url(data_dir: &str) -> String {
    format!("sqlite://{}/chat.db", data_dir.trim_end_matches('/'))
}

/// Parses a duration such as `90s`, `15m`, `1h`, `7d` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 30s, 15m, 1h or 7d"))?;
    let unit_seconds: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    let seconds = n.checked_mul(unit_seconds).ok_or_else(|| format!("{text:?} is too long"))?;
    Ok(Duration::from_secs(seconds))
}

/// A URL with its passwords replaced, safe to log: the one in the user
/// info and any query parameter that names one (`password=`, `pass=`,
/// `sslpassword=`...). Read by the URL parser sqlx and redis-rs use, so
/// the user info is where they find it (up to the last `@` of the
/// authority: a user name may hold one, as Azure's `user@tenant` does). A
/// URL that does not parse is not shown at all: where its password ends
/// cannot be told, and nothing could connect with it either.
pub fn redact_url(url: &str) -> String {
    // Nowhere to put a password (an SQLite path, say, which need not parse
    // as a URL: sqlx reads it as a path).
    if !url.contains(['@', '?']) {
        return url.to_owned();
    }
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "(a URL that does not parse; not shown, as it may hold a password)".to_owned();
    };
    if parsed.password().is_some() {
        // Only fails for URLs that cannot have a password, which this has.
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(key, _)| names_a_secret(&key)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if names_a_secret(&key) { "***".to_owned() } else { value.into_owned() };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

fn names_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("pass") || key.contains("secret") || key == "pwd" || key.contains("token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn durations_that_overflow_are_refused() {
        assert!(parse_duration("213503982334602d").is_err(), "u64::MAX / 86,400 + 1 days");
        assert!(parse_duration("18446744073709551616").is_err(), "past u64");
    }

    #[test]
    fn retention_settings_are_refused_out_of_range() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            common: CommonArgs,
        }
        let parse = |args: &[&str]| <Cli as clap::Parser>::try_parse_from([&["test"], args].concat());
        let longest = parse(&["--retention-days", "100000"]).expect("the longest retention");
        assert!(longest.common.retention().max_age_ms > 0, "no overflow");
        assert!(parse(&["--retention-days", "100001"]).is_err());
        assert!(parse(&["--retention-days", "999999999999999999"]).is_err());
        assert!(parse(&["--retention-events", "-1"]).is_err());
        assert!(parse(&["--retention-events", "0"]).is_ok());
    }

    #[test]
    fn passwords_never_survive_redaction() {
        for (url, redacted) in [
            ("postgres://u:secret@h:5432/db", "postgres://u:***@h:5432/db"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("rediss://:secret@h:6380/0", "rediss://:***@h:6380/0"),
            // Passwords in the query, with and without a user.
            ("postgres://h/db?password=secret", "postgres://h/db?password=***"),
            ("postgres://app@h/db?sslmode=require&password=secret", "postgres://app@h/db?sslmode=require&password=***"),
            (
                "postgres://h/db?sslpassword=secret&application_name=chat",
                "postgres://h/db?sslpassword=***&application_name=chat",
            ),
            ("redis+unix:///run/redis.sock?pass=secret", "redis+unix:///run/redis.sock?pass=***"),
            // An `@` in the user name (Azure), or unencoded in the password.
            ("postgres://app@tenant:secret@h/db", "postgres://app%40tenant:***@h/db"),
            ("postgres://u:se@cret@h/db", "postgres://u:***@h/db"),
            // Not a URL any parser reads: not shown.
            ("postgres://u:se/cret@h/db", "(a URL that does not parse; not shown, as it may hold a password)"),
            ("postgres://u:se?cret@h/db", "(a URL that does not parse; not shown, as it may hold a password)"),
            // An `@` after the authority is not user info.
            ("postgres://h/db?application_name=a@b", "postgres://h/db?application_name=a@b"),
            ("sqlite://data/chat.db?mode=rwc", "sqlite://data/chat.db?mode=rwc"),
            ("sqlite://my data/chat.db", "sqlite://my data/chat.db"),
        ] {
            assert_eq!(redact_url(url), redacted, "{url}");
            assert!(!redact_url(url).contains("secret") && !redact_url(url).contains("cret"), "{url}");
        }
    }
}
