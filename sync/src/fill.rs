//! Read-through fills for a bounded store: a request for an id that is not
//! resident is answered from Redis.
//!
//! ```text
//! executor miss ─► Filler::request(id) ─┬─ id already in flight: wait on the same slot (coalesced)
//!                                       └─ new slot ─► bounded queue ─► fill thread(s)
//!   fill thread: up to `batch` queued ids ─► one HMGET on its own connection (not the pub/sub one)
//!               ─► every waiter of each slot woken with the entry (or "absent", or the error)
//!               ─► the slot handed to the sync thread, which admits the entry into the store
//! ```
//!
//! **Why the sync thread admits, and how a fill never goes back in version**:
//! the store has one writer. A slot stays registered from before its HMGET is
//! sent until the sync thread has handled its result, and while registered
//! the sync thread records in it the highest version of any change it applied
//! or skipped for that id ([`Slot::saw`]). Redis applied every change the sync
//! thread sees before that change reached it, so a change the HMGET did not
//! see has a version above the fill's, and the sync thread drops a fill whose
//! version is below what it saw. A fill that found nothing is remembered as
//! absent (the negative cache) only when no change for the id was seen.
//!
//! **A request joins a fill only when that fill cannot be older than the
//! request**: when no change to the id was seen since the slot was
//! registered (its HMGET then reads at least everything applied so far) and
//! it did not fail. Otherwise the request starts a new slot beside it, even
//! while the old one's result waits for the sync thread, so a post deleted
//! or changed before the request began is never answered from a fill that
//! read it earlier. Every slot of an id keeps learning of changes until the
//! sync thread has handled it.
//!
//! **Bounded everywhere**: at most `max_in_flight` fills wait at once
//! (more get [`FillError::Busy`] at once, never a queue that grows), each
//! HMGET carries at most `batch` ids, the negative cache holds at most
//! `negative_capacity` ids for `negative_ttl`, and the caller bounds its wait
//! (the reader answers 503 when [`FillConfig::timeout`] passes).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tracing::warn;

use crate::record::{Op, RecordRef};
use crate::schema::Keys;
use crate::store::{Applied, Entry, StoreWriter};

/// Settings of the read-through fills.
#[derive(Debug, Clone)]
pub struct FillConfig {
    /// How long a request waits for its fill before it is answered 503.
    pub timeout: Duration,
    /// Fills waiting at once (one per id unless a change made a new one
    /// necessary); more are refused at once.
    pub max_in_flight: usize,
    /// Ids per HMGET.
    pub batch: usize,
    /// Fill threads, each with its own Redis connection.
    pub threads: usize,
    /// How long an id Redis does not have is answered 404 without asking again.
    pub negative_ttl: Duration,
    /// Most ids remembered as absent; past it the oldest half is forgotten.
    pub negative_capacity: usize,
}

impl Default for FillConfig {
    fn default() -> Self {
        FillConfig {
            timeout: Duration::from_millis(500),
            max_in_flight: 4096,
            batch: 64,
            threads: 1,
            negative_ttl: Duration::from_secs(1),
            negative_capacity: 100_000,
        }
    }
}

impl FillConfig {
    /// Checks every field; the message names the setting.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |what: &str| Err(crate::Error::Config(format!("fill {what}")));
        if self.timeout.is_zero() {
            return bad("timeout must be above zero");
        }
        if self.max_in_flight == 0 || self.batch == 0 || self.threads == 0 {
            return bad("queue, batch and threads must be at least 1");
        }
        if self.negative_capacity == 0 {
            return bad("negative cache capacity must be at least 1");
        }
        Ok(())
    }
}

/// Why a fill did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    /// Too many ids already wait for Redis.
    #[error("too many reads from redis in flight")]
    Busy,
    /// Redis did not answer in time (set by the caller's timeout).
    #[error("redis did not answer in time")]
    Timeout,
    /// Redis failed or answered something unusable.
    #[error("redis: {0}")]
    Redis(Arc<str>),
}

/// What a fill found: the entry, `None` when Redis has no such id, or why not.
pub type FillOutcome = Result<Option<Arc<Entry>>, FillError>;

/// Counters of the fills; monotonically increasing.
#[derive(Debug, Default)]
pub struct FillCounters {
    /// Ids read from Redis (found or not).
    pub fills: AtomicU64,
    /// Fills that ended in an error (Redis down, busy, malformed).
    pub fill_errors: AtomicU64,
    /// Round trips to Redis (one HMGET each, for any number of ids).
    pub redis_reads: AtomicU64,
    /// Requests that joined a fill already in flight for the same id.
    pub coalesced: AtomicU64,
    /// Requests answered 404 from the negative cache.
    pub negative_hits: AtomicU64,
    /// Fills the sync thread put into the store.
    pub admitted: AtomicU64,
    /// Fills the sync thread dropped because a newer change had been seen.
    pub superseded: AtomicU64,
}

/// One id being filled, shared by its waiters, a fill thread and the sync thread.
#[derive(Debug)]
pub struct Slot {
    id: Box<str>,
    state: Mutex<SlotState>,
    /// Highest version of a change to `id` the sync thread saw while the slot was registered.
    seen: AtomicU64,
}

#[derive(Debug, Default)]
struct SlotState {
    outcome: Option<FillOutcome>,
    wakers: Vec<Waker>,
}

impl Slot {
    /// The id being filled.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The result, once the fill thread set it.
    pub fn outcome(&self) -> Option<FillOutcome> {
        lock(&self.state).outcome.clone()
    }

    /// True once the fill thread set an error as the result.
    fn failed(&self) -> bool {
        matches!(lock(&self.state).outcome, Some(Err(_)))
    }

    /// Records that the sync thread applied or skipped a change to this id at `version`.
    pub fn saw(&self, version: u64) {
        self.seen.fetch_max(version, Ordering::Relaxed);
    }

    /// The highest version recorded by [`Self::saw`].
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    fn complete(&self, outcome: FillOutcome) {
        let wakers = {
            let mut st = lock(&self.state);
            st.outcome = Some(outcome);
            std::mem::take(&mut st.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }
}

/// Waits for a slot's outcome. Cancel-safe: dropping it leaves the fill to finish.
#[derive(Debug)]
pub struct FillWait {
    slot: Arc<Slot>,
}

impl FillWait {
    /// The id being filled.
    pub fn id(&self) -> &str {
        &self.slot.id
    }
}

impl Future for FillWait {
    type Output = FillOutcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FillOutcome> {
        let mut st = lock(&self.slot.state);
        if let Some(o) = &st.outcome {
            return Poll::Ready(o.clone());
        }
        if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            st.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data
    // (single assignments), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Monotonic milliseconds since the first call.
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    u64::try_from(BASE.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Default)]
struct InFlight {
    slots: HashMap<Box<str>, Vec<Arc<Slot>>>,
    len: usize,
}

#[derive(Debug)]
struct Shared {
    config: FillConfig,
    /// Registered slots per id, oldest first (more than one only when a
    /// change made an older one unfit to join), and their total.
    in_flight: Mutex<InFlight>,
    queue: Sender<Arc<Slot>>,
    /// Id → when it stops being known absent (ms of [`now_ms`]).
    negative: papaya::HashMap<Box<str>, u64>,
    counters: FillCounters,
    stop: AtomicBool,
}

impl Shared {
    /// The shared state and the receiving end of its bounded job queue.
    fn new(config: FillConfig) -> (Arc<Shared>, Receiver<Arc<Slot>>) {
        let (queue, jobs) = crossbeam_channel::bounded(config.max_in_flight);
        let shared = Arc::new(Shared {
            config,
            in_flight: Mutex::new(InFlight::default()),
            queue,
            negative: papaya::HashMap::new(),
            counters: FillCounters::default(),
            stop: AtomicBool::new(false),
        });
        (shared, jobs)
    }
}

/// The executors' handle: start or join fills, consult the negative cache.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Filler {
    shared: Arc<Shared>,
}

/// The sync thread's side: completed slots to admit.
#[derive(Debug)]
pub struct FillLink {
    shared: Arc<Shared>,
    done: Receiver<Arc<Slot>>,
}

/// Stops the fill threads when dropped.
#[derive(Debug)]
pub struct FillThreads {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for FillThreads {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Filler {
    /// A filler with no threads: requests wait in the queue. For tests of
    /// the admission rules.
    #[cfg(test)]
    fn detached(config: FillConfig) -> (Filler, FillLink, Receiver<Arc<Slot>>) {
        let (shared, jobs) = Shared::new(config);
        let (_done_tx, done) = crossbeam_channel::unbounded();
        let link = FillLink {
            shared: Arc::clone(&shared),
            done,
        };
        (Filler { shared }, link, jobs)
    }

    /// Starts `config.threads` fill threads reading `keys.posts` through
    /// `client`, each with `command_timeout` on its connection.
    pub fn spawn(
        config: FillConfig,
        client: redis::Client,
        keys: &Keys,
        command_timeout: Duration,
    ) -> Result<(Filler, FillLink, FillThreads), crate::Error> {
        config.validate()?;
        let (shared, jobs) = Shared::new(config);
        let (done_tx, done) = crossbeam_channel::unbounded();
        let mut threads = Vec::new();
        for i in 0..shared.config.threads {
            let worker = Worker {
                shared: Arc::clone(&shared),
                client: client.clone(),
                posts: keys.posts.clone(),
                timeout: command_timeout,
                jobs: jobs.clone(),
                done: done_tx.clone(),
                con: None,
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("heavyread-fill-{i}"))
                    .spawn(move || worker.run())?,
            );
        }
        let filler = Filler {
            shared: Arc::clone(&shared),
        };
        let link = FillLink {
            shared: Arc::clone(&shared),
            done,
        };
        Ok((filler, link, FillThreads { shared, threads }))
    }

    /// The settings in use.
    pub fn config(&self) -> &FillConfig {
        &self.shared.config
    }

    /// Counters, for `/metrics` and tests.
    pub fn counters(&self) -> &FillCounters {
        &self.shared.counters
    }

    /// Fills not yet handled by the sync thread.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.in_flight).len
    }

    /// Ids currently remembered as absent from Redis.
    pub fn known_absent(&self) -> usize {
        self.shared.negative.len()
    }

    /// True when Redis recently said it has no `id` (the request gets 404
    /// without asking again). Counts the hit.
    pub fn is_known_absent(&self, id: &str) -> bool {
        let neg = &self.shared.negative;
        let guard = neg.guard();
        match neg.get(id, &guard) {
            Some(&until) if until > now_ms() => {
                self.shared
                    .counters
                    .negative_hits
                    .fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Starts a fill of `id`, or joins the one in flight.
    pub fn request(&self, id: &str) -> Result<FillWait, FillError> {
        let sh = &self.shared;
        let mut in_flight = lock(&sh.in_flight);
        // The newest slot is fit to join when nothing changed since it was
        // registered and it did not fail (see the module's doc).
        if let Some(slot) = in_flight.slots.get(id).and_then(|v| v.last()) {
            if slot.seen() == 0 && !slot.failed() {
                sh.counters.coalesced.fetch_add(1, Ordering::Relaxed);
                return Ok(FillWait {
                    slot: Arc::clone(slot),
                });
            }
        }
        if in_flight.len >= sh.config.max_in_flight {
            sh.counters.fill_errors.fetch_add(1, Ordering::Relaxed);
            return Err(FillError::Busy);
        }
        let slot = Arc::new(Slot {
            id: id.into(),
            state: Mutex::new(SlotState::default()),
            seen: AtomicU64::new(0),
        });
        // Registered before the fill thread can send its HMGET: from here on
        // the sync thread records changes to the id in the slot.
        in_flight.add(Arc::clone(&slot));
        match sh.queue.try_send(Arc::clone(&slot)) {
            Ok(()) => Ok(FillWait { slot }),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                in_flight.remove(&slot);
                sh.counters.fill_errors.fetch_add(1, Ordering::Relaxed);
                Err(FillError::Busy)
            }
        }
    }

    /// Counts a fill whose caller gave up waiting.
    pub fn timed_out(&self) {
        self.shared
            .counters
            .fill_errors
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl InFlight {
    fn add(&mut self, slot: Arc<Slot>) {
        self.slots.entry(slot.id.clone()).or_default().push(slot);
        self.len += 1;
    }

    /// Ends `slot`'s registration, if it is still registered.
    fn remove(&mut self, slot: &Slot) {
        let Some(v) = self.slots.get_mut(slot.id()) else {
            return;
        };
        let Some(i) = v.iter().position(|s| std::ptr::eq(Arc::as_ptr(s), slot)) else {
            return;
        };
        v.remove(i);
        self.len -= 1;
        if v.is_empty() {
            self.slots.remove(slot.id());
        }
    }
}

impl FillLink {
    /// A change to `id` at `version` reached the sync thread: every fill of
    /// it not yet handled learns of it, and the id is no longer known absent.
    pub fn saw_change(&self, id: &str, version: u64) {
        if let Some(slots) = lock(&self.shared.in_flight).slots.get(id) {
            for slot in slots {
                slot.saw(version);
            }
        }
        let neg = &self.shared.negative;
        if !neg.is_empty() {
            neg.remove(id, &neg.guard());
        }
    }

    /// A full resync has read its version: every fill registered now is
    /// treated as having seen a change newer than anything it can hold, so
    /// none is admitted.
    /// Such a fill may have read an id before a change the resync will not
    /// report one by one (a delete is absent from the scan, and the
    /// messages of changes at or below the resync's version are dropped as
    /// already covered); its waiters are still answered with it, and the
    /// id's next miss reads Redis again.
    pub fn supersede_all(&self) {
        for slots in lock(&self.shared.in_flight).slots.values() {
            for slot in slots {
                slot.saw(u64::MAX);
            }
        }
    }

    /// Forgets every id known absent (the dataset changed).
    pub fn forget_absent(&self) {
        self.shared.negative.pin().clear();
    }

    /// Completed slots, oldest first, without waiting.
    pub fn completed(&self) -> impl Iterator<Item = Arc<Slot>> + '_ {
        self.done.try_iter()
    }

    /// A receiver that yields completed slots, for `select!`.
    pub fn receiver(&self) -> &Receiver<Arc<Slot>> {
        &self.done
    }

    /// Puts a completed fill into the store unless a newer change to its id
    /// was seen while it was in flight, then ends its registration. Returns
    /// whether the store took it.
    pub fn admit(&self, slot: &Slot, writer: &mut StoreWriter) -> bool {
        match slot.outcome() {
            Some(Ok(Some(entry))) => {
                let admitted = entry.version() >= slot.seen()
                    && writer.admit_entry(slot.id(), &entry) != Applied::Stale;
                self.finish(slot, Some(admitted));
                admitted
            }
            _ => {
                self.finish(slot, None);
                false
            }
        }
    }

    /// Ends a slot's registration after the sync thread handled it; a
    /// fill that found nothing is remembered as absent when no change to
    /// the id was seen meanwhile.
    fn finish(&self, slot: &Slot, admitted: Option<bool>) {
        let sh = &self.shared;
        match admitted {
            Some(true) => {
                sh.counters.admitted.fetch_add(1, Ordering::Relaxed);
            }
            Some(false) => {
                sh.counters.superseded.fetch_add(1, Ordering::Relaxed);
            }
            None => {}
        }
        if matches!(slot.outcome(), Some(Ok(None))) && slot.seen() == 0 {
            let neg = &sh.negative;
            if neg.len() >= sh.config.negative_capacity {
                forget_oldest_half(neg, sh.config.negative_capacity);
            }
            let ttl = u64::try_from(sh.config.negative_ttl.as_millis()).unwrap_or(u64::MAX);
            neg.pin()
                .insert(slot.id.clone(), now_ms().saturating_add(ttl));
        }
        lock(&sh.in_flight).remove(slot);
    }
}

/// Drops expired entries, and if fewer than half of `capacity` went, the
/// older half of the rest (those expiring first).
fn forget_oldest_half(neg: &papaya::HashMap<Box<str>, u64>, capacity: usize) {
    let now = now_ms();
    let m = neg.pin();
    m.retain(|_, &until| until > now);
    if m.len() <= capacity / 2 {
        return;
    }
    let mut untils: Vec<u64> = m.iter().map(|(_, &u)| u).collect();
    let mid = untils.len() / 2;
    untils.select_nth_unstable(mid);
    let cut = untils[mid];
    m.retain(|_, &until| until > cut);
}

struct Worker {
    shared: Arc<Shared>,
    client: redis::Client,
    posts: String,
    timeout: Duration,
    jobs: Receiver<Arc<Slot>>,
    done: Sender<Arc<Slot>>,
    con: Option<redis::Connection>,
}

impl Worker {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(self.shared.config.batch);
        while !self.shared.stop.load(Ordering::Relaxed) {
            match self.jobs.recv_timeout(Duration::from_millis(100)) {
                Ok(slot) => batch.push(slot),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < self.shared.config.batch {
                match self.jobs.try_recv() {
                    Ok(slot) => batch.push(slot),
                    Err(_) => break,
                }
            }
            let outcomes = self.read(&batch);
            for (slot, outcome) in batch.drain(..).zip(outcomes) {
                let c = &self.shared.counters;
                match &outcome {
                    Ok(_) => c.fills.fetch_add(1, Ordering::Relaxed),
                    Err(_) => c.fill_errors.fetch_add(1, Ordering::Relaxed),
                };
                slot.complete(outcome);
                // The sync thread admits the entry and ends the registration.
                let _ = self.done.send(slot);
            }
        }
    }

    /// One HMGET for the batch; on a failure every slot gets the error (its
    /// waiters get 503) and the connection is dropped for the next batch.
    fn read(&mut self, batch: &[Arc<Slot>]) -> Vec<FillOutcome> {
        let ids: Vec<&str> = batch.iter().map(|s| s.id()).collect();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&self.posts).arg(&ids);
        let result = self.connection().and_then(|con| {
            cmd.query::<Vec<Option<Vec<u8>>>>(con)
                .map_err(|e| e.to_string())
        });
        self.shared
            .counters
            .redis_reads
            .fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(values) if values.len() == ids.len() => ids
                .iter()
                .zip(values)
                .map(|(id, v)| decode(id, v))
                .collect(),
            Ok(_) => {
                self.con = None;
                let e: Arc<str> = "HMGET answered a different number of values".into();
                batch
                    .iter()
                    .map(|_| Err(FillError::Redis(e.clone())))
                    .collect()
            }
            Err(e) => {
                self.con = None;
                warn!(error = %e, ids = ids.len(), "read-through fill failed");
                let e: Arc<str> = e.into();
                batch
                    .iter()
                    .map(|_| Err(FillError::Redis(e.clone())))
                    .collect()
            }
        }
    }

    fn connection(&mut self) -> Result<&mut redis::Connection, String> {
        if self.con.is_none() {
            let con = self
                .client
                .get_connection_with_timeout(self.timeout)
                .map_err(|e| e.to_string())?;
            con.set_read_timeout(Some(self.timeout))
                .map_err(|e| e.to_string())?;
            con.set_write_timeout(Some(self.timeout))
                .map_err(|e| e.to_string())?;
            self.con = Some(con);
        }
        self.con.as_mut().ok_or_else(|| "no connection".to_owned())
    }
}

/// The entry for `id` from its hash value.
fn decode(id: &str, value: Option<Vec<u8>>) -> FillOutcome {
    let Some(bytes) = value else {
        return Ok(None);
    };
    match RecordRef::decode(&bytes) {
        Ok(r) if r.op == Op::Put && r.id == id && r.version > 0 => {
            Ok(Some(Arc::new(Entry::from_record(&r))))
        }
        Ok(_) => Err(FillError::Redis("hash record does not match its id".into())),
        Err(e) => Err(FillError::Redis(format!("malformed record: {e}").into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused() {
        assert!(FillConfig::default().validate().is_ok());
        for c in [
            FillConfig {
                timeout: Duration::ZERO,
                ..FillConfig::default()
            },
            FillConfig {
                max_in_flight: 0,
                ..FillConfig::default()
            },
            FillConfig {
                negative_capacity: 0,
                ..FillConfig::default()
            },
        ] {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn a_slot_wakes_every_waiter_with_the_same_outcome() {
        let slot = Arc::new(Slot {
            id: "a".into(),
            state: Mutex::new(SlotState::default()),
            seen: AtomicU64::new(0),
        });
        let mut w1 = FillWait {
            slot: Arc::clone(&slot),
        };
        let mut w2 = FillWait {
            slot: Arc::clone(&slot),
        };
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(Pin::new(&mut w1).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut w2).poll(&mut cx).is_pending());
        slot.complete(Ok(None));
        assert!(matches!(
            Pin::new(&mut w1).poll(&mut cx),
            Poll::Ready(Ok(None))
        ));
        assert!(matches!(
            Pin::new(&mut w2).poll(&mut cx),
            Poll::Ready(Ok(None))
        ));
    }

    fn entry(id: &str, version: u64, body: &[u8]) -> Arc<Entry> {
        let (mut rec, _) = crate::record::put_template(id, body, 7).unwrap();
        rec[2..10].copy_from_slice(&version.to_be_bytes());
        Arc::new(Entry::from_record(&RecordRef::decode(&rec).unwrap()))
    }

    #[test]
    fn a_fill_older_than_a_change_seen_meanwhile_is_not_admitted() {
        let (filler, link, jobs) = Filler::detached(FillConfig::default());
        let (store, mut writer) = crate::Store::bounded(1 << 20);
        let _wait = filler.request("x").unwrap();
        let slot = jobs.try_recv().unwrap();
        // The sync thread skipped version 7 of x (not resident) while the
        // HMGET, sent earlier, found version 5.
        link.saw_change("x", 7);
        slot.complete(Ok(Some(entry("x", 5, b"old"))));
        assert!(!link.admit(&slot, &mut writer));
        assert!(!store.contains("x"));
        assert_eq!(filler.in_flight(), 0, "the registration ends");
        // A fill at or above what was seen is admitted.
        let _wait = filler.request("x").unwrap();
        let slot = jobs.try_recv().unwrap();
        link.saw_change("x", 7);
        slot.complete(Ok(Some(entry("x", 7, b"new"))));
        assert!(link.admit(&slot, &mut writer));
        let g = store.guard();
        assert_eq!(store.get("x", &g).unwrap().body(), b"new");
        // And never replaces a newer resident version.
        let _wait = filler.request("x").unwrap();
        let slot = jobs.try_recv().unwrap();
        slot.complete(Ok(Some(entry("x", 6, b"older"))));
        assert!(!link.admit(&slot, &mut writer));
        assert_eq!(store.get("x", &g).unwrap().version(), 7);
        assert_eq!(filler.counters().admitted.load(Ordering::Relaxed), 1);
        assert_eq!(filler.counters().superseded.load(Ordering::Relaxed), 2);
    }

    /// A full resync reports no delete (the scan just does not find the id)
    /// and drops the messages it covers, so a fill that read an id before
    /// it must not be admitted after it, nor remembered as absent.
    #[test]
    fn fills_in_flight_when_a_resync_begins_are_not_admitted() {
        let (filler, link, jobs) = Filler::detached(FillConfig::default());
        let (store, mut writer) = crate::Store::bounded(1 << 20);
        let _w = filler.request("x").unwrap();
        let x = jobs.try_recv().unwrap();
        let _w = filler.request("gone").unwrap();
        let gone = jobs.try_recv().unwrap();
        // x's HMGET read version 10; x was deleted at 11; then the resync began.
        link.supersede_all();
        x.complete(Ok(Some(entry("x", 10, b"deleted since"))));
        gone.complete(Ok(None));
        assert!(!link.admit(&x, &mut writer));
        assert!(!link.admit(&gone, &mut writer));
        assert!(!store.contains("x"));
        assert!(!filler.is_known_absent("gone"));
        assert_eq!(filler.in_flight(), 0);
        // A request after it starts a fill of its own, which is admitted.
        let _w = filler.request("x").unwrap();
        let again = jobs.try_recv().unwrap();
        assert!(!Arc::ptr_eq(&again, &x));
        again.complete(Ok(Some(entry("x", 12, b"new"))));
        assert!(link.admit(&again, &mut writer));
        assert!(store.contains("x"));
    }

    /// A request must not be answered from a fill that may have read Redis
    /// before a change the sync thread applied before the request began.
    #[test]
    fn a_request_after_a_change_does_not_join_an_older_fill() {
        let (filler, link, jobs) = Filler::detached(FillConfig::default());
        let (store, mut writer) = crate::Store::bounded(1 << 20);
        // A fill read version 5 and woke its waiters; the sync thread has
        // not handled it yet when the id is deleted at version 6.
        let _first = filler.request("x").unwrap();
        let done = jobs.try_recv().unwrap();
        done.complete(Ok(Some(entry("x", 5, b"old"))));
        link.saw_change("x", 6);
        let after_delete = filler.request("x").unwrap();
        assert!(
            !Arc::ptr_eq(&after_delete.slot, &done),
            "joined a fill older than the delete"
        );
        // The same for a fill whose HMGET is still out when a change lands.
        let out = jobs.try_recv().unwrap();
        link.saw_change("x", 7);
        let after_put = filler.request("x").unwrap();
        assert!(!Arc::ptr_eq(&after_put.slot, &out));
        let newest = jobs.try_recv().unwrap();
        assert_eq!(filler.in_flight(), 3);
        // The older slots keep learning of changes: a delete at 8 reaches
        // all three, so the one that read 7 is not admitted either.
        link.saw_change("x", 8);
        out.complete(Ok(Some(entry("x", 7, b"seven"))));
        assert!(!link.admit(&done, &mut writer));
        assert!(!link.admit(&out, &mut writer));
        assert!(!store.contains("x"));
        // A slot nothing happened to since is joined, also once complete.
        newest.complete(Ok(None));
        let again = filler.request("x").unwrap();
        assert!(!Arc::ptr_eq(&again.slot, &newest), "8 was seen by it");
        let fresh = jobs.try_recv().unwrap();
        fresh.complete(Ok(None));
        let joined = filler.request("x").unwrap();
        assert!(Arc::ptr_eq(&joined.slot, &fresh));
        // A failed fill is not joined: the next request asks Redis again.
        link.admit(&newest, &mut writer);
        link.admit(&fresh, &mut writer);
        assert_eq!(filler.in_flight(), 0);
        let _w = filler.request("y").unwrap();
        let failed = jobs.try_recv().unwrap();
        failed.complete(Err(FillError::Redis("down".into())));
        let retry = filler.request("y").unwrap();
        assert!(!Arc::ptr_eq(&retry.slot, &failed));
    }

    #[test]
    fn absence_is_remembered_only_when_nothing_changed_meanwhile() {
        let (filler, link, jobs) = Filler::detached(FillConfig::default());
        let (_store, mut writer) = crate::Store::bounded(1 << 20);
        let _w = filler.request("gone").unwrap();
        let slot = jobs.try_recv().unwrap();
        slot.complete(Ok(None));
        link.admit(&slot, &mut writer);
        assert!(filler.is_known_absent("gone"));
        // A put of the id makes it unknown again.
        link.saw_change("gone", 9);
        assert!(!filler.is_known_absent("gone"));
        // A miss that raced with a creation is not remembered.
        let _w = filler.request("new").unwrap();
        let slot = jobs.try_recv().unwrap();
        link.saw_change("new", 10);
        slot.complete(Ok(None));
        link.admit(&slot, &mut writer);
        assert!(!filler.is_known_absent("new"));
        // An expired entry is not a hit.
        let (filler, link, jobs) = Filler::detached(FillConfig {
            negative_ttl: Duration::from_millis(1),
            ..FillConfig::default()
        });
        let _w = filler.request("brief").unwrap();
        let slot = jobs.try_recv().unwrap();
        slot.complete(Ok(None));
        link.admit(&slot, &mut writer);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!filler.is_known_absent("brief"));
    }

    #[test]
    fn requests_coalesce_and_the_queue_is_bounded() {
        let (filler, _link, jobs) = Filler::detached(FillConfig {
            max_in_flight: 2,
            ..FillConfig::default()
        });
        let a1 = filler.request("a").unwrap();
        let a2 = filler.request("a").unwrap();
        assert!(Arc::ptr_eq(&a1.slot, &a2.slot));
        assert_eq!(filler.counters().coalesced.load(Ordering::Relaxed), 1);
        let _b = filler.request("b").unwrap();
        assert!(matches!(filler.request("c"), Err(FillError::Busy)));
        assert_eq!(jobs.len(), 2, "one queued read per distinct id");
    }

    #[test]
    fn the_negative_cache_stays_under_its_capacity() {
        let (filler, link, jobs) = Filler::detached(FillConfig {
            negative_capacity: 10,
            max_in_flight: 100,
            ..FillConfig::default()
        });
        let (_store, mut writer) = crate::Store::bounded(1 << 20);
        for i in 0..50 {
            let _w = filler.request(&format!("n{i}")).unwrap();
            let slot = jobs.try_recv().unwrap();
            slot.complete(Ok(None));
            link.admit(&slot, &mut writer);
            assert!(filler.known_absent() <= 10, "{}", filler.known_absent());
        }
        assert!(filler.is_known_absent("n49"));
    }

    #[test]
    fn hash_values_decode_to_entries_absence_or_errors() {
        assert!(matches!(decode("a", None), Ok(None)));
        assert!(matches!(
            decode("a", Some(b"junk".to_vec())),
            Err(FillError::Redis(_))
        ));
        let body = b"{\"x\":1}";
        let (mut rec, _) = crate::record::put_template("a", body, 7).unwrap();
        rec[2..10].copy_from_slice(&3u64.to_be_bytes());
        let e = decode("a", Some(rec.clone())).unwrap().unwrap();
        assert_eq!((e.version(), e.body()), (3, &body[..]));
        assert!(matches!(decode("b", Some(rec)), Err(FillError::Redis(_))));
    }
}
