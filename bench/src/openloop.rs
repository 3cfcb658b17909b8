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
//! service time.
//!
//! Everything runs on one thread, on a level-triggered epoll of its own:
//! the dispatcher hands out every request that fell due whenever it wakes,
//! and sleeps in `epoll_pwait2` until an answer comes or the first `tick`
//! (50 µs apart by default, counted from the start) at or after the next
//! due time. It does not spin: on a VM whose vCPUs are throttled once the
//! whole VM uses more than some share of its CPUs, a load tool that burns
//! its core makes the server's core stall too (see `steal_ms`). A request
//! is late by at most about one tick for the tool's own sake, which its
//! latency includes. Under load answers end its sleeps before their
//! timeout, so no timer interrupt fires (a periodic timer, one interrupt
//! every tick, cost a tenth of the tool's CPU on a VM).
//!
//! The tool must cost less per request than the server it loads, or at a
//! high share of the server's maximum it falls behind and its own backlog
//! shows as latency. So a request is one `write`, and an answer one `read`
//! once epoll reported it (level-triggered: no read that finds nothing),
//! with no task to wake, no channel and no buffer cleared per request.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::client::parse_head;
use crate::procfs::{steal_ticks, ticks_ms, CpuMeter, ProcessCpu};
use crate::stats::{histogram, Summary};
use crate::sys::{Epoll, TimerSlack};

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
    /// The dispatcher's tick: sleeping until the next request falls due,
    /// it wakes on the first tick at or after that time, so requests due
    /// close together go out together, each late by less than a tick.
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
    /// Connections made again after the server closed them or they failed
    /// (a request in flight on one counts in `errors`), over the whole run,
    /// warm-up and the wait for the last answers included.
    #[serde(default)]
    pub reconnects: u64,
    /// Connects that failed over the whole run (refused, or not done in
    /// time); each waits longer before the next.
    #[serde(default)]
    pub failed_connects: u64,
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

/// Epoll interests (level-triggered).
const EPOLLIN: u32 = libc::EPOLLIN as u32;
const EPOLLOUT: u32 = libc::EPOLLOUT as u32;

/// The answer to a request may take this much of a connection's buffer
/// before it grows (a post's answer is well under 1 KiB).
const BUF: usize = 16 << 10;
/// The longest answer taken.
const MAX_ANSWER: usize = 1 << 20;

/// The longest wait before making a failing connection again.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A connect not done in this long (its SYNs dropped by a full accept
/// queue, say) has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a connection stands.
enum Link {
    /// Connected: it takes requests.
    Up(TcpStream),
    /// A connect in progress (epoll reports it writable once done), failed
    /// if not done by the deadline.
    Connecting(TcpStream, Instant),
    /// Failed; made again at this time.
    Down(Instant),
}

/// One keep-alive connection.
struct Conn {
    link: Link,
    /// Bytes of the answer read so far are `buf[..end]`.
    buf: Vec<u8>,
    end: usize,
    /// When the request in flight fell due and was written; `None` while idle.
    job: Option<(Instant, Instant)>,
    /// Failures since its last answer: the first is made again at once
    /// (a server closes idle connections), the next ones after a wait
    /// that doubles up to [`MAX_BACKOFF`], so a server that closes every
    /// connection, or is down, does not make the tool spin. A connect that
    /// succeeds does not reset it, an answer does: a server that closes
    /// connections before their first request is tried ever more slowly.
    failures: u32,
}

/// The wait before making a connection again after its `failures`-th
/// failure in a row: none after the first, then 1 ms doubling up to
/// [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    match failures {
        0 | 1 => Duration::ZERO,
        n => (Duration::from_millis(1) * (1u32 << (n - 2).min(10))).min(MAX_BACKOFF),
    }
}

/// Starts a non-blocking connect to `addr` (Nagle off): done, or in
/// progress (`EINPROGRESS`), or refused at once.
fn start_connect(addr: SocketAddr) -> std::io::Result<(TcpStream, bool)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    let done = match socket.connect(&addr.into()) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => false,
        Err(e) => return Err(e),
    };
    Ok((socket.into(), done))
}

/// The whole tool's state: one thread, no tasks.
struct Load {
    addr: SocketAddr,
    conns: Vec<Conn>,
    /// Due times of requests no connection was free for, oldest first.
    backlog: VecDeque<Instant>,
    /// Connections waiting for work, the longest idle first: requests go
    /// round all of them, so none sits idle long enough for the server to
    /// close it.
    idle: VecDeque<usize>,
    /// Connections made again after the server closed them or they failed.
    reconnects: u64,
    /// Connects that failed.
    failed_connects: u64,
    /// No connection needs making again, nor has a connect to time out,
    /// before this (`None`: none at all), so most turns skip the scan.
    retry_at: Option<Instant>,
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
    ids: Ids,
    /// The request being written (reused).
    req: Vec<u8>,
}

impl Load {
    fn measured(&self, due: Instant) -> bool {
        due >= self.from && due < self.to
    }

    /// Hands a request due at `due` to an idle connection, or queues it;
    /// true when it was queued.
    fn dispatch(&mut self, epoll: &Epoll, due: Instant) -> bool {
        match self.idle.pop_front() {
            Some(i) => {
                self.send(epoll, i, due);
                false
            }
            None => {
                self.backlog.push_back(due);
                true
            }
        }
    }

    /// Gives queued requests to idle connections (there are both only
    /// after a connection was made again).
    fn drain_backlog(&mut self, epoll: &Epoll) {
        while !self.backlog.is_empty() && !self.idle.is_empty() {
            let (Some(due), Some(i)) = (self.backlog.pop_front(), self.idle.pop_front()) else {
                break;
            };
            self.send(epoll, i, due);
        }
    }

    /// Writes a GET for a random id on connection `i`. A connection whose
    /// socket does not take the whole request at once has failed: with one
    /// request in flight its send buffer is empty, so only an error (or a
    /// server that stopped reading) leaves the write short.
    fn send(&mut self, epoll: &Epoll, i: usize, due: Instant) {
        write_request(&mut self.req, self.ids.next());
        let c = &mut self.conns[i];
        let Link::Up(stream) = &c.link else {
            return;
        };
        let sent = Instant::now();
        match (&*stream).write(&self.req) {
            Ok(n) if n == self.req.len() => c.job = Some((due, sent)),
            _ => self.fail(epoll, i),
        }
    }

    /// Connection `i` failed or the server closed it: the request in flight
    /// on it, if any, counts as unanswered. It is made again, at once the
    /// first time, then after a wait (see [`Conn::failures`]).
    fn fail(&mut self, epoll: &Epoll, i: usize) {
        self.close(epoll, i);
        self.conns[i].failures += 1;
        let wait = backoff(self.conns[i].failures);
        if wait.is_zero() {
            self.reconnect(epoll, i);
        } else {
            self.down_until(i, Instant::now() + wait);
        }
    }

    /// Closes connection `i`'s socket, if it has one, and takes it off the
    /// idle list (one the server closed while it waited for work is on it).
    /// The caller gives it its next state: made again, or down until a
    /// time (which schedules the wake).
    fn close(&mut self, epoll: &Epoll, i: usize) {
        self.idle.retain(|&j| j != i);
        let c = &mut self.conns[i];
        c.job = None;
        c.end = 0;
        if let Link::Up(old) | Link::Connecting(old, _) = &c.link {
            epoll.remove(old.as_raw_fd());
        }
        c.link = Link::Down(Instant::now());
    }

    /// Connection `i` is down until `at`.
    fn down_until(&mut self, i: usize, at: Instant) {
        self.conns[i].link = Link::Down(at);
        self.wake_for(at);
    }

    fn wake_for(&mut self, at: Instant) {
        self.retry_at = Some(self.retry_at.map_or(at, |t| t.min(at)));
    }

    /// Starts making connection `i` (closed) again; once connected it
    /// waits for work.
    fn reconnect(&mut self, epoll: &Epoll, i: usize) {
        let started = start_connect(self.addr).and_then(|(stream, done)| {
            let interest = if done { EPOLLIN } else { EPOLLOUT };
            epoll.add(stream.as_raw_fd(), interest, i as u64)?;
            Ok((stream, done))
        });
        match started {
            Ok((stream, true)) => self.connected(i, stream),
            Ok((stream, false)) => {
                let deadline = Instant::now() + CONNECT_TIMEOUT;
                self.conns[i].link = Link::Connecting(stream, deadline);
                self.wake_for(deadline);
            }
            Err(_) => self.connect_failed(epoll, i),
        }
    }

    /// A connect of connection `i` failed: it waits longer before the
    /// next (never none: a refused connect fails at once).
    fn connect_failed(&mut self, epoll: &Epoll, i: usize) {
        self.failed_connects += 1;
        self.close(epoll, i);
        let c = &mut self.conns[i];
        c.failures = c.failures.max(1) + 1;
        let at = Instant::now() + backoff(c.failures);
        self.down_until(i, at);
    }

    fn connected(&mut self, i: usize, stream: TcpStream) {
        self.conns[i].link = Link::Up(stream);
        self.reconnects += 1;
        self.idle.push_back(i);
    }

    /// Connection `i`'s connect in progress ended (epoll reported it).
    fn connect_done(&mut self, epoll: &Epoll, i: usize) {
        let Link::Connecting(stream, _) = &self.conns[i].link else {
            return;
        };
        let ok = matches!(stream.take_error(), Ok(None)) && stream.peer_addr().is_ok();
        if !ok || epoll.modify(stream.as_raw_fd(), EPOLLIN, i as u64).is_err() {
            return self.connect_failed(epoll, i);
        }
        let link = std::mem::replace(&mut self.conns[i].link, Link::Down(Instant::now()));
        if let Link::Connecting(stream, _) = link {
            self.connected(i, stream);
        }
    }

    /// Makes again the connections whose wait is over and fails connects
    /// past their deadline; the next time this has something to do.
    fn retry_due(&mut self, epoll: &Epoll, now: Instant) -> Option<Instant> {
        match self.retry_at {
            Some(at) if at <= now => {}
            other => return other,
        }
        self.retry_at = None;
        for i in 0..self.conns.len() {
            match self.conns[i].link {
                Link::Down(at) if at <= now => self.reconnect(epoll, i),
                Link::Down(at) => self.wake_for(at),
                Link::Connecting(_, deadline) if deadline <= now => self.connect_failed(epoll, i),
                Link::Connecting(_, deadline) => self.wake_for(deadline),
                Link::Up(_) => {}
            }
        }
        self.retry_at
    }

    /// Connection `i` is readable: reads what came, and once the answer is
    /// whole records it and gives the connection the oldest queued request
    /// (or makes it idle).
    fn readable(&mut self, epoll: &Epoll, i: usize) {
        let c = &mut self.conns[i];
        let stream = match &c.link {
            Link::Up(stream) => stream,
            Link::Connecting(..) => return self.connect_done(epoll, i),
            Link::Down(_) => return,
        };
        if c.end == c.buf.len() {
            // An answer this long is not a post's: the exchange is broken.
            if c.buf.len() >= MAX_ANSWER {
                return self.fail(epoll, i);
            }
            let len = c.buf.len();
            c.buf.resize(2 * len, 0);
        }
        let end = c.end;
        match (&*stream).read(&mut c.buf[end..]) {
            // Level-triggered: what is left is reported again.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            Ok(0) | Err(_) => return self.fail(epoll, i),
            Ok(n) => c.end += n,
        }
        let head = match parse_head(&c.buf[..c.end]) {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(_) => return self.fail(epoll, i),
        };
        let whole = head.head_len + head.body_len;
        // An answer nobody asked for, or bytes after it, break the exchange.
        let Some((due, sent)) = c.job.filter(|_| c.end <= whole) else {
            return self.fail(epoll, i);
        };
        if c.end < whole {
            return;
        }
        let done = Instant::now();
        c.end = 0;
        c.job = None;
        c.failures = 0;
        if head.status == 200 && self.measured(due) {
            self.ok += 1;
            let second = (due - self.from).as_secs() as usize;
            if let Some(h) = self.second_hists.get_mut(second) {
                let _ = h.record(nanos(done - due));
            }
            let _ = self.due_hist.record(nanos(done - due));
            let _ = self.service_hist.record(nanos(done - sent));
        }
        if head.close {
            // The server closes it after this answer: a new one waits for
            // work once connected (not a failure).
            self.close(epoll, i);
            return self.reconnect(epoll, i);
        }
        match self.backlog.pop_front() {
            Some(next) => self.send(epoll, i, next),
            None => self.idle.push_back(i),
        }
    }

    /// Waits for answers for at most `timeout` and handles what came.
    fn turn(
        &mut self,
        epoll: &Epoll,
        events: &mut [libc::epoll_event],
        timeout: Duration,
    ) -> Result<()> {
        let n = epoll.wait_for(events, timeout)?;
        for e in &events[..n] {
            self.readable(epoll, e.u64 as usize);
        }
        Ok(())
    }

    fn settled(&self) -> bool {
        self.backlog.is_empty() && self.conns.iter().all(|c| c.job.is_none())
    }
}

/// The GET for post `post-<id>`, in `out` (emptied first).
fn write_request(out: &mut Vec<u8>, id: u64) {
    out.clear();
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "GET /post?id=post-{id} HTTP/1.1\r\nHost: bench\r\n\r\n"
    );
}

/// A small xorshift generator: ids need to be spread, not secret.
struct Ids {
    state: u64,
    n: u64,
}

impl Ids {
    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x % self.n
    }
}

/// Runs the load on the calling thread (it blocks for the whole run).
pub fn run(o: &OpenloopOptions) -> Result<OpenloopResult> {
    if !(o.rate > 0.0 && o.rate.is_finite()) || o.connections == 0 || o.ids == 0 {
        bail!("openloop needs a positive rate, connections and ids");
    }
    if o.tick.is_zero() || o.tick > Duration::from_millis(10) {
        bail!(
            "openloop's tick must be between 1 ns and 10 ms, not {:?}",
            o.tick
        );
    }
    let epoll = Epoll::new()?;
    let mut conns = Vec::with_capacity(o.connections);
    for i in 0..o.connections {
        // Before the run, a connect may block.
        let stream =
            TcpStream::connect(o.addr).with_context(|| format!("connect to {}", o.addr))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        epoll.add(stream.as_raw_fd(), EPOLLIN, i as u64)?;
        conns.push(Conn {
            link: Link::Up(stream),
            buf: vec![0; BUF],
            end: 0,
            job: None,
            failures: 0,
        });
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; o.connections];
    // Sleeps end when asked, not up to 50 µs later (the default slack).
    let _slack = TimerSlack::set(1).context("timer slack")?;

    let interval = Duration::from_secs_f64(1.0 / o.rate);
    let start = Instant::now() + Duration::from_millis(10);
    let from = start + Duration::from_secs_f64(o.warmup_secs);
    let to = from + Duration::from_secs_f64(o.secs);
    let mut load = Load {
        addr: o.addr,
        conns,
        backlog: VecDeque::new(),
        idle: (0..o.connections).collect(),
        reconnects: 0,
        failed_connects: 0,
        retry_at: None,
        from,
        to,
        due_hist: histogram(),
        second_hists: (0..o.secs.ceil() as usize).map(|_| histogram()).collect(),
        service_hist: histogram(),
        ok: 0,
        // Any odd non-zero seed; vary it per run so runs do not repeat ids.
        ids: Ids {
            state: u64::from(std::process::id()) << 17 | 0x9e37_79b9,
            n: o.ids,
        },
        req: Vec::with_capacity(128),
    };

    let mut next = start;
    let mut due = 0u64;
    let mut queued = 0u64;
    let mut meter: Option<CpuMeter> = None;
    // Steal ticks read at these times (see `mark_times`).
    let mark_at = mark_times(start, from, o.secs.ceil() as usize);
    let mut marks: Vec<u64> = Vec::with_capacity(mark_at.len());
    while next < to {
        let now = Instant::now();
        while marks.len() < mark_at.len() && now >= mark_at[marks.len()] {
            marks.push(steal_ticks()?);
        }
        if meter.is_none() && now >= from && !o.pids.is_empty() {
            meter = Some(CpuMeter::start(&o.pids)?);
        }
        load.drain_backlog(&epoll);
        while next <= now && next < to {
            let measured = load.measured(next);
            due += u64::from(measured);
            if load.dispatch(&epoll, next) {
                queued += u64::from(measured);
            }
            next += interval;
        }
        // After the sends: one that failed may have set a retry.
        let retry = load.retry_due(&epoll, Instant::now());
        // Sleep until the tick at or after the next request's due time, or
        // until an answer comes; a steal mark or a connection to make again
        // may need an earlier wake.
        let mut wake = on_tick(start, o.tick, next);
        for t in [mark_at.get(marks.len()).copied(), retry]
            .into_iter()
            .flatten()
        {
            wake = wake.min(t);
        }
        load.turn(
            &epoll,
            &mut events,
            wake.saturating_duration_since(Instant::now()),
        )?;
    }
    // Let what is in flight finish (bounded), then stop the CPU meter: it
    // covers the requests due in the window and their answers, not the
    // idle server while the last steal marks are waited for.
    let grace = Instant::now() + Duration::from_secs(2);
    while Instant::now() < grace && !load.settled() {
        // A steal mark due meanwhile is read at its time.
        while marks.len() < mark_at.len() && Instant::now() >= mark_at[marks.len()] {
            marks.push(steal_ticks()?);
        }
        load.retry_due(&epoll, Instant::now());
        load.drain_backlog(&epoll);
        load.turn(&epoll, &mut events, Duration::from_millis(1))?;
    }
    let cpu = match &meter {
        Some(m) => m.stop()?.0,
        None => Vec::new(),
    };
    while let Some(&at) = mark_at.get(marks.len()) {
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        marks.push(steal_ticks()?);
    }
    let s = load;
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
        reconnects: s.reconnects,
        failed_connects: s.failed_connects,
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

/// The first tick at or after `at`, ticks being `tick` apart from `start`:
/// the dispatcher wakes only on them, so requests due close together go
/// out together, each late by less than a tick, as with a periodic timer,
/// but no timer fires while answers keep the dispatcher awake.
fn on_tick(start: Instant, tick: Duration, at: Instant) -> Instant {
    let since = at.saturating_duration_since(start).as_nanos();
    let tick_ns = tick.as_nanos().max(1);
    let ticks = since.div_ceil(tick_ns);
    start + Duration::from_nanos((ticks * tick_ns).min(u64::MAX as u128) as u64)
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

fn nanos(d: Duration) -> u64 {
    (d.as_nanos() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_in_range_and_spread() {
        let mut ids = Ids {
            state: 0x9e37_79b9,
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
    fn the_dispatcher_wakes_on_the_first_tick_at_or_after_a_due_time() {
        let start = Instant::now();
        let us = Duration::from_micros;
        let tick = us(50);
        assert_eq!(on_tick(start, tick, start), start);
        assert_eq!(on_tick(start, tick, start + us(1)), start + us(50));
        assert_eq!(on_tick(start, tick, start + us(50)), start + us(50));
        assert_eq!(on_tick(start, tick, start + us(51)), start + us(100));
        // Before the start (not asked for): the start.
        assert_eq!(on_tick(start + us(10), tick, start), start + us(10));
    }

    #[test]
    fn a_failing_connection_waits_longer_each_time_up_to_a_second() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(1), Duration::ZERO, "the first failure: at once");
        assert_eq!(backoff(2), ms(1));
        assert_eq!(backoff(3), ms(2));
        assert_eq!(backoff(11), ms(512));
        assert_eq!(backoff(12), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn requests_are_whole_gets_of_the_post() {
        let mut out = b"left over".to_vec();
        for n in [0, 7, 10, 99_999, u64::MAX] {
            write_request(&mut out, n);
            assert_eq!(
                out,
                format!("GET /post?id=post-{n} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes()
            );
        }
    }

    #[test]
    fn bad_options_are_refused() {
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
        let err = run(&o).unwrap_err();
        assert!(err.to_string().contains("positive rate"), "{err}");
        let o = OpenloopOptions {
            rate: 10.0,
            tick: Duration::ZERO,
            ..o
        };
        let err = run(&o).unwrap_err();
        assert!(err.to_string().contains("tick"), "{err}");
    }
}
