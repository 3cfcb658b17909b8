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
//! service time. The dispatcher spins on one thread (`yield_now` between
//! checks, which also polls the sockets), so the schedule keeps microsecond
//! precision; pin the tool to its own CPU.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::client::Conn;
use crate::procfs::{CpuMeter, ProcessCpu};
use crate::stats::{histogram, Summary};

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
    while next < to {
        let now = Instant::now();
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
        tokio::task::yield_now().await;
    }
    let cpu = match &meter {
        Some(m) => m.stop()?.0,
        None => Vec::new(),
    };
    // Let what is in flight finish (bounded), then stop everything.
    let grace = Instant::now() + Duration::from_secs(2);
    while Instant::now() < grace {
        let settled = {
            let s = state.borrow();
            s.backlog.is_empty() && s.idle.len() == o.connections
        };
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(senders);
    for t in tasks {
        t.abort();
    }
    let s = state.borrow();
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
    })
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
        };
        let err = rt.block_on(run(&o)).unwrap_err();
        assert!(err.to_string().contains("positive rate"), "{err}");
    }
}
