//! Settings of the reader: every flag is also a `HEAVYREAD_*` environment
//! variable. Load with [`Config::parse`](clap::Parser::parse) (or build one
//! with [`Config::new`] in tests), then [`Config::validate`] once.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
pub use heavyread_sync::config::{parse_duration, parse_size};
use heavyread_sync::{FillConfig, Keys, SyncConfig};

use crate::http::MAX_HEADERS_CAP;
use crate::Error;

const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
const DEFAULT_IO_MEMORY: &str = "512KiB";
const DEFAULT_MAX_STALENESS: &str = "5s";
const DEFAULT_HEADER_TIMEOUT: &str = "10s";
const DEFAULT_IDLE_TIMEOUT: &str = "60s";
const DEFAULT_WRITE_TIMEOUT: &str = "10s";
const DEFAULT_DRAIN_TIMEOUT: &str = "10s";
const DEFAULT_PING_INTERVAL: &str = "1s";
const DEFAULT_PING_TIMEOUT: &str = "3s";
const DEFAULT_COMMAND_TIMEOUT: &str = "5s";
const DEFAULT_CACHE_CONTROL: &str = "no-cache";

/// How the binary writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Everything the reader can be told at start.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "heavyread-reader",
    version,
    about = "Serves heavyread posts from memory, kept current from Redis."
)]
pub struct Config {
    /// Address every executor listens on (SO_REUSEPORT); port 0 picks a free port.
    #[arg(long, env = "HEAVYREAD_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Redis holding the posts and the change stream (`redis://` or `rediss://`).
    #[arg(long, env = "HEAVYREAD_REDIS_URL", default_value = DEFAULT_REDIS_URL)]
    pub redis_url: String,

    /// Key prefix shared with the writer, so several deployments can share a Redis.
    #[arg(long, env = "HEAVYREAD_PREFIX", default_value = heavyread_sync::schema::DEFAULT_PREFIX)]
    pub prefix: String,

    /// Number of executors; default one per CPU the process may run on.
    #[arg(long, env = "HEAVYREAD_CORES")]
    pub cores: Option<usize>,

    /// io_uring buffer memory per executor (e.g. 512KiB, 4MiB). The reader
    /// only does network I/O, which does not use it; it counts against
    /// RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK.
    #[arg(long, env = "HEAVYREAD_IO_MEMORY", default_value = DEFAULT_IO_MEMORY, value_parser = parse_size)]
    pub io_memory: u64,

    /// `/ready` answers 503 once Redis has not proved the store current for this long.
    #[arg(long, env = "HEAVYREAD_MAX_STALENESS", default_value = DEFAULT_MAX_STALENESS, value_parser = parse_duration)]
    pub max_staleness: Duration,

    /// Longest request line (method, target, version); longer gets 414.
    #[arg(long, env = "HEAVYREAD_MAX_REQUEST_LINE", default_value_t = 4096)]
    pub max_request_line: usize,

    /// Largest request head (request line and headers); larger gets 431.
    #[arg(long, env = "HEAVYREAD_MAX_HEADER_BYTES", default_value_t = 8192)]
    pub max_header_bytes: usize,

    /// Most header fields in one request; more gets 431.
    #[arg(long, env = "HEAVYREAD_MAX_HEADERS", default_value_t = 64)]
    pub max_headers: usize,

    /// Open connections per executor; past it a new connection gets 503 and is closed.
    #[arg(
        long,
        env = "HEAVYREAD_MAX_CONNECTIONS_PER_CORE",
        default_value_t = 10_000
    )]
    pub max_connections_per_core: usize,

    /// Time a client has to send a whole request head once it started one (then 408).
    #[arg(long, env = "HEAVYREAD_HEADER_TIMEOUT", default_value = DEFAULT_HEADER_TIMEOUT, value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// A kept-alive connection with no request for this long is closed (a
    /// new connection that has sent nothing, after `--header-timeout` if
    /// that is shorter).
    #[arg(long, env = "HEAVYREAD_IDLE_TIMEOUT", default_value = DEFAULT_IDLE_TIMEOUT, value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// A client that takes no bytes of its answers for this long is disconnected.
    #[arg(long, env = "HEAVYREAD_WRITE_TIMEOUT", default_value = DEFAULT_WRITE_TIMEOUT, value_parser = parse_duration)]
    pub write_timeout: Duration,

    /// On SIGTERM/SIGINT, in-flight requests get this long before connections are cut.
    #[arg(long, env = "HEAVYREAD_DRAIN_TIMEOUT", default_value = DEFAULT_DRAIN_TIMEOUT, value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// `Cache-Control` of `/post` answers (200 and 304); empty to send none.
    #[arg(long, env = "HEAVYREAD_CACHE_CONTROL", default_value = DEFAULT_CACHE_CONTROL)]
    pub cache_control: String,

    /// Log output format.
    #[arg(long, env = "HEAVYREAD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// An idle subscription is PINGed this often; it bounds how fresh `/ready` can know the store is.
    #[arg(long, env = "HEAVYREAD_REDIS_PING_INTERVAL", default_value = DEFAULT_PING_INTERVAL, value_parser = parse_duration)]
    pub redis_ping_interval: Duration,

    /// A PING unanswered this long means the connection is dead (reconnect).
    #[arg(long, env = "HEAVYREAD_REDIS_PING_TIMEOUT", default_value = DEFAULT_PING_TIMEOUT, value_parser = parse_duration)]
    pub redis_ping_timeout: Duration,

    /// Limit for connecting to Redis and for each command of the sync thread.
    #[arg(long, env = "HEAVYREAD_REDIS_COMMAND_TIMEOUT", default_value = DEFAULT_COMMAND_TIMEOUT, value_parser = parse_duration)]
    pub redis_command_timeout: Duration,

    /// Byte budget of the store (e.g. 512MiB): past it the least recently
    /// read posts are evicted and read through from Redis on demand. Unset:
    /// every post is held (no eviction, no fills).
    #[arg(long, env = "HEAVYREAD_MAX_MEMORY", value_parser = parse_size)]
    pub max_memory: Option<u64>,

    /// With --max-memory: how long a request waits for Redis to fill a post
    /// that is not in memory before it gets 503.
    #[arg(long, env = "HEAVYREAD_FILL_TIMEOUT", default_value = DEFAULT_FILL_TIMEOUT, value_parser = parse_duration)]
    pub fill_timeout: Duration,

    /// With --max-memory: most reads of posts waiting for Redis at once; more get 503 at once.
    #[arg(long, env = "HEAVYREAD_FILL_QUEUE", default_value_t = 4096)]
    pub fill_queue: usize,

    /// With --max-memory: how long an id Redis does not have is answered 404 without asking again.
    #[arg(long, env = "HEAVYREAD_NEGATIVE_TTL", default_value = DEFAULT_NEGATIVE_TTL, value_parser = parse_duration)]
    pub negative_ttl: Duration,
}

const DEFAULT_FILL_TIMEOUT: &str = "500ms";
const DEFAULT_NEGATIVE_TTL: &str = "1s";

fn must(s: Result<Duration, String>) -> Duration {
    s.expect("built-in default parses")
}

impl Config {
    /// The defaults, with `redis_url`; reads no environment variable (for tests and embedding).
    pub fn new(redis_url: impl Into<String>) -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("built-in default parses"),
            redis_url: redis_url.into(),
            prefix: heavyread_sync::schema::DEFAULT_PREFIX.to_owned(),
            cores: None,
            io_memory: parse_size(DEFAULT_IO_MEMORY).expect("built-in default parses"),
            max_staleness: must(parse_duration(DEFAULT_MAX_STALENESS)),
            max_request_line: 4096,
            max_header_bytes: 8192,
            max_headers: 64,
            max_connections_per_core: 10_000,
            header_timeout: must(parse_duration(DEFAULT_HEADER_TIMEOUT)),
            idle_timeout: must(parse_duration(DEFAULT_IDLE_TIMEOUT)),
            write_timeout: must(parse_duration(DEFAULT_WRITE_TIMEOUT)),
            drain_timeout: must(parse_duration(DEFAULT_DRAIN_TIMEOUT)),
            cache_control: DEFAULT_CACHE_CONTROL.to_owned(),
            log_format: LogFormat::Text,
            redis_ping_interval: must(parse_duration(DEFAULT_PING_INTERVAL)),
            redis_ping_timeout: must(parse_duration(DEFAULT_PING_TIMEOUT)),
            redis_command_timeout: must(parse_duration(DEFAULT_COMMAND_TIMEOUT)),
            max_memory: None,
            fill_timeout: must(parse_duration(DEFAULT_FILL_TIMEOUT)),
            fill_queue: 4096,
            negative_ttl: must(parse_duration(DEFAULT_NEGATIVE_TTL)),
        }
    }

    /// The sync thread's settings derived from this configuration.
    pub fn sync_config(&self) -> SyncConfig {
        SyncConfig {
            redis_url: self.redis_url.clone(),
            prefix: self.prefix.clone(),
            ping_interval: self.redis_ping_interval,
            ping_timeout: self.redis_ping_timeout,
            command_timeout: self.redis_command_timeout,
            fill: FillConfig {
                timeout: self.fill_timeout,
                max_in_flight: self.fill_queue,
                negative_ttl: self.negative_ttl,
                ..FillConfig::default()
            },
            ..SyncConfig::new(self.redis_url.clone())
        }
    }

    /// Checks every setting once; the message names the flag and the bad value.
    pub fn validate(&self) -> Result<(), Error> {
        fn bad<T>(msg: String) -> Result<T, Error> {
            Err(Error::Config(msg))
        }
        if let Some(n) = self.cores {
            if n == 0 || n > 4096 {
                return bad(format!("--cores: {n} is outside 1..=4096"));
            }
        }
        if !(64 << 10..=1 << 30).contains(&self.io_memory) {
            return bad(format!(
                "--io-memory: {} bytes is outside 64KiB..=1GiB",
                self.io_memory
            ));
        }
        for (flag, d) in [
            ("--max-staleness", self.max_staleness),
            ("--header-timeout", self.header_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--write-timeout", self.write_timeout),
            ("--drain-timeout", self.drain_timeout),
            ("--redis-ping-interval", self.redis_ping_interval),
            ("--redis-ping-timeout", self.redis_ping_timeout),
            ("--redis-command-timeout", self.redis_command_timeout),
            ("--fill-timeout", self.fill_timeout),
            ("--negative-ttl", self.negative_ttl),
        ] {
            if d.is_zero() {
                return bad(format!("{flag}: must be greater than zero"));
            }
            if d > Duration::from_secs(7 * 24 * 3600) {
                return bad(format!("{flag}: {d:?} is longer than a week"));
            }
        }
        if self.max_staleness <= self.redis_ping_interval {
            return bad(format!(
                "--max-staleness: {:?} must be longer than --redis-ping-interval ({:?}); an idle Redis proves the store current only once per ping",
                self.max_staleness, self.redis_ping_interval
            ));
        }
        if !(16..=65_536).contains(&self.max_request_line) {
            return bad(format!(
                "--max-request-line: {} is outside 16..=65536",
                self.max_request_line
            ));
        }
        if !(64..=1 << 20).contains(&self.max_header_bytes) {
            return bad(format!(
                "--max-header-bytes: {} is outside 64..=1048576",
                self.max_header_bytes
            ));
        }
        if self.max_request_line >= self.max_header_bytes {
            return bad(format!(
                "--max-request-line: {} must be below --max-header-bytes ({}), which includes the request line",
                self.max_request_line, self.max_header_bytes
            ));
        }
        if !(1..=MAX_HEADERS_CAP).contains(&self.max_headers) {
            return bad(format!(
                "--max-headers: {} is outside 1..={MAX_HEADERS_CAP}",
                self.max_headers
            ));
        }
        if !(1..=1_000_000).contains(&self.max_connections_per_core) {
            return bad(format!(
                "--max-connections-per-core: {} is outside 1..=1000000",
                self.max_connections_per_core
            ));
        }
        if self.cache_control.len() > 256
            || !self
                .cache_control
                .bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        {
            return bad(format!(
                "--cache-control: {:?} must be at most 256 bytes of visible ASCII, spaces and tabs",
                self.cache_control
            ));
        }
        if let Some(m) = self.max_memory {
            if m < 1 << 20 {
                return bad(format!(
                    "--max-memory: {m} bytes is below 1MiB; leave it unset to hold every post"
                ));
            }
        }
        if !(1..=1_000_000).contains(&self.fill_queue) {
            return bad(format!(
                "--fill-queue: {} is outside 1..=1000000",
                self.fill_queue
            ));
        }
        if let Err(e) = Keys::new(&self.prefix) {
            return bad(format!("--prefix: {e}"));
        }
        if let Err(e) = self.sync_config().validate() {
            // Durations and the prefix were checked above; what is left is the URL.
            return bad(format!("--redis-url: {e}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::new("redis://127.0.0.1:6379").validate().unwrap();
    }

    #[test]
    fn flag_defaults_match_new() {
        // No HEAVYREAD_* variables are set by the test runner.
        let parsed = Config::try_parse_from(["heavyread-reader"]).unwrap();
        let built = Config::new(DEFAULT_REDIS_URL);
        assert_eq!(format!("{parsed:?}"), format!("{built:?}"));
    }

    #[test]
    fn errors_name_the_flag() {
        let base = Config::new("redis://127.0.0.1:6379");
        let check = |f: &dyn Fn(&mut Config), flag: &str| {
            let mut c = base.clone();
            f(&mut c);
            let msg = c.validate().unwrap_err().to_string();
            assert!(msg.contains(flag), "{msg:?} should name {flag}");
        };
        check(&|c| c.cores = Some(0), "--cores");
        check(&|c| c.io_memory = 1, "--io-memory");
        check(&|c| c.header_timeout = Duration::ZERO, "--header-timeout");
        check(
            &|c| c.max_staleness = Duration::from_millis(500),
            "--max-staleness",
        );
        check(&|c| c.max_request_line = 9000, "--max-request-line");
        check(&|c| c.max_header_bytes = 10, "--max-header-bytes");
        check(&|c| c.max_headers = 1000, "--max-headers");
        check(
            &|c| c.max_connections_per_core = 0,
            "--max-connections-per-core",
        );
        check(
            &|c| c.cache_control = "a\r\nSet-Cookie: x".into(),
            "--cache-control",
        );
        check(&|c| c.prefix = "a b".into(), "--prefix");
        check(&|c| c.redis_url = "http://nope".into(), "--redis-url");
    }
}
