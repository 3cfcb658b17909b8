//! heavyread-sync keeps every heavyread reader coherent with Redis.
//!
//! A writer publishes each change through one atomic Redis Function call
//! ([`schema::LIBRARY`]): the global version is incremented, the record is
//! stored in a hash, appended to a capped change log and published on a
//! channel. In each reader process a sync thread ([`Subscriber`]) subscribes
//! first, then bootstraps from the hash or catches up from the log, and
//! applies every record to the [`Store`], a lock-free papaya map of
//! ready-to-send bytes that the reader's executors read.
//!
//! # Layout
//!
//! ```text
//! writer ──Publisher──► FCALL heavyread_put/delete/put_packed ──► {p}:posts, {p}:version, {p}:log
//!                                  │ PUBLISH {p}:changes
//!                                  ▼
//!         pub/sub thread ──crossbeam channel──► sync thread ──StoreWriter──► Store ◄── executors
//!                                               (bootstrap: HSCAN; gaps: XRANGE + HMGET)
//! ```
//!
//! - [`record`]: the binary record format, strict decoder.
//! - [`schema`]: key names and the Redis Function library.
//! - [`store`]: the map, its entries and its single writer (unbounded, or
//!   bounded by a byte budget with CLOCK eviction).
//! - [`fill`]: read-through fills from Redis for a bounded store.
//! - [`subscriber`]: the sync thread.
//! - [`status`]: what the sync thread reports (state, counters, histogram).
//! - `publisher` (feature `publisher`): the async writer side; the reader
//!   builds without it and so without tokio.
//! - `testing` (feature `testing`): a real `redis-server` on a free port for tests.

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod fill;
#[cfg(feature = "publisher")]
pub mod publisher;
pub mod record;
pub mod scan;
pub mod schema;
pub mod status;
pub mod store;
pub mod subscriber;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::SyncConfig;
pub use error::Error;
pub use fill::{FillConfig, FillError, FillOutcome, Filler};
#[cfg(feature = "publisher")]
pub use publisher::{Publisher, PutBatch, Written};
pub use record::{Op, RecordRef};
pub use schema::Keys;
pub use status::{StatusSnapshot, SyncStatus};
pub use store::{Entry, Guard, Store, StoreWriter};
pub use subscriber::Subscriber;
