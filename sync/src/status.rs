//! What the sync thread tells the rest of the process: its state, its
//! counters and the propagation-latency histogram.
//!
//! The sync thread is the only writer of every field; readers of the status
//! (`/ready`, `/metrics`) load relaxed atomics, so nothing here ever blocks
//! the thread that keeps the store current. The histogram sits behind a
//! mutex that only the sync thread and a metrics scrape touch.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Milliseconds since the process's time base, never zero (zero means "never").
fn now_mark() -> u64 {
    mark(Instant::now())
}

/// `at` in milliseconds since the process's time base, never zero.
fn mark(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base()).as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Upper bounds of the Prometheus propagation histogram, in seconds.
pub const PROPAGATION_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// Counters of the sync thread; monotonically increasing.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records that changed the store (puts and deletes).
    pub records_applied: AtomicU64,
    /// Records already superseded when they arrived (duplicates, older versions).
    pub records_stale: AtomicU64,
    /// Changes to ids a bounded store does not hold, not admitted.
    pub records_skipped: AtomicU64,
    /// Records that failed to decode, on the channel or in the hash.
    pub malformed_records: AtomicU64,
    /// Times a message was not `last + 1`.
    pub gaps: AtomicU64,
    /// Catch-ups from the change log.
    pub catch_ups: AtomicU64,
    /// Full resyncs (bootstrap included).
    pub full_resyncs: AtomicU64,
    /// Connection losses followed by a new connection attempt.
    pub reconnects: AtomicU64,
    /// Liveness pings answered late or not at all.
    pub ping_timeouts: AtomicU64,
    /// Messages the subscription thread applied itself (in order, with the
    /// sync thread idle) instead of handing them over.
    pub direct_messages: AtomicU64,
}

/// Shared state of one sync thread.
#[derive(Debug)]
pub struct SyncStatus {
    connected: AtomicBool,
    bootstrapped: AtomicBool,
    last_version: AtomicU64,
    head_version: AtomicU64,
    last_contact: AtomicU64,
    last_record_ns: AtomicU64,
    /// Counters, for `/metrics`.
    pub counters: Counters,
    propagation: Mutex<Propagation>,
}

#[derive(Debug)]
struct Propagation {
    hist: Histogram<u64>,
    sum_us: u64,
}

/// A point-in-time copy of the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSnapshot {
    /// Subscribed and with a working command connection.
    pub connected: bool,
    /// A full sync has completed at least once.
    pub bootstrapped: bool,
    /// Highest version applied, in order.
    pub last_version: u64,
    /// Highest version known to exist in Redis.
    pub head_version: u64,
    /// Time since Redis last proved the store current (a message, a pong, a sync).
    pub since_contact: Option<Duration>,
}

impl StatusSnapshot {
    /// Versions known to exist in Redis but not yet applied.
    pub fn versions_behind(&self) -> u64 {
        self.head_version.saturating_sub(self.last_version)
    }
}

impl Default for SyncStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl SyncStatus {
    /// A status for a sync thread that has not connected yet.
    pub fn new() -> Self {
        let _ = base();
        SyncStatus {
            connected: AtomicBool::new(false),
            bootstrapped: AtomicBool::new(false),
            last_version: AtomicU64::new(0),
            head_version: AtomicU64::new(0),
            last_contact: AtomicU64::new(0),
            last_record_ns: AtomicU64::new(0),
            counters: Counters::default(),
            propagation: Mutex::new(Propagation {
                // 1 µs to 1 h with 3 significant digits; values are clamped into range.
                hist: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                    .unwrap_or_else(|_| Histogram::new(3).expect("3 significant digits is valid")),
                sum_us: 0,
            }),
        }
    }

    /// A copy of the state fields.
    pub fn snapshot(&self) -> StatusSnapshot {
        let contact = self.last_contact.load(Ordering::Relaxed);
        StatusSnapshot {
            connected: self.connected.load(Ordering::Relaxed),
            bootstrapped: self.bootstrapped.load(Ordering::Relaxed),
            last_version: self.last_version.load(Ordering::Relaxed),
            head_version: self.head_version.load(Ordering::Relaxed),
            since_contact: (contact != 0)
                .then(|| Duration::from_millis(now_mark().saturating_sub(contact))),
        }
    }

    /// Ready to serve: bootstrapped, and Redis proved the store current within `max_staleness`.
    pub fn is_ready(&self, max_staleness: Duration) -> bool {
        let s = self.snapshot();
        s.bootstrapped && s.since_contact.is_some_and(|d| d <= max_staleness)
    }

    /// Propagation latency percentile in microseconds (`q` in 0..=100), if any was recorded.
    pub fn propagation_percentile_us(&self, q: f64) -> Option<u64> {
        let p = self.propagation.lock().unwrap_or_else(|e| e.into_inner());
        (!p.hist.is_empty()).then(|| p.hist.value_at_percentile(q))
    }

    /// Number of propagation samples recorded.
    pub fn propagation_count(&self) -> u64 {
        let p = self.propagation.lock().unwrap_or_else(|e| e.into_inner());
        p.hist.len()
    }

    pub(crate) fn set_connected(&self, v: bool) {
        self.connected.store(v, Ordering::Relaxed);
    }

    pub(crate) fn set_bootstrapped(&self) {
        self.bootstrapped.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_last_version(&self, v: u64) {
        self.last_version.store(v, Ordering::Relaxed);
        self.head_version.fetch_max(v, Ordering::Relaxed);
    }

    pub(crate) fn saw_version(&self, v: u64) {
        self.head_version.fetch_max(v, Ordering::Relaxed);
    }

    /// After an epoch change versions restart; forget the old head.
    pub(crate) fn reset_versions(&self, head: u64) {
        self.head_version.store(head, Ordering::Relaxed);
        self.last_version.store(0, Ordering::Relaxed);
    }

    /// Redis proved the store current now (a sync-up or catch-up just read it).
    pub(crate) fn touch(&self) {
        self.last_contact.fetch_max(now_mark(), Ordering::Relaxed);
    }

    /// Redis proved the store current as of `at`: the moment the message or
    /// the answer to a ping now being handled was received. A message that
    /// waited in the channel behind a backlog proves no more than that, so
    /// a reader working through a backlog older than its staleness limit is
    /// not ready. (Messages still waiting in the socket or in Redis while
    /// the channel is full count from when they are read.) Contact never
    /// goes back.
    pub(crate) fn touch_at(&self, at: Instant) {
        self.last_contact.fetch_max(mark(at), Ordering::Relaxed);
    }

    pub(crate) fn record_applied(&self, written_at_ns: u64, now_ns: u64) {
        self.last_record_ns.store(now_ns, Ordering::Relaxed);
        let us = now_ns.saturating_sub(written_at_ns) / 1_000;
        let mut p = self.propagation.lock().unwrap_or_else(|e| e.into_inner());
        p.hist.saturating_record(us.max(1));
        p.sum_us = p.sum_us.saturating_add(us);
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends this status in Prometheus text format, names prefixed `heavyread_sync_`.
    pub fn render_prometheus(&self, out: &mut String) {
        let s = self.snapshot();
        let c = &self.counters;
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP heavyread_sync_{name} {help}");
            let _ = writeln!(out, "# TYPE heavyread_sync_{name} gauge");
            let _ = writeln!(out, "heavyread_sync_{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP heavyread_sync_{name}_total {help}");
            let _ = writeln!(out, "# TYPE heavyread_sync_{name}_total counter");
            let _ = writeln!(
                out,
                "heavyread_sync_{name}_total {}",
                v.load(Ordering::Relaxed)
            );
        };
        gauge(
            out,
            "connected",
            "1 when subscribed to Redis with a working command connection.",
            f64::from(u8::from(s.connected)),
        );
        gauge(
            out,
            "bootstrapped",
            "1 once a full sync has completed.",
            f64::from(u8::from(s.bootstrapped)),
        );
        gauge(
            out,
            "last_applied_version",
            "Highest version applied in order.",
            s.last_version as f64,
        );
        gauge(
            out,
            "head_version",
            "Highest version known to exist in Redis.",
            s.head_version as f64,
        );
        gauge(
            out,
            "versions_behind",
            "Versions known in Redis but not applied yet.",
            s.versions_behind() as f64,
        );
        gauge(
            out,
            "seconds_since_contact",
            "Seconds since Redis last proved the store current (message, pong or sync); -1 if never.",
            s.since_contact.map(|d| d.as_secs_f64()).unwrap_or(-1.0),
        );
        let last_ns = self.last_record_ns.load(Ordering::Relaxed);
        gauge(
            out,
            "last_record_timestamp_seconds",
            "Unix time at which the last record was applied; 0 if none.",
            last_ns as f64 / 1e9,
        );
        counter(
            out,
            "records_applied",
            "Records that changed the store.",
            &c.records_applied,
        );
        counter(
            out,
            "records_stale",
            "Records ignored because the store already held that version or a newer one.",
            &c.records_stale,
        );
        counter(
            out,
            "malformed_records",
            "Records that failed to decode (channel or hash).",
            &c.malformed_records,
        );
        counter(
            out,
            "gaps",
            "Messages that were not the next version.",
            &c.gaps,
        );
        counter(
            out,
            "catch_ups",
            "Catch-ups from the change log.",
            &c.catch_ups,
        );
        counter(
            out,
            "full_resyncs",
            "Full resyncs, bootstrap included.",
            &c.full_resyncs,
        );
        counter(
            out,
            "reconnects",
            "Connection losses followed by a reconnect.",
            &c.reconnects,
        );
        counter(
            out,
            "ping_timeouts",
            "Liveness pings on the subscription not answered in time.",
            &c.ping_timeouts,
        );
        counter(
            out,
            "direct_messages",
            "Messages the subscription thread applied itself instead of handing them to the sync thread.",
            &c.direct_messages,
        );

        let p = self.propagation.lock().unwrap_or_else(|e| e.into_inner());
        let name = "heavyread_sync_propagation_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from the writer building a record to this reader applying it."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for le in PROPAGATION_BUCKETS {
            let bound_us = (le * 1e6) as u64;
            let n = if p.hist.is_empty() {
                0
            } else {
                p.hist.count_between(0, bound_us)
            };
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", p.hist.len());
        let _ = writeln!(out, "{name}_sum {}", p.sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {}", p.hist.len());
    }
}
