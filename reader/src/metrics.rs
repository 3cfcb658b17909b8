//! Per-core counters, summed when `/metrics` is scraped.
//!
//! Each executor owns one [`CoreMetrics`], aligned to its own cache lines
//! and written only by that executor with plain relaxed load + store (no
//! locked instruction, no line shared with another writer). A scrape, on
//! whichever core receives it, reads every core's block and renders the sums
//! in Prometheus text format, followed by the sync thread's status.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use heavyread_sync::{Filler, Store, SyncStatus};

use crate::http::Status;

/// The `route` label of `heavyread_reader_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/post`.
    Post,
    /// `/health`.
    Health,
    /// `/ready`.
    Ready,
    /// `/metrics`.
    Metrics,
    /// Any other path.
    NotFound,
    /// Refused before routing (bad syntax, limits, method, timeouts). A
    /// connection refused over the cap is counted in
    /// `connections_rejected_total` only.
    Invalid,
}

impl Route {
    /// Every route, in index order.
    pub const ALL: [Route; 6] = [
        Route::Post,
        Route::Health,
        Route::Ready,
        Route::Metrics,
        Route::NotFound,
        Route::Invalid,
    ];

    fn label(self) -> &'static str {
        match self {
            Route::Post => "post",
            Route::Health => "health",
            Route::Ready => "ready",
            Route::Metrics => "metrics",
            Route::NotFound => "not_found",
            Route::Invalid => "invalid",
        }
    }
}

/// Why a connection was closed by the server before the client was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// A request head did not arrive in time.
    Header,
    /// A kept-alive connection had no request for too long.
    Idle,
    /// The client did not take a response in time.
    Write,
}

impl Timeout {
    const ALL: [Timeout; 3] = [Timeout::Header, Timeout::Idle, Timeout::Write];

    fn label(self) -> &'static str {
        match self {
            Timeout::Header => "header",
            Timeout::Idle => "idle",
            Timeout::Write => "write",
        }
    }
}

/// Upper bounds of the request latency histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 19] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const DURATION_BOUNDS_NS: [u64; 19] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

const ROUTES: usize = Route::ALL.len();
const STATUSES: usize = Status::ALL.len();

/// One executor's counters. Only that executor writes them.
#[derive(Debug)]
#[repr(align(128))]
pub struct CoreMetrics {
    requests: [[AtomicU64; STATUSES]; ROUTES],
    /// Non-cumulative bucket counts; cumulated at scrape.
    duration_buckets: [AtomicU64; DURATION_BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_ns: AtomicU64,
    response_bytes: AtomicU64,
    not_modified: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    /// A gauge kept by the owner; only ever read by others.
    open: AtomicU64,
    timeouts: [AtomicU64; 3],
    /// `/post` lookups answered from memory (bounded stores only).
    hits: AtomicU64,
    /// `/post` lookups of ids not in memory (bounded stores only).
    misses: AtomicU64,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        CoreMetrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            duration_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            duration_count: AtomicU64::new(0),
            duration_sum_ns: AtomicU64::new(0),
            response_bytes: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            open: AtomicU64::new(0),
            timeouts: std::array::from_fn(|_| AtomicU64::new(0)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }
}

/// Adds `n`; correct because only the owning core writes (no read-modify-write race).
#[inline]
fn add(a: &AtomicU64, n: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl CoreMetrics {
    /// One answered request.
    #[inline]
    pub fn request(&self, route: Route, status: Status) {
        add(&self.requests[route as usize][status.index()], 1);
        if status == Status::NotModified {
            add(&self.not_modified, 1);
        }
    }

    /// `n` requests whose answers went out `ns` nanoseconds after their head was read.
    #[inline]
    pub fn latency(&self, n: u64, ns: u64) {
        if let Some(i) = DURATION_BOUNDS_NS.iter().position(|&b| ns <= b) {
            add(&self.duration_buckets[i], n);
        }
        add(&self.duration_count, n);
        add(&self.duration_sum_ns, ns.saturating_mul(n));
    }

    /// Bytes written to clients.
    #[inline]
    pub fn sent(&self, bytes: u64) {
        add(&self.response_bytes, bytes);
    }

    /// A connection was accepted and is being served.
    pub fn opened(&self) {
        add(&self.accepted, 1);
        add(&self.open, 1);
    }

    /// A served connection ended.
    pub fn closed(&self) {
        self.open
            .store(get(&self.open).saturating_sub(1), Ordering::Relaxed);
    }

    /// A connection was refused because the core was at its connection cap.
    pub fn rejected(&self) {
        add(&self.rejected, 1);
    }

    /// The server closed a connection on a timeout.
    pub fn timed_out(&self, t: Timeout) {
        add(&self.timeouts[t as usize], 1);
    }

    /// A `/post` lookup of a bounded store found the id in memory.
    #[inline]
    pub fn hit(&self) {
        add(&self.hits, 1);
    }

    /// A `/post` lookup of a bounded store did not find the id in memory.
    #[inline]
    pub fn miss(&self) {
        add(&self.misses, 1);
    }

    /// Currently open connections of this core.
    pub fn open_connections(&self) -> u64 {
        get(&self.open)
    }
}

fn sum(cores: &[CoreMetrics], f: impl Fn(&CoreMetrics) -> &AtomicU64) -> u64 {
    cores
        .iter()
        .map(|c| get(f(c)))
        .fold(0u64, u64::wrapping_add)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// What a scrape reports besides the per-core counters.
#[derive(Debug, Clone, Copy)]
pub struct Scrape<'a> {
    /// Every executor's counters.
    pub cores: &'a [CoreMetrics],
    /// The store served.
    pub store: &'a Store,
    /// The sync thread's status.
    pub status: &'a SyncStatus,
    /// What `/ready` answers now.
    pub ready: bool,
    /// The read-through fills, when the store is bounded.
    pub filler: Option<&'a Filler>,
}

/// Appends the whole `/metrics` page to `out`.
pub fn render(out: &mut String, s: &Scrape<'_>) {
    let cores = s.cores;
    let name = "heavyread_reader_requests_total";
    header(
        out,
        name,
        "counter",
        "Requests answered, by route and status.",
    );
    for route in Route::ALL {
        for status in Status::ALL {
            let n = sum(cores, |c| &c.requests[route as usize][status.index()]);
            let always = route == Route::Post
                && matches!(status, Status::Ok | Status::NotModified | Status::NotFound);
            if n > 0 || always {
                let _ = writeln!(
                    out,
                    "{name}{{route=\"{}\",status=\"{}\"}} {n}",
                    route.label(),
                    status.code()
                );
            }
        }
    }

    let name = "heavyread_reader_request_duration_seconds";
    header(
        out,
        name,
        "histogram",
        "Time from reading a request head to writing its answer (pipelined answers share one write).",
    );
    let mut cumulative = 0u64;
    for (i, le) in DURATION_BUCKETS.iter().enumerate() {
        cumulative = cumulative.wrapping_add(sum(cores, |c| &c.duration_buckets[i]));
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let count = sum(cores, |c| &c.duration_count);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(
        out,
        "{name}_sum {}",
        sum(cores, |c| &c.duration_sum_ns) as f64 / 1e9
    );
    let _ = writeln!(out, "{name}_count {count}");

    let counters: [(&str, &str, u64); 4] = [
        (
            "heavyread_reader_response_bytes_total",
            "Bytes written to clients (heads and bodies).",
            sum(cores, |c| &c.response_bytes),
        ),
        (
            "heavyread_reader_not_modified_total",
            "Answers 304 Not Modified (If-None-Match hits).",
            sum(cores, |c| &c.not_modified),
        ),
        (
            "heavyread_reader_connections_accepted_total",
            "Connections accepted and served.",
            sum(cores, |c| &c.accepted),
        ),
        (
            "heavyread_reader_connections_rejected_total",
            "Connections refused with 503 because their core was at --max-connections-per-core.",
            sum(cores, |c| &c.rejected),
        ),
    ];
    for (name, help, v) in counters {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }

    let name = "heavyread_reader_connection_timeouts_total";
    header(
        out,
        name,
        "counter",
        "Connections closed by the server on a timeout, by phase.",
    );
    for t in Timeout::ALL {
        let _ = writeln!(
            out,
            "{name}{{phase=\"{}\"}} {}",
            t.label(),
            sum(cores, |c| &c.timeouts[t as usize])
        );
    }

    let gauges: [(&str, &str, u64); 5] = [
        (
            "heavyread_reader_open_connections",
            "Connections open now.",
            sum(cores, |c| &c.open),
        ),
        (
            "heavyread_reader_executors",
            "Executors (pinned cores) serving.",
            cores.len() as u64,
        ),
        (
            "heavyread_reader_store_entries",
            "Posts held in memory.",
            s.store.len() as u64,
        ),
        (
            "heavyread_reader_store_bytes",
            "Bytes held by the store (data, keys and per-entry overhead).",
            s.store.bytes(),
        ),
        (
            "heavyread_reader_ready",
            "1 when /ready answers 200 (bootstrapped and not stale).",
            u64::from(s.ready),
        ),
    ];
    for (name, help, v) in gauges {
        header(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {v}");
    }

    let budget = s.store.budget();
    let cache: [(&str, &str, &str, u64); 10] = [
        (
            "heavyread_reader_store_budget_bytes",
            "gauge",
            "The store's byte budget (--max-memory); 0 when every post is held.",
            budget.unwrap_or(0),
        ),
        (
            "heavyread_reader_cache_hits_total",
            "counter",
            "Post lookups answered from memory (counted when --max-memory is set).",
            sum(cores, |c| &c.hits),
        ),
        (
            "heavyread_reader_cache_misses_total",
            "counter",
            "Post lookups of ids not in memory (counted when --max-memory is set).",
            sum(cores, |c| &c.misses),
        ),
        (
            "heavyread_reader_evictions_total",
            "counter",
            "Posts evicted to stay under --max-memory.",
            s.store.evictions(),
        ),
        (
            "heavyread_reader_fills_total",
            "counter",
            "Ids read through from Redis on a miss (found or not).",
            s.filler.map_or(0, |f| get(&f.counters().fills)),
        ),
        (
            "heavyread_reader_fill_errors_total",
            "counter",
            "Misses answered 503: Redis failed or was too slow, or too many fills were in flight.",
            s.filler.map_or(0, |f| get(&f.counters().fill_errors)),
        ),
        (
            "heavyread_reader_fill_reads_total",
            "counter",
            "Round trips to Redis for fills (one HMGET serves many ids).",
            s.filler.map_or(0, |f| get(&f.counters().redis_reads)),
        ),
        (
            "heavyread_reader_fills_coalesced_total",
            "counter",
            "Misses that joined a fill already in flight for the same id.",
            s.filler.map_or(0, |f| get(&f.counters().coalesced)),
        ),
        (
            "heavyread_reader_negative_hits_total",
            "counter",
            "Misses answered 404 because Redis recently had no such id.",
            s.filler.map_or(0, |f| get(&f.counters().negative_hits)),
        ),
        (
            "heavyread_reader_fills_in_flight",
            "gauge",
            "Ids waiting for Redis now.",
            s.filler.map_or(0, |f| f.in_flight() as u64),
        ),
    ];
    for (name, kind, help, v) in cache {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }

    let name = "heavyread_reader_build_info";
    header(
        out,
        name,
        "gauge",
        "Always 1; the labels say which build is running.",
    );
    let _ = writeln!(out, "{name}{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));

    s.status.render_prometheus(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(page: &str, series: &str) -> Option<f64> {
        page.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn core_blocks_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<CoreMetrics>(), 128);
        assert_eq!(std::mem::size_of::<CoreMetrics>() % 128, 0);
    }

    #[test]
    fn sums_cover_every_core() {
        let cores: Vec<CoreMetrics> = (0..3).map(|_| CoreMetrics::default()).collect();
        cores[0].request(Route::Post, Status::Ok);
        cores[2].request(Route::Post, Status::Ok);
        cores[1].request(Route::Post, Status::NotModified);
        cores[1].request(Route::Invalid, Status::HeadersTooLarge);
        cores[0].latency(2, 30_000);
        cores[1].latency(1, 20_000_000_000);
        cores[2].sent(100);
        cores[0].opened();
        cores[0].opened();
        cores[0].closed();
        cores[1].timed_out(Timeout::Idle);
        let (store, _w) = Store::new();
        let status = SyncStatus::new();
        let mut page = String::new();
        render(
            &mut page,
            &Scrape {
                cores: &cores,
                store: &store,
                status: &status,
                ready: false,
                filler: None,
            },
        );
        let v = |s: &str| value(&page, s).unwrap_or_else(|| panic!("{s} missing in\n{page}"));
        assert_eq!(
            v(r#"heavyread_reader_requests_total{route="post",status="200"}"#),
            2.0
        );
        assert_eq!(
            v(r#"heavyread_reader_requests_total{route="post",status="304"}"#),
            1.0
        );
        assert_eq!(
            v(r#"heavyread_reader_requests_total{route="post",status="404"}"#),
            0.0
        );
        assert_eq!(
            v(r#"heavyread_reader_requests_total{route="invalid",status="431"}"#),
            1.0
        );
        assert_eq!(v("heavyread_reader_not_modified_total"), 1.0);
        assert_eq!(
            v(r#"heavyread_reader_request_duration_seconds_bucket{le="0.00001"}"#),
            0.0
        );
        assert_eq!(
            v(r#"heavyread_reader_request_duration_seconds_bucket{le="0.00005"}"#),
            2.0
        );
        assert_eq!(
            v(r#"heavyread_reader_request_duration_seconds_bucket{le="10"}"#),
            2.0
        );
        assert_eq!(
            v(r#"heavyread_reader_request_duration_seconds_bucket{le="+Inf"}"#),
            3.0
        );
        assert_eq!(v("heavyread_reader_request_duration_seconds_count"), 3.0);
        assert_eq!(v("heavyread_reader_response_bytes_total"), 100.0);
        assert_eq!(v("heavyread_reader_open_connections"), 1.0);
        assert_eq!(v("heavyread_reader_connections_accepted_total"), 2.0);
        assert_eq!(
            v(r#"heavyread_reader_connection_timeouts_total{phase="idle"}"#),
            1.0
        );
        assert_eq!(v("heavyread_reader_executors"), 3.0);
        assert_eq!(v("heavyread_reader_ready"), 0.0);
        assert_eq!(v("heavyread_sync_bootstrapped"), 0.0);
        assert!(page.contains("heavyread_reader_build_info{version=\""));
    }
}
