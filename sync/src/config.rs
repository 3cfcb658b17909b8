//! Settings of the sync thread, validated once.

use std::time::Duration;

use crate::schema::Keys;
use crate::Error;

/// How the sync thread reaches Redis and how patient it is.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://` for TLS.
    pub redis_url: String,
    /// Key prefix (the hash tag's content) shared with the writer.
    pub prefix: String,
    /// Idle time on the subscription after which a PING is sent.
    pub ping_interval: Duration,
    /// How long a PING may go unanswered before the connection is declared dead.
    pub ping_timeout: Duration,
    /// Limit for connecting and for each command on the command connection.
    pub command_timeout: Duration,
    /// First reconnect delay; doubles up to `backoff_max`, with jitter.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Entries asked for per HSCAN call during a full resync.
    pub scan_batch: usize,
    /// Log entries read per catch-up round trip.
    pub catch_up_batch: usize,
    /// Messages buffered between the subscription and the applier; when full,
    /// Redis buffers, and past its limit drops the subscriber (a gap, repaired).
    pub channel_capacity: usize,
    /// Bytes of messages buffered there at most (a `/bulk` batch's message
    /// holds a few hundred records); past it the subscription is not read
    /// until the applier catches up, as when the channel is full.
    pub channel_bytes: usize,
    /// Read-through fills, used when the store is bounded.
    pub fill: crate::fill::FillConfig,
}

impl SyncConfig {
    /// Defaults for `redis_url`.
    pub fn new(redis_url: impl Into<String>) -> Self {
        SyncConfig {
            redis_url: redis_url.into(),
            prefix: crate::schema::DEFAULT_PREFIX.to_owned(),
            ping_interval: Duration::from_secs(1),
            ping_timeout: Duration::from_secs(3),
            command_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            scan_batch: 2_000,
            catch_up_batch: 1_000,
            channel_capacity: 1 << 18,
            channel_bytes: 128 << 20,
            fill: crate::fill::FillConfig::default(),
        }
    }

    /// Checks every field; the message names the setting and the bad value.
    pub fn validate(&self) -> Result<Keys, Error> {
        let bad = |what: &str, why: String| Err(Error::Config(format!("{what}: {why}")));
        if let Err(e) = redis::Client::open(self.redis_url.as_str()) {
            return bad(
                "redis url",
                format!("{:?} is not a Redis URL: {e}", redacted(&self.redis_url)),
            );
        }
        let keys = Keys::new(&self.prefix).map_err(|e| Error::Config(format!("prefix: {e}")))?;
        self.fill.validate()?;
        for (name, d) in [
            ("ping interval", self.ping_interval),
            ("ping timeout", self.ping_timeout),
            ("command timeout", self.command_timeout),
            ("backoff min", self.backoff_min),
            ("backoff max", self.backoff_max),
        ] {
            if d.is_zero() {
                return bad(name, "must be greater than zero".into());
            }
        }
        if self.backoff_max < self.backoff_min {
            return bad(
                "backoff max",
                format!(
                    "{:?} is below backoff min {:?}",
                    self.backoff_max, self.backoff_min
                ),
            );
        }
        for (name, n) in [
            ("scan batch", self.scan_batch),
            ("catch-up batch", self.catch_up_batch),
            ("channel capacity", self.channel_capacity),
        ] {
            if n == 0 || n > 1 << 24 {
                return bad(name, format!("{n} is outside 1..=16777216"));
            }
        }
        if self.channel_bytes == 0 {
            return bad("channel bytes", "0 is not a size".into());
        }
        Ok(keys)
    }
}

/// The URL with any password replaced, for logs and error messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Parses a byte size (the reader's and the writer's flags): `65536`, `64k`, `512KiB`, `4MiB`, `1G` (K, M, G are powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 512KiB or 4MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?} has an unknown unit (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a duration (the reader's and the writer's flags): `250ms`, `5s`, `1.5s`, `2m`, `1h`, `100us`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("{s:?} is not a duration such as 250ms, 5s or 2m");
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        assert!(SyncConfig::new("redis://127.0.0.1:6379").validate().is_ok());
    }

    #[test]
    fn bad_values_name_the_setting() {
        let mut c = SyncConfig::new("redis://127.0.0.1:6379");
        c.ping_timeout = Duration::ZERO;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("ping timeout"));
        let mut c = SyncConfig::new("nope://x");
        c.prefix = "ok".into();
        assert!(c.validate().unwrap_err().to_string().contains("redis url"));
        let mut c = SyncConfig::new("redis://127.0.0.1:6379");
        c.prefix = "a b".into();
        assert!(c.validate().unwrap_err().to_string().contains("prefix"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redacted("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redacted("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("4mib"), Ok(4 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("KiB").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("1e400").is_err());
    }
}
