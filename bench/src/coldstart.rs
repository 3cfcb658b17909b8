//! `coldstart`: time from starting a reader to its first `200` on `/ready`
//! with N posts already in Redis (process start, Redis bootstrap, listeners).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::process::{free_addr, ReaderCommand};
use crate::procfs::rss_bytes;

/// What a cold-start run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ColdstartResult {
    /// Entries the reader held once ready.
    pub posts: u64,
    /// Seconds from spawn to ready, one per run.
    pub runs: Vec<f64>,
    /// Median of `runs`.
    pub median_secs: f64,
    /// Fastest run.
    pub min_secs: f64,
    /// Slowest run.
    pub max_secs: f64,
    /// Resident memory right after the last run became ready.
    pub rss_bytes: u64,
    /// Reader flags used.
    pub reader_args: Vec<String>,
}

/// Starts the reader `runs` times and times each to `/ready`.
pub async fn coldstart(
    reader: &ReaderCommand,
    expect: u64,
    runs: u32,
    limit: Duration,
) -> Result<ColdstartResult> {
    let mut out = ColdstartResult {
        reader_args: reader.args.clone(),
        ..ColdstartResult::default()
    };
    for _ in 0..runs.max(1) {
        let addr = free_addr();
        let t = Instant::now();
        let mut server = reader.spawn(addr)?;
        let took = server.wait_ok("/ready", t, limit).await?;
        let entries = server.metric("heavyread_reader_store_entries").await? as u64;
        if entries < expect {
            bail!("reader was ready with {entries} entries, expected {expect}");
        }
        out.posts = entries;
        out.rss_bytes = rss_bytes(server.pid())?;
        out.runs.push(took.as_secs_f64());
        server.stop(Duration::from_secs(10));
    }
    let mut sorted = out.runs.clone();
    sorted.sort_by(f64::total_cmp);
    out.median_secs = sorted[sorted.len() / 2];
    out.min_secs = sorted[0];
    out.max_secs = sorted[sorted.len() - 1];
    Ok(out)
}
