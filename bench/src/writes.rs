//! `writes`: the writer's throughput: creates per second through
//! `POST /create` with N concurrent keep-alive clients, and posts per second
//! through one `POST /bulk`, with the CPU time of the writer (and Redis)
//! per write when their pids are given.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::client::{post_head, Conn};
use crate::data::post_json;
use crate::procfs::{CpuMeter, ProcessCpu};
use crate::seed::ndjson;
use crate::stats::{histogram, Summary};

/// Settings of a writer run.
#[derive(Debug, Clone)]
pub struct WritesOptions {
    /// The writer.
    pub writer: SocketAddr,
    /// Concurrent `/create` clients.
    pub clients: usize,
    /// Seconds of `/create`.
    pub secs: f64,
    /// Posts in the `/bulk` run (0 skips it).
    pub bulk: u64,
    /// Mean body size.
    pub body_len: usize,
    /// Processes whose CPU time is reported per write.
    pub pids: Vec<u32>,
    /// Bearer token of the writer.
    pub token: Option<String>,
    /// Redis, when given: it rewrites its AOF before each part (see
    /// [`crate::aof`]), and the rewrites overlapping each are counted.
    pub redis_url: Option<String>,
}

/// One throughput figure with its CPU cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Throughput {
    /// Writes acknowledged.
    pub writes: u64,
    /// Writes refused or failed.
    pub errors: u64,
    /// Wall seconds.
    pub secs: f64,
    /// `writes / secs`.
    pub per_sec: f64,
    /// Request latency (`/create` only).
    pub latency: Summary,
    /// CPU of each measured process.
    pub cpu: Vec<ProcessCpu>,
    /// CPU microseconds per write, all measured processes.
    pub cpu_us_per_write: f64,
    /// Redis AOF rewrites that overlapped the run (when Redis was given).
    #[serde(default)]
    pub aof_rewrites: Option<u64>,
}

/// A writer run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WritesResult {
    /// `/create` clients.
    pub clients: usize,
    /// `/create`.
    pub create: Throughput,
    /// `/bulk` posts in one request.
    pub bulk_posts: u64,
    /// `/bulk`.
    pub bulk: Throughput,
}

fn cpu_per(cpu: &[ProcessCpu], n: u64) -> f64 {
    cpu.iter().map(|c| c.cpu_secs).sum::<f64>() * 1e6 / n.max(1) as f64
}

async fn creates(o: &WritesOptions) -> Result<Throughput> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut conns = Vec::new();
    for _ in 0..o.clients {
        conns.push(Conn::connect(o.writer).await?);
    }
    let meter = CpuMeter::start(&o.pids)?;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, mut conn) in conns.into_iter().enumerate() {
        let (stop, o) = (stop.clone(), o.clone());
        tasks.spawn(async move {
            let mut h = histogram();
            let mut errors = 0u64;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("w-{c}-{i}");
                let body = post_json(&id, (c as u64) << 32 | i, o.body_len);
                let mut req = post_head(
                    "/create",
                    "application/json",
                    body.len(),
                    o.token.as_deref(),
                );
                req.extend_from_slice(&body);
                let t = Instant::now();
                let r = conn.exchange(&req, false).await?;
                if r.status == 201 {
                    h.record((t.elapsed().as_nanos() as u64).max(1))?;
                } else {
                    errors += 1;
                }
                i += 1;
            }
            anyhow::Ok((h, errors))
        });
    }
    tokio::time::sleep(Duration::from_secs_f64(o.secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = histogram();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        let (h, e) = r??;
        all.add(h)?;
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    let (cpu, _) = meter.stop()?;
    let writes = all.len();
    Ok(Throughput {
        writes,
        errors,
        secs,
        per_sec: writes as f64 / secs,
        latency: Summary::from_nanos(&all),
        cpu_us_per_write: cpu_per(&cpu, writes),
        cpu,
        aof_rewrites: None,
    })
}

async fn bulk(o: &WritesOptions) -> Result<Throughput> {
    let (body, _) = ndjson("wb-", 0, o.bulk, o.body_len);
    let mut conn = Conn::connect(o.writer).await?;
    let head = post_head(
        "/bulk",
        "application/x-ndjson",
        body.len(),
        o.token.as_deref(),
    );
    let meter = CpuMeter::start(&o.pids)?;
    let t = Instant::now();
    conn.send(&head).await?;
    conn.send(&body).await?;
    let r = conn.read_response(true).await?;
    let secs = t.elapsed().as_secs_f64();
    let (cpu, _) = meter.stop()?;
    let report: serde_json::Value = serde_json::from_slice(&r.body)?;
    if r.status != 200 {
        bail!("/bulk answered {}: {report}", r.status);
    }
    let applied = report["applied"].as_u64().unwrap_or(0);
    Ok(Throughput {
        writes: applied,
        errors: o.bulk - applied.min(o.bulk),
        secs,
        per_sec: applied as f64 / secs,
        latency: Summary::default(),
        cpu_us_per_write: cpu_per(&cpu, applied),
        cpu,
        aof_rewrites: None,
    })
}

/// Runs `part` after Redis (when given) rewrote its AOF, and counts the
/// rewrites that overlapped it.
async fn with_aof(
    o: &WritesOptions,
    part: impl std::future::Future<Output = Result<Throughput>>,
) -> Result<Throughput> {
    let Some(url) = &o.redis_url else {
        return part.await;
    };
    crate::aof::compact(url, crate::aof::LIMIT).await?;
    let meter = crate::aof::RewriteMeter::start(url).await?;
    let mut t = part.await?;
    t.aof_rewrites = Some(meter.stop().await?);
    Ok(t)
}

/// Runs `/create` for `o.secs`, then one `/bulk` of `o.bulk` posts.
pub async fn writes(o: &WritesOptions) -> Result<WritesResult> {
    let create = with_aof(o, creates(o)).await?;
    let bulk = if o.bulk > 0 {
        with_aof(o, bulk(o)).await?
    } else {
        Throughput::default()
    };
    Ok(WritesResult {
        clients: o.clients,
        create,
        bulk_posts: o.bulk,
        bulk,
    })
}
