//! The writer's Prometheus metrics: fixed families of atomic counters,
//! resolved at compile time (no label maps, no locks), rendered as text on
//! `/metrics`.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `heavyread_writer_requests_total` | counter | `route`, `method`, `status` |
//! | `heavyread_writer_request_duration_seconds` | histogram | `route`, `method` |
//! | `heavyread_writer_requests_in_flight` | gauge | |
//! | `heavyread_writer_redis_errors_total` | counter | `kind` (`unavailable`, `timeout`, `other`) |
//! | `heavyread_writer_records_published_total` | counter | `op` (`put`, `delete`) |
//! | `heavyread_writer_published_bytes_total` | counter | |
//! | `heavyread_writer_bulk_lines_total` | counter | `result` (`applied`, `rejected`) |
//! | `heavyread_writer_redis_up` | gauge | |
//! | `heavyread_writer_last_version` | gauge | |
//! | `heavyread_writer_connection_timeouts_total` | counter | `phase` (`header`, `write`) |

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::http::Method;

/// The endpoints, the `route`/`method` labels of the request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /create`
    Create,
    /// `GET /post` (and HEAD)
    Get,
    /// `DELETE /post`
    Delete,
    /// `POST /bulk`
    Bulk,
    /// `GET /health`
    Health,
    /// `GET /ready`
    Ready,
    /// `GET /metrics`
    Metrics,
    /// Anything else (404, 405).
    Other,
}

const ROUTES: [Route; 8] = [
    Route::Create,
    Route::Get,
    Route::Delete,
    Route::Bulk,
    Route::Health,
    Route::Ready,
    Route::Metrics,
    Route::Other,
];

impl Route {
    /// The endpoint a request is for; never allocates.
    pub fn of(method: &Method, path: &str) -> Route {
        let get = *method == Method::GET || *method == Method::HEAD;
        match path {
            "/create" if *method == Method::POST => Route::Create,
            "/post" if get => Route::Get,
            "/post" if *method == Method::DELETE => Route::Delete,
            "/bulk" if *method == Method::POST => Route::Bulk,
            "/health" if get => Route::Health,
            "/ready" if get => Route::Ready,
            "/metrics" if get => Route::Metrics,
            _ => Route::Other,
        }
    }

    fn success(self) -> Option<u16> {
        match self {
            Route::Create => Some(201),
            Route::Other => None,
            _ => Some(200),
        }
    }

    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Route::Create => ("/create", "POST"),
            Route::Get => ("/post", "GET"),
            Route::Delete => ("/post", "DELETE"),
            Route::Bulk => ("/bulk", "POST"),
            Route::Health => ("/health", "GET"),
            Route::Ready => ("/ready", "GET"),
            Route::Metrics => ("/metrics", "GET"),
            Route::Other => ("other", "other"),
        }
    }
}

/// Statuses with their own counter; anything else is counted as `other`.
const STATUSES: [u16; 15] = [
    200, 201, 400, 401, 404, 405, 408, 411, 413, 415, 422, 431, 500, 503, 504,
];
const N_STATUS: usize = STATUSES.len() + 1;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// Which kind of Redis failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisErrorKind {
    /// Unreachable, or the connection dropped.
    Unavailable,
    /// Redis answered with an error.
    Other,
    /// No answer within `--redis-timeout` (the command may still run).
    Timeout,
}

/// How a `/bulk` line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineResult {
    /// Stored and published.
    Applied,
    /// Rejected by validation.
    Rejected,
}

struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        // Buckets are stored non-cumulative and summed at render time.
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }
}

/// All counters of one writer process.
pub struct Metrics {
    requests: [[AtomicU64; N_STATUS]; ROUTES.len()],
    latency: [Histogram; ROUTES.len()],
    in_flight: AtomicI64,
    redis_errors: [AtomicU64; 3],
    published: [AtomicU64; 2],
    published_bytes: AtomicU64,
    bulk_lines: [AtomicU64; 2],
    redis_up: AtomicU64,
    last_version: AtomicU64,
    /// Connections closed by the header timeout, and by the write timeout.
    timeouts: [AtomicU64; 2],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn route_index(r: Route) -> usize {
    ROUTES
        .iter()
        .position(|x| *x == r)
        .unwrap_or(ROUTES.len() - 1)
}

impl Metrics {
    /// All zero.
    pub fn new() -> Self {
        Metrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| Histogram::new()),
            in_flight: AtomicI64::new(0),
            redis_errors: std::array::from_fn(|_| AtomicU64::new(0)),
            published: std::array::from_fn(|_| AtomicU64::new(0)),
            published_bytes: AtomicU64::new(0),
            bulk_lines: std::array::from_fn(|_| AtomicU64::new(0)),
            redis_up: AtomicU64::new(0),
            last_version: AtomicU64::new(0),
            timeouts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// One finished request.
    pub fn request(&self, route: Route, status: u16, elapsed: Duration) {
        let r = route_index(route);
        let s = STATUSES
            .iter()
            .position(|&x| x == status)
            .unwrap_or(STATUSES.len());
        self.requests[r][s].fetch_add(1, Relaxed);
        self.latency[r].observe(elapsed);
    }

    /// A request started; the returned guard counts it as finished when dropped
    /// (also when the client went away and the handler was cancelled).
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self)
    }

    /// A Redis command failed.
    pub fn redis_error(&self, kind: RedisErrorKind) {
        self.redis_errors[kind as usize].fetch_add(1, Relaxed);
    }

    /// Puts Redis acknowledged, with their body bytes.
    pub fn published_puts(&self, n: u64, bytes: u64, last_version: u64) {
        self.published[0].fetch_add(n, Relaxed);
        self.published_bytes.fetch_add(bytes, Relaxed);
        self.last_version.fetch_max(last_version, Relaxed);
    }

    /// The gauge as it stands, to pass to [`Metrics::saw_version`].
    pub fn last_version(&self) -> u64 {
        self.last_version.load(Relaxed)
    }

    /// Redis's global version as just read, with the gauge as it stood
    /// before the read (`before`). A version at or above it raises the
    /// gauge as a write would; one below it means Redis lost its data
    /// (versions restart at 1) and lowers the gauge, unless a write moved
    /// the gauge since `before`: that write's version is the newer news,
    /// and the next read settles it. So the gauge never goes back over
    /// writes that completed during the read.
    pub fn saw_version(&self, before: u64, version: u64) {
        if version >= before {
            self.last_version.fetch_max(version, Relaxed);
        } else {
            let _ = self
                .last_version
                .compare_exchange(before, version, Relaxed, Relaxed);
        }
    }

    /// A connection closed by a timeout: its next head did not arrive in
    /// time, idle keep-alive connections included (`write` false), or its
    /// client took no answer bytes (`write` true).
    pub fn connection_timeout(&self, write: bool) {
        self.timeouts[usize::from(write)].fetch_add(1, Relaxed);
    }

    /// A delete Redis acknowledged.
    pub fn published_delete(&self, version: u64) {
        self.published[1].fetch_add(1, Relaxed);
        self.last_version.fetch_max(version, Relaxed);
    }

    /// `/bulk` lines by outcome.
    pub fn bulk_lines(&self, result: LineResult, n: u64) {
        self.bulk_lines[result as usize].fetch_add(n, Relaxed);
    }

    /// Whether the last background check found Redis up with the library loaded.
    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.store(u64::from(up), Relaxed);
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 << 10);
        // Writing into a String cannot fail.
        let _ = self.render_into(&mut out);
        out
    }

    fn render_into(&self, o: &mut String) -> std::fmt::Result {
        family(
            o,
            "heavyread_writer_requests_total",
            "counter",
            "HTTP requests answered, by route, method and status.",
        )?;
        for (ri, route) in ROUTES.iter().enumerate() {
            let (path, method) = route.labels();
            for (si, c) in self.requests[ri].iter().enumerate() {
                let n = c.load(Relaxed);
                // Every route shows its success status, even at zero, so rates start at once.
                let success = STATUSES.get(si).copied() == route.success();
                if n == 0 && !success {
                    continue;
                }
                let status = STATUSES
                    .get(si)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "other".into());
                writeln!(o, "heavyread_writer_requests_total{{route=\"{path}\",method=\"{method}\",status=\"{status}\"}} {n}")?;
            }
        }

        let name = "heavyread_writer_request_duration_seconds";
        family(
            o,
            name,
            "histogram",
            "Time from request to response, by route and method.",
        )?;
        for (ri, route) in ROUTES.iter().enumerate() {
            let (path, method) = route.labels();
            let h = &self.latency[ri];
            let count = h.count.load(Relaxed);
            let mut cumulative = 0;
            for (b, c) in BUCKETS.iter().zip(&h.buckets) {
                cumulative += c.load(Relaxed);
                writeln!(
                    o,
                    "{name}_bucket{{route=\"{path}\",method=\"{method}\",le=\"{b}\"}} {cumulative}"
                )?;
            }
            // Read the count last so +Inf is never below a bucket (observations race with render).
            let count = count.max(cumulative);
            writeln!(
                o,
                "{name}_bucket{{route=\"{path}\",method=\"{method}\",le=\"+Inf\"}} {count}"
            )?;
            let sum = h.sum_ns.load(Relaxed) as f64 / 1e9;
            writeln!(
                o,
                "{name}_sum{{route=\"{path}\",method=\"{method}\"}} {sum}"
            )?;
            writeln!(
                o,
                "{name}_count{{route=\"{path}\",method=\"{method}\"}} {count}"
            )?;
        }

        family(
            o,
            "heavyread_writer_requests_in_flight",
            "gauge",
            "Requests being handled now.",
        )?;
        writeln!(
            o,
            "heavyread_writer_requests_in_flight {}",
            self.in_flight.load(Relaxed).max(0)
        )?;

        family(o, "heavyread_writer_redis_errors_total", "counter", "Redis commands that failed, by kind (unavailable: unreachable or the connection dropped; timeout: no answer within --redis-timeout, the command may still run; other: Redis answered an error).")?;
        for (i, kind) in ["unavailable", "other", "timeout"].iter().enumerate() {
            writeln!(
                o,
                "heavyread_writer_redis_errors_total{{kind=\"{kind}\"}} {}",
                self.redis_errors[i].load(Relaxed)
            )?;
        }

        family(
            o,
            "heavyread_writer_records_published_total",
            "counter",
            "Changes Redis applied and published, by op.",
        )?;
        for (i, op) in ["put", "delete"].iter().enumerate() {
            writeln!(
                o,
                "heavyread_writer_records_published_total{{op=\"{op}\"}} {}",
                self.published[i].load(Relaxed)
            )?;
        }

        family(
            o,
            "heavyread_writer_published_bytes_total",
            "counter",
            "Body bytes of the puts Redis applied.",
        )?;
        writeln!(
            o,
            "heavyread_writer_published_bytes_total {}",
            self.published_bytes.load(Relaxed)
        )?;

        family(
            o,
            "heavyread_writer_bulk_lines_total",
            "counter",
            "Lines of /bulk requests, by result.",
        )?;
        for (i, r) in ["applied", "rejected"].iter().enumerate() {
            writeln!(
                o,
                "heavyread_writer_bulk_lines_total{{result=\"{r}\"}} {}",
                self.bulk_lines[i].load(Relaxed)
            )?;
        }

        family(
            o,
            "heavyread_writer_redis_up",
            "gauge",
            "1 when the last check reached Redis with the function library loaded.",
        )?;
        writeln!(
            o,
            "heavyread_writer_redis_up {}",
            self.redis_up.load(Relaxed)
        )?;

        family(
            o,
            "heavyread_writer_last_version",
            "gauge",
            "Global version in Redis as this writer last saw it: the highest its writes got, and read from Redis every second.",
        )?;
        writeln!(
            o,
            "heavyread_writer_last_version {}",
            self.last_version.load(Relaxed)
        )?;

        family(
            o,
            "heavyread_writer_connection_timeouts_total",
            "counter",
            "Connections closed because a request head did not arrive within the header timeout, idle keep-alive connections included (header), or the client took no answer bytes for the write timeout (write).",
        )?;
        for (phase, c) in ["header", "write"].iter().zip(&self.timeouts) {
            writeln!(
                o,
                "heavyread_writer_connection_timeouts_total{{phase=\"{phase}\"}} {}",
                c.load(Relaxed)
            )?;
        }
        Ok(())
    }
}

fn family(o: &mut String, name: &str, kind: &str, help: &str) -> std::fmt::Result {
    writeln!(o, "# HELP {name} {help}")?;
    writeln!(o, "# TYPE {name} {kind}")
}

/// Counts a request as in flight until dropped.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_method_and_path() {
        assert_eq!(Route::of(&Method::POST, "/create"), Route::Create);
        assert_eq!(Route::of(&Method::GET, "/create"), Route::Other);
        assert_eq!(Route::of(&Method::HEAD, "/post"), Route::Get);
        assert_eq!(Route::of(&Method::DELETE, "/post"), Route::Delete);
        assert_eq!(Route::of(&Method::GET, "/nope"), Route::Other);
    }

    #[test]
    fn histogram_is_cumulative_and_counts_everything() {
        let m = Metrics::new();
        m.request(Route::Create, 201, Duration::from_micros(50));
        m.request(Route::Create, 201, Duration::from_millis(3));
        m.request(Route::Create, 999, Duration::from_secs(60));
        let text = m.render();
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("{needle} not in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        let b =
            "heavyread_writer_request_duration_seconds_bucket{route=\"/create\",method=\"POST\"";
        assert_eq!(line(&format!("{b},le=\"0.0001\"}}")), "1");
        assert_eq!(line(&format!("{b},le=\"0.005\"}}")), "2");
        assert_eq!(line(&format!("{b},le=\"10\"}}")), "2");
        assert_eq!(line(&format!("{b},le=\"+Inf\"}}")), "3");
        assert_eq!(
            line("heavyread_writer_requests_total{route=\"/create\",method=\"POST\",status=\"other\"}"),
            "1"
        );
        assert_eq!(
            line(
                "heavyread_writer_requests_total{route=\"/create\",method=\"POST\",status=\"201\"}"
            ),
            "2"
        );
    }

    #[test]
    fn in_flight_guard_decrements() {
        let m = Metrics::new();
        {
            let _g = m.in_flight();
            assert!(m
                .render()
                .contains("heavyread_writer_requests_in_flight 1\n"));
        }
        assert!(m
            .render()
            .contains("heavyread_writer_requests_in_flight 0\n"));
    }
}
