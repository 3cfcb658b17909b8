//! The sync thread: keeps one process's [`Store`](crate::Store) equal to Redis.
//!
//! ```text
//! connect ─► subscribe ─► bootstrap (empty store, new epoch, log trimmed)
//!                    └──► catch up (same epoch: XRANGE the log from last + 1, HMGET the ids)
//!                              ─► live: apply version last + 1; anything else is a gap → catch up
//! any error, dropped subscription or unanswered PING ─► backoff (capped, jittered) ─► connect
//! ```
//!
//! Two threads per process: a pub/sub thread that reads the subscription
//! (and PINGs it when idle), and the sync thread that owns a command
//! connection and the sync state (the [`StoreWriter`], the last version
//! applied), behind a mutex. Subscribing comes first, so whatever is
//! published while the sync thread bootstraps or catches up waits in a
//! bounded crossbeam channel and is applied after; per id a higher version
//! always wins and a lower one never does, so the overlap is harmless.
//!
//! In live mode the pub/sub thread applies a message itself when it is
//! exactly the next version, the channel is empty and the sync thread is not
//! holding the state (`try_lock`): one thread hand-off less per change.
//! Anything else (a gap, a stale or malformed record, the first write's
//! epoch, a busy sync thread) goes through the channel as before, and the
//! pub/sub thread never waits for the lock, so the subscription keeps being
//! read while the sync thread bootstraps.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::Value;
use tracing::{debug, info, warn};

use crate::config::{redacted, SyncConfig};
use crate::fill::{FillLink, FillThreads, Filler, Slot};
use crate::record::{now_ns, records, Op, RecordRef};
use crate::scan::{Page, Scanner};
use crate::schema::Keys;
use crate::status::SyncStatus;
use crate::store::{Applied, StoreWriter};
use crate::{Error, Store};

/// A running sync thread. Dropping it stops the thread.
#[derive(Debug)]
pub struct Subscriber {
    status: Arc<SyncStatus>,
    store: Arc<Store>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    filler: Option<Filler>,
    fill_threads: Option<FillThreads>,
    /// The sync state, for tests that hold it to make messages queue.
    #[cfg(test)]
    sync: TestHandle,
}

/// The sync state, for tests that hold it.
#[cfg(test)]
struct TestHandle(Arc<Mutex<SyncThread>>);

#[cfg(test)]
impl std::fmt::Debug for TestHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestHandle")
    }
}

impl Subscriber {
    /// Validates `config` and starts the sync thread, which then owns `writer`.
    /// A bounded store also gets read-through fill threads ([`Self::filler`]).
    pub fn spawn(config: SyncConfig, writer: StoreWriter) -> Result<Self, Error> {
        let keys = config.validate()?;
        let client = redis::Client::open(config.redis_url.as_str())?;
        let (filler, fills, fill_threads) = if writer.store().budget().is_some() {
            let (f, link, threads) = Filler::spawn(
                config.fill.clone(),
                client.clone(),
                &keys,
                config.command_timeout,
            )?;
            (Some(f), Some(link), Some(threads))
        } else {
            (None, None, None)
        };
        let status = Arc::new(SyncStatus::new());
        let stop = Arc::new(AtomicBool::new(false));
        let store = Arc::clone(writer.store());
        let sync = SyncThread {
            cfg: config,
            keys,
            client,
            writer,
            status: Arc::clone(&status),
            stop: Arc::clone(&stop),
            epoch: None,
            last: 0,
            last_fp: None,
            fills,
            synced: false,
            reached_live: false,
            live: false,
            generation: 0,
            received: 0,
        };
        let sync = Arc::new(Mutex::new(sync));
        #[cfg(test)]
        let held = Arc::clone(&sync);
        let thread = std::thread::Builder::new()
            .name("heavyread-sync".into())
            .spawn(move || SyncThread::run(&sync))?;
        Ok(Subscriber {
            status,
            store,
            stop,
            thread: Some(thread),
            filler,
            fill_threads,
            #[cfg(test)]
            sync: TestHandle(held),
        })
    }

    /// The read-through fills of a bounded store; `None` when unbounded.
    pub fn filler(&self) -> Option<&Filler> {
        self.filler.as_ref()
    }

    /// State, counters and propagation histogram of the sync thread.
    pub fn status(&self) -> &Arc<SyncStatus> {
        &self.status
    }

    /// The store this thread keeps current.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Stops the sync thread and waits for it.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.fill_threads.take();
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

enum Event {
    Subscribed,
    /// A message and when the pub/sub thread received it.
    Message(Vec<u8>, Instant),
    /// Redis answered a ping at that instant.
    Alive(Instant),
    Lost(Error),
}

struct SyncThread {
    cfg: SyncConfig,
    keys: Keys,
    client: redis::Client,
    writer: StoreWriter,
    status: Arc<SyncStatus>,
    stop: Arc<AtomicBool>,
    /// Epoch of the dataset the store mirrors; `None` before the first sync
    /// or when Redis has never been written.
    epoch: Option<String>,
    /// Highest version applied in order.
    last: u64,
    /// Fingerprint of the change at `last`, when known: proves on reconnect
    /// that Redis still holds the same history up to `last`.
    last_fp: Option<Fingerprint>,
    /// Completed read-through fills to admit (bounded stores).
    fills: Option<FillLink>,
    /// A full sync has completed.
    synced: bool,
    /// The current session got to live mode (resets the backoff).
    reached_live: bool,
    /// The current session is in live mode: its subscription thread may
    /// apply a message itself when it is exactly the next version and the
    /// sync thread is not busy (see [`SyncThread::apply_direct`]).
    live: bool,
    /// Number of the current session, so a finished session's subscription
    /// thread cannot apply anything.
    generation: u64,
    /// The version of the last record published on the current session's
    /// subscription (`last` as of its sync-up before the first). Redis
    /// publishes in version order, so on one subscription versions only
    /// grow: one that does not means Redis lost its data (or another Redis
    /// took its place) while the connection stayed up.
    received: u64,
}

/// Locks the sync state. After a panic while it was held, the store may
/// hold a half-done change: start over from a full resync.
fn lock(sync: &Mutex<SyncThread>) -> MutexGuard<'_, SyncThread> {
    sync.lock().unwrap_or_else(|poisoned| {
        sync.clear_poison();
        let mut g = poisoned.into_inner();
        g.synced = false;
        g.live = false;
        g
    })
}

/// Raises a flag when dropped, so a session's pub/sub thread ends with it.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl SyncThread {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn run(this: &Arc<Mutex<Self>>) {
        let (stop, status, min, max) = {
            let g = lock(this);
            info!(url = %redacted(&g.cfg.redis_url), prefix = %g.cfg.prefix, "sync thread started");
            (
                Arc::clone(&g.stop),
                Arc::clone(&g.status),
                g.cfg.backoff_min,
                g.cfg.backoff_max,
            )
        };
        let mut backoff = min;
        let mut attempt = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if attempt > 0 {
                SyncStatus::add(&status.counters.reconnects);
            }
            attempt += 1;
            lock(this).reached_live = false;
            // A panic inside a client library must not end the sync thread
            // for good: count it as a failed session and start over from a
            // full resync, since the store may hold a half-done pass.
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::session(this)))
                    .unwrap_or_else(|panic| {
                        lock(this).synced = false;
                        Err(Error::Protocol(format!(
                            "sync session panicked: {}",
                            panic_message(&*panic)
                        )))
                    });
            let reached_live = {
                let mut g = lock(this);
                g.live = false;
                g.reached_live
            };
            status.set_connected(false);
            match result {
                Ok(()) => break,
                Err(e) => warn!(error = %e, attempt, "redis sync session ended; reconnecting"),
            }
            if reached_live {
                backoff = min;
            }
            Self::sleep(this, jitter(backoff));
            backoff = (backoff * 2).min(max);
        }
        info!("sync thread stopped");
    }

    /// Sleeps up to `d`, waking early on stop.
    fn sleep(this: &Mutex<Self>, d: Duration) {
        let end = Instant::now() + d;
        let stop = Arc::clone(&lock(this).stop);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= end {
                return;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
            lock(this).drain_fills();
        }
    }

    /// Admits every completed fill (see [`crate::fill`] for why a fill that
    /// raced with a newer change is dropped).
    fn drain_fills(&mut self) {
        if let Some(link) = &self.fills {
            for slot in link.completed() {
                link.admit(&slot, &mut self.writer);
            }
        }
    }

    /// Admits one completed fill. The link stays in place throughout (it
    /// is borrowed beside the store's writer, not taken out and put back),
    /// so a panic while admitting, which the sync thread survives, cannot
    /// leave the store without its fills for the rest of the process.
    fn admit_fill(&mut self, slot: &Slot) {
        if let Some(link) = &self.fills {
            link.admit(slot, &mut self.writer);
        }
    }

    /// A change to `id` at `version` is being applied (or skipped): fills in
    /// flight for it must not go back behind it.
    fn note_change(&self, id: &str, version: u64) {
        if let Some(link) = &self.fills {
            link.saw_change(id, version);
        }
    }

    /// One connection's life. `Ok` only when asked to stop. The sync state
    /// is locked while the session syncs up and while it handles each event,
    /// not while it waits for the next one.
    fn session(this: &Arc<Mutex<Self>>) -> Result<(), Error> {
        let mut g = lock(this);
        let (tx, rx) = crossbeam_channel::bounded(g.cfg.channel_capacity);
        let gate = Arc::new(ByteGate::new(g.cfg.channel_bytes));
        let cancel = Arc::new(AtomicBool::new(false));
        let _cancel = CancelOnDrop(Arc::clone(&cancel));
        g.live = false;
        g.generation += 1;
        g.received = 0;
        {
            let gate = Arc::clone(&gate);
            let direct = Direct {
                sync: Arc::clone(this),
                generation: g.generation,
            };
            let client = g.client.clone();
            let channel = g.keys.channel.clone();
            let cfg = g.cfg.clone();
            let stop = Arc::clone(&g.stop);
            let status = Arc::clone(&g.status);
            std::thread::Builder::new()
                .name("heavyread-pubsub".into())
                .spawn(move || {
                    pubsub_thread(client, channel, tx, gate, direct, cancel, stop, status, cfg)
                })?;
        }
        g.wait_subscribed(&rx)?;
        let mut con = g
            .client
            .get_connection_with_timeout(g.cfg.command_timeout)?;
        con.set_read_timeout(Some(g.cfg.command_timeout))?;
        con.set_write_timeout(Some(g.cfg.command_timeout))?;
        g.status.set_connected(true);
        g.sync_up(&mut con)?;
        // Records published since the subscription began and already
        // covered by the sync-up are at or below `last`; taking `last` as the
        // stream's previous record flags at most the first of them, for a
        // catch-up with nothing to do. A new history's lower versions are flagged too.
        g.received = g.last;
        g.reached_live = true;
        g.live = true;
        let mut fill_rx = g.fills.as_ref().map(|l| l.receiver().clone());
        let stop = Arc::clone(&g.stop);
        drop(g);
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let event = match &fill_rx {
                None => rx.recv_timeout(Duration::from_millis(100)),
                Some(fills) => crossbeam_channel::select! {
                    recv(rx) -> m => m.map_err(|_| RecvTimeoutError::Disconnected),
                    recv(fills) -> slot => {
                        match slot {
                            Ok(slot) => lock(this).admit_fill(&slot),
                            // Every fill thread is gone: a closed channel
                            // is always ready, and would spin this loop.
                            Err(_) => {
                                warn!("the fill threads are gone; read-through fills stop");
                                fill_rx = None;
                            }
                        }
                        continue;
                    }
                    default(Duration::from_millis(100)) => Err(RecvTimeoutError::Timeout),
                },
            };
            let mut g = lock(this);
            match event {
                Ok(Event::Message(bytes, received)) => {
                    gate.release(bytes.len());
                    g.status.touch_at(received);
                    g.on_message(&bytes, &mut con)?;
                }
                Ok(Event::Alive(answered)) => {
                    g.status.touch_at(answered);
                    g.check_state(&mut con)?;
                }
                Ok(Event::Subscribed) => {}
                Ok(Event::Lost(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Protocol("subscription thread ended".into()))
                }
            }
        }
    }

    fn wait_subscribed(&self, rx: &Receiver<Event>) -> Result<(), Error> {
        let deadline = Instant::now() + self.cfg.command_timeout * 2;
        loop {
            if self.stopped() {
                return Err(Error::Protocol("stopping".into()));
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Event::Subscribed) => return Ok(()),
                Ok(Event::Lost(e)) => return Err(e),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => return Err(Error::Protocol("no subscription confirmation".into())),
            }
        }
    }

    /// While the subscription is idle: a Redis that lost its data (or was
    /// replaced) while the connection stayed up and has published nothing
    /// since shows only in its epoch and version. Catches up (and so
    /// resyncs) when they moved.
    fn check_state(&mut self, con: &mut redis::Connection) -> Result<(), Error> {
        let (epoch, version) = self.read_state(con)?;
        if self.history_changed(&epoch, version) {
            info!(old = ?self.epoch, new = ?epoch, version, last = self.last, "redis's history changed under a live subscription");
            return self.catch_up(con);
        }
        if version > self.last {
            // A change whose message never arrived readable (a malformed
            // one is dropped) shows as a gap only when a later message
            // comes; with writes idle, only here.
            info!(
                version,
                last = self.last,
                "redis is ahead of the idle subscription; catching up"
            );
            return self.catch_up(con);
        }
        Ok(())
    }

    /// Whether Redis, showing `epoch` and `version`, holds another history
    /// than the one applied: a new epoch, or a version behind `last`. With
    /// nothing applied yet from any dataset there is nothing to lose, and
    /// its epoch is adopted.
    fn history_changed(&mut self, epoch: &Option<String>, version: u64) -> bool {
        if self.epoch.is_none() && self.last == 0 {
            self.epoch = epoch.clone();
        }
        *epoch != self.epoch || version < self.last
    }

    /// Reads the epoch and the version with one MGET (not MULTI: a refused
    /// MULTI is mishandled by the client library, and one command is atomic).
    fn read_state(&self, con: &mut redis::Connection) -> Result<(Option<String>, u64), Error> {
        let (epoch, version): (Option<String>, Option<u64>) = redis::cmd("MGET")
            .arg(&self.keys.epoch)
            .arg(&self.keys.version)
            .query(con)?;
        Ok((epoch, version.unwrap_or(0)))
    }

    /// The fingerprint of the change log entry at `version`, if the log
    /// still holds it and it carries one.
    fn fingerprint_at(
        &self,
        con: &mut redis::Connection,
        version: u64,
    ) -> Result<Option<Fingerprint>, Error> {
        if version == 0 {
            return Ok(None);
        }
        // The first entry at or after `version`: its own, or the batch's
        // that holds it.
        let log: Value = redis::cmd("XRANGE")
            .arg(&self.keys.log)
            .arg(format!("{version}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query(con)?;
        // An entry this reader cannot read has no fingerprint it could
        // compare: the check at the next catch-up is skipped, as for an
        // entry trimmed away, rather than failing every resync.
        Ok(parse_log(log)
            .ok()
            .and_then(|entries| entries.into_iter().find(|e| e.version == version))
            .and_then(|e| e.fingerprint()))
    }

    /// After (re)connecting: bootstrap, resync or catch up, as the state requires.
    fn sync_up(&mut self, con: &mut redis::Connection) -> Result<(), Error> {
        if !self.synced {
            return self.full_resync(con, false);
        }
        let (epoch, version) = self.read_state(con)?;
        if self.history_changed(&epoch, version) {
            info!(old = ?self.epoch, new = ?epoch, version, last = self.last, "redis lost its data; resyncing");
            return self.full_resync(con, true);
        }
        self.catch_up(con)
    }

    /// Rebuilds the store from the hash. With `force`, versions of the old
    /// dataset are not comparable and every scanned record replaces its entry.
    fn full_resync(&mut self, con: &mut redis::Connection, force: bool) -> Result<(), Error> {
        let started = Instant::now();
        SyncStatus::add(&self.status.counters.full_resyncs);
        if force {
            if let Some(link) = &self.fills {
                link.forget_absent();
            }
        }
        self.writer.begin_resync();
        let (epoch, v0) = self.read_state(con)?;
        // Only after `v0` is read: a fill registered before then may have
        // read an id before a change at or below `v0` that this resync
        // reports to no slot (a delete the scan does not find, a message
        // dropped as covered); one registered after reads Redis at or
        // after `v0`.
        if let Some(link) = &self.fills {
            link.supersede_all();
        }
        let fp0 = self.fingerprint_at(con, v0)?;
        let hlen: usize = redis::cmd("HLEN").arg(&self.keys.posts).query(con)?;
        self.writer
            .reserve(hlen.saturating_sub(self.writer.store().len()));
        // A second connection fetches the next HSCAN page while this thread
        // applies the current one: a pipelined scanner where it can (see
        // `scan`), redis-rs's whole replies over TLS.
        let scanner = Scanner::connect(
            self.client.get_connection_info(),
            &self.keys.posts,
            self.cfg.scan_batch,
            self.cfg.command_timeout,
        )?;
        let mut scan_con = match scanner {
            Some(_) => None,
            None => {
                let con = self
                    .client
                    .get_connection_with_timeout(self.cfg.command_timeout)?;
                con.set_read_timeout(Some(self.cfg.command_timeout))?;
                Some(con)
            }
        };
        let (page_tx, page_rx) = crossbeam_channel::bounded::<Result<Page, Error>>(4);
        let posts = self.keys.posts.clone();
        let batch = self.cfg.scan_batch;
        let mut scanned = 0usize;
        // Where the time goes: the fetcher's HSCAN round trips (Redis and the
        // reply's parsing), and this thread waiting for pages (when that is
        // most of the total, Redis and the fetcher are the bottleneck).
        let mut waited = Duration::ZERO;
        let mut fetching = Duration::ZERO;
        std::thread::scope(|scope| -> Result<(), Error> {
            let fetcher = scope.spawn(move || {
                let mut scanner = scanner;
                let mut cursor = Some(0);
                let mut busy = Duration::ZERO;
                loop {
                    let t = Instant::now();
                    let page = match (&mut scanner, &mut scan_con) {
                        (Some(s), _) => s.next_page(),
                        (None, Some(con)) => whole_page(con, &posts, batch, &mut cursor),
                        (None, None) => Ok(None),
                    };
                    busy += t.elapsed();
                    let page = match page {
                        Ok(Some(p)) => p,
                        Ok(None) => return busy,
                        Err(e) => {
                            let _ = page_tx.send(Err(e));
                            return busy;
                        }
                    };
                    // A closed channel means the applier gave up: stop too.
                    if page_tx.send(Ok(page)).is_err() {
                        return busy;
                    }
                }
            });
            // Owned here so that returning early drops it, which ends the fetcher.
            let pages = page_rx;
            loop {
                let t = Instant::now();
                let Ok(page) = pages.recv() else { break };
                waited += t.elapsed();
                if self.stopped() {
                    return Err(Error::Protocol("stopping".into()));
                }
                self.drain_fills();
                let page = page?;
                for (field, value) in page.entries() {
                    scanned += 1;
                    match RecordRef::decode(value) {
                        Ok(rec)
                            if rec.op == Op::Put
                                && rec.id.as_bytes() == field
                                && rec.version > 0 =>
                        {
                            self.note_change(rec.id, rec.version);
                            let applied = self.writer.resync_put(&rec, force);
                            self.count(applied);
                        }
                        Ok(_) => self.malformed("hash record does not match its field", field),
                        Err(e) => self.malformed(&e.to_string(), field),
                    }
                }
            }
            drop(pages);
            // A fetcher that panicked closed the channel early: the scan is
            // incomplete, so this resync failed.
            fetching = fetcher.join().map_err(|p| {
                Error::Protocol(format!("HSCAN fetcher panicked: {}", panic_message(&*p)))
            })?;
            Ok(())
        })?;
        let swept = self.writer.sweep();
        if force || self.epoch != epoch {
            self.status.reset_versions(v0);
        }
        self.epoch = epoch;
        self.last = v0;
        self.last_fp = fp0;
        self.status.set_last_version(v0);
        self.synced = true;
        self.status.set_bootstrapped();
        self.status.touch();
        info!(
            scanned,
            swept,
            version = v0,
            entries = self.writer.store().len(),
            ms = started.elapsed().as_millis() as u64,
            fetch_ms = fetching.as_millis() as u64,
            wait_ms = waited.as_millis() as u64,
            "full resync done"
        );
        Ok(())
    }

    /// Applies every change after `last` from the log; falls back to a full
    /// resync when the log no longer reaches back or the dataset changed.
    ///
    /// Each batch reads the log from `last` itself, not `last + 1`: the entry
    /// at `last` must still carry the fingerprint of the change this thread
    /// applied there. A different one means Redis came back with another
    /// history under the same epoch (an AOF or snapshot that lost the newest
    /// writes, then new writes past them): versions are not comparable any
    /// more and only a forced full resync removes what the lost history put here.
    fn catch_up(&mut self, con: &mut redis::Connection) -> Result<(), Error> {
        SyncStatus::add(&self.status.counters.catch_ups);
        let started_at = self.last;
        loop {
            if self.stopped() {
                return Err(Error::Protocol("stopping".into()));
            }
            let from = self.last + 1;
            let start = self.last.max(1);
            // One pipeline, not a transaction: MGET is atomic on its own, and
            // log entries are immutable, so reading them a moment later only
            // finds more of them.
            let ((epoch, version), log): ((Option<String>, Option<u64>), Value) = redis::pipe()
                .cmd("MGET")
                .arg(&self.keys.epoch)
                .arg(&self.keys.version)
                .cmd("XRANGE")
                .arg(&self.keys.log)
                .arg(format!("{start}-0"))
                .arg("+")
                .arg("COUNT")
                .arg(self.cfg.catch_up_batch + 1)
                .query(con)?;
            let version = version.unwrap_or(0);
            if self.history_changed(&epoch, version) {
                info!(old = ?self.epoch, new = ?epoch, version, last = self.last, "redis lost its data; resyncing");
                return self.full_resync(con, true);
            }
            self.status.saw_version(version);
            let mut entries = match parse_log(log) {
                Ok(entries) => entries,
                Err(e) => {
                    // Not a fault of the connection: reconnecting would
                    // read the same entry again, for ever. The hash is the truth.
                    warn!(error = %e, from, "the change log holds an entry this reader cannot read; full resync");
                    return self.full_resync(con, false);
                }
            };
            // The first entry may be a batch that began before `start`.
            entries.retain(|e| e.version >= start);
            if self.last > 0 {
                if let Some(first) = entries.first().filter(|e| e.version == self.last) {
                    if let (Some(ours), Some(theirs)) = (self.last_fp, first.fingerprint()) {
                        if ours != theirs {
                            info!(
                                last = self.last,
                                version,
                                "redis holds another history at the last applied version; resyncing"
                            );
                            return self.full_resync(con, true);
                        }
                    }
                    entries.remove(0);
                }
            }
            if version < from {
                break;
            }
            let contiguous = entries.first().is_some_and(|e| e.version == from)
                && entries.windows(2).all(|w| w[1].version == w[0].version + 1);
            if !contiguous {
                info!(
                    from,
                    version, "change log no longer reaches back; full resync"
                );
                return self.full_resync(con, false);
            }
            // Batch entries hold many changes each: one HMGET takes at most
            // a catch-up batch of them.
            for chunk in entries.chunks(self.cfg.catch_up_batch.max(1)) {
                self.apply_logged(chunk, con)?;
            }
        }
        self.status.touch();
        debug!(
            from = started_at + 1,
            to = self.last,
            "caught up from the log"
        );
        Ok(())
    }

    /// Applies log entries (consecutive versions after `last`) with the
    /// records the hash holds now for their ids, read with one HMGET.
    fn apply_logged(
        &mut self,
        entries: &[LogEntry],
        con: &mut redis::Connection,
    ) -> Result<(), Error> {
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        let recs: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(&self.keys.posts)
            .arg(&ids)
            .query(con)?;
        if recs.len() != entries.len() {
            return Err(Error::Protocol(
                "HMGET answered a different number of values".into(),
            ));
        }
        self.drain_fills();
        for (e, rec) in entries.iter().zip(recs) {
            let (v, id) = (e.version, e.id.as_str());
            self.note_change(id, v);
            match rec {
                // The id is gone now: whatever the log says it was, it is deleted as of `v` or later.
                None => {
                    let applied = self.writer.delete(id, v);
                    self.count(applied);
                }
                Some(bytes) => match RecordRef::decode(&bytes) {
                    Ok(r) if r.op == Op::Put && r.id == id && r.version >= v => {
                        let applied = self.writer.put(&r);
                        self.count(applied);
                    }
                    Ok(_) => self.malformed("hash record does not match the log", id.as_bytes()),
                    Err(e) => self.malformed(&e.to_string(), id.as_bytes()),
                },
            }
        }
        if let Some(last) = entries.last() {
            self.last = last.version;
            self.last_fp = last.fingerprint();
            self.status.set_last_version(self.last);
        }
        Ok(())
    }

    /// A published message: one record, or a batch's records in version
    /// order. A malformed record ends the message (the records before it
    /// are applied; the next message or reconnect finds the gap).
    fn on_message(&mut self, bytes: &[u8], con: &mut redis::Connection) -> Result<(), Error> {
        for rec in records(bytes) {
            match rec {
                Ok(r) if r.version > 0 => self.on_record(&r, con)?,
                Ok(_) => {
                    self.malformed("published record without a version", b"");
                    return Ok(());
                }
                Err(e) => {
                    self.malformed(&e.to_string(), b"");
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn on_record(&mut self, rec: &RecordRef<'_>, con: &mut redis::Connection) -> Result<(), Error> {
        let went_back = rec.version <= self.received;
        self.received = rec.version;
        if went_back {
            // The history behind the subscription may have changed (or this
            // is the first record of the session, published during its
            // sync-up). Catching up reads the epoch and the version, and
            // resyncs if they moved.
            debug!(
                version = rec.version,
                last = self.last,
                "the change stream went back; checking Redis's history"
            );
            return self.catch_up(con);
        }
        self.status.saw_version(rec.version);
        if self.epoch.is_none() {
            // The first write to an empty Redis created the epoch; learn it on
            // this same connection (a restart would have broken it), so the
            // next reconnect does not mistake it for lost data.
            self.epoch = redis::cmd("GET").arg(&self.keys.epoch).query(con)?;
        }
        if rec.version <= self.last {
            // Covered already: the apply or catch-up that covered it told
            // the fills in flight, and a full resync superseded every fill
            // registered before it read its version.
            SyncStatus::add(&self.status.counters.records_stale);
            return Ok(());
        }
        if rec.version == self.last + 1 {
            self.apply_next(rec);
            return Ok(());
        }
        SyncStatus::add(&self.status.counters.gaps);
        debug!(
            last = self.last,
            got = rec.version,
            "gap in the change stream; catching up"
        );
        self.catch_up(con)
    }

    /// Applies `rec`, the version right after `last`.
    fn apply_next(&mut self, rec: &RecordRef<'_>) {
        self.note_change(rec.id, rec.version);
        let applied = match rec.op {
            Op::Put => self.writer.put(rec),
            Op::Delete => self.writer.delete(rec.id, rec.version),
        };
        self.count(applied);
        self.last = rec.version;
        self.last_fp = Some(Fingerprint::new(rec.written_at_ns, rec.id));
        self.status.set_last_version(rec.version);
        if !matches!(applied, Applied::Stale | Applied::Skipped) {
            self.status.record_applied(rec.written_at_ns, now_ns());
        }
    }

    /// The subscription thread's own way in, for the common case: a message
    /// of session `generation` whose records all decode and continue `last`
    /// one version at a time, while the session is live and knows its epoch,
    /// is applied here, without waking the sync thread. Anything else
    /// returns `false` and goes through the channel, where the sync thread
    /// handles it as before (stale records, gaps, the first epoch, garbage).
    fn apply_direct(&mut self, generation: u64, message: &[u8]) -> bool {
        if !self.live || self.generation != generation || self.epoch.is_none() {
            return false;
        }
        let Ok(recs) = records(message).collect::<Result<Vec<_>, _>>() else {
            return false;
        };
        if !recs
            .iter()
            .zip(self.last + 1..)
            .all(|(r, v)| r.version == v)
        {
            return false;
        }
        self.status.touch();
        for rec in &recs {
            self.status.saw_version(rec.version);
            self.apply_next(rec);
            self.received = rec.version;
        }
        SyncStatus::add(&self.status.counters.direct_messages);
        true
    }

    fn count(&self, applied: Applied) {
        let c = &self.status.counters;
        match applied {
            Applied::Stale => SyncStatus::add(&c.records_stale),
            Applied::Skipped => SyncStatus::add(&c.records_skipped),
            _ => SyncStatus::add(&c.records_applied),
        }
    }

    fn malformed(&self, why: &str, id: &[u8]) {
        let n = self
            .status
            .counters
            .malformed_records
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        // Garbage can arrive in floods; log the first few and then every 1000th.
        if n <= 10 || n.is_multiple_of(1000) {
            warn!(reason = why, id = %String::from_utf8_lossy(&id[..id.len().min(64)]), total = n, "record rejected");
        }
    }
}

/// The redis-rs HSCAN loop (TLS connections): one whole reply at a time;
/// `cursor` is `None` once the scan is complete.
fn whole_page(
    con: &mut redis::Connection,
    posts: &str,
    batch: usize,
    cursor: &mut Option<u64>,
) -> Result<Option<Page>, Error> {
    let Some(at) = *cursor else { return Ok(None) };
    let reply = redis::cmd("HSCAN")
        .arg(posts)
        .arg(at)
        .arg("COUNT")
        .arg(batch)
        .query::<Value>(con)?;
    let (next, items) = parse_scan(reply)?;
    *cursor = (next != 0).then_some(next);
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut it = items.iter();
    while let (Some(field), Some(value)) = (it.next(), it.next()) {
        let (Value::BulkString(field), Value::BulkString(value)) = (field, value) else {
            return Err(Error::Protocol("HSCAN entry is not a string".into()));
        };
        pairs.push((field.as_slice(), value.as_slice()));
    }
    Ok(Some(Page::from_pairs(pairs)))
}

/// `[cursor, [field, value, ...]]` from HSCAN.
fn parse_scan(reply: Value) -> Result<(u64, Vec<Value>), Error> {
    let Value::Array(mut parts) = reply else {
        return Err(Error::Protocol("HSCAN reply is not an array".into()));
    };
    if parts.len() != 2 {
        return Err(Error::Protocol("HSCAN reply has the wrong length".into()));
    }
    let items = match parts.pop() {
        Some(Value::Array(items)) => items,
        _ => return Err(Error::Protocol("HSCAN items are not an array".into())),
    };
    let cursor = match parts.pop() {
        Some(Value::BulkString(c)) => std::str::from_utf8(&c).ok().and_then(|s| s.parse().ok()),
        Some(Value::Int(c)) => u64::try_from(c).ok(),
        _ => None,
    }
    .ok_or_else(|| Error::Protocol("HSCAN cursor is not a number".into()))?;
    Ok((cursor, items))
}

/// What identifies one change beyond its version: the writer's timestamp
/// (the log's `ts` field, the record's bytes 10..18) and its id. Two histories
/// that reuse a version number differ here unless the same writer wrote the
/// same id in the same nanosecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    written_at_ns: u64,
    id_hash: u64,
}

impl Fingerprint {
    fn new(written_at_ns: u64, id: &str) -> Self {
        // FNV-1a: stable across builds and processes, unlike std's hasher.
        let id_hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        Fingerprint {
            written_at_ns,
            id_hash,
        }
    }
}

/// One change log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogEntry {
    version: u64,
    id: String,
    /// The writer timestamp, absent in entries written by library version 1.
    written_at_ns: Option<u64>,
}

impl LogEntry {
    fn fingerprint(&self) -> Option<Fingerprint> {
        self.written_at_ns.map(|ts| Fingerprint::new(ts, &self.id))
    }
}

/// `[[id, [field, value, ...]], ...]` from XRANGE, one [`LogEntry`] per
/// change: an entry `<version>-1` is one change, an entry `<last>-<n>` with
/// n > 1 a batch of the n versions up to `last`, whose `id` field lists the
/// n ids separated by single spaces and whose `ts` field holds their n
/// timestamps (see [`crate::schema`]).
fn parse_log(reply: Value) -> Result<Vec<LogEntry>, Error> {
    let bad = |what: &str| Error::Protocol(format!("change log entry: {what}"));
    let Value::Array(entries) = reply else {
        return Err(bad("XRANGE reply is not an array"));
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let Value::Array(mut e) = e else {
            return Err(bad("not an array"));
        };
        let fields = match e.pop() {
            Some(Value::Array(f)) => f,
            _ => return Err(bad("no fields")),
        };
        let (last, n) = match e.pop() {
            Some(Value::BulkString(id)) => std::str::from_utf8(&id)
                .ok()
                .and_then(|s| s.split_once('-'))
                .and_then(|(v, n)| Some((v.parse::<u64>().ok()?, n.parse::<u64>().ok()?))),
            _ => None,
        }
        .filter(|&(last, n)| n >= 1 && n <= last)
        .ok_or_else(|| bad("stream id is not <version>-<n> with 1 <= n <= version"))?;
        let mut ids = None;
        let mut ts = None;
        let mut it = fields.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let (Value::BulkString(k), Value::BulkString(v)) = (k, v) {
                match k.as_slice() {
                    b"id" => ids = String::from_utf8(v).ok(),
                    b"ts" => ts = Some(v),
                    _ => {}
                }
            }
        }
        let ids = ids.ok_or_else(|| bad("no id field"))?;
        let first = last - n + 1;
        if n == 1 {
            let written_at_ns = match ts {
                Some(ts) => Some(u64::from_be_bytes(
                    ts.as_slice()
                        .try_into()
                        .map_err(|_| bad("ts is not 8 bytes"))?,
                )),
                None => None,
            };
            out.push(LogEntry {
                version: last,
                id: ids,
                written_at_ns,
            });
            continue;
        }
        let ts = ts.ok_or_else(|| bad("batch without a ts field"))?;
        let ids: Vec<&str> = ids.split(' ').collect();
        if ids.len() as u64 != n {
            return Err(bad("batch id does not hold one id per version"));
        }
        if ts.len() != 8 * ids.len() {
            return Err(bad("batch ts does not hold one timestamp per version"));
        }
        for ((version, id), ts) in (first..).zip(ids).zip(ts.chunks_exact(8)) {
            out.push(LogEntry {
                version,
                id: id.to_owned(),
                written_at_ns: Some(u64::from_be_bytes(ts.try_into().unwrap_or_default())),
            });
        }
    }
    Ok(out)
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_owned()
    }
}

/// A delay between `d / 2` and `d`, so readers that lost Redis together do not return together.
fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// Bounds the bytes of the messages between the subscription and the
/// applier: the channel bounds their number, but a batch's message is a few
/// hundred records. One message is always let through when nothing is
/// buffered, however large.
#[derive(Debug)]
struct ByteGate {
    buffered: AtomicUsize,
    limit: usize,
}

impl ByteGate {
    fn new(limit: usize) -> Self {
        ByteGate {
            buffered: AtomicUsize::new(0),
            limit,
        }
    }

    /// Waits until `len` more bytes fit (or nothing is buffered), then
    /// counts them; `false` when `done` said to give up first. Only the
    /// subscription thread admits, so the check and the add do not race.
    fn admit(&self, len: usize, done: impl Fn() -> bool) -> bool {
        loop {
            let now = self.buffered.load(Ordering::Acquire);
            if now == 0 || now.saturating_add(len) <= self.limit {
                self.buffered.fetch_add(len, Ordering::AcqRel);
                return true;
            }
            if done() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The applier took a message of `len` bytes.
    fn release(&self, len: usize) {
        self.buffered.fetch_sub(len, Ordering::AcqRel);
    }
}

/// SUBSCRIBE by hand: the client library's `PubSub::subscribe` returns Ok on
/// an error reply (NOAUTH, NOPERM), which would leave a reader that looks
/// connected while no change ever reaches it. Only the confirmation
/// `["subscribe", channel, count]` counts as subscribed.
fn subscribe(con: &mut redis::Connection, channel: &str) -> Result<(), Error> {
    con.send_packed_command(&redis::cmd("SUBSCRIBE").arg(channel).get_packed_command())?;
    match con.recv_response()? {
        Value::ServerError(e) => Err(redis::RedisError::from(e).into()),
        Value::Array(parts) | Value::Push { data: parts, .. }
            if matches!(
                parts.as_slice(),
                [Value::BulkString(kind), Value::BulkString(name), Value::Int(_)]
                    if kind.eq_ignore_ascii_case(b"subscribe") && name == channel.as_bytes()
            ) =>
        {
            Ok(())
        }
        other => Err(Error::Protocol(format!(
            "SUBSCRIBE answered {other:?} instead of a confirmation"
        ))),
    }
}

/// The sync state a session's subscription thread may apply messages to.
struct Direct {
    sync: Arc<Mutex<SyncThread>>,
    generation: u64,
}

impl Direct {
    /// True when `message` was applied here; never waits for the lock.
    fn apply(&self, message: &[u8]) -> bool {
        match self.sync.try_lock() {
            Ok(mut g) => g.apply_direct(self.generation, message),
            Err(_) => false,
        }
    }
}

/// True when `e` is a socket call that a signal interrupted (EINTR). Linux
/// fails a socket read that has a timeout this way when the process is
/// stopped and continued, whatever its signal handlers (signal(7)). The
/// client library does not make the io error's kind public; its message is
/// compared. Only the wait for a message is resumed: a stop that lands in
/// the short read of a PING's answer or of a command's still ends the
/// session (the session after it catches up from the log).
fn interrupted(e: &redis::RedisError) -> bool {
    e.is_io_error()
        && std::error::Error::source(e).is_some_and(|source| {
            source.to_string() == std::io::Error::from_raw_os_error(libc::EINTR).to_string()
        })
}

#[allow(clippy::too_many_arguments)]
fn pubsub_thread(
    client: redis::Client,
    channel: String,
    tx: Sender<Event>,
    gate: Arc<ByteGate>,
    direct: Direct,
    cancel: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    status: Arc<SyncStatus>,
    cfg: SyncConfig,
) {
    let done = || cancel.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed);
    let result = (|| -> Result<(), Error> {
        let mut con = client.get_connection_with_timeout(cfg.command_timeout)?;
        con.set_write_timeout(Some(cfg.ping_timeout))?;
        con.set_read_timeout(Some(cfg.command_timeout))?;
        subscribe(&mut con, &channel)?;
        let mut ps = con.as_pubsub();
        if tx.send(Event::Subscribed).is_err() {
            return Ok(());
        }
        ps.set_read_timeout(Some(cfg.ping_interval))?;
        // The wait for a message since the last message or PING ends in a
        // PING at `idle_until`; `cut` when the read timeout was set to what
        // was left of it.
        let mut idle_until = Instant::now() + cfg.ping_interval;
        let mut cut = false;
        loop {
            if done() {
                return Ok(());
            }
            let idle = match ps.get_message() {
                Ok(msg) => {
                    idle_until = Instant::now() + cfg.ping_interval;
                    if cut {
                        cut = false;
                        ps.set_read_timeout(Some(cfg.ping_interval))?;
                    }
                    if msg.get_channel_name() != channel {
                        continue;
                    }
                    let received = Instant::now();
                    let payload = msg.get_payload_bytes();
                    // Nothing may overtake a message still in the channel.
                    if tx.is_empty() && direct.apply(payload) {
                        continue;
                    }
                    if !gate.admit(payload.len(), done) {
                        return Ok(());
                    }
                    if tx.send(Event::Message(payload.to_vec(), received)).is_err() {
                        return Ok(());
                    }
                    false
                }
                Err(e) if e.is_timeout() => true,
                // Stopped and continued (SIGSTOP or SIGTSTP, then SIGCONT):
                // the wait ended early and nothing was lost (the client
                // keeps what it had read of a message). It goes on for what
                // is left of it, so that stops closer together than the
                // ping interval do not hold the PING off for good.
                Err(e) if interrupted(&e) => {
                    let left = idle_until.saturating_duration_since(Instant::now());
                    if !left.is_zero() {
                        cut = true;
                        ps.set_read_timeout(Some(left))?;
                    }
                    left.is_zero()
                }
                Err(e) => return Err(e.into()),
            };
            if idle {
                // Idle: prove the connection is alive. A cut network only shows here.
                ps.set_read_timeout(Some(cfg.ping_timeout))?;
                if let Err(e) = ps.ping_message::<Value>("heavyread") {
                    if e.is_timeout() {
                        SyncStatus::add(&status.counters.ping_timeouts);
                    }
                    return Err(e.into());
                }
                if tx.send(Event::Alive(Instant::now())).is_err() {
                    return Ok(());
                }
                ps.set_read_timeout(Some(cfg.ping_interval))?;
                idle_until = Instant::now() + cfg.ping_interval;
                cut = false;
            }
        }
    })();
    if let Err(e) = result {
        if !done() {
            let _ = tx.send(Event::Lost(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message that waited in the channel behind a backlog proves the
    /// store current only as of when it arrived: the contact time that
    /// readiness compares with its staleness limit is that, not the moment
    /// the sync thread got to it.
    #[test]
    fn contact_is_when_a_message_arrived_not_when_a_backlog_let_it_through() {
        let redis = crate::testing::RedisServer::start();
        let mut cfg = SyncConfig::new(redis.url());
        cfg.prefix = "contact".into();
        // No ping while the test runs: only the messages give contact.
        cfg.ping_interval = Duration::from_secs(60);
        cfg.command_timeout = Duration::from_secs(5);
        let (store, writer) = crate::Store::new();
        let sub = Subscriber::spawn(cfg, writer).expect("spawn subscriber");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let publisher = rt.block_on(async {
            let p = crate::Publisher::new(&redis.url(), "contact", 1000, Duration::from_secs(5))
                .expect("publisher");
            p.load_library().await.expect("load library");
            p
        });
        let body = br#"{"id":"x","title":"t","content":"c","author":"a"}"#;
        let wait_for = |id: &str| {
            let end = Instant::now() + Duration::from_secs(30);
            while !store.contains(id) {
                assert!(Instant::now() < end, "{id} never reached the store");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        // Live: a put reaches the store.
        rt.block_on(publisher.put("first", body)).expect("put");
        wait_for("first");
        // Holding the sync state stops the sync thread at its next event
        // and keeps the pub/sub thread from applying directly: the next
        // messages queue in the channel.
        let held = lock(&sub.sync.0);
        for id in ["b0", "b1", "b2"] {
            rt.block_on(publisher.put(id, body)).expect("put");
        }
        std::thread::sleep(Duration::from_millis(1500));
        assert!(!store.contains("b0"), "the sync state was held");
        drop(held);
        wait_for("b2");
        let since = sub.status().snapshot().since_contact.expect("contact");
        assert!(
            since >= Duration::from_millis(1000),
            "the backlog's messages arrived 1.5 s before they were applied, yet contact was {since:?} ago"
        );
        sub.shutdown();
    }

    #[test]
    fn the_byte_gate_holds_messages_past_its_limit_until_released() {
        let gate = Arc::new(ByteGate::new(1000));
        let never = || false;
        assert!(gate.admit(400, never));
        assert!(gate.admit(600, never));
        // Full: the next one waits until the applier takes something.
        let admitted = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (gate, admitted) = (Arc::clone(&gate), Arc::clone(&admitted));
            std::thread::spawn(move || {
                assert!(gate.admit(300, || false));
                admitted.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!admitted.load(Ordering::SeqCst), "admitted past the limit");
        gate.release(400);
        waiter.join().unwrap();
        assert!(admitted.load(Ordering::SeqCst));
        assert_eq!(gate.buffered.load(Ordering::SeqCst), 900);
        // Giving up while waiting admits nothing.
        assert!(!gate.admit(200, || true));
        assert_eq!(gate.buffered.load(Ordering::SeqCst), 900);
        // A message larger than the limit passes once nothing is buffered.
        gate.release(900);
        assert!(gate.admit(5000, never));
        assert!(!gate.admit(1, || true));
    }

    #[test]
    fn jitter_stays_between_half_and_whole() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(100));
            assert!(
                j >= Duration::from_millis(50) && j <= Duration::from_millis(100),
                "{j:?}"
            );
        }
    }

    /// An XRANGE entry: stream id and field/value pairs.
    fn log_entry(id: &str, fields: &[(&str, &[u8])]) -> Value {
        Value::Array(vec![
            Value::BulkString(id.as_bytes().to_vec()),
            Value::Array(
                fields
                    .iter()
                    .flat_map(|(k, v)| {
                        [
                            Value::BulkString(k.as_bytes().to_vec()),
                            Value::BulkString(v.to_vec()),
                        ]
                    })
                    .collect(),
            ),
        ])
    }

    #[test]
    fn log_entries_parse_to_versions_and_ids() {
        let entry =
            |id: &str, post: &str| log_entry(id, &[("op", b"put"), ("id", post.as_bytes())]);
        let parsed = parse_log(Value::Array(vec![entry("7-1", "a"), entry("8-1", "b")])).unwrap();
        let got: Vec<(u64, &str, Option<u64>)> = parsed
            .iter()
            .map(|e| (e.version, e.id.as_str(), e.written_at_ns))
            .collect();
        assert_eq!(got, vec![(7, "a", None), (8, "b", None)]);
        let with_ts = log_entry("9-1", &[("id", b"c"), ("ts", &42u64.to_be_bytes())]);
        let parsed = parse_log(Value::Array(vec![with_ts.clone()])).unwrap();
        assert_eq!(parsed[0].written_at_ns, Some(42));
        assert_eq!(parsed[0].fingerprint(), Some(Fingerprint::new(42, "c")));
        assert_ne!(Fingerprint::new(42, "c"), Fingerprint::new(42, "d"));
        assert_ne!(Fingerprint::new(42, "c"), Fingerprint::new(43, "c"));
        let short_ts = log_entry("9-1", &[("id", b"c"), ("ts", b"123")]);
        assert!(parse_log(Value::Array(vec![short_ts])).is_err());
        assert!(parse_log(Value::Array(vec![entry("x-1", "a")])).is_err());
        assert!(parse_log(Value::Int(3)).is_err());
    }

    #[test]
    fn batch_log_entries_expand_to_one_entry_per_version() {
        let entry = |id: &str, ids: &str, ts: Vec<u8>| {
            log_entry(id, &[("op", b"put"), ("id", ids.as_bytes()), ("ts", &ts)])
        };
        let ts = |t: &[u64]| t.iter().flat_map(|t| t.to_be_bytes()).collect::<Vec<u8>>();
        let parsed = parse_log(Value::Array(vec![
            entry("4-1", "a", ts(&[40])),
            entry("7-3", "b c b", ts(&[50, 60, 70])),
            entry("8-1", "d", ts(&[80])),
        ]))
        .unwrap();
        let got: Vec<(u64, &str, Option<u64>)> = parsed
            .iter()
            .map(|e| (e.version, e.id.as_str(), e.written_at_ns))
            .collect();
        assert_eq!(
            got,
            vec![
                (4, "a", Some(40)),
                (5, "b", Some(50)),
                (6, "c", Some(60)),
                (7, "b", Some(70)),
                (8, "d", Some(80)),
            ]
        );
        // Counts that disagree, a batch longer than its last version, a
        // batch without timestamps, a zero count: each is refused.
        for bad in [
            entry("7-3", "b c", ts(&[50, 60, 70])),
            entry("7-3", "b c d e", ts(&[50, 60, 70])),
            entry("7-3", "b c d", ts(&[50, 60])),
            entry("7-3", "b c d", vec![0; 25]),
            entry("2-3", "b c d", ts(&[50, 60, 70])),
            entry("7-0", "b", ts(&[50])),
            entry("7-99999999999999", "b", ts(&[50])),
        ] {
            assert!(
                parse_log(Value::Array(vec![bad.clone()])).is_err(),
                "{bad:?}"
            );
        }
        let no_ts = log_entry("7-2", &[("id", b"b c")]);
        assert!(parse_log(Value::Array(vec![no_ts])).is_err());
    }

    #[test]
    fn scan_replies_parse_or_fail_cleanly() {
        let ok = Value::Array(vec![
            Value::BulkString(b"17".to_vec()),
            Value::Array(vec![]),
        ]);
        assert_eq!(parse_scan(ok).unwrap().0, 17);
        assert!(parse_scan(Value::Array(vec![Value::Nil, Value::Array(vec![])])).is_err());
        assert!(parse_scan(Value::Nil).is_err());
    }
}
