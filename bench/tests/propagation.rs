//! The propagation tool against a writer slower than the rate it is asked
//! for, on real sockets: it keeps at most `max_in_flight` writes (and so
//! writer connections) open, says how many writes waited for one, and still
//! makes every write, instead of opening a connection per due write until
//! it runs out of descriptors; and a reader that stops answering or breaks
//! its connections counts as timeouts (and poll errors) of that reader,
//! without holding the run or failing the writes; and a prewarmed
//! connection the reader closed before the run came to use it costs no
//! poll error.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use heavyread_bench::propagation::{propagation, PropagationOptions};

/// A writer that answers every `POST` with a 201 and an ETag after `delay`;
/// counts the connections it accepted.
fn slow_writer(delay: Duration, accepted: Arc<AtomicUsize>) -> SocketAddr {
    serve_all(move |conn| {
        accepted.fetch_add(1, Ordering::SeqCst);
        answer_heads(conn, |_| {
            std::thread::sleep(delay);
            Some(b"HTTP/1.1 201 Created\r\nETag: \"e\"\r\nContent-Length: 0\r\n\r\n".to_vec())
        });
    })
}

/// A reader that already serves every write: 304 (with its ETag) to all.
fn reader() -> SocketAddr {
    serve_all(|conn| {
        answer_heads(conn, |_| {
            Some(b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n".to_vec())
        });
    })
}

/// What a failing reader does after its first answers.
#[derive(Clone, Copy)]
enum Failing {
    /// Keeps the connection and never answers.
    Silent,
    /// Closes the connection.
    Closes,
}

/// A reader like [`reader`] for its first `answers` requests (over all
/// connections), then failing as `how` says.
fn failing_reader(answers: usize, how: Failing) -> SocketAddr {
    let served = Arc::new(AtomicUsize::new(0));
    serve_all(move |conn| {
        let served = served.clone();
        answer_heads(conn, move |_| {
            if served.fetch_add(1, Ordering::SeqCst) < answers {
                return Some(b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n".to_vec());
            }
            if let Failing::Silent = how {
                std::thread::sleep(Duration::from_secs(3600));
            }
            None
        });
    })
}

/// A reader like [`reader`] that answers after `delay`, and that closes the
/// connections it accepted before a second connection sent its first
/// request, and that had sent none by then, when they send one: as the
/// reader closes a connection that sends no request within its header
/// timeout, while the run's pool kept it idle. Counts those it closed.
fn reader_closing_stale_connections(delay: Duration, closed: Arc<AtomicUsize>) -> SocketAddr {
    // Connections that have sent a request; the second one ends the epoch
    // in which the stale connections were accepted.
    let used = Arc::new(AtomicUsize::new(0));
    serve_all(move |conn| {
        let stale_epoch = used.load(Ordering::SeqCst) < 2;
        let first = Cell::new(true);
        let (used, closed) = (used.clone(), closed.clone());
        answer_heads(conn, move |_| {
            if first.replace(false) {
                let before = used.fetch_add(1, Ordering::SeqCst);
                if stale_epoch && before >= 2 {
                    closed.fetch_add(1, Ordering::SeqCst);
                    return None;
                }
            }
            std::thread::sleep(delay);
            Some(b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n".to_vec())
        });
    })
}

fn serve_all(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let handle = handle.clone();
            std::thread::spawn(move || handle(conn));
        }
    });
    addr
}

/// Reads requests (head, then `Content-Length` bytes of body) and writes
/// `answer(head)` for each, until the peer closes or an answer is `None`.
fn answer_heads(mut conn: TcpStream, answer: impl Fn(&[u8]) -> Option<Vec<u8>>) {
    conn.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let body = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if buf.len() < end + 4 + body {
                break;
            }
            let Some(reply) = answer(&buf[..end]) else {
                return;
            };
            buf.drain(..end + 4 + body);
            if conn.write_all(&reply).is_err() {
                return;
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The options of these runs: 400 writes/s for 0.25 s (100 writes), every
/// 10th tracked, up to 64 in flight.
fn options(writer: SocketAddr, readers: Vec<SocketAddr>, timeout: Duration) -> PropagationOptions {
    PropagationOptions {
        writer,
        readers,
        rate: 400,
        secs: 0.25,
        ids: 100,
        body_len: 50,
        timeout,
        id_prefix: "t-".into(),
        token: None,
        prewarm: 1,
        track_every: 10,
        redis_url: None,
        max_in_flight: 64,
    }
}

/// One propagation run on its own runtime.
fn run(o: &PropagationOptions) -> anyhow::Result<heavyread_bench::propagation::PropagationResult> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            // A poll with no bound of its own would hold the run for good.
            tokio::time::timeout(Duration::from_secs(30), propagation(o))
                .await
                .expect("the run did not end within 30 s")
        })
}

#[test]
fn a_writer_slower_than_the_rate_gets_at_most_max_in_flight_connections() {
    let accepted = Arc::new(AtomicUsize::new(0));
    // 4 writes in flight of 5 ms each: at most 800 writes/s, asked for 4,000.
    let writer = slow_writer(Duration::from_millis(5), accepted.clone());
    let o = PropagationOptions {
        rate: 4000,
        max_in_flight: 4,
        ..options(writer, vec![reader()], Duration::from_secs(5))
    };
    let r = run(&o).unwrap();
    // Every due write was made, none failed, and the tool says the cap held
    // writes back: the rate was not achieved.
    assert_eq!(r.writes, 1000, "{r:?}");
    assert_eq!(r.failed, 0);
    assert!(r.waited > 0, "{r:?}");
    assert_eq!(r.max_in_flight, 4);
    assert!(r.achieved_rate < 2000.0, "{}", r.achieved_rate);
    assert_eq!(r.all.timeouts, 0);
    // Never more writer connections than writes in flight (the first write,
    // made before the run, reuses the prewarmed one).
    let n = accepted.load(Ordering::SeqCst);
    assert!((1..=4).contains(&n), "{n} writer connections");
    assert!(heavyread_bench::propagation::fmt_waited(&r)
        .is_some_and(|w| w.ends_with("waited for one of the 4 writes in flight to finish")));
}

/// A run with one good reader and one that fails after the answers the
/// run's start needs (the first write's poll, then one GET and 1,000 polls
/// of the round-trip measurement), its polls bounded by a 300 ms timeout.
fn run_with_failing_reader(how: Failing) -> heavyread_bench::propagation::PropagationResult {
    let writer = slow_writer(Duration::ZERO, Arc::new(AtomicUsize::new(0)));
    let readers = vec![reader(), failing_reader(1 + 1 + 1000, how)];
    run(&options(writer, readers, Duration::from_millis(300))).unwrap()
}

#[test]
fn a_reader_that_stops_answering_counts_as_timeouts_and_does_not_hold_the_run() {
    let r = run_with_failing_reader(Failing::Silent);
    // 100 writes, every 10th tracked: none failed, and every tracked one
    // timed out on the silent reader only.
    assert_eq!((r.writes, r.failed), (100, 0), "{r:?}");
    assert_eq!(r.readers[0].timeouts, 0, "{r:?}");
    assert_eq!(r.readers[1].timeouts, 10, "{r:?}");
    assert_eq!(r.all.timeouts, 10, "{r:?}");
    assert_eq!(r.poll_errors, 0, "{r:?}");
}

#[test]
fn a_reader_that_breaks_its_connections_counts_as_poll_errors_not_failed_writes() {
    let r = run_with_failing_reader(Failing::Closes);
    assert_eq!((r.writes, r.failed), (100, 0), "{r:?}");
    assert_eq!(r.readers[0].timeouts, 0, "{r:?}");
    assert_eq!(r.readers[1].timeouts, 10, "{r:?}");
    assert_eq!(r.poll_errors, 10, "{r:?}");
    assert!(
        heavyread_bench::propagation::fmt_poll_errors(&r).is_some_and(
            |f| f.starts_with("10 tracked (write, reader) pairs broke off on a reader's error")
        )
    );
}

#[test]
fn a_reader_that_fails_the_first_write_is_named_with_its_error() {
    let writer = slow_writer(Duration::ZERO, Arc::new(AtomicUsize::new(0)));
    let broken = failing_reader(0, Failing::Closes);
    let o = options(writer, vec![reader(), broken], Duration::from_secs(5));
    let e = run(&o).expect_err("a run whose reader closes every connection went on");
    let msg = format!("{e:#}");
    // The broken reader, by address, with what went wrong; not the good one.
    assert!(
        msg.starts_with(&format!(
            "the first write did not reach every reader: reader {broken}: "
        )),
        "{msg}"
    );
    assert!(!msg.contains("not served within"), "{msg}");
}

#[test]
fn a_prewarmed_connection_the_reader_closed_is_replaced_not_counted_as_an_error() {
    let writer = slow_writer(Duration::ZERO, Arc::new(AtomicUsize::new(0)));
    let closed = Arc::new(AtomicUsize::new(0));
    // The first write's poll uses one prewarmed connection and the
    // round-trip measurement its own (the second): the other 7 are stale
    // from then on. Every write tracked, each poll answered after 2 ms:
    // polls overlap, and the run takes stale connections from the pool.
    let readers = vec![reader_closing_stale_connections(
        Duration::from_millis(2),
        closed.clone(),
    )];
    let o = PropagationOptions {
        prewarm: 8,
        track_every: 1,
        rate: 2000,
        ..options(writer, readers, Duration::from_secs(5))
    };
    let r = run(&o).unwrap();
    let closed = closed.load(Ordering::SeqCst);
    assert!(closed > 0, "the run used no stale connection: {r:?}");
    assert_eq!((r.writes, r.failed), (500, 0), "{r:?}");
    assert_eq!(r.poll_errors, 0, "{closed} stale connections: {r:?}");
    // Each counted, and the retry is one more poll: not a first-poll hit.
    assert_eq!(r.replaced_connections, closed as u64, "{r:?}");
    assert_eq!(r.first_poll_hits, Some(500 - closed as u64), "{r:?}");
    assert!(heavyread_bench::propagation::fmt_replaced(&r)
        .is_some_and(|f| f.starts_with(&format!("{closed} polls sent again on a new connection"))));
    assert_eq!(r.all.timeouts, 0, "{r:?}");
    assert_eq!(r.all.latency.count, 500, "{r:?}");
}
