//! heavyread reader: serves posts from memory over HTTP/1.1, one glommio
//! executor pinned per CPU, while a sync thread keeps the store equal to
//! Redis.
//!
//! ```text
//!             SO_REUSEPORT group on --listen
//!      ┌──────────────┬──────────────┐
//!  executor 0     executor 1  ...  executor N-1    (glommio, pinned, io_uring)
//!   accept loop, connections, control tick (date, timeouts, drain)
//!      │ Store::get under a guard: lock-free, read-only
//!      ▼
//!    Store ◄── StoreWriter ── sync thread (heavyread-sync) ◄── Redis
//! ```
//!
//! # Using it from other crates and tests
//!
//! ```no_run
//! use std::time::Duration;
//! use heavyread_reader::{start, Config};
//!
//! let mut config = Config::new("redis://127.0.0.1:6379");
//! config.listen = "127.0.0.1:0".parse().unwrap(); // any free port
//! config.cores = Some(1);
//! let reader = start(config)?;                     // returns once it listens
//! let addr = reader.local_addr();                  // where to send requests
//! reader.wait_ready(Duration::from_secs(5));       // bootstrapped from Redis
//! reader.shutdown()?;                              // drain and stop
//! # Ok::<(), heavyread_reader::Error>(())
//! ```
//!
//! The binary (`target/{debug,release}/heavyread-reader`) takes the same
//! settings as flags or `HEAVYREAD_*` variables (see [`Config`]), logs with
//! tracing (`RUST_LOG`, `--log-format text|json`), and on SIGTERM or SIGINT
//! stops accepting, drains and exits 0 ([`run`]).
//!
//! # Layout
//!
//! - [`config`]: flags and environment, validated once.
//! - [`server`]: [`start`] and [`ReaderHandle`]: checks, sync thread, executors.
//! - `executor`: one pinned executor (accept loop, control tick, drain).
//! - `connection`: one client connection (read, answer a batch, write once).
//! - [`http`]: request parsing and response writing, pure functions.
//! - [`metrics`]: per-core counters and the Prometheus page.
//! - [`limits`], [`cpus`]: RLIMIT_MEMLOCK, io_uring and CPU checks at start.
//! - [`request_id`]: `X-Request-Id` echo and generation.
//! - `sys`: the only `unsafe` code (affinity, rlimits, io_uring probe, shutdown).

#![warn(missing_docs)]

pub mod config;
mod connection;
pub mod cpus;
pub mod error;
mod executor;
pub mod http;
pub mod limits;
pub mod metrics;
mod poller;
pub mod request_id;
pub mod server;
mod sys;

pub use config::{Config, LogFormat};
pub use error::Error;
pub use server::{start, ReaderHandle};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{info, warn};

/// Starts a reader and blocks until SIGTERM or SIGINT; then stops accepting,
/// drains within `--drain-timeout` and returns. A second signal exits at once.
pub fn run(config: Config) -> Result<(), Error> {
    // Installed before starting, so an early signal still drains.
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let reader = start(config)?;
    let signal = signals.forever().next();
    info!(?signal, "signal received: draining");
    let again = std::thread::Builder::new()
        .name("heavyread-signal".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                warn!(signal, "second signal: exiting without draining");
                std::process::exit(1);
            }
        });
    if let Err(e) = again {
        warn!(error = %e, "cannot watch for a second signal");
    }
    let result = reader.shutdown();
    info!("reader stopped");
    result
}
