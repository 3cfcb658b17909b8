//! The whole system as processes — a redis-server, the writer, readers —
//! with the traffic running through it, the marker write that times
//! convergence after a fault, and the final checks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use heavyread_sync::record::{Op, RecordRef};
use heavyread_sync::testing::RedisServer;

use crate::http::{Client, HttpError};
use crate::ledger::{Event, Outcome, State};
use crate::netns::NetNs;
use crate::process::{self, LogStream, Proc};
use crate::workload::{self, Shared, Traffic, TrafficPlan, TrafficReport};
use crate::{bins, quoted, seq_of};

/// The posts' hash and the version counter of the default prefix.
const POSTS: &str = "{hr}:posts";
const VERSION: &str = "{hr}:version";

/// How a stack is built.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Redis's AOF (with `appendfsync always`, so an acknowledged write is on disk).
    pub appendonly: bool,
    /// More `redis-server` arguments.
    pub redis_args: Vec<String>,
    /// Number of readers.
    pub readers: usize,
    /// Runs the last reader in its own network namespace (see [`crate::netns`]).
    pub netns_last_reader: bool,
    /// More writer environment variables.
    pub writer_env: Vec<(&'static str, String)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            appendonly: false,
            redis_args: Vec::new(),
            readers: 3,
            netns_last_reader: false,
            writer_env: Vec::new(),
        }
    }
}

/// What Redis holds for one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The record's version.
    pub version: u64,
    /// The quoted ETag readers must send.
    pub etag: String,
    /// The body readers must serve.
    pub body: Vec<u8>,
}

/// Redis's data, read in one transaction.
#[derive(Debug, Clone, Default)]
pub struct RedisState {
    /// `{hr}:version`.
    pub version: u64,
    /// `{hr}:posts`, decoded.
    pub posts: BTreeMap<String, Stored>,
    /// Hash entries that are not valid records (must stay empty).
    pub malformed: Vec<String>,
}

/// The marker: one write made right after a fault heals. Every reader
/// serving it means every reader is live again and has applied everything
/// before it.
#[derive(Debug, Clone)]
pub struct Marker {
    /// Its ETag.
    pub etag: String,
    /// When its write was acknowledged.
    pub acked_at: Instant,
}

/// What the final checks measured.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// From the end of the traffic until every reader equalled Redis.
    pub settle: Duration,
    /// The traffic's counts.
    pub traffic: TrafficReport,
    /// Redis's version at the end.
    pub version: u64,
    /// Posts at the end.
    pub posts: usize,
    /// Writes acknowledged and with unknown outcome.
    pub acked: u64,
    /// Writes whose outcome is unknown.
    pub unknown: u64,
    /// Per reader: reconnects, gaps, catch-ups, full resyncs, ping timeouts.
    pub sync_counters: Vec<[u64; 5]>,
}

/// The running system.
#[derive(Debug)]
pub struct Stack {
    /// Scenario name, for messages.
    pub name: String,
    // Field order is drop order: traffic, then processes, then the
    // namespace they may live in, then Redis.
    traffic: Option<Traffic>,
    readers: Vec<Proc>,
    writer: Proc,
    netns: Option<NetNs>,
    /// The redis-server (kill, restart, pause it).
    pub redis: RedisServer,
    /// What the test threads share.
    pub shared: Arc<Shared>,
    opts: StackOptions,
}

/// Reader settings: short PING interval and timeouts, so a fault is noticed
/// within a second or two; one executor and 64 KiB of io buffers each.
fn reader_vars(listen: &str, redis_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("HEAVYREAD_LISTEN", listen.to_owned()),
        ("HEAVYREAD_REDIS_URL", redis_url.to_owned()),
        ("HEAVYREAD_CORES", "1".into()),
        ("HEAVYREAD_IO_MEMORY", "64KiB".into()),
        ("HEAVYREAD_REDIS_PING_INTERVAL", "250ms".into()),
        ("HEAVYREAD_REDIS_PING_TIMEOUT", "1s".into()),
        ("HEAVYREAD_REDIS_COMMAND_TIMEOUT", "2s".into()),
        ("HEAVYREAD_MAX_STALENESS", "3s".into()),
        ("HEAVYREAD_DRAIN_TIMEOUT", "1s".into()),
        ("HEAVYREAD_IDLE_TIMEOUT", "30s".into()),
    ]
}

impl Stack {
    /// Starts Redis, the writer and the readers, and waits until all are ready.
    pub fn start(name: &str, opts: StackOptions) -> Stack {
        let netns = opts.netns_last_reader.then(NetNs::create);
        let mut redis_args: Vec<String> = Vec::new();
        if opts.appendonly {
            redis_args.extend(["--appendfsync".into(), "always".into()]);
        }
        if let Some(ns) = &netns {
            // Also listen where the namespaced reader reaches it; not only on loopback,
            // so protected mode (no password, non-local client) must be off.
            redis_args.extend([
                "--bind".into(),
                "127.0.0.1".into(),
                ns.redis_ip.to_string(),
                "--protected-mode".into(),
                "no".into(),
            ]);
        }
        redis_args.extend(opts.redis_args.iter().cloned());
        let args: Vec<&str> = redis_args.iter().map(String::as_str).collect();
        let redis = RedisServer::start_with(opts.appendonly, &args);

        let writer = spawn_writer(&redis, &opts);
        wait_ready(writer.addr(), "writer");
        let mut readers = Vec::new();
        for i in 0..opts.readers {
            let r = spawn_reader(&redis, netns.as_ref(), &opts, i);
            readers.push(r);
        }
        for r in &readers {
            wait_ready(r.addr(), r.name());
        }
        let addrs: Vec<SocketAddr> = readers.iter().map(Proc::addr).collect();
        let shared = Shared::new(writer.addr(), &addrs);
        Stack {
            name: name.to_owned(),
            traffic: None,
            readers,
            writer,
            netns,
            redis,
            shared,
            opts,
        }
    }

    /// Seeds `n` posts `s0`..`s{n-1}` through one `/bulk`.
    pub fn seed(&self, n: usize) -> Vec<String> {
        let ids: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let mut body = Vec::new();
        let mut seqs = Vec::new();
        for id in &ids {
            let seq = self.shared.next_seq();
            seqs.push(seq);
            body.extend_from_slice(&workload::post_json(id, seq, 100));
            body.push(b'\n');
        }
        let mut c = Client::new(self.writer.addr(), Duration::from_secs(20));
        let sent = Instant::now();
        let r = c
            .request("POST", "/bulk", Some("application/x-ndjson"), &body)
            .unwrap_or_else(|e| panic!("{}: seeding: {e}", self.name));
        let report = r.json().unwrap_or_default();
        assert!(
            r.status == 200 && report["applied"].as_u64() == Some(n as u64),
            "{}: seeding answered {} {}",
            self.name,
            r.status,
            r.text()
        );
        let done = Instant::now();
        for (id, seq) in ids.iter().zip(seqs) {
            self.shared.ledger.record(
                id,
                Event {
                    state: State::Present(seq),
                    outcome: Outcome::Acked,
                    sent,
                    done,
                    etag: None,
                    version: None,
                },
            );
        }
        ids
    }

    /// Starts the writer task and the pollers: `hot_ids` written at
    /// `writes_per_sec`, `cold` ones now and then, all of them read.
    pub fn start_traffic(&mut self, cold: &[String], writes_per_sec: u32) {
        let hot: Vec<String> = (0..100).map(|i| format!("w{i}")).collect();
        let mut poll_ids = hot.clone();
        poll_ids.extend(cold.iter().cloned());
        poll_ids.push("marker".into());
        let plan = TrafficPlan {
            hot_ids: hot,
            cold_ids: cold.to_vec(),
            poll_ids,
            writes_per_sec,
            delete_every: 10,
        };
        self.traffic = Some(Traffic::start(&self.shared, plan));
    }

    /// The running traffic.
    pub fn traffic(&self) -> &Traffic {
        self.traffic.as_ref().expect("traffic started")
    }

    /// Reader `i`'s process.
    pub fn reader(&self, i: usize) -> &Proc {
        &self.readers[i]
    }

    /// The writer's process.
    pub fn writer(&self) -> &Proc {
        &self.writer
    }

    /// The namespace of the last reader, if it has one.
    pub fn netns(&self) -> Option<&NetNs> {
        self.netns.as_ref()
    }

    /// SIGKILLs reader `i` (its poller then gets no answers).
    pub fn kill_reader(&mut self, i: usize) {
        self.readers[i].kill();
    }

    /// Starts a new reader `i` (on a new port) and points its poller at it;
    /// returns once it listens, not once it is ready.
    pub fn start_reader(&mut self, i: usize) {
        self.readers[i].kill();
        let r = spawn_reader(&self.redis, self.netns.as_ref(), &self.opts, i);
        self.shared.set_reader_addr(i, r.addr());
        self.readers[i] = r;
    }

    /// SIGKILLs the writer.
    pub fn kill_writer(&mut self) {
        self.writer.kill();
    }

    /// Starts a new writer (a new port) and waits until it is ready.
    pub fn restart_writer(&mut self) {
        self.writer.kill();
        let w = spawn_writer(&self.redis, &self.opts);
        wait_ready(w.addr(), "writer");
        self.shared.set_writer_addr(w.addr());
        self.writer = w;
    }

    /// Writes the marker through the writer, retrying until it is
    /// acknowledged (the writer may still be reconnecting to Redis).
    pub fn write_marker(&self) -> Marker {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut c = Client::new(self.shared.writer_addr(), Duration::from_secs(3));
        loop {
            c.set_addr(self.shared.writer_addr());
            match workload::put(&mut c, &self.shared, "marker", 16) {
                Ok(r) if r.status == 201 => {
                    let etag = r.header("etag").unwrap_or_default().to_owned();
                    return Marker {
                        etag,
                        acked_at: Instant::now(),
                    };
                }
                r => assert!(
                    Instant::now() < deadline,
                    "{}: the marker write is still refused after 30 s: {}",
                    self.name,
                    match r {
                        Ok(r) => format!("{} {}", r.status, r.text()),
                        Err(e) => e.to_string(),
                    }
                ),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every reader serves the marker; per reader, the time from `since`.
    pub fn wait_marker(&self, marker: &Marker, since: Instant) -> Vec<Duration> {
        let deadline = Instant::now() + Duration::from_secs(45);
        let mut times = vec![None; self.readers.len()];
        let mut clients: Vec<Client> = (0..self.readers.len())
            .map(|i| Client::new(self.shared.reader_addr(i), Duration::from_secs(1)))
            .collect();
        while times.iter().any(Option::is_none) {
            for (i, c) in clients.iter_mut().enumerate() {
                if times[i].is_some() {
                    continue;
                }
                c.set_addr(self.shared.reader_addr(i));
                if let Ok(r) = c.get("/post?id=marker") {
                    if r.status == 200 && r.header("etag") == Some(marker.etag.as_str()) {
                        times[i] = Some(since.elapsed());
                    }
                }
            }
            if Instant::now() > deadline {
                let late: Vec<String> = times
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.is_none())
                    .map(|(i, _)| format!("reader {i}:\n{}", self.readers[i].log_tail(40)))
                    .collect();
                panic!(
                    "{}: readers never served the marker written after the fault:\n{}",
                    self.name,
                    late.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        times.into_iter().map(Option::unwrap_or_default).collect()
    }

    /// Redis's posts and version, read in one transaction.
    pub fn redis_state(&self) -> RedisState {
        let mut con = self.redis.connection();
        let (version, posts): (Option<u64>, HashMap<String, Vec<u8>>) = redis::pipe()
            .atomic()
            .get(VERSION)
            .hgetall(POSTS)
            .query(&mut con)
            .expect("read Redis's state");
        let mut state = RedisState {
            version: version.unwrap_or(0),
            ..RedisState::default()
        };
        for (id, bytes) in posts {
            match RecordRef::decode(&bytes) {
                Ok(r) if r.op == Op::Put && r.id == id => {
                    state.posts.insert(
                        id,
                        Stored {
                            version: r.version,
                            etag: quoted(&r.etag),
                            body: r.body.to_vec(),
                        },
                    );
                }
                other => state.malformed.push(format!("{id}: {other:?}")),
            }
        }
        state
    }

    /// How reader `i` differs from `redis` (empty when equal): every id of
    /// Redis and of the ledger, the applied version, the number of entries.
    pub fn differences(&self, i: usize, redis: &RedisState) -> Vec<String> {
        let mut out = Vec::new();
        let mut c = Client::new(self.shared.reader_addr(i), Duration::from_secs(2));
        let mut ids: BTreeSet<String> = redis.posts.keys().cloned().collect();
        ids.extend(self.shared.ledger.ids());
        for id in &ids {
            let got = match c.get(&format!("/post?id={id}")) {
                Ok(r) => r,
                Err(e) => {
                    out.push(format!("{id}: no answer ({e})"));
                    break;
                }
            };
            let ghost = || {
                format!(
                    "{id}: not in Redis, the reader answers {} (seq {:?}): a ghost",
                    got.status,
                    seq_of(&got.body)
                )
            };
            match redis.posts.get(id) {
                Some(s)
                    if got.status != 200
                        || got.header("etag") != Some(s.etag.as_str())
                        || got.body != s.body =>
                {
                    out.push(format!(
                        "{id}: Redis has version {} {} (seq {:?}), the reader answers {} {:?} (seq {:?})",
                        s.version,
                        s.etag,
                        seq_of(&s.body),
                        got.status,
                        got.header("etag"),
                        seq_of(&got.body)
                    ));
                }
                None if got.status != 404 => out.push(ghost()),
                _ => {}
            }
            if out.len() > 10 {
                break;
            }
        }
        match metrics(&mut c) {
            Ok(m) => {
                let v = |k: &str| m.get(k).copied().unwrap_or(-1.0);
                if v("heavyread_sync_last_applied_version") != redis.version as f64 {
                    out.push(format!(
                        "applied version {} but Redis is at {}",
                        v("heavyread_sync_last_applied_version"),
                        redis.version
                    ));
                }
                if v("heavyread_reader_store_entries") != redis.posts.len() as f64 {
                    out.push(format!(
                        "{} entries but Redis has {}",
                        v("heavyread_reader_store_entries"),
                        redis.posts.len()
                    ));
                }
                if v("heavyread_sync_malformed_records_total") != 0.0 {
                    out.push(format!(
                        "{} malformed records",
                        v("heavyread_sync_malformed_records_total")
                    ));
                }
            }
            Err(e) => out.push(format!("/metrics: {e}")),
        }
        out
    }

    /// Reader `i`'s `/metrics`, by series.
    pub fn reader_metrics(&self, i: usize) -> HashMap<String, f64> {
        let mut c = Client::new(self.shared.reader_addr(i), Duration::from_secs(2));
        metrics(&mut c).unwrap_or_default()
    }

    /// Waits until every reader equals Redis; how long until they did.
    pub fn converge_exactly(&self, within: Duration) -> (Duration, RedisState) {
        let start = Instant::now();
        loop {
            // Timed from the start of the pass that finds them equal: a
            // pass over thousands of ids takes a while itself.
            let pass = start.elapsed();
            let redis = self.redis_state();
            let diffs: Vec<(usize, Vec<String>)> = (0..self.readers.len())
                .map(|i| (i, self.differences(i, &redis)))
                .filter(|(_, d)| !d.is_empty())
                .collect();
            if diffs.is_empty() {
                return (pass, redis);
            }
            if start.elapsed() > within {
                let detail: Vec<String> = diffs
                    .iter()
                    .map(|(i, d)| {
                        format!(
                            "reader {i} ({}):\n  {}\n  last logs:\n{}",
                            self.readers[*i].addr(),
                            d.join("\n  "),
                            self.readers[*i].log_tail(30)
                        )
                    })
                    .collect();
                panic!(
                    "{}: readers still differ from Redis after {within:?}:\n{}",
                    self.name,
                    detail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ids where Redis holds a state no acknowledged write allows.
    pub fn ledger_violations(&self, redis: &RedisState) -> Vec<String> {
        let mut out = Vec::new();
        let ledger = &self.shared.ledger;
        let known: BTreeSet<String> = ledger.ids().into_iter().collect();
        for id in &known {
            let stored = redis.posts.get(id);
            let actual = match stored {
                None => State::Absent,
                Some(s) => match seq_of(&s.body) {
                    Some(seq) => State::Present(seq),
                    None => {
                        out.push(format!("{id}: Redis holds a body without seq"));
                        continue;
                    }
                },
            };
            let allowed = ledger.allowed(id);
            if !allowed.contains(&actual) {
                let allowed: Vec<String> = allowed.iter().map(State::to_string).collect();
                out.push(format!(
                    "{id}: Redis holds {actual}; the acknowledged writes allow only {}",
                    allowed.join(" or ")
                ));
            }
            if let (State::Present(seq), Some(s)) = (actual, stored) {
                if let Some(etag) = ledger.acked_etag(id, seq) {
                    if etag != s.etag {
                        out.push(format!(
                            "{id}: the writer acknowledged ETag {etag}, Redis holds {}",
                            s.etag
                        ));
                    }
                }
            }
        }
        for id in redis.posts.keys() {
            if !known.contains(id) {
                out.push(format!("{id}: in Redis but never written by the test"));
            }
        }
        out.extend(redis.malformed.iter().map(|m| format!("malformed: {m}")));
        out
    }

    /// Stops the traffic, waits until every reader equals Redis, and checks
    /// every invariant; panics with the evidence when one does not hold.
    pub fn verify(&mut self) -> Verdict {
        let traffic = self.traffic.take().map(Traffic::stop).unwrap_or_default();
        for p in self
            .readers
            .iter_mut()
            .chain(std::iter::once(&mut self.writer))
        {
            if let Some(status) = p.exited() {
                panic!(
                    "{}: {} exited on its own ({status}):\n{}",
                    self.name,
                    p.name(),
                    p.log_tail(60)
                );
            }
        }
        let (settle, redis) = self.converge_exactly(Duration::from_secs(30));
        let mut problems = Vec::new();
        problems.extend(self.ledger_violations(&redis));
        problems.extend(traffic.violations.iter().cloned());
        problems.extend(
            traffic
                .unexpected_writes
                .iter()
                .map(|w| format!("writer answered {w}")),
        );
        let acked_version = self.shared.ledger.max_acked_version();
        if redis.version < acked_version {
            problems.push(format!(
                "Redis is at version {} but the writer acknowledged version {acked_version}",
                redis.version
            ));
        }
        assert!(
            problems.is_empty(),
            "{}: invariants broken:\n  {}",
            self.name,
            problems.join("\n  ")
        );
        let totals = self.shared.ledger.totals();
        let sync_counters = (0..self.readers.len())
            .map(|i| {
                let m = self.reader_metrics(i);
                let v = |k: &str| m.get(k).copied().unwrap_or(0.0) as u64;
                [
                    v("heavyread_sync_reconnects_total"),
                    v("heavyread_sync_gaps_total"),
                    v("heavyread_sync_catch_ups_total"),
                    v("heavyread_sync_full_resyncs_total"),
                    v("heavyread_sync_ping_timeouts_total"),
                ]
            })
            .collect();
        Verdict {
            settle,
            traffic,
            version: redis.version,
            posts: redis.posts.len(),
            acked: totals.acked,
            unknown: totals.unknown,
            sync_counters,
        }
    }
}

/// The series of a `/metrics` page (`name{labels}` → value).
fn metrics(c: &mut Client) -> Result<HashMap<String, f64>, HttpError> {
    let r = c.get("/metrics")?;
    Ok(r.text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect())
}

fn spawn_writer(redis: &RedisServer, opts: &StackOptions) -> Proc {
    let mut vars = vec![
        ("HEAVYREAD_WRITER_LISTEN", "127.0.0.1:0".to_owned()),
        ("HEAVYREAD_REDIS_URL", redis.url()),
        ("HEAVYREAD_REDIS_TIMEOUT", "2s".into()),
        ("HEAVYREAD_DRAIN_TIMEOUT", "1s".into()),
        ("HEAVYREAD_LOG_MAX_LEN", "100000".into()),
    ];
    vars.extend(opts.writer_env.iter().cloned());
    let cmd = process::command(bins::writer(), &vars);
    Proc::spawn("writer", cmd, LogStream::Stdout, "listening")
}

fn spawn_reader(redis: &RedisServer, netns: Option<&NetNs>, opts: &StackOptions, i: usize) -> Proc {
    let name = format!("reader {i}");
    match netns {
        Some(ns) if i + 1 == opts.readers => {
            let url = format!("redis://{}:{}", ns.redis_ip, redis.port());
            let listen = format!("{}:0", ns.http_ip);
            let mut cmd = std::process::Command::new("ip");
            cmd.arg("netns")
                .arg("exec")
                .arg(ns.name())
                .arg(bins::reader());
            process::prepare(&mut cmd, &reader_vars(&listen, &url));
            Proc::spawn(&name, cmd, LogStream::Stderr, "reader listening")
        }
        _ => {
            let cmd = process::command(bins::reader(), &reader_vars("127.0.0.1:0", &redis.url()));
            Proc::spawn(&name, cmd, LogStream::Stderr, "reader listening")
        }
    }
}

/// Waits until `GET /ready` answers 200.
fn wait_ready(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut c = Client::new(addr, Duration::from_secs(1));
    loop {
        if let Ok(r) = c.get("/ready") {
            if r.status == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what} at {addr} not ready after 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
