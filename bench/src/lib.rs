//! heavyread benchmark tools.
//!
//! Numbers come from these programs, never from timed tests. Each starts what
//! it measures (its own redis-server on a free port, a subscriber, ...) so a
//! run is reproducible with one command.
//!
//! # Layout
//! - `sync`: the sync library alone: publish-to-applied latency at a fixed
//!   write rate, and bootstrap time of a large hash.
//! - `data`: deterministic post bodies of realistic size.

pub mod data;
pub mod sync;
