//! heavyread benchmark tools.
//!
//! Numbers come from these programs, never from timed tests. Each tool
//! measures one thing and writes its result as JSON; `report` turns a
//! folder of results into `bench/benchmark-report.md` with SVG plots.
//! `bench/run_benchmark.sh` (`make bench`) starts a private stack (its own
//! redis-server, writer, readers, nginx, the axum baseline, the syscall
//! floor) and runs them all in one go, so a run is reproducible with one
//! command.
//!
//! ```text
//! seed ──/bulk──► writer ──FCALL──► Redis ──pub/sub──► readers ◄── wrk (random, pipeline, revalidate)
//!                                     ▲                  ▲   ◄── propagation (polls for the new ETag)
//!                          baseline-axum (HGET per request)  ◄── bandwidth, memory, coldstart
//! ```
//!
//! # Layout
//! - `seed`, `export`: load posts through the writer; write what Redis holds
//!   as static files (nginx baseline) and an ETag list (revalidations).
//! - `wrk`: one wrk run with the server's CPU time from `/proc`, parsed.
//! - `propagation`, `memory`, `coldstart`, `bandwidth`, `writes`: the other
//!   measurements of the suite.
//! - `bounded`: the reader with a memory budget (issue 8) under a Zipf load
//!   (`wrk/zipf.lua`), and its CPU per request on hits.
//! - `baseline`: the axum service that reads Redis on every request.
//! - `floor`: the syscall floor, a minimal epoll server that answers every
//!   request head with one fixed answer (one `recv`, one `send` per read):
//!   the least CPU per request any server can use on the machine.
//! - `report`, `plot`: the markdown report and its SVG plots.
//! - `openloop`: reads at a fixed rate, latency from when each was due.
//! - `pingpong`: one request at a time on one connection, so each one wakes
//!   the server: its CPU per request and round trip.
//! - `client`: a minimal keep-alive HTTP/1.1 client that counts bytes.
//! - `process`, `procfs`, `sys`: child processes, `/proc` parsing, and the
//!   libc calls of the tools (epoll, `accept4`, timer slack and a few
//!   more: the only `unsafe`).
//! - `stats`, `results`: latency summaries and formatting; result files.
//! - `sync`: the sync library alone (publish-to-applied latency, bootstrap).
//! - `data`: deterministic post bodies of realistic size.

#![warn(missing_docs)]

pub mod aof;
pub mod bandwidth;
pub mod baseline;
pub mod bounded;
pub mod client;
pub mod coldstart;
pub mod data;
pub mod export;
pub mod floor;
pub mod memory;
pub mod openloop;
pub mod pingpong;
pub mod plot;
pub mod process;
pub mod procfs;
pub mod propagation;
pub mod report;
pub mod results;
pub mod seed;
pub mod stats;
pub mod sync;
mod sys;
pub mod writes;
pub mod wrk;
