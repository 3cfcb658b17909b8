//! Open-loop read load at a fixed rate: how latency looks at a given share
//! of the maximum throughput (issue 9: p99 and p99.9 at 80% of it).
//!
//! wrk is a closed loop: each connection sends its next request when the
//! last answer arrived, so its percentiles at full speed are mostly the
//! queue of its own outstanding requests, and a server that stalls is sent
//! less. Here requests fall due on a fixed schedule (one every `1/rate`
//! seconds) whatever the server does:
//!
//! ```text
//! dispatcher ── due time ──► idle connection ── GET ──► answer ── latency = done − due
//!      │ no idle connection
//!      ▼
//!   backlog (FIFO) ── taken by the next connection that frees up
//! ```
//!
//! Latency counts from when a request was **due**, not when it was sent, so
//! requests that waited behind a slow answer are charged for the wait (no
//! coordinated omission). The time from send to answer is kept apart as the
//! service time. Everything runs on one thread: the dispatcher wakes on a
//! timerfd every `tick` (50 µs by default) and hands out every request that
//! fell due meanwhile, and sleeps in the runtime's epoll in between, where
//! answers wake it as they come. It does not spin: on a VM whose vCPUs are
//! throttled once the whole VM uses more than some share of its CPUs, a
//! load tool that burns its core makes the server's core stall too (see
//! `steal_ms`). A request is late by at most about one tick for the tool's
//! own sake, which its latency includes.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::client::Conn;
use crate::procfs::{steal_ticks, ticks_ms, CpuMeter, ProcessCpu};
use crate::stats::{histogram, Summary};
use crate::sys::{async_timerfd, read_timerfd};

/// What to run.
#[derive(Debug, Clone)]
pub struct OpenloopOptions {
    /// Name of the run in the results.
    pub label: String,
    /// What serves, in words, for the report.
    pub server: String,
    /// Server address.
    pub addr: SocketAddr,
    /// Requests per second to offer.
    pub rate: f64,
    /// The maximum rate this one is a share of (for the report; 0 if unknown).
    pub max_rate: f64,
    /// Keep-alive connections (at most this many requests in flight).
    pub connections: usize,
    /// Measured seconds.
    pub secs: f64,
    /// Unmeasured seconds at the same rate before.
    pub warmup_secs: f64,
    /// Posts seeded: ids are `post-0` .. `post-(ids-1)`, drawn uniformly.
    pub ids: u64,
    /// Server processes whose CPU time is measured.
    pub pids: Vec<u32>,
    /// How often the dispatcher wakes to hand out due requests.
    pub tick: Duration,
}

/// What came out.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OpenloopResult {
    /// Name of the run.
    pub label: String,
    /// What served.
    pub server: String,
    /// Connections.
    pub connections: usize,
    /// Requests per second offered.
    pub target_rate: f64,
    /// The maximum rate the target is a share of (0 if not given).
    pub max_rate: f64,
    /// Answers received for requests due in the measured window, per second of it.
    pub achieved_rate: f64,
    /// Requests due in the measured window.
    pub due: u64,
    /// Of those, answered with 200.
    pub ok: u64,
    /// Of those, failed (connection error, other status) or unanswered at the end.
    pub errors: u64,
    /// Of those, due while every connection was busy (they waited in the backlog).
    pub queued: u64,
    /// Measured seconds.
    pub secs: f64,
    /// Latency from when each request was due until its answer was read.
    pub latency: Summary,
    /// Latency from when each request was written until its answer was read.
    pub service: Summary,
    /// Server CPU µs per answered request (0 when no process was measured).
    pub cpu_us_per_req: f64,
    /// CPU seconds by process during the measured window.
    pub cpu: Vec<ProcessCpu>,
    /// Milliseconds the hypervisor took the machine's vCPUs away during the
    /// measured window (steal time, summed over CPUs). A throttled VM stalls
    /// a vCPU for a whole period at a time; each stall shows here.
    #[serde(default)]
    pub steal_ms: Option<f64>,
    /// Measured seconds that, with the second before and the second after
    /// them, had no steal at all: the run as it would be on a machine
    /// whose CPUs are not taken away.
    #[serde(default)]
    pub clean_secs: u64,
    /// Latency of the requests due in those seconds.
    #[serde(default)]
    pub clean_latency: Summary,
}

/// Shared by the dispatcher and the connection tasks (one thread).
struct State {
    /// Due times of requests no connection was free for, oldest first.
    backlog: VecDeque<Instant>,
    /// Connections waiting for work.
    idle: Vec<usize>,
    /// Due times in `[from, to)` are measured.
    from: Instant,
    to: Instant,
    due_hist: hdrhistogram::Histogram<u64>,
    /// The same by measured second (of the due time), to set apart the
    /// seconds the VM stalled in.
    second_hists: Vec<hdrhistogram::Histogram<u64>>,
    service_hist: hdrhistogram::Histogram<u64>,
    /// Measured requests answered with 200.
    ok: u64,
}

impl State {
    fn measured(&self, due: Instant) -> bool {
        due >= self.from && due < self.to
    }
}

/// A small xorshift generator: ids need to be spread, not secret.
struct Ids {
    state: Cell<u64>,
    n: u64,
}

impl Ids {
    fn next(&self) -> u64 {
        let mut x = self.state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.set(x);
        x % self.n
    }
}

/// Runs the load; call inside a tokio runtime (it makes its own `LocalSet`).
pub async fn run(o: &OpenloopOptions) -> Result<OpenloopResult> {
    if !(o.rate > 0.0 && o.rate.is_finite()) || o.connections == 0 || o.ids == 0 {
        bail!("openloop needs a positive rate, connections and ids");
    }
    if o.tick.is_zero() || o.tick > Duration::from_millis(10) {
        bail!(
            "openloop's tick must be between 1 ns and 10 ms, not {:?}",
            o.tick
        );
    }
    tokio::task::LocalSet::new().run_until(run_local(o)).await
}

async fn run_local(o: &OpenloopOptions) -> Result<OpenloopResult> {
    let mut conns = Vec::with_capacity(o.connections);
    for _ in 0..o.connections {
        conns.push(Conn::connect(o.addr).await?);
    }
    let interval = Duration::from_secs_f64(1.0 / o.rate);
    let start = Instant::now() + Duration::from_millis(10);
    let from = start + Duration::from_secs_f64(o.warmup_secs);
    let to = from + Duration::from_secs_f64(o.secs);
    let state = Rc::new(RefCell::new(State {
        backlog: VecDeque::new(),
        idle: (0..o.connections).rev().collect(),
        from,
        to,
        due_hist: histogram(),
        second_hists: (0..o.secs.ceil() as usize).map(|_| histogram()).collect(),
        service_hist: histogram(),
        ok: 0,
    }));
    let ids = Rc::new(Ids {
        // Any odd non-zero seed; vary it per run so runs do not repeat ids.
        state: Cell::new(u64::from(std::process::id()) << 17 | 0x9e37_79b9),
        n: o.ids,
    });

    let mut senders = Vec::with_capacity(o.connections);
    let mut tasks = Vec::with_capacity(o.connections);
    for (i, conn) in conns.into_iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel::<Instant>();
        senders.push(tx);
        tasks.push(tokio::task::spawn_local(connection(
            i,
            conn,
            rx,
            state.clone(),
            ids.clone(),
        )));
    }

    let mut next = start;
    let mut due = 0u64;
    let mut queued = 0u64;
    let mut meter: Option<CpuMeter> = None;
    // Steal ticks read at these times (see `mark_times`).
    let mark_at = mark_times(start, from, o.secs.ceil() as usize);
    let mut marks: Vec<u64> = Vec::with_capacity(mark_at.len());
    let ticker = async_timerfd(o.tick)?;
    while next < to {
        let now = Instant::now();
        while marks.len() < mark_at.len() && now >= mark_at[marks.len()] {
            marks.push(steal_ticks()?);
        }
        if meter.is_none() && now >= from && !o.pids.is_empty() {
            meter = Some(CpuMeter::start(&o.pids)?);
        }
        while next <= now && next < to {
            let mut s = state.borrow_mut();
            let measured = s.measured(next);
            due += u64::from(measured);
            match s.idle.pop() {
                Some(i) => {
                    // A connection task that ended (error) no longer
                    // receives: the request counts as unanswered.
                    let _ = senders[i].send(next);
                }
                None => {
                    queued += u64::from(measured);
                    s.backlog.push_back(next);
                }
            }
            next += interval;
        }
        // Sleep until the next tick; answers that come meanwhile run their tasks.
        let mut ready = ticker.readable().await?;
        match read_timerfd(ready.get_inner()) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => ready.clear_ready(),
            Err(e) => return Err(e.into()),
        }
    }
    // Let what is in flight finish (bounded), then stop the CPU meter: it
    // covers the requests due in the window and their answers, not the
    // idle server while the last steal marks are waited for.
    let grace = Instant::now() + Duration::from_secs(2);
    while Instant::now() < grace {
        // A steal mark due meanwhile is read at its time.
        while marks.len() < mark_at.len() && Instant::now() >= mark_at[marks.len()] {
            marks.push(steal_ticks()?);
        }
        let settled = {
            let s = state.borrow();
            s.backlog.is_empty() && s.idle.len() == o.connections
        };
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let cpu = match &meter {
        Some(m) => m.stop()?.0,
        None => Vec::new(),
    };
    while let Some(&at) = mark_at.get(marks.len()) {
        tokio::time::sleep_until(at.into()).await;
        marks.push(steal_ticks()?);
    }
    drop(senders);
    for t in tasks {
        t.abort();
    }
    let s = state.borrow();
    let (clean_secs, clean_latency) = clean_seconds(&marks, &s.second_hists);
    // Over the measured seconds: from the mark at their start to the one at their end.
    let seconds = s.second_hists.len();
    let steal_ms = ticks_ms(marks[seconds + 1].saturating_sub(marks[1]));
    let answered = s.ok;
    let errors = due.saturating_sub(answered);
    let server_secs: f64 = cpu.iter().map(|p| p.cpu_secs).sum();
    Ok(OpenloopResult {
        label: o.label.clone(),
        server: o.server.clone(),
        connections: o.connections,
        target_rate: o.rate,
        max_rate: o.max_rate,
        achieved_rate: answered as f64 / o.secs,
        due,
        ok: answered,
        errors,
        queued,
        secs: o.secs,
        latency: Summary::from_nanos(&s.due_hist),
        service: Summary::from_nanos(&s.service_hist),
        cpu_us_per_req: if answered > 0 && !cpu.is_empty() {
            server_secs * 1e6 / answered as f64
        } else {
            0.0
        },
        cpu,
        steal_ms: Some(steal_ms),
        clean_secs,
        clean_latency,
    })
}

/// When to read the steal counter for a window of `seconds` measured
/// seconds from `from`: a second before it (or as much of the warm-up as
/// there is, from `start`), then at the start of each second, then at the
/// end of the second after the window. Without a warm-up the second before
/// is empty (read twice at `from`).
fn mark_times(start: Instant, from: Instant, seconds: usize) -> Vec<Instant> {
    let before = from
        .checked_sub(Duration::from_secs(1))
        .unwrap_or(from)
        .max(start);
    let mut at = vec![before];
    at.extend((0..seconds + 2).map(|k| from + Duration::from_secs(k as u64)));
    at
}

/// The measured seconds with no steal in them nor in their neighbours, and
/// the latency of the requests due in them. `marks[k]` is the steal counter
/// at the start of measured second `k - 1` (the first is a second before
/// the window; the last closes the second after the window).
fn clean_seconds(marks: &[u64], seconds: &[hdrhistogram::Histogram<u64>]) -> (u64, Summary) {
    let stolen = |k: usize| match (marks.get(k), marks.get(k + 1)) {
        (Some(a), Some(b)) => b > a,
        // Unknown counts as stolen.
        _ => true,
    };
    let mut merged = histogram();
    let mut clean = 0;
    for (i, h) in seconds.iter().enumerate() {
        // Second i spans marks i+1..i+2; its neighbours i..i+1 and i+2..i+3.
        if !(stolen(i) || stolen(i + 1) || stolen(i + 2)) {
            clean += 1;
            let _ = merged.add(h);
        }
    }
    (clean, Summary::from_nanos(&merged))
}

/// One keep-alive connection: takes due times (from the dispatcher, or the
/// backlog when it frees up), sends a GET for each and records its latency.
async fn connection(
    index: usize,
    mut conn: Conn,
    mut rx: mpsc::UnboundedReceiver<Instant>,
    state: Rc<RefCell<State>>,
    ids: Rc<Ids>,
) {
    let mut req = Vec::with_capacity(128);
    let mut job = rx.recv().await;
    while let Some(due) = job {
        req.clear();
        req.extend_from_slice(b"GET /post?id=post-");
        req.extend_from_slice(ids.next().to_string().as_bytes());
        req.extend_from_slice(b" HTTP/1.1\r\nHost: bench\r\n\r\n");
        let sent = Instant::now();
        let answer = conn.exchange(&req, false).await;
        let done = Instant::now();
        let failed = {
            let mut s = state.borrow_mut();
            match &answer {
                Ok(r) => {
                    if r.status == 200 && s.measured(due) {
                        s.ok += 1;
                        let second = (due - s.from).as_secs() as usize;
                        if let Some(h) = s.second_hists.get_mut(second) {
                            let _ = h.record(nanos(done - due));
                        }
                        let _ = s.due_hist.record(nanos(done - due));
                        let _ = s.service_hist.record(nanos(done - sent));
                    }
                    false
                }
                Err(_) => true,
            }
        };
        if failed {
            // The connection is gone: leave the rest to the others.
            return;
        }
        job = {
            let mut s = state.borrow_mut();
            let next = s.backlog.pop_front();
            if next.is_none() {
                s.idle.push(index);
            }
            next
        };
        if job.is_none() {
            job = rx.recv().await;
        }
    }
}

fn nanos(d: Duration) -> u64 {
    (d.as_nanos() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_in_range_and_spread() {
        let ids = Ids {
            state: Cell::new(0x9e37_79b9),
            n: 100,
        };
        let mut seen = [false; 100];
        for _ in 0..10_000 {
            let i = ids.next();
            assert!(i < 100);
            seen[i as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "every id drawn in 10k draws");
    }

    #[test]
    fn steal_is_read_a_second_before_each_second_and_after_the_window() {
        let start = Instant::now();
        let s = Duration::from_secs;
        // Two seconds of warm-up, three measured: reads at 1, 2, 3, 4, 5, 6 s.
        let at: Vec<Duration> = mark_times(start, start + s(2), 3)
            .iter()
            .map(|t| *t - start)
            .collect();
        assert_eq!(at, [s(1), s(2), s(3), s(4), s(5), s(6)]);
        // Half a second of warm-up: the second before is that half.
        let from = start + Duration::from_millis(500);
        let at = mark_times(start, from, 1);
        assert_eq!(at, [start, from, from + s(1), from + s(2)]);
        // None: the second before is empty.
        let at = mark_times(start, start, 1);
        assert_eq!(at, [start, start, start + s(1), start + s(2)]);
    }

    #[test]
    fn seconds_next_to_a_stall_are_not_clean() {
        let h = |v: u64| {
            let mut h = histogram();
            h.record(v).unwrap();
            h
        };
        let seconds: Vec<_> = (1..=5).map(|i| h(i * 1_000)).collect();
        // Steal during second 2 only: seconds 1, 2 and 3 are out.
        let marks = [0, 0, 0, 0, 10, 10, 10, 10];
        let (n, lat) = clean_seconds(&marks, &seconds);
        assert_eq!(n, 2);
        assert_eq!(lat.count, 2);
        assert!((lat.max - 5.0).abs() < 0.01, "{lat:?}");
        // Steal in the second before the window: second 0 is out too.
        let marks = [0, 3, 3, 3, 13, 13, 13, 13];
        assert_eq!(clean_seconds(&marks, &seconds).0, 1);
        // No steal at all: every second; marks missing: none.
        assert_eq!(clean_seconds(&[7; 8], &seconds).0, 5);
        assert_eq!(clean_seconds(&[7; 7], &seconds).0, 4);
        assert_eq!(clean_seconds(&[7; 3], &seconds).0, 0);
    }

    #[test]
    fn bad_options_are_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let o = OpenloopOptions {
            label: "x".into(),
            server: String::new(),
            addr: "127.0.0.1:1".parse().unwrap(),
            rate: 0.0,
            max_rate: 0.0,
            connections: 1,
            secs: 1.0,
            warmup_secs: 0.0,
            ids: 1,
            pids: vec![],
            tick: Duration::from_micros(50),
        };
        let err = rt.block_on(run(&o)).unwrap_err();
        assert!(err.to_string().contains("positive rate"), "{err}");
        let o = OpenloopOptions {
            rate: 10.0,
            tick: Duration::ZERO,
            ..o
        };
        let err = rt.block_on(run(&o)).unwrap_err();
        assert!(err.to_string().contains("tick"), "{err}");
    }
}
