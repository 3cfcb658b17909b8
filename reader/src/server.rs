//! Starting and stopping a reader: checks, the sync thread, one pinned
//! executor per CPU, each bound to the same address with SO_REUSEPORT.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use heavyread_sync::{Filler, Store, Subscriber, SyncStatus};
use tracing::{info, warn};

use crate::executor::{self, Core};
use crate::metrics::{self, CoreMetrics, Scrape};
use crate::{cpus, limits, request_id, sys, Config, Error};

/// Time slice of the sync and fill threads (the kernel's smallest, 0.1 ms).
const SYNC_SLICE: Duration = Duration::from_micros(100);

/// What every executor of one reader shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// The posts, kept current by the sync thread.
    pub store: Arc<Store>,
    /// The sync thread's state, for `/ready` and `/metrics`.
    pub status: Arc<SyncStatus>,
    /// Read-through fills, when `--max-memory` bounds the store.
    pub filler: Option<Filler>,
    /// One block of counters per executor, indexed by executor.
    pub metrics: Box<[CoreMetrics]>,
    /// Raised to make every executor stop accepting and drain.
    pub stop: AtomicBool,
    /// Random per process, the first part of generated request ids.
    pub tag: u64,
}

/// A running reader, returned by [`start`]. Dropping it stops the reader too.
#[derive(Debug)]
pub struct ReaderHandle {
    addr: SocketAddr,
    cpus: Vec<usize>,
    shared: Arc<Shared>,
    executors: Vec<ExecutorJoinHandle<()>>,
    subscriber: Option<Subscriber>,
}

impl ReaderHandle {
    /// The address every executor listens on (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CPU each executor is pinned to, by executor.
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    /// The store being served.
    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    /// The sync thread's status.
    pub fn status(&self) -> &Arc<SyncStatus> {
        &self.shared.status
    }

    /// Whether `/ready` would answer 200 now (bootstrapped and not staler than `--max-staleness`).
    pub fn is_ready(&self) -> bool {
        !self.shared.stop.load(Ordering::Relaxed)
            && self
                .shared
                .status
                .is_ready(self.shared.config.max_staleness)
    }

    /// Polls [`Self::is_ready`] until true or `timeout`; returns the last answer.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.is_ready() {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The `/metrics` page as it would be served now.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        metrics::render(
            &mut out,
            &Scrape {
                cores: &self.shared.metrics,
                store: &self.shared.store,
                status: &self.shared.status,
                ready: self.is_ready(),
                filler: self.shared.filler.as_ref(),
            },
        );
        out
    }

    /// Stops accepting, lets in-flight requests finish (up to `--drain-timeout`),
    /// closes every connection, stops the sync thread, and waits for all of it.
    pub fn shutdown(mut self) -> Result<(), Error> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + self.shared.config.drain_timeout;
        self.shared.stop.store(true, Ordering::Relaxed);
        // The sync thread stops alongside the drain: the store stays readable.
        let sync_stopped = self.subscriber.take().map(stop_subscriber);
        let mut result = Ok(());
        for (index, handle) in self.executors.drain(..).enumerate() {
            if let Err(e) = handle.join() {
                let cpu = self.cpus.get(index).copied().unwrap_or(0);
                warn!(index, cpu, error = %e, "executor ended with an error");
                if result.is_ok() {
                    result = Err(Error::Executor {
                        index,
                        cpu,
                        message: e.to_string(),
                    });
                }
            }
        }
        if let Some(done) = sync_stopped {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100));
            if done.recv_timeout(wait).is_err() {
                warn!("sync thread did not stop in time; leaving it behind");
            }
        }
        result
    }
}

impl Drop for ReaderHandle {
    fn drop(&mut self) {
        if !self.executors.is_empty() || self.subscriber.is_some() {
            let _ = self.stop();
        }
    }
}

/// Stops the sync thread on a helper thread (it may be blocked on a Redis
/// command up to its command timeout); the receiver hears when it is done.
fn stop_subscriber(sub: Subscriber) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("heavyread-sync-stop".into())
        .spawn(move || {
            sub.shutdown();
            let _ = tx.send(());
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot stop the sync thread");
    }
    rx
}

/// Validates `config`, checks the environment, starts the sync thread and
/// the executors, and returns once every executor listens.
pub fn start(config: Config) -> Result<ReaderHandle, Error> {
    config.validate()?;
    limits::check_io_uring()?;
    let cpus = cpus::select(config.cores)?;
    limits::ensure_memlock(cpus.len(), config.io_memory)?;
    // Each core's connections, the refused ones still lingering, and the
    // rest of the process (Redis connections, the listeners, files).
    limits::raise_nofile(
        (cpus.len() as u64).saturating_mul(
            config.max_connections_per_core as u64 + crate::executor::MAX_LINGERING_REFUSALS as u64,
        ) + 256,
    );

    let (store, writer) = Store::with_budget(config.max_memory);
    // The sync thread (and the fill threads) get a short time slice: when a
    // change arrives on a CPU busy serving reads they run within about
    // SYNC_SLICE instead of a default slice, which bounds propagation's tail.
    // They inherit it from this thread, which goes back to the default after.
    let short = sys::set_time_slice(SYNC_SLICE);
    let subscriber = Subscriber::spawn(config.sync_config(), writer);
    if short.is_ok() {
        let _ = sys::set_time_slice(Duration::ZERO);
    }
    let subscriber = subscriber?;
    let shared = Arc::new(Shared {
        store,
        status: Arc::clone(subscriber.status()),
        filler: subscriber.filler().cloned(),
        metrics: (0..cpus.len()).map(|_| CoreMetrics::default()).collect(),
        stop: AtomicBool::new(false),
        tag: request_id::process_tag(),
        config,
    });
    let mut handle = ReaderHandle {
        addr: shared.config.listen,
        cpus: cpus.clone(),
        shared: Arc::clone(&shared),
        executors: Vec::with_capacity(cpus.len()),
        subscriber: Some(subscriber),
    };
    // The first executor binds the configured address; the others bind the
    // address it got, so with port 0 they all join one SO_REUSEPORT group.
    let mut addr = shared.config.listen;
    for (index, &cpu) in cpus.iter().enumerate() {
        match spawn_executor(index, cpu, addr, &shared) {
            Ok((bound, join)) => {
                handle.executors.push(join);
                if index == 0 {
                    addr = bound;
                    handle.addr = bound;
                }
            }
            Err(e) => {
                // Stops and joins what already started.
                drop(handle);
                return Err(e);
            }
        }
    }
    let c = &shared.config;
    info!(
        addr = %handle.addr,
        cpus = ?cpus,
        io_memory = c.io_memory,
        max_connections_per_core = c.max_connections_per_core,
        max_staleness_ms = c.max_staleness.as_millis() as u64,
        max_memory = c.max_memory.unwrap_or(0),
        "reader listening"
    );
    Ok(handle)
}

fn spawn_executor(
    index: usize,
    cpu: usize,
    addr: SocketAddr,
    shared: &Arc<Shared>,
) -> Result<(SocketAddr, ExecutorJoinHandle<()>), Error> {
    let (tx, rx) = mpsc::channel::<Result<SocketAddr, Error>>();
    let shared_for_executor = Arc::clone(shared);
    let fail = |message: String| Error::Executor {
        index,
        cpu,
        message,
    };
    let join = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name(&format!("heavyread-reader-{index}"))
        .io_memory(shared.config.io_memory as usize)
        .spawn(move || async move {
            let listener = match executor::bind(addr) {
                Ok(l) => l,
                Err(source) => {
                    let _ = tx.send(Err(Error::Bind { addr, source }));
                    return;
                }
            };
            let bound = match listener.local_addr() {
                Ok(a) => a,
                Err(e) => {
                    let _ = tx.send(Err(Error::Bind {
                        addr,
                        source: std::io::Error::from(e),
                    }));
                    return;
                }
            };
            let core = match Core::new(index, shared_for_executor) {
                Ok(core) => Rc::new(core),
                Err(e) => {
                    let _ = tx.send(Err(Error::Executor {
                        index,
                        cpu,
                        message: format!("cannot create an epoll instance: {e}"),
                    }));
                    return;
                }
            };
            let _ = tx.send(Ok(bound));
            executor::run(core, listener).await;
        })
        .map_err(|e| fail(e.to_string()))?;
    match rx.recv() {
        Ok(Ok(bound)) => Ok((bound, join)),
        Ok(Err(e)) => {
            let _ = join.join();
            Err(e)
        }
        // The executor could not even be created: its error is in the join.
        Err(_) => Err(fail(match join.join() {
            Err(e) => e.to_string(),
            Ok(()) => "stopped before listening".into(),
        })),
    }
}
