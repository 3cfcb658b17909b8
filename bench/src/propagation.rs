//! `propagation`: writes at a fixed rate through the writer's `POST /create`
//! and, for every write, measures the time from its `201` to the moment
//! each reader serves the new ETag.
//!
//! Each write updates one of `ids` posts with a new body (so a new ETag).
//! Once the 201 is read, one poller per reader sends `GET /post?id=` with
//! `If-None-Match: <new etag>` on a kept-alive connection, back to back,
//! until the reader answers 304 (or 200 with that ETag). The time recorded
//! is from the 201 to that answer, so it includes one poll round trip: the
//! run also measures that round trip alone (`poll_rtt`), the floor of what
//! it can show. "All readers" is, per write, the time until the last of
//! them serves it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::{get, post_head, Conn};
use crate::data::post_json;
use crate::stats::{histogram, Summary};

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct PropagationOptions {
    /// The writer.
    pub writer: SocketAddr,
    /// The readers polled.
    pub readers: Vec<SocketAddr>,
    /// Writes per second.
    pub rate: u64,
    /// Seconds of writing.
    pub secs: f64,
    /// Distinct ids written (`{id_prefix}{n}`), in turn.
    pub ids: u64,
    /// Mean body size.
    pub body_len: usize,
    /// A reader not serving a write after this long counts as a timeout.
    pub timeout: Duration,
    /// Id prefix.
    pub id_prefix: String,
    /// Bearer token of the writer.
    pub token: Option<String>,
    /// Connections opened to each server before the run.
    pub prewarm: usize,
    /// Track every k-th write (1: every write). Polling costs CPU on the
    /// same machine, so at high rates on few cores a sample is tracked
    /// while every write still goes through the writer.
    pub track_every: u64,
    /// Redis, when given: it rewrites its AOF before the run (see
    /// [`crate::aof`]), and the rewrites overlapping the run are counted.
    pub redis_url: Option<String>,
    /// Writes in flight at most. Each holds a writer connection, and a
    /// tracked one a connection to each reader while it polls; when the
    /// writer falls behind the rate, a write due past this many waits for
    /// one to finish (the achieved rate then falls short of the rate)
    /// instead of opening connections without bound.
    pub max_in_flight: usize,
}

/// "N waited for one of the M writes in flight to finish" when the cap
/// held writes back.
pub fn fmt_waited(r: &PropagationResult) -> Option<String> {
    (r.waited > 0).then(|| {
        format!(
            "{} waited for one of the {} writes in flight to finish",
            crate::stats::fmt_count(r.waited as f64),
            r.max_in_flight
        )
    })
}

/// "N tracked (write, reader) pairs broke off on a reader's error" when any did.
pub fn fmt_poll_errors(r: &PropagationResult) -> Option<String> {
    (r.poll_errors > 0).then(|| {
        format!(
            "{} tracked (write, reader) pairs broke off on a reader's error (counted as timeouts)",
            crate::stats::fmt_count(r.poll_errors as f64)
        )
    })
}

/// "N polls sent again on a new connection ..." when a connection the run
/// took from its pool failed before any answer (closed by the reader, most
/// likely).
pub fn fmt_replaced(r: &PropagationResult) -> Option<String> {
    (r.replaced_connections > 0).then(|| {
        format!(
            "{} polls sent again on a new connection (the pooled one failed before any answer)",
            crate::stats::fmt_count(r.replaced_connections as f64)
        )
    })
}

/// "the change already served at the first poll for N of M tracked
/// (write, reader) pairs (x%)" when the run counted it.
pub fn fmt_first_polls(r: &PropagationResult) -> Option<String> {
    let (hits, pairs) = (r.first_poll_hits?, r.tracked_pairs?);
    (pairs > 0).then(|| {
        format!(
            "the change already served at the first poll for {} of {} tracked (write, reader) pairs ({:.1}%)",
            crate::stats::fmt_count(hits as f64),
            crate::stats::fmt_count(pairs as f64),
            100.0 * hits as f64 / pairs as f64
        )
    })
}

/// Latency to one reader (or to all).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReaderLatency {
    /// `reader-1`, ..., or `all readers`.
    pub label: String,
    /// Where it listens (empty for all).
    pub addr: String,
    /// Writes not served within the timeout.
    pub timeouts: u64,
    /// Time from the 201 to serving the new ETag.
    pub latency: Summary,
}

/// One propagation run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PropagationResult {
    /// Writes per second asked for.
    pub rate: u64,
    /// Writes acknowledged with 201.
    pub writes: u64,
    /// Every k-th write was tracked to the readers.
    pub track_every: u64,
    /// Writes that failed (not 201, or a broken connection).
    pub failed: u64,
    /// Acknowledged writes per second, first send to last 201.
    pub achieved_rate: f64,
    /// Writes that, when due, found `max_in_flight` writes in flight and
    /// started late, once one had finished.
    #[serde(default)]
    pub waited: u64,
    /// The cap on writes in flight (0 in results from before it existed).
    #[serde(default)]
    pub max_in_flight: usize,
    /// Polls sent.
    pub polls: u64,
    /// Tracked (write, reader) pairs whose polling broke off on an error
    /// (the reader's connection failed); each also counts as a timeout of
    /// that reader, as the change was not seen served.
    #[serde(default)]
    pub poll_errors: u64,
    /// Polls whose connection, taken idle from the pool, turned out closed
    /// by the reader, and that were sent again on a new one (see [`poll`]).
    #[serde(default)]
    pub replaced_connections: u64,
    /// Tracked (write, reader) pairs whose first poll was already answered
    /// with the new ETag: the reader had applied the change before the poll
    /// arrived, so that sample is the poll's own round trip on the loaded
    /// machine. `None` in results from before it was counted.
    #[serde(default)]
    pub first_poll_hits: Option<u64>,
    /// Tracked (write, reader) pairs.
    #[serde(default)]
    pub tracked_pairs: Option<u64>,
    /// Per reader.
    pub readers: Vec<ReaderLatency>,
    /// Until the last reader serves the write.
    pub all: ReaderLatency,
    /// The writer's `/create` latency (send to 201).
    pub create: Summary,
    /// Round trip of one poll answered 304, measured alone before the run.
    pub poll_rtt: Summary,
    /// Milliseconds the hypervisor took the vCPUs away during the writes
    /// (steal time summed over CPUs; see the open-loop section).
    #[serde(default)]
    pub steal_ms: Option<f64>,
    /// Redis AOF rewrites that overlapped the writes (when Redis was given).
    #[serde(default)]
    pub aof_rewrites: Option<u64>,
    /// The kernel's CPU latency limit (µs) when the writes began: whether a
    /// process held idle CPUs in shallow states (see
    /// [`crate::procfs::cpu_latency_limit_us`]); `None` when unreadable.
    #[serde(default)]
    pub cpu_latency_us: Option<i64>,
}

/// How long a connection may wait idle in a pool: half the reader's and
/// the writer's 10-s header timeout, after which they close a connection
/// that sent no request.
const MAX_IDLE: Duration = Duration::from_secs(5);

/// Idle keep-alive connections to one server, each with when it went idle;
/// the last one given back is taken first.
struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<(Conn, Instant)>>,
}

impl Pool {
    async fn new(addr: SocketAddr, prewarm: usize) -> Result<Pool> {
        let mut idle = Vec::with_capacity(prewarm);
        for _ in 0..prewarm {
            idle.push((Conn::connect(addr).await?, Instant::now()));
        }
        Ok(Pool {
            addr,
            idle: Mutex::new(idle),
        })
    }

    /// An idle connection, or a new one when none has been idle for less
    /// than [`MAX_IDLE`] (older ones are closed); and whether it was idle
    /// (the server may have closed it all the same).
    async fn take(&self) -> Result<(Conn, bool)> {
        let c = {
            let mut idle = self.idle.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            // Given back in time order: the stale ones are at the start.
            let stale = idle.partition_point(|(_, since)| since.elapsed() >= MAX_IDLE);
            idle.drain(..stale);
            idle.pop()
        };
        match c {
            Some((c, _)) => Ok((c, true)),
            None => Ok((Conn::connect(self.addr).await?, false)),
        }
    }

    fn give(&self, c: Conn) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push((c, Instant::now()));
        }
    }
}

struct Shared {
    opts: PropagationOptions,
    writer: Pool,
    readers: Vec<Pool>,
    /// Added to the body seed, so each run writes new bodies.
    run_seed: u64,
}

/// What one write observed.
struct Outcome {
    create_ns: u64,
    /// Per reader: time to serve, or None on timeout or a poll error.
    seen: Vec<Option<u64>>,
    polls: u64,
    /// Per reader: the error its polling broke off on.
    errors: Vec<Option<String>>,
    /// Readers that served the write at their first poll.
    first_hits: u64,
    /// Polls sent again on a new connection.
    replaced: u64,
    acked_at: Instant,
}

/// Nanoseconds since the epoch, so two runs never write the same bodies.
fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn ns(d: Duration) -> u64 {
    (d.as_nanos() as u64).max(1)
}

/// How one reader's polling for a write ended.
struct Polled {
    /// Time from the 201 to serving the new ETag; None when not seen served.
    served: Option<u64>,
    polls: u64,
    /// The error the polling broke off on (not a timeout).
    error: Option<String>,
    /// The first poll was sent again on a new connection.
    replaced: bool,
}

/// Polls one reader until it serves `etag` for `id`, or `timeout` after
/// the 201. Each exchange is bounded by what is left of the timeout, so a
/// reader that stops answering counts as a timeout instead of holding the
/// run; a connection that fails counts as an error. Neither connection
/// goes back to the pool (its state is unknown).
///
/// A connection taken idle from the pool may have been closed by the
/// reader while it waited (the pool drops those idle longer than
/// [`MAX_IDLE`], but a reader may close sooner): when the first poll on it
/// fails before any byte of an answer came back, the poll (a GET, which the
/// reader may answer twice) is sent again once, on a new connection. Both
/// count as polls, so such a pair is never a first-poll hit; the run counts
/// them.
async fn poll(pool: &Pool, id: &str, etag: &str, acked: Instant, timeout: Duration) -> Polled {
    let req = get(&format!("/post?id={id}"), &[("If-None-Match", etag)]);
    let mut polls = 0;
    let mut replaced = false;
    let ended = |polls, error, replaced| Polled {
        served: None,
        polls,
        error,
        replaced,
    };
    let left = timeout.saturating_sub(acked.elapsed());
    let (mut conn, mut was_idle) = match tokio::time::timeout(left, pool.take()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return ended(polls, Some(format!("{e:#}")), replaced),
        Err(_) => return ended(polls, None, replaced),
    };
    loop {
        let left = timeout.saturating_sub(acked.elapsed());
        let received = conn.received;
        let r = match tokio::time::timeout(left, conn.exchange(&req, false)).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) if was_idle && conn.received == received => {
                was_idle = false;
                replaced = true;
                polls += 1;
                let left = timeout.saturating_sub(acked.elapsed());
                conn = match tokio::time::timeout(left, Conn::connect(pool.addr)).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return ended(polls, Some(format!("{e:#}")), replaced),
                    Err(_) => return ended(polls, None, replaced),
                };
                continue;
            }
            Ok(Err(e)) => return ended(polls, Some(format!("{e:#}")), replaced),
            Err(_) => return ended(polls, None, replaced),
        };
        was_idle = false;
        polls += 1;
        if r.status == 304 || (r.status == 200 && r.etag.as_deref() == Some(etag)) {
            let d = ns(acked.elapsed());
            pool.give(conn);
            return Polled {
                served: Some(d),
                polls,
                error: None,
                replaced,
            };
        }
        if acked.elapsed() > timeout {
            pool.give(conn);
            return ended(polls, None, replaced);
        }
        tokio::task::yield_now().await;
    }
}

async fn one_write(s: Arc<Shared>, seq: u64, track: bool) -> Result<Outcome> {
    let o = &s.opts;
    let n = seq % o.ids;
    let id = format!("{}{n}", o.id_prefix);
    let body = post_json(&id, s.run_seed.wrapping_add(seq), o.body_len);
    let mut req = post_head(
        "/create",
        "application/json",
        body.len(),
        o.token.as_deref(),
    );
    req.extend_from_slice(&body);
    let (mut conn, _) = s.writer.take().await?;
    let sent = Instant::now();
    let resp = conn.exchange(&req, false).await?;
    let acked = Instant::now();
    s.writer.give(conn);
    if resp.status != 201 {
        bail!("/create answered {}", resp.status);
    }
    let etag = resp.etag.context("201 without an ETag")?;
    if !track {
        return Ok(Outcome {
            create_ns: ns(acked - sent),
            seen: Vec::new(),
            polls: 0,
            errors: Vec::new(),
            first_hits: 0,
            replaced: 0,
            acked_at: acked,
        });
    }
    let polls = futures_util::future::join_all(
        s.readers
            .iter()
            .map(|p| poll(p, &id, &etag, acked, o.timeout)),
    )
    .await;
    let mut seen = Vec::with_capacity(polls.len());
    let mut errors = Vec::with_capacity(polls.len());
    let (mut total, mut first_hits, mut replaced) = (0, 0, 0);
    for p in polls {
        replaced += u64::from(p.replaced);
        if p.served.is_some() && p.polls == 1 {
            first_hits += 1;
        }
        seen.push(p.served);
        errors.push(p.error);
        total += p.polls;
    }
    Ok(Outcome {
        create_ns: ns(acked - sent),
        seen,
        polls: total,
        errors,
        first_hits,
        replaced,
        acked_at: acked,
    })
}

/// Round trip of a 304 poll on each reader, sequentially, `n` times each.
async fn poll_rtt(readers: &[SocketAddr], id: &str, n: usize) -> Result<Summary> {
    let mut h = histogram();
    for &addr in readers {
        let mut c = Conn::connect(addr).await?;
        let first = c
            .exchange(&get(&format!("/post?id={id}"), &[]), false)
            .await?;
        let Some(etag) = first.etag else {
            bail!(
                "reader {addr} answered {} without an ETag for {id}",
                first.status
            );
        };
        let req = get(&format!("/post?id={id}"), &[("If-None-Match", &etag)]);
        for _ in 0..n {
            let t = Instant::now();
            let r = c.exchange(&req, false).await?;
            h.record(ns(t.elapsed()))?;
            if r.status != 304 {
                bail!(
                    "reader {addr} answered {} to a matching If-None-Match",
                    r.status
                );
            }
        }
    }
    Ok(Summary::from_nanos(&h))
}

/// Runs writes at `opts.rate` for `opts.secs` and measures propagation.
pub async fn propagation(opts: &PropagationOptions) -> Result<PropagationResult> {
    if opts.readers.is_empty() || opts.rate == 0 || opts.ids == 0 {
        bail!("propagation needs readers, a rate and ids");
    }
    if let Some(url) = &opts.redis_url {
        crate::aof::compact(url, crate::aof::LIMIT).await?;
    }
    let mut readers = Vec::new();
    for &r in &opts.readers {
        readers.push(Pool::new(r, opts.prewarm).await?);
    }
    let shared = Arc::new(Shared {
        opts: opts.clone(),
        writer: Pool::new(opts.writer, opts.prewarm).await?,
        readers,
        run_seed: opts.rate.wrapping_mul(1_000_000_007) ^ clock_seed(),
    });
    // Write the first id and wait until every reader serves it, then
    // measure the polling floor on it.
    let first = one_write(shared.clone(), 0, true).await?;
    let missed: Vec<String> = first
        .seen
        .iter()
        .zip(&first.errors)
        .zip(&opts.readers)
        .filter(|((seen, _), _)| seen.is_none())
        .map(|((_, error), addr)| match error {
            Some(e) => format!("reader {addr}: {e}"),
            None => format!("reader {addr}: not served within {:?}", opts.timeout),
        })
        .collect();
    if !missed.is_empty() {
        bail!(
            "the first write did not reach every reader: {}",
            missed.join("; ")
        );
    }
    let rtt = poll_rtt(&opts.readers, &format!("{}0", opts.id_prefix), 1000).await?;
    let steal = crate::procfs::StealMeter::start()?;
    let cpu_latency_us = crate::procfs::cpu_latency_limit_us();
    let rewrites = match &opts.redis_url {
        Some(url) => Some(crate::aof::RewriteMeter::start(url).await?),
        None => None,
    };

    let mut per_reader: Vec<Histogram<u64>> = opts.readers.iter().map(|_| histogram()).collect();
    let mut timeouts = vec![0u64; opts.readers.len()];
    let mut all = histogram();
    let mut all_timeouts = 0u64;
    let mut create = histogram();
    let (mut writes, mut failed, mut polls, mut poll_errors) = (0u64, 0u64, 0u64, 0u64);
    let (mut first_poll_hits, mut tracked_pairs, mut replaced_connections) = (0u64, 0u64, 0u64);
    let mut last_ack = Instant::now();
    let mut first_error: Option<anyhow::Error> = None;
    let mut first_poll_error: Option<String> = None;
    let mut absorb = |r: Result<Result<Outcome>, tokio::task::JoinError>| -> Result<()> {
        match r? {
            Ok(o) => {
                writes += 1;
                polls += o.polls;
                replaced_connections += o.replaced;
                for e in o.errors.into_iter().flatten() {
                    poll_errors += 1;
                    first_poll_error.get_or_insert(e);
                }
                create.record(o.create_ns)?;
                last_ack = last_ack.max(o.acked_at);
                if o.seen.is_empty() {
                    return Ok(());
                }
                first_poll_hits += o.first_hits;
                tracked_pairs += o.seen.len() as u64;
                let mut slowest = Some(0u64);
                for (i, s) in o.seen.iter().enumerate() {
                    match s {
                        Some(d) => per_reader[i].record(*d)?,
                        None => timeouts[i] += 1,
                    }
                    slowest = match (slowest, s) {
                        (Some(a), Some(b)) => Some(a.max(*b)),
                        _ => None,
                    };
                }
                match slowest {
                    Some(d) => all.record(d)?,
                    None => all_timeouts += 1,
                }
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
        Ok(())
    };

    // One tick per millisecond; each tick starts its share of writes
    // without waiting for earlier ones, so a slow answer never delays the schedule.
    let ticks = (opts.secs * 1000.0).round() as u64;
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_in_flight.max(1)));
    let mut started = 0u64;
    let mut waited = 0u64;
    let start = Instant::now();
    for t in 0..ticks {
        interval.tick().await;
        let due = opts.rate * (t + 1) / 1000;
        while started < due {
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    waited += 1;
                    slots.clone().acquire_owned().await?
                }
            };
            started += 1;
            let track = started.is_multiple_of(opts.track_every.max(1));
            let write = one_write(shared.clone(), started, track);
            tasks.spawn(async move {
                let outcome = write.await;
                drop(slot);
                outcome
            });
        }
        while let Some(r) = tasks.try_join_next() {
            absorb(r)?;
        }
    }
    while let Some(r) = tasks.join_next().await {
        absorb(r)?;
    }
    if writes == 0 {
        return Err(first_error.unwrap_or_else(|| anyhow::anyhow!("no write was acknowledged")))
            .context("propagation run failed");
    }
    if let Some(e) = &first_error {
        tracing::warn!(failed, error = %e, "some writes failed");
    }
    if let Some(e) = &first_poll_error {
        tracing::warn!(poll_errors, error = %e, "some polls broke off on an error");
    }
    let elapsed = last_ack.saturating_duration_since(start).as_secs_f64();
    let steal_ms = steal.stop()?;
    let aof_rewrites = match rewrites {
        Some(m) => Some(m.stop().await?),
        None => None,
    };
    let readers = opts
        .readers
        .iter()
        .enumerate()
        .map(|(i, a)| ReaderLatency {
            label: format!("reader-{}", i + 1),
            addr: a.to_string(),
            timeouts: timeouts[i],
            latency: Summary::from_nanos(&per_reader[i]),
        })
        .collect();
    Ok(PropagationResult {
        rate: opts.rate,
        writes,
        track_every: opts.track_every.max(1),
        failed,
        achieved_rate: writes as f64 / elapsed.max(1e-9),
        waited,
        max_in_flight: opts.max_in_flight.max(1),
        polls,
        poll_errors,
        replaced_connections,
        first_poll_hits: Some(first_poll_hits),
        tracked_pairs: Some(tracked_pairs),
        readers,
        all: ReaderLatency {
            label: "all readers".into(),
            addr: String::new(),
            timeouts: all_timeouts,
            latency: Summary::from_nanos(&all),
        },
        create: Summary::from_nanos(&create),
        poll_rtt: rtt,
        steal_ms: Some(steal_ms),
        aof_rewrites,
        cpu_latency_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool closes the connections that waited idle for `MAX_IDLE` or
    /// longer and hands out the newest one that did not; with none left it
    /// connects anew.
    #[tokio::test]
    async fn a_pool_drops_connections_idle_too_long() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                kept.push(c);
            }
        });
        let pool = Pool::new(addr, 3).await.unwrap();
        let old = Instant::now() - MAX_IDLE;
        {
            let mut idle = pool.idle.lock().unwrap();
            idle[0].1 = old;
            idle[1].1 = old;
        }
        let (_, was_idle) = pool.take().await.unwrap();
        assert!(was_idle);
        assert!(
            pool.idle.lock().unwrap().is_empty(),
            "the stale ones stayed"
        );
        let c = Conn::connect(addr).await.unwrap();
        pool.idle.lock().unwrap().push((c, old));
        let (_, was_idle) = pool.take().await.unwrap();
        assert!(!was_idle, "a connection idle for MAX_IDLE was handed out");
    }
}
