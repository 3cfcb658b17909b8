//! Redis's AOF rewrites around a measured run.
//!
//! With `appendonly yes`, Redis rewrites its append-only file by itself once
//! it has grown by `auto-aof-rewrite-percentage` (100% by default) past its
//! last base: it forks, and the child writes a compressed copy of the whole
//! data set. On a 2-CPU machine that child competes with the writer, the
//! readers and the load tool for a second or more, and a write-heavy run it
//! lands in shows multi-millisecond tails that come from Redis's
//! housekeeping, not from the path being measured. So a write-heavy run
//! first has Redis rewrite (`BGREWRITEAOF`) and waits for it ([`compact`]),
//! which starts the run from a fresh base, and counts the rewrites that
//! overlapped it anyway ([`RewriteMeter`]) for the report to show.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use redis::aio::MultiplexedConnection;

/// How long [`compact`] waits for Redis's rewrite.
pub const LIMIT: Duration = Duration::from_secs(300);

/// What `INFO persistence` says about AOF rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AofState {
    /// `aof_enabled`.
    pub enabled: bool,
    /// `aof_rewrites`: rewrites started since Redis started (counted when
    /// the child is forked).
    pub rewrites: u64,
    /// `aof_rewrite_in_progress`, or a rewrite scheduled to start.
    pub busy: bool,
}

/// Parses the fields of [`AofState`] from an `INFO persistence` answer;
/// `None` when one is missing or not a number.
pub fn parse_info(info: &str) -> Option<AofState> {
    let field = |name: &str| -> Option<u64> {
        info.lines().find_map(|l| {
            let (k, v) = l.trim_end().split_once(':')?;
            (k == name).then(|| v.parse().ok()).flatten()
        })
    };
    Some(AofState {
        enabled: field("aof_enabled")? == 1,
        rewrites: field("aof_rewrites")?,
        busy: field("aof_rewrite_in_progress")? == 1 || field("aof_rewrite_scheduled")? == 1,
    })
}

async fn connect(redis_url: &str) -> Result<MultiplexedConnection> {
    let client = redis::Client::open(redis_url).context("redis url")?;
    client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to {redis_url}"))
}

async fn state(con: &mut MultiplexedConnection) -> Result<AofState> {
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(con)
        .await?;
    parse_info(&info).context("INFO persistence lacks the AOF rewrite fields")
}

/// Reads Redis's rewrite state until `done` holds, at most `limit`.
async fn wait_until(
    con: &mut MultiplexedConnection,
    limit: Duration,
    what: &str,
    done: impl Fn(&AofState) -> bool,
) -> Result<AofState> {
    let end = Instant::now() + limit;
    loop {
        let s = state(con).await?;
        if done(&s) {
            return Ok(s);
        }
        if Instant::now() >= end {
            bail!("redis: {what} not done after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Has Redis rewrite its AOF now and waits until it is done (a no-op when
/// AOF is off). Returns the state after it.
pub async fn compact(redis_url: &str, limit: Duration) -> Result<AofState> {
    let mut con = connect(redis_url).await?;
    let before = wait_until(&mut con, limit, "a running AOF rewrite", |s| !s.busy).await?;
    if !before.enabled {
        return Ok(before);
    }
    redis::cmd("BGREWRITEAOF")
        .query_async::<String>(&mut con)
        .await
        .context("BGREWRITEAOF")?;
    // The rewrite may be scheduled rather than started: wait until it ran.
    wait_until(&mut con, limit, "the AOF rewrite", |s| {
        !s.busy && s.rewrites > before.rewrites
    })
    .await
}

/// Counts the AOF rewrites that overlap a run: those running when it
/// starts and those started during it.
pub struct RewriteMeter {
    con: MultiplexedConnection,
    start: AofState,
}

impl RewriteMeter {
    /// Reads Redis's rewrite state now.
    pub async fn start(redis_url: &str) -> Result<RewriteMeter> {
        let mut con = connect(redis_url).await?;
        let start = state(&mut con).await?;
        Ok(RewriteMeter { con, start })
    }

    /// Rewrites that overlapped the run since [`RewriteMeter::start`].
    pub async fn stop(mut self) -> Result<u64> {
        let end = state(&mut self.con).await?;
        Ok(overlapping(self.start, end))
    }
}

/// Rewrites overlapping the time between two readings: one already running
/// at `start` (the counter counts a rewrite when it starts), plus those
/// started since.
pub fn overlapping(start: AofState, end: AofState) -> u64 {
    end.rewrites.saturating_sub(start.rewrites) + u64::from(start.busy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Persistence\r\nloading:0\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\n\
aof_rewrite_scheduled:0\r\naof_last_rewrite_time_sec:1\r\naof_rewrites:3\r\naof_rewrites_consecutive_failures:0\r\n";

    #[test]
    fn the_rewrite_fields_are_read_by_their_exact_names() {
        let s = parse_info(INFO).unwrap();
        assert_eq!(
            s,
            AofState {
                enabled: true,
                rewrites: 3,
                busy: false
            }
        );
        let busy = parse_info(&INFO.replace("aof_rewrite_scheduled:0", "aof_rewrite_scheduled:1"))
            .unwrap();
        assert!(busy.busy);
        let off = parse_info(&INFO.replace("aof_enabled:1", "aof_enabled:0")).unwrap();
        assert!(!off.enabled);
        assert_eq!(parse_info(&INFO.replace("aof_rewrites:3", "")), None);
        assert_eq!(
            parse_info(&INFO.replace("aof_rewrites:3", "aof_rewrites:x")),
            None
        );
    }

    #[test]
    fn a_rewrite_running_at_the_start_counts_as_overlapping() {
        let s = |rewrites, busy| AofState {
            enabled: true,
            rewrites,
            busy,
        };
        assert_eq!(overlapping(s(3, false), s(3, false)), 0);
        assert_eq!(overlapping(s(3, false), s(4, true)), 1);
        assert_eq!(overlapping(s(3, true), s(3, false)), 1);
        assert_eq!(overlapping(s(3, true), s(5, false)), 3);
    }
}
