//! The traffic that runs through every fault: a writer task doing `POST
//! /create` and some `DELETE /post` at a steady rate, recording every answer
//! in the [`Ledger`], and one poller per reader reading posts on a
//! keep-alive connection and checking that no id ever goes back to an
//! older write on that reader.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http::{Client, HttpError, Response};
use crate::ledger::{Event, Ledger, Outcome, State};
use crate::{quoted_etag_of, seq_of};

/// What the test threads share: the ledger, the write counter and where
/// the processes listen now (a restarted process listens elsewhere).
#[derive(Debug)]
pub struct Shared {
    /// Every write and its answer.
    pub ledger: Ledger,
    seq: AtomicU64,
    writer: Mutex<SocketAddr>,
    readers: Vec<Mutex<SocketAddr>>,
}

impl Shared {
    /// Addresses of the writer and of each reader.
    pub fn new(writer: SocketAddr, readers: &[SocketAddr]) -> Arc<Self> {
        Arc::new(Shared {
            ledger: Ledger::new(),
            seq: AtomicU64::new(1),
            writer: Mutex::new(writer),
            readers: readers.iter().map(|a| Mutex::new(*a)).collect(),
        })
    }

    /// A number no other write of this test has.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The writer's address.
    pub fn writer_addr(&self) -> SocketAddr {
        *self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A restarted writer listens at `addr`.
    pub fn set_writer_addr(&self, addr: SocketAddr) {
        *self.writer.lock().unwrap_or_else(|e| e.into_inner()) = addr;
    }

    /// Reader `i`'s address.
    pub fn reader_addr(&self, i: usize) -> SocketAddr {
        *self.readers[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A restarted reader `i` listens at `addr`.
    pub fn set_reader_addr(&self, i: usize, addr: SocketAddr) {
        *self.readers[i].lock().unwrap_or_else(|e| e.into_inner()) = addr;
    }

    /// Number of readers.
    pub fn reader_count(&self) -> usize {
        self.readers.len()
    }
}

/// The `/create` body of write `seq` to `id`, with `pad` bytes of filler.
pub fn post_json(id: &str, seq: u64, pad: usize) -> Vec<u8> {
    let filler: String = (0..pad)
        .map(|i| char::from(b'a' + ((seq as usize + i) % 26) as u8))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "title": format!("post {id}"),
        "content": format!("seq={seq};{filler}"),
        "author": "systest",
    }))
    .expect("a JSON object serializes")
}

/// `POST /create` of a new write to `id`, recorded in the ledger.
/// Returns the writer's answer; a refused connection records nothing (the
/// request was never sent).
pub fn put(
    client: &mut Client,
    shared: &Shared,
    id: &str,
    pad: usize,
) -> Result<Response, HttpError> {
    let seq = shared.next_seq();
    let body = post_json(id, seq, pad);
    let sent = Instant::now();
    let r = client.request("POST", "/create", Some("application/json"), &body);
    let done = Instant::now();
    let mut event = Event {
        state: State::Present(seq),
        outcome: Outcome::Unknown,
        sent,
        done,
        etag: None,
        version: None,
    };
    match &r {
        Ok(resp) if resp.status == 201 => {
            let v = resp.json().unwrap_or_default();
            event.outcome = Outcome::Acked;
            event.etag = v["etag"].as_str().map(str::to_owned);
            event.version = v["version"].as_u64();
        }
        Err(HttpError::Connect(_)) => return r,
        _ => {}
    }
    shared.ledger.record(id, event);
    r
}

/// `DELETE /post?id=` recorded in the ledger (200 and 404 both mean the id
/// is gone).
pub fn delete(client: &mut Client, shared: &Shared, id: &str) -> Result<Response, HttpError> {
    let sent = Instant::now();
    let r = client.request("DELETE", &format!("/post?id={id}"), None, b"");
    let done = Instant::now();
    let mut event = Event {
        state: State::Absent,
        outcome: Outcome::Unknown,
        sent,
        done,
        etag: None,
        version: None,
    };
    match &r {
        Ok(resp) if resp.status == 200 || resp.status == 404 => {
            event.outcome = Outcome::Acked;
            event.version = resp.json().and_then(|v| v["version"].as_u64());
        }
        Err(HttpError::Connect(_)) => return r,
        _ => {}
    }
    shared.ledger.record(id, event);
    r
}

/// What one poller saw.
#[derive(Debug, Default)]
pub struct PollStats {
    /// Answers 200 and 404.
    pub ok: AtomicU64,
    /// Requests without an answer (paused, killed or restarting reader).
    pub errors: AtomicU64,
    /// Any other status.
    pub other: AtomicU64,
    /// Broken invariants: an id back to an older write, an ETag that is not the body's.
    pub violations: Mutex<Vec<String>>,
}

/// What the traffic did, once stopped.
#[derive(Debug, Clone, Default)]
pub struct TrafficReport {
    /// Writer answers by status (0: no answer).
    pub write_statuses: BTreeMap<u16, u64>,
    /// Answers a correct writer never gives to these requests (4xx, 500).
    pub unexpected_writes: Vec<String>,
    /// Reads answered, per reader.
    pub reads_ok: Vec<u64>,
    /// Reads not answered, per reader.
    pub read_errors: Vec<u64>,
    /// Broken read invariants, all readers.
    pub violations: Vec<String>,
}

/// The writer task's answers by status, and the unexpected ones.
type WriterTally = (BTreeMap<u16, u64>, Vec<String>);

/// The running writer task and pollers.
#[derive(Debug)]
pub struct Traffic {
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<WriterTally>>,
    pollers: Vec<JoinHandle<()>>,
    stats: Vec<Arc<PollStats>>,
}

/// Settings of the traffic.
#[derive(Debug, Clone)]
pub struct TrafficPlan {
    /// Ids the writer task writes most.
    pub hot_ids: Vec<String>,
    /// Ids it rewrites now and then (the seeded ones).
    pub cold_ids: Vec<String>,
    /// Ids the pollers read.
    pub poll_ids: Vec<String>,
    /// Writes per second.
    pub writes_per_sec: u32,
    /// One write in this many is a delete.
    pub delete_every: u32,
}

impl Traffic {
    /// Starts the writer task and one poller per reader.
    pub fn start(shared: &Arc<Shared>, plan: TrafficPlan) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let shared = Arc::clone(shared);
            let stop = Arc::clone(&stop);
            let plan = plan.clone();
            std::thread::Builder::new()
                .name("systest-writer".into())
                .spawn(move || write_loop(&shared, &stop, &plan))
                .expect("spawn the writer task")
        };
        let mut pollers = Vec::new();
        let mut stats = Vec::new();
        for i in 0..shared.reader_count() {
            let s = Arc::new(PollStats::default());
            stats.push(Arc::clone(&s));
            let shared = Arc::clone(shared);
            let stop = Arc::clone(&stop);
            let ids = plan.poll_ids.clone();
            pollers.push(
                std::thread::Builder::new()
                    .name(format!("systest-poll-{i}"))
                    .spawn(move || poll_loop(&shared, i, &stop, &ids, &s))
                    .expect("spawn a poller"),
            );
        }
        Traffic {
            stop,
            writer: Some(writer),
            pollers,
            stats,
        }
    }

    /// Reader `i`'s poller counts, live.
    pub fn poll_stats(&self, i: usize) -> &PollStats {
        &self.stats[i]
    }

    /// Stops every thread and collects what they saw.
    pub fn stop(mut self) -> TrafficReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = TrafficReport::default();
        if let Some(w) = self.writer.take() {
            let (statuses, unexpected) = w.join().expect("the writer task panicked");
            report.write_statuses = statuses;
            report.unexpected_writes = unexpected;
        }
        for p in self.pollers.drain(..) {
            p.join().expect("a poller panicked");
        }
        for s in &self.stats {
            report.reads_ok.push(s.ok.load(Ordering::Relaxed));
            report.read_errors.push(s.errors.load(Ordering::Relaxed));
            report.violations.extend(
                s.violations
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .drain(..),
            );
        }
        report
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A small xorshift generator: the choices need no quality, only variety.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock and a salt.
    pub fn new(salt: u64) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng((t ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n.max(1)
    }
}

fn write_loop(shared: &Shared, stop: &AtomicBool, plan: &TrafficPlan) -> WriterTally {
    let mut client = Client::new(shared.writer_addr(), Duration::from_secs(3));
    let mut rng = Rng::new(1);
    let mut statuses = BTreeMap::new();
    let mut unexpected = Vec::new();
    let interval = Duration::from_secs(1) / plan.writes_per_sec.max(1);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        client.set_addr(shared.writer_addr());
        let cold = !plan.cold_ids.is_empty() && rng.below(20) == 0;
        let ids = if cold { &plan.cold_ids } else { &plan.hot_ids };
        let id = &ids[rng.below(ids.len() as u64) as usize];
        let is_delete = rng.below(u64::from(plan.delete_every.max(1))) == 0;
        let r = if is_delete {
            delete(&mut client, shared, id)
        } else {
            put(&mut client, shared, id, 64 + rng.below(256) as usize)
        };
        match r {
            Ok(resp) => {
                *statuses.entry(resp.status).or_insert(0) += 1;
                let fine = matches!(resp.status, 200 | 201 | 404 | 503);
                if !fine && unexpected.len() < 20 {
                    unexpected.push(format!(
                        "{} {id}: {} {}",
                        if is_delete { "DELETE" } else { "POST" },
                        resp.status,
                        resp.text()
                    ));
                }
            }
            Err(e) => {
                *statuses.entry(0).or_insert(0) += 1;
                if matches!(e, HttpError::Connect(_)) {
                    // The writer is down: wait for it rather than spin.
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > Duration::from_secs(1) {
            next = now;
        }
    }
    (statuses, unexpected)
}

fn poll_loop(shared: &Shared, slot: usize, stop: &AtomicBool, ids: &[String], stats: &PollStats) {
    let mut client = Client::new(shared.reader_addr(slot), Duration::from_secs(1));
    let mut newest: HashMap<&str, u64> = HashMap::new();
    let violation = |msg: String| {
        let mut v = stats.violations.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < 50 {
            v.push(msg);
        }
    };
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let id = ids[n % ids.len()].as_str();
        n += 1;
        client.set_addr(shared.reader_addr(slot));
        match client.get(&format!("/post?id={id}")) {
            Ok(resp) if resp.status == 200 => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
                let etag = resp.header("etag").unwrap_or("");
                if etag != quoted_etag_of(&resp.body) {
                    violation(format!(
                        "reader {slot}: {id} served ETag {etag} for a body whose MD5 is {}",
                        quoted_etag_of(&resp.body)
                    ));
                }
                match seq_of(&resp.body) {
                    Some(seq) => {
                        let seen = newest.entry(id).or_insert(seq);
                        if seq < *seen {
                            violation(format!(
                                "reader {slot}: {id} went back from write {} to write {seq}",
                                *seen
                            ));
                        }
                        *seen = (*seen).max(seq);
                    }
                    None => violation(format!(
                        "reader {slot}: {id} served a body without seq: {}",
                        resp.text()
                    )),
                }
            }
            Ok(resp) if resp.status == 404 => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(resp) => {
                // A reader answers a post from memory whatever Redis does:
                // 200 or 404, never anything else.
                stats.other.fetch_add(1, Ordering::Relaxed);
                violation(format!(
                    "reader {slot}: {id} answered {}: {}",
                    resp.status,
                    resp.text()
                ));
            }
            Err(_) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // About a thousand reads a second per reader: enough to catch a
        // regression, little enough for a 2-core machine running several stacks.
        std::thread::sleep(Duration::from_micros(800));
    }
}
