//! One executor: a glommio thread pinned to one CPU, with its own
//! SO_REUSEPORT listener, its connections, its counters and its clock.
//!
//! Four kinds of task run on it:
//! - the accept loop, which enforces the per-core connection cap;
//! - one task per connection ([`crate::connection`]);
//! - the poller's driver, which hands the connections' readiness from the
//!   executor's epoll instance to their tasks ([`crate::poller`]);
//! - the control loop (this executor's main future), which ticks a few
//!   times a second to refresh the cached `Date`, to enforce the header,
//!   idle and write timeouts of every connection, and to notice the stop
//!   flag, after which it drains.
//!
//! Timeouts are deadlines kept in each connection's [`ConnState`] and
//! checked by the tick, not timers per read: arming one is a store into a
//! `Cell`, so the request path allocates nothing for it. An expired
//! connection is woken with `shutdown(2)`, its pending read then returns
//! end-of-file and the task sees why in [`ConnState::expired`]. A deadline
//! that passed while the peer's own end-of-file waited to be read (the
//! executor ran late) is not counted as a timeout: the connection ends as
//! the end-of-file alone would have ended it.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};
use glommio::timer::Timer;
use glommio::{spawn_local, Task};
use tracing::{debug, warn};

use crate::http::{self, Common, Limits, Status};
use crate::metrics::CoreMetrics;
use crate::poller::Poller;
use crate::request_id::Generator;
use crate::server::Shared;
use crate::sys::{self, Shut};

/// Output buffers larger than this are not kept for reuse.
const MAX_POOLED_OUT: usize = 1 << 20;
/// Capacity of all the output buffers kept, together: the 1024 buffers of
/// the initial size fit, while a burst of large answers (many connections
/// writing 1 MiB posts at once) leaves at most this much held afterwards.
const MAX_POOLED_OUT_BYTES: usize = 16 << 20;
/// Initial capacity of an output buffer.
const OUT_CAPACITY: usize = 16 << 10;
/// Buffers kept per pool.
const MAX_POOLED: usize = 1024;
/// How long a connection refused over the cap may take its answer, and
/// then reads what its client still sends before it is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// Refused connections lingering at once per core; beyond it they are
/// closed right after their answer. Their descriptors are outside the cap
/// (the process's file limit allows for them).
pub const MAX_LINGERING_REFUSALS: usize = 256;
/// Bytes a lingering refused connection reads at most.
const REFUSAL_DRAIN_BYTES: usize = 64 << 10;

/// What a connection is doing, for its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the first byte of a request (idle timeout).
    Idle,
    /// A request head has started arriving (header timeout).
    Header,
    /// Writing answers (write timeout).
    Writing,
    /// Closing: draining what the client still sends (bounded, not counted as a timeout).
    Linger,
}

/// A connection as the executor sees it.
#[derive(Debug)]
pub struct ConnState {
    fd: RawFd,
    phase: Cell<Phase>,
    deadline: Cell<Option<Instant>>,
    /// Set by the tick when the deadline passed; the task reads it after its I/O fails.
    pub expired: Cell<Option<Phase>>,
}

impl ConnState {
    /// Enters `phase`, which must end by `deadline`.
    #[inline]
    pub fn arm(&self, phase: Phase, deadline: Instant) {
        self.phase.set(phase);
        self.deadline.set(Some(deadline));
    }
}

/// Live connections of one executor, so the tick and the drain can reach them.
#[derive(Debug, Default)]
struct Registry {
    slots: Vec<Option<Rc<ConnState>>>,
    free: Vec<usize>,
}

/// Removes a connection from the registry when dropped (before its socket closes).
pub struct Registration {
    core: Rc<Core>,
    slot: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut r = self.core.conns.borrow_mut();
        r.slots[self.slot] = None;
        r.free.push(self.slot);
        drop(r);
        self.core.metrics().closed();
    }
}

/// Executor-local state shared by its tasks.
pub struct Core {
    /// Executor index (0-based), also the request-id core number.
    pub index: usize,
    /// What all executors share.
    pub shared: Arc<Shared>,
    /// Request head limits.
    pub limits: Limits,
    /// `Cache-Control` of `/post` answers.
    pub cache_control: Box<[u8]>,
    /// Cached `Date` value, refreshed by the tick.
    pub date: Cell<[u8; 29]>,
    /// Generated `X-Request-Id`s.
    pub ids: Generator,
    /// Set once the stop flag is seen: answers say `Connection: close`.
    pub draining: Cell<bool>,
    /// Reused `/metrics` page.
    pub page: RefCell<String>,
    /// Readiness of this executor's connections.
    pub poller: Poller,
    conns: RefCell<Registry>,
    /// Connections refused over the cap that are still reading what their
    /// client sends before closing.
    lingering_refusals: Cell<usize>,
    in_pool: RefCell<Vec<Box<[u8]>>>,
    out_pool: RefCell<OutPool>,
}

/// Output buffers kept for reuse, bounded in number and in bytes.
#[derive(Debug, Default)]
struct OutPool {
    bufs: Vec<Vec<u8>>,
    /// The capacities of `bufs`, summed.
    bytes: usize,
}

impl OutPool {
    fn take(&mut self) -> Vec<u8> {
        match self.bufs.pop() {
            Some(buf) => {
                self.bytes -= buf.capacity();
                buf
            }
            None => Vec::with_capacity(OUT_CAPACITY),
        }
    }

    /// Keeps `buf` (cleared) if the pool has room for it; frees it otherwise.
    fn put(&mut self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap > MAX_POOLED_OUT
            || self.bufs.len() >= MAX_POOLED
            || self.bytes + cap > MAX_POOLED_OUT_BYTES
        {
            return;
        }
        buf.clear();
        self.bytes += cap;
        self.bufs.push(buf);
    }
}

fn now_date() -> [u8; 29] {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    http::http_date(secs)
}

impl Core {
    /// State for executor `index`; fails only if no epoll instance can be created.
    pub fn new(index: usize, shared: Arc<Shared>) -> std::io::Result<Self> {
        let c = &shared.config;
        Ok(Core {
            index,
            limits: Limits {
                max_request_line: c.max_request_line,
                max_header_bytes: c.max_header_bytes,
                max_headers: c.max_headers,
            },
            cache_control: c.cache_control.as_bytes().into(),
            date: Cell::new(now_date()),
            ids: Generator::new(shared.tag, index),
            draining: Cell::new(false),
            page: RefCell::new(String::new()),
            poller: Poller::new()?,
            conns: RefCell::new(Registry::default()),
            lingering_refusals: Cell::new(0),
            in_pool: RefCell::new(Vec::new()),
            out_pool: RefCell::new(OutPool::default()),
            shared,
        })
    }

    /// This executor's counters.
    #[inline]
    pub fn metrics(&self) -> &CoreMetrics {
        &self.shared.metrics[self.index]
    }

    /// Registers a new connection; it counts as open until the registration drops.
    pub fn register(self: &Rc<Self>, fd: RawFd) -> (Rc<ConnState>, Registration) {
        let state = Rc::new(ConnState {
            fd,
            phase: Cell::new(Phase::Idle),
            deadline: Cell::new(None),
            expired: Cell::new(None),
        });
        let mut r = self.conns.borrow_mut();
        let slot = match r.free.pop() {
            Some(i) => {
                r.slots[i] = Some(Rc::clone(&state));
                i
            }
            None => {
                r.slots.push(Some(Rc::clone(&state)));
                r.slots.len() - 1
            }
        };
        drop(r);
        self.metrics().opened();
        (
            state,
            Registration {
                core: Rc::clone(self),
                slot,
            },
        )
    }

    /// A read buffer of exactly `max_header_bytes`.
    pub fn take_in(&self) -> Box<[u8]> {
        self.in_pool
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0u8; self.limits.max_header_bytes].into_boxed_slice())
    }

    /// Returns a read buffer to the pool.
    pub fn put_in(&self, buf: Box<[u8]>) {
        let mut p = self.in_pool.borrow_mut();
        if p.len() < MAX_POOLED {
            p.push(buf);
        }
    }

    /// An empty output buffer.
    pub fn take_out(&self) -> Vec<u8> {
        self.out_pool.borrow_mut().take()
    }

    /// Returns an output buffer to the pool (cleared; freed when the pool is full).
    pub fn put_out(&self, buf: Vec<u8>) {
        self.out_pool.borrow_mut().put(buf);
    }

    /// What `/ready` answers: `None` when ready, else why not.
    pub fn not_ready_reason(&self) -> Option<&'static [u8]> {
        if self.draining.get() {
            return Some(br#"{"status":"not ready","reason":"draining"}"#);
        }
        let status = &self.shared.status;
        if status.is_ready(self.shared.config.max_staleness) {
            return None;
        }
        Some(if status.snapshot().bootstrapped {
            br#"{"status":"not ready","reason":"stale"}"#
        } else {
            br#"{"status":"not ready","reason":"not bootstrapped"}"#
        })
    }

    /// Checks every connection's deadline; wakes the expired ones.
    fn sweep(&self, now: Instant) {
        let r = self.conns.borrow();
        for c in r.slots.iter().flatten() {
            if c.deadline.get().is_some_and(|d| now >= d) {
                c.deadline.set(None);
                c.expired.set(Some(c.phase.get()));
                let how = if c.phase.get() == Phase::Writing {
                    Shut::Both
                } else {
                    Shut::Read
                };
                sys::shutdown(c.fd, how);
            }
        }
    }

    /// Wakes connections waiting for a request so they see the drain and close.
    fn wake_idle(&self) {
        let r = self.conns.borrow();
        for c in r.slots.iter().flatten() {
            // A lingering connection ends by itself within its short
            // deadline; cutting its reads would reset it.
            if c.phase.get() == Phase::Idle {
                c.deadline.set(None);
                sys::shutdown(c.fd, Shut::Read);
            }
        }
    }

    /// Cuts every remaining connection (drain timeout reached).
    fn cut_all(&self) {
        let r = self.conns.borrow();
        for c in r.slots.iter().flatten() {
            c.deadline.set(None);
            sys::shutdown(c.fd, Shut::Both);
        }
    }

    fn open(&self) -> u64 {
        self.metrics().open_connections()
    }
}

/// How often the control loop ticks: a quarter of the shortest timeout, within 5..=250 ms.
pub fn tick_for(config: &crate::Config) -> Duration {
    let shortest = config
        .header_timeout
        .min(config.idle_timeout)
        .min(config.write_timeout);
    (shortest / 4).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

/// The executor's main future: serve until the stop flag, then drain.
pub async fn run(core: Rc<Core>, listener: TcpListener) {
    let poller = Rc::clone(&core);
    spawn_local(async move { poller.poller.drive().await }).detach();
    let accept = spawn_local(accept_loop(Rc::clone(&core), listener));
    control(core, accept).await;
}

async fn control(core: Rc<Core>, accept: Task<()>) {
    let tick = tick_for(&core.shared.config);
    let mut date = core.date.get();
    while !core.shared.stop.load(Ordering::Relaxed) {
        Timer::new(tick).await;
        let d = now_date();
        if d != date {
            date = d;
            core.date.set(d);
        }
        core.sweep(Instant::now());
    }

    // Drain: no new connections here, answers say close, idle connections go now.
    let _ = accept.cancel().await;
    core.draining.set(true);
    core.wake_idle();
    let deadline = Instant::now() + core.shared.config.drain_timeout;
    debug!(core = core.index, open = core.open(), "draining");
    while core.open() > 0 && Instant::now() < deadline {
        Timer::new(tick.min(Duration::from_millis(10))).await;
        core.date.set(now_date());
        core.sweep(Instant::now());
        core.wake_idle();
    }
    if core.open() > 0 {
        warn!(
            core = core.index,
            open = core.open(),
            "drain timeout: cutting connections"
        );
        core.cut_all();
        let cut_deadline = Instant::now() + Duration::from_millis(200);
        while core.open() > 0 && Instant::now() < cut_deadline {
            Timer::new(Duration::from_millis(5)).await;
        }
    }
}

async fn accept_loop(core: Rc<Core>, listener: TcpListener) {
    let cap = core.shared.config.max_connections_per_core as u64;
    let mut errors = 0u64;
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                if core.open() >= cap {
                    core.metrics().rejected();
                    spawn_local(refuse(Rc::clone(&core), stream)).detach();
                } else {
                    spawn_local(crate::connection::serve(Rc::clone(&core), stream)).detach();
                }
            }
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                errors += 1;
                if errors <= 10 || errors.is_multiple_of(1000) {
                    warn!(core = core.index, error = %e, total = errors, "accept failed");
                }
                Timer::new(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Answers 503 on a connection over the cap, then closes it.
async fn refuse(core: Rc<Core>, mut stream: TcpStream) {
    let id = core.ids.next_id();
    let date = core.date.get();
    let c = Common {
        date: &date,
        request_id: id.as_bytes(),
        keep_alive: false,
        http10: false,
    };
    let mut out = Vec::with_capacity(256);
    http::write_simple(
        &mut out,
        &c,
        Status::ServiceUnavailable,
        http::JSON,
        b"",
        br#"{"error":"too many connections"}"#,
        false,
    );
    let _ = stream.set_write_timeout(Some(REFUSAL_LINGER));
    if stream.write_all(&out).await.is_err() {
        return;
    }
    core.metrics().sent(out.len() as u64);
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    // Closing with the client's request unread would reset the connection,
    // and a client still sending could lose the answer: read and drop what
    // comes for a short while. Bounded in time, and in how many refused
    // connections linger at once (a flood of them is closed at once).
    if core.lingering_refusals.get() >= MAX_LINGERING_REFUSALS {
        return;
    }
    core.lingering_refusals
        .set(core.lingering_refusals.get() + 1);
    let end = Instant::now() + REFUSAL_LINGER;
    let mut scratch = [0u8; 4096];
    let mut drained = 0usize;
    while drained < REFUSAL_DRAIN_BYTES {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match futures_lite::AsyncReadExt::read(&mut stream, &mut scratch).await {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
        // A read that finds data ready completes without yielding: let the
        // executor's other work run between them.
        glommio::yield_if_needed().await;
    }
    core.lingering_refusals
        .set(core.lingering_refusals.get() - 1);
}

/// Binds this executor's listener (SO_REUSEPORT, set by glommio).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_pool_keeps_at_most_its_byte_budget_of_large_buffers() {
        let mut pool = OutPool::default();
        // A burst: 200 connections each built a 1 MiB answer.
        for _ in 0..200 {
            let mut b = pool.take();
            b.resize(MAX_POOLED_OUT, b'x');
            pool.put(b);
        }
        let bursts: Vec<Vec<u8>> = (0..200).map(|_| vec![b'x'; MAX_POOLED_OUT]).collect();
        for b in bursts {
            pool.put(b);
        }
        let held: usize = pool.bufs.iter().map(Vec::capacity).sum();
        assert_eq!(held, pool.bytes);
        assert!(held <= MAX_POOLED_OUT_BYTES, "{held} bytes held");
        assert!(!pool.bufs.is_empty(), "large buffers are still reused");
        // Taking them gives them back cleared, and the count follows.
        while !pool.bufs.is_empty() {
            let b = pool.take();
            assert!(b.is_empty());
        }
        assert_eq!(pool.bytes, 0);
    }

    #[test]
    fn the_output_pool_keeps_its_full_count_of_buffers_of_the_initial_size() {
        let mut pool = OutPool::default();
        let bufs: Vec<Vec<u8>> = (0..MAX_POOLED + 10).map(|_| pool.take()).collect();
        for b in bufs {
            pool.put(b);
        }
        assert_eq!(pool.bufs.len(), MAX_POOLED);
        assert_eq!(pool.bytes, MAX_POOLED * OUT_CAPACITY);
        // Larger than the largest kept: freed, even with room in the pool.
        let mut empty = OutPool::default();
        empty.put(Vec::with_capacity(MAX_POOLED_OUT + 1));
        assert!(empty.bufs.is_empty());
        assert_eq!(empty.bytes, 0);
    }
}
