//! The writer's settings: every flag is also an environment variable, and
//! [`Config::validate`] checks them once, naming the flag and the bad value.

use std::net::SocketAddr;
use std::time::Duration;

use heavyread_sync::config::redacted;
pub use heavyread_sync::config::{parse_duration, parse_size};
use heavyread_sync::record::MAX_BODY_LEN;
use heavyread_sync::Keys;

use crate::Error;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default largest request body of `/create` (and line of `/bulk`): 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Default largest `content` field: 256 KiB.
pub const DEFAULT_MAX_CONTENT_BYTES: usize = 256 << 10;
/// Default largest `/bulk` request: 4 GiB (it is streamed, so memory stays bounded).
pub const DEFAULT_BULK_MAX_BYTES: u64 = 4 << 30;
/// Default number of puts per pipelined round trip in `/bulk`.
pub const DEFAULT_BULK_CHUNK: usize = 500;
/// Default limit for connecting to Redis and for each command.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time given to in-flight requests after SIGTERM.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a client gets to send a request head (and to start one on an idle connection).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time for a `/create` body (beyond it, a second per 64 KiB received), and longest silence in a `/bulk` body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default longest time a response write may make no progress.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest number of open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Largest `--max-connections` accepted.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;
/// Largest `--header-timeout`, `--body-timeout` and `--write-timeout` accepted (hyper adds them to `Instant::now()`).
pub const MAX_CLIENT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest title, in characters.
pub const DEFAULT_MAX_TITLE_CHARS: usize = 512;
/// Longest author, in characters.
pub const DEFAULT_MAX_AUTHOR_CHARS: usize = 256;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Everything the writer can be told.
#[derive(Clone, PartialEq, Eq, clap::Parser)]
#[command(
    name = "heavyread-writer",
    version,
    about = "heavyread writer: accepts changes and publishes them through Redis"
)]
pub struct Config {
    /// Address the HTTP server binds (port 0 picks a free port).
    #[arg(long, env = "HEAVYREAD_WRITER_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Redis URL: `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
    #[arg(long, env = "HEAVYREAD_REDIS_URL", default_value = DEFAULT_REDIS_URL, hide_env_values = true)]
    pub redis_url: String,

    /// Key prefix (the hash tag), so several deployments can share a Redis; readers must use the same.
    #[arg(long, env = "HEAVYREAD_PREFIX", default_value = heavyread_sync::schema::DEFAULT_PREFIX)]
    pub prefix: String,

    /// Approximate length the change log is capped at; readers further behind bootstrap again.
    #[arg(long, env = "HEAVYREAD_LOG_MAX_LEN", default_value_t = heavyread_sync::schema::DEFAULT_LOG_MAX_LEN)]
    pub log_max_len: u64,

    /// Largest request body of `/create`, and largest line of `/bulk`, in bytes (413 above it).
    #[arg(long, env = "HEAVYREAD_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES, value_parser = parse_bytes)]
    pub max_body_bytes: usize,

    /// Largest `content` field in bytes (422 above it; the body limit may bind first).
    #[arg(long, env = "HEAVYREAD_MAX_CONTENT_BYTES", default_value_t = DEFAULT_MAX_CONTENT_BYTES, value_parser = parse_bytes)]
    pub max_content_bytes: usize,

    /// Largest `title` field in characters (422 above it).
    #[arg(long, env = "HEAVYREAD_MAX_TITLE_CHARS", default_value_t = DEFAULT_MAX_TITLE_CHARS)]
    pub max_title_chars: usize,

    /// Largest `author` field in characters (422 above it).
    #[arg(long, env = "HEAVYREAD_MAX_AUTHOR_CHARS", default_value_t = DEFAULT_MAX_AUTHOR_CHARS)]
    pub max_author_chars: usize,

    /// Largest `/bulk` request in bytes; it is streamed, so this bounds time, not memory.
    #[arg(long, env = "HEAVYREAD_BULK_MAX_BYTES", default_value_t = DEFAULT_BULK_MAX_BYTES, value_parser = parse_size)]
    pub bulk_max_bytes: u64,

    /// Puts per pipelined Redis round trip in `/bulk` (a round trip also goes
    /// out once its bodies reach 8 MiB).
    #[arg(long, env = "HEAVYREAD_BULK_CHUNK", default_value_t = DEFAULT_BULK_CHUNK)]
    pub bulk_chunk: usize,

    /// Bearer token required on the write routes (`/create`, `DELETE /post`, `/bulk`); unset means open.
    #[arg(long, env = "HEAVYREAD_WRITE_TOKEN", hide_env_values = true)]
    pub write_token: Option<String>,

    /// Limit for connecting to Redis and for each command, e.g. `2s` or `500ms`.
    #[arg(long, env = "HEAVYREAD_REDIS_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// Time in-flight requests get to finish after SIGTERM or SIGINT, e.g. `10s`.
    #[arg(long, env = "HEAVYREAD_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Time a client gets to send a whole request head, counted from when the writer starts
    /// waiting for it, so idle keep-alive connections are closed after it too (without an answer).
    #[arg(long, env = "HEAVYREAD_WRITER_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// The longest a `/create` body may take after its head (plus a second
    /// per 64 KiB received, for large bodies on slow links), and the longest
    /// silence in a streaming `/bulk` body: 408, and the connection is closed.
    #[arg(long, env = "HEAVYREAD_WRITER_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// Longest a response write may wait for a client that takes no bytes: the connection is
    /// closed (a client that never reads its answers would otherwise hold its connection).
    #[arg(long, env = "HEAVYREAD_WRITER_WRITE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub write_timeout: Duration,

    /// Open client connections at most; further ones wait in the listen backlog until one closes.
    #[arg(long, env = "HEAVYREAD_WRITER_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Log line format.
    #[arg(long, env = "HEAVYREAD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl std::fmt::Debug for Config {
    /// Hides the token and any password in the Redis URL, so logging a config leaks nothing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("redis_url", &redacted(&self.redis_url))
            .field("prefix", &self.prefix)
            .field("log_max_len", &self.log_max_len)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_content_bytes", &self.max_content_bytes)
            .field("max_title_chars", &self.max_title_chars)
            .field("max_author_chars", &self.max_author_chars)
            .field("bulk_max_bytes", &self.bulk_max_bytes)
            .field("bulk_chunk", &self.bulk_chunk)
            .field("write_token", &self.write_token.as_ref().map(|_| "***"))
            .field("redis_timeout", &self.redis_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_connections", &self.max_connections)
            .field("log_format", &self.log_format)
            .finish()
    }
}

impl Config {
    /// The defaults, pointed at `redis_url`, listening on `127.0.0.1:0` (for tests and embedding).
    pub fn new(redis_url: impl Into<String>) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            redis_url: redis_url.into(),
            prefix: heavyread_sync::schema::DEFAULT_PREFIX.to_owned(),
            log_max_len: heavyread_sync::schema::DEFAULT_LOG_MAX_LEN,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_content_bytes: DEFAULT_MAX_CONTENT_BYTES,
            max_title_chars: DEFAULT_MAX_TITLE_CHARS,
            max_author_chars: DEFAULT_MAX_AUTHOR_CHARS,
            bulk_max_bytes: DEFAULT_BULK_MAX_BYTES,
            bulk_chunk: DEFAULT_BULK_CHUNK,
            write_token: None,
            redis_timeout: DEFAULT_REDIS_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            log_format: LogFormat::Text,
        }
    }

    /// Checks every setting once; the message names the flag and the bad value.
    pub fn validate(&self) -> Result<Keys, Error> {
        let bad = |flag: &str, why: String| Err(Error::Config(format!("--{flag}: {why}")));
        let url = self.redis_url.as_str();
        if !["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|s| url.starts_with(s))
        {
            return bad(
                "redis-url",
                format!(
                    "{:?} is not a redis://, rediss:// or unix:// URL",
                    redacted(url)
                ),
            );
        }
        let keys = match Keys::new(&self.prefix) {
            Ok(k) => k,
            Err(e) => return bad("prefix", e.to_string()),
        };
        if self.log_max_len == 0 || self.log_max_len > i64::MAX as u64 {
            // Redis reads it as a signed 64-bit integer: above that, every
            // /create and DELETE would be refused by Redis.
            return bad("log-max-len", format!("must be in 1..={}", i64::MAX));
        }
        if self.max_body_bytes < 64 || self.max_body_bytes > MAX_BODY_LEN {
            return bad(
                "max-body-bytes",
                format!("{} is outside 64..={MAX_BODY_LEN}", self.max_body_bytes),
            );
        }
        // These may exceed --max-body-bytes; the body limit then binds first.
        for (flag, n) in [
            ("max-content-bytes", self.max_content_bytes),
            ("max-title-chars", self.max_title_chars),
            ("max-author-chars", self.max_author_chars),
        ] {
            if n == 0 {
                return bad(flag, "must be at least 1".into());
            }
        }
        if self.bulk_max_bytes < self.max_body_bytes as u64 {
            return bad(
                "bulk-max-bytes",
                format!(
                    "{} is below --max-body-bytes ({})",
                    self.bulk_max_bytes, self.max_body_bytes
                ),
            );
        }
        if self.bulk_chunk == 0 || self.bulk_chunk > 100_000 {
            return bad(
                "bulk-chunk",
                format!("{} is outside 1..=100000", self.bulk_chunk),
            );
        }
        if let Some(t) = &self.write_token {
            // RFC 6750 token68 characters, so the token fits an Authorization header as is.
            let ok = !t.is_empty()
                && t.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
                });
            if !ok {
                return bad(
                    "write-token",
                    "must be non-empty and made of A-Z a-z 0-9 - . _ ~ + / = (value not shown)"
                        .into(),
                );
            }
        }
        for (flag, d) in [
            ("redis-timeout", self.redis_timeout),
            ("drain-timeout", self.drain_timeout),
        ] {
            if d.is_zero() {
                return bad(flag, "must be greater than zero".into());
            }
        }
        for (flag, d) in [
            ("header-timeout", self.header_timeout),
            ("body-timeout", self.body_timeout),
            ("write-timeout", self.write_timeout),
        ] {
            if d.is_zero() || d > MAX_CLIENT_TIMEOUT {
                return bad(flag, format!("{d:?} is outside (0s, 1h]"));
            }
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS_LIMIT {
            return bad(
                "max-connections",
                format!(
                    "{} is outside 1..={MAX_CONNECTIONS_LIMIT}",
                    self.max_connections
                ),
            );
        }
        Ok(keys)
    }
}

/// A byte size that fits memory: `1048576`, `1MiB`, `256KiB` (see [`parse_size`]).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    usize::try_from(parse_size(s)?).map_err(|_| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn clap_defaults_match_new() {
        let parsed = Config::try_parse_from(["heavyread-writer"]).unwrap();
        let mut expected = Config::new(DEFAULT_REDIS_URL);
        expected.listen = DEFAULT_LISTEN.parse().unwrap();
        // Environment variables of the machine running the tests would change the parse.
        if std::env::vars().all(|(k, _)| !k.starts_with("HEAVYREAD_")) {
            assert_eq!(parsed, expected);
        }
        assert!(expected.validate().is_ok());
    }

    #[test]
    fn sizes_take_binary_units_as_the_readers_do() {
        let c = <Config as clap::Parser>::try_parse_from([
            "heavyread-writer",
            "--max-body-bytes",
            "2MiB",
            "--max-content-bytes",
            "64k",
            "--bulk-max-bytes",
            "1GiB",
        ])
        .unwrap();
        assert_eq!(c.max_body_bytes, 2 << 20);
        assert_eq!(c.max_content_bytes, 64 << 10);
        assert_eq!(c.bulk_max_bytes, 1 << 30);
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert!(parse_bytes("2 parsecs").is_err());
        assert!(parse_bytes("99999999999999999999").is_err());
    }

    #[test]
    fn bad_values_name_the_flag() {
        let check = |f: &dyn Fn(&mut Config), flag: &str| {
            let mut c = Config::new(DEFAULT_REDIS_URL);
            f(&mut c);
            let msg = c.validate().unwrap_err().to_string();
            assert!(msg.contains(&format!("--{flag}:")), "{msg}");
        };
        check(&|c| c.redis_url = "http://x".into(), "redis-url");
        check(&|c| c.prefix = "a b".into(), "prefix");
        check(&|c| c.log_max_len = 0, "log-max-len");
        check(&|c| c.log_max_len = i64::MAX as u64 + 1, "log-max-len");
        let mut c = Config::new(DEFAULT_REDIS_URL);
        c.log_max_len = i64::MAX as u64;
        assert!(
            c.validate().is_ok(),
            "the largest length Redis takes is taken"
        );
        check(&|c| c.max_body_bytes = 10, "max-body-bytes");
        check(&|c| c.max_content_bytes = 0, "max-content-bytes");
        check(&|c| c.max_title_chars = 0, "max-title-chars");
        check(&|c| c.max_author_chars = 0, "max-author-chars");
        check(&|c| c.bulk_max_bytes = 1, "bulk-max-bytes");
        check(&|c| c.bulk_chunk = 0, "bulk-chunk");
        check(&|c| c.write_token = Some("has space".into()), "write-token");
        check(&|c| c.write_token = Some(String::new()), "write-token");
        check(&|c| c.redis_timeout = Duration::ZERO, "redis-timeout");
        check(&|c| c.drain_timeout = Duration::ZERO, "drain-timeout");
        check(&|c| c.header_timeout = Duration::ZERO, "header-timeout");
        check(
            &|c| c.header_timeout = Duration::from_secs(u64::MAX),
            "header-timeout",
        );
        check(&|c| c.body_timeout = Duration::ZERO, "body-timeout");
        check(
            &|c| c.body_timeout = Duration::from_secs(7200),
            "body-timeout",
        );
        check(&|c| c.write_timeout = Duration::ZERO, "write-timeout");
        check(
            &|c| c.write_timeout = Duration::from_secs(7200),
            "write-timeout",
        );
        check(&|c| c.max_connections = 0, "max-connections");
        check(&|c| c.max_connections = usize::MAX, "max-connections");
    }

    #[test]
    fn token_is_never_in_the_message() {
        let mut c = Config::new(DEFAULT_REDIS_URL);
        c.write_token = Some("secret value".into());
        assert!(!c.validate().unwrap_err().to_string().contains("secret"));
    }

    #[test]
    fn debug_hides_secrets() {
        let mut c = Config::new("redis://user:hunter2@host:6379");
        c.write_token = Some("tok3n".into());
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2") && !s.contains("tok3n"), "{s}");
    }

    #[test]
    fn env_vars_are_declared() {
        use clap::CommandFactory;
        let cmd = Config::command();
        let envs: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        for e in [
            "HEAVYREAD_WRITER_LISTEN",
            "HEAVYREAD_REDIS_URL",
            "HEAVYREAD_PREFIX",
            "HEAVYREAD_LOG_MAX_LEN",
            "HEAVYREAD_MAX_BODY_BYTES",
            "HEAVYREAD_BULK_MAX_BYTES",
            "HEAVYREAD_WRITE_TOKEN",
            "HEAVYREAD_REDIS_TIMEOUT",
            "HEAVYREAD_DRAIN_TIMEOUT",
            "HEAVYREAD_WRITER_HEADER_TIMEOUT",
            "HEAVYREAD_WRITER_BODY_TIMEOUT",
            "HEAVYREAD_WRITER_MAX_CONNECTIONS",
            "HEAVYREAD_LOG_FORMAT",
        ] {
            assert!(envs.iter().any(|x| x == e), "{e} missing");
        }
        // Every flag has an environment variable.
        let flags = cmd
            .get_arguments()
            .filter(|a| {
                a.get_long().is_some() && !matches!(a.get_id().as_str(), "help" | "version")
            })
            .count();
        assert_eq!(flags, envs.len());
    }
}
