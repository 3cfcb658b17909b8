//! `memory`: a reader's resident memory before and after N posts reach it
//! through the live path (the writer's `/bulk`, then pub/sub), against the
//! bytes of the bodies it now holds.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::process::{free_addr, ReaderCommand};
use crate::procfs::rss_bytes;
use crate::seed::{seed, SeedOptions, SeedResult};

/// What a memory run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryResult {
    /// Posts loaded.
    pub posts: u64,
    /// Sum of their JSON bodies.
    pub body_bytes: u64,
    /// Reader RSS once ready with an empty store.
    pub rss_before: u64,
    /// Reader RSS once every post was applied.
    pub rss_after: u64,
    /// What the store accounts for (`heavyread_reader_store_bytes`).
    pub store_bytes: u64,
    /// Seconds from the end of the seed until the reader held every post.
    pub catch_up_secs: f64,
    /// The seed run.
    pub seed: SeedResult,
    /// Reader flags used.
    pub reader_args: Vec<String>,
}

impl MemoryResult {
    /// RSS after / body bytes.
    pub fn rss_ratio(&self) -> f64 {
        self.rss_after as f64 / self.body_bytes.max(1) as f64
    }

    /// (RSS after − RSS before) / body bytes: memory per byte of body.
    pub fn growth_ratio(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.body_bytes.max(1) as f64
    }
}

/// Starts a reader on an empty prefix, seeds `opts.posts` posts through the
/// writer (which must use the same prefix), and reads RSS before and after.
pub async fn memory(
    reader: &ReaderCommand,
    opts: &SeedOptions,
    settle: Duration,
    limit: Duration,
) -> Result<MemoryResult> {
    let addr = free_addr();
    let mut server = reader.spawn(addr)?;
    server.wait_ok("/ready", Instant::now(), limit).await?;
    let before = server.metric("heavyread_reader_store_entries").await? as u64;
    if before != 0 {
        bail!(
            "prefix {:?} already holds {before} posts: memory needs an empty one",
            reader.prefix
        );
    }
    tokio::time::sleep(settle).await;
    let rss_before = rss_bytes(server.pid())?;
    let seeded = seed(opts).await?;
    let t = Instant::now();
    loop {
        let n = server.metric("heavyread_reader_store_entries").await? as u64;
        if n >= opts.posts {
            break;
        }
        server.check_alive()?;
        if t.elapsed() > limit {
            bail!("reader holds {n} of {} posts after {limit:?}", opts.posts);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let catch_up_secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let out = MemoryResult {
        posts: opts.posts,
        body_bytes: seeded.body_bytes,
        rss_before,
        rss_after: rss_bytes(server.pid())?,
        store_bytes: server.metric("heavyread_reader_store_bytes").await? as u64,
        catch_up_secs,
        seed: seeded,
        reader_args: reader.args.clone(),
    };
    server.stop(Duration::from_secs(10));
    Ok(out)
}
