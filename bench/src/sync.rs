//! Benchmarks of the sync library alone.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use heavyread_sync::testing::RedisServer;
use heavyread_sync::{Publisher, Store, Subscriber, SyncConfig};

use crate::data::post_json;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    /// Writes per second asked for.
    pub rate: u64,
    /// Samples recorded by the subscriber.
    pub samples: u64,
    /// p50, p99, p99.9, max (µs).
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

async fn publisher(redis: &RedisServer) -> Result<Publisher> {
    let p = Publisher::new(&redis.url(), "hr", 1_000_000, Duration::from_secs(5))?;
    p.load_library().await?;
    Ok(p)
}

fn wait_ready(sub: &Subscriber, limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    while !sub.status().snapshot().bootstrapped {
        if start.elapsed() > limit {
            bail!("subscriber did not bootstrap within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(start.elapsed())
}

/// Publishes `rate` puts per second for `secs` seconds over `ids` ids and
/// reads the subscriber's publish-to-applied histogram (writer timestamp in
/// the record → applied to the store).
pub async fn latency(rate: u64, secs: u64, ids: u64) -> Result<Latency> {
    let redis = RedisServer::start_with(false, &[]);
    let p = publisher(&redis).await?;
    let (_store, writer) = Store::new();
    let sub = Subscriber::spawn(SyncConfig::new(redis.url()), writer)?;
    wait_ready(&sub, Duration::from_secs(10))?;
    let bodies: Vec<(String, Vec<u8>)> = (0..ids)
        .map(|n| {
            let id = format!("post-{n}");
            let b = post_json(&id, n, 350);
            (id, b)
        })
        .collect();
    // One tick per millisecond; each tick sends its share without waiting
    // for earlier ones, so a slow reply never delays the schedule.
    let errors = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ticks = secs * 1000;
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..ticks {
        interval.tick().await;
        let due = rate * (t + 1) / 1000;
        while sent < due {
            let (id, body) = &bodies[(sent % ids) as usize];
            let (p, id, body, errors) = (p.clone(), id.clone(), body.clone(), errors.clone());
            tasks.spawn(async move {
                if p.put(&id, &body).await.is_err() {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
            sent += 1;
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let failed = errors.load(std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} writes failed");
    }
    let expected = p.version().await?;
    let start = Instant::now();
    while sub.status().snapshot().last_version < expected {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("subscriber did not apply version {expected}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s = sub.status();
    let pct = |q| s.propagation_percentile_us(q).context("no samples");
    Ok(Latency {
        rate,
        samples: s.propagation_count(),
        p50: pct(50.0)?,
        p99: pct(99.0)?,
        p999: pct(99.9)?,
        max: pct(100.0)?,
    })
}

/// Result of a bootstrap run.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// Entries in Redis.
    pub entries: u64,
    /// Sum of body bytes.
    pub body_bytes: u64,
    /// Time to seed Redis through the publisher (pipelined).
    pub seed: Duration,
    /// Time from spawning the subscriber to a complete bootstrap.
    pub bootstrap: Duration,
    /// Bytes the store accounts for afterwards.
    pub store_bytes: u64,
}

/// Seeds `n` posts of about `mean_len` bytes, then times a cold bootstrap.
pub async fn bootstrap(n: u64, mean_len: usize) -> Result<Bootstrap> {
    let redis = RedisServer::start_with(false, &[]);
    let p = publisher(&redis).await?;
    let started = Instant::now();
    let mut body_bytes = 0u64;
    let chunk = 1000u64;
    let mut pending = Vec::new();
    for base in (0..n).step_by(chunk as usize) {
        let items: Vec<(String, Vec<u8>)> = (base..(base + chunk).min(n))
            .map(|i| {
                let id = format!("post-{i}");
                let b = post_json(&id, i, mean_len);
                (id, b)
            })
            .collect();
        body_bytes += items.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        let p = p.clone();
        pending.push(tokio::spawn(async move {
            let refs: Vec<(&str, &[u8])> = items
                .iter()
                .map(|(i, b)| (i.as_str(), b.as_slice()))
                .collect();
            p.put_many(&refs).await.map(|w| w.len())
        }));
        if pending.len() >= 8 {
            for h in pending.drain(..) {
                h.await??;
            }
        }
    }
    for h in pending {
        h.await??;
    }
    let seed = started.elapsed();
    let (store, writer) = Store::new();
    let t = Instant::now();
    let sub = Subscriber::spawn(SyncConfig::new(redis.url()), writer)?;
    wait_ready(&sub, Duration::from_secs(600))?;
    let bootstrap = t.elapsed();
    if store.len() as u64 != n {
        bail!("bootstrapped {} entries, expected {n}", store.len());
    }
    Ok(Bootstrap {
        entries: n,
        body_bytes,
        seed,
        bootstrap,
        store_bytes: store.bytes(),
    })
}
