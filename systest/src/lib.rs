//! heavyread-systest drives the whole system as real processes — a
//! `redis-server`, the `heavyread-writer` binary and three `heavyread-reader`
//! binaries — and breaks it while it works: Redis killed or wiped, a reader
//! paused, killed or cut off from Redis, subscriptions killed, the writer
//! killed in the middle of a bulk load. The scenarios are in
//! `tests/faults.rs`; this library is the stack they drive and the checks
//! they make.
//!
//! ```text
//! writer task ──POST /create, DELETE──► writer ──FCALL──► redis-server ──PUBLISH──► reader × 3
//!      │ every answer                                        │ HGETALL                  ▲ GET /post, /metrics
//!      ▼                                                     ▼                          │
//!   Ledger ─────────── allowed states per id ──────────► check ◄──────────── pollers (one per reader)
//! ```
//!
//! After each fault heals, the check waits until every reader equals Redis
//! exactly (every id, ETag and body, the applied version and the entry
//! count), checks that Redis holds every write the writer acknowledged
//! unless a later write replaced it, and that no poller saw a key go back to
//! an older version on the same reader.
//!
//! # Layout
//!
//! - [`bins`]: finds (and if needed builds) the reader and writer binaries.
//! - [`process`]: a spawned binary: its address, its logs, signals.
//! - [`http`]: a small blocking HTTP/1.1 client on keep-alive connections.
//! - [`netns`]: a network namespace with veth pairs, to cut a reader off silently.
//! - [`ledger`]: every write the test made and what the writer answered.
//! - [`workload`]: the writer task and the pollers that run during faults.
//! - [`stack`]: the processes together, the marker write and the convergence checks.
//! - [`report`]: convergence times, printed and collected in `target/systest-convergence.md`.

#![warn(missing_docs)]

pub mod bins;
pub mod http;
pub mod ledger;
pub mod netns;
pub mod process;
pub mod report;
pub mod stack;
pub mod workload;

/// The `seq=<n>` every body written by the tests carries, or `None`.
///
/// The writer task numbers its writes with one increasing counter and puts
/// the number in the post's content, so a reader's answer says which write
/// it is and the order of two answers for one id is the order of the writes.
pub fn seq_of(body: &[u8]) -> Option<u64> {
    let at = body.windows(4).position(|w| w == b"seq=")? + 4;
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// The HTTP form of a body's ETag: quoted lowercase hex MD5.
pub fn quoted_etag_of(body: &[u8]) -> String {
    quoted(&heavyread_sync::record::etag_of(body))
}

/// Quoted lowercase hex of a raw etag.
pub fn quoted(etag: &[u8; 16]) -> String {
    let hex = heavyread_sync::record::etag_hex(etag);
    format!("\"{}\"", String::from_utf8_lossy(&hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_is_read_from_the_content() {
        assert_eq!(seq_of(br#"{"id":"a","content":"seq=42;x"}"#), Some(42));
        assert_eq!(seq_of(b"{}"), None);
        assert_eq!(seq_of(b"seq="), None);
    }
}
