//! The open-loop load tool against a small real HTTP server on a socket:
//! it offers the rate it is asked for, counts every answer, and charges a
//! stall to every request that was due during it (no coordinated omission).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heavyread_bench::openloop::{run, OpenloopOptions};

/// What the test server does besides answering `200 ok`.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// The `stall_at`-th request (counted across connections, 0 = never)
    /// is answered after `stall`.
    stall_at: u64,
    stall: Duration,
    /// The connection that brings the `drop_at`-th request (0 = never) is
    /// closed without an answer.
    drop_at: u64,
    /// A connection that sends nothing for this long after an answer is
    /// closed, as servers close idle keep-alive connections.
    idle_close: Option<Duration>,
    /// Every `close_every`-th request (0 = never) is answered with
    /// `Connection: close`, and its connection closed after the answer.
    close_every: u64,
    /// Once this many requests were seen (0 = never), every connection is
    /// closed as soon as it brings a request or is accepted, as by a
    /// server over its connection limit.
    refuse_after: u64,
    /// The `down_after`-th request (0 = never) takes the server down for
    /// `down_for`: it stops listening (connects are refused) and closes
    /// every connection that brings a request; then it listens again.
    down_after: u64,
    down_for: Duration,
}

/// What the server's threads share.
#[derive(Default)]
struct Shared {
    /// Requests seen, on every connection.
    seen: AtomicU64,
    /// When the server went down (`Faults::down_after`).
    down_since: Mutex<Option<Instant>>,
    /// The listening socket, non-blocking; `None` while down. The thread
    /// that takes the server down closes it at once.
    listener: Mutex<Option<TcpListener>>,
}

impl Shared {
    fn down(&self, faults: &Faults) -> bool {
        matches!(*self.down_since.lock().unwrap(), Some(t) if t.elapsed() < faults.down_for)
    }
}

/// Serves `200 ok` to every request on every connection, with `faults`.
fn server(faults: Faults) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let shared = Arc::new(Shared::default());
    *shared.listener.lock().unwrap() = Some(listener);
    std::thread::spawn(move || loop {
        // Polled, so that it can stop listening and listen again.
        let accepted = {
            let mut l = shared.listener.lock().unwrap();
            if l.is_none() && !shared.down(&faults) {
                // Back up (the port may be taken for a moment: tried again).
                *l = TcpListener::bind(addr).ok();
                if let Some(l) = l.as_ref() {
                    l.set_nonblocking(true).unwrap();
                }
            }
            l.as_ref().map(|l| l.accept())
        };
        match accepted {
            Some(Ok((conn, _))) => {
                conn.set_nonblocking(false).unwrap();
                let shared = shared.clone();
                std::thread::spawn(move || serve(conn, &shared, faults));
            }
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    });
    addr
}

fn serve(mut conn: TcpStream, shared: &Shared, faults: Faults) {
    let seen = &shared.seen;
    if faults.refuse_after > 0 && seen.load(Ordering::Relaxed) >= faults.refuse_after {
        return;
    }
    conn.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
            if n == faults.drop_at || (faults.refuse_after > 0 && n > faults.refuse_after) {
                return;
            }
            if n == faults.down_after {
                *shared.down_since.lock().unwrap() = Some(Instant::now());
                shared.listener.lock().unwrap().take();
            }
            if shared.down(&faults) {
                return;
            }
            if n == faults.stall_at {
                std::thread::sleep(faults.stall);
            }
            if faults.close_every > 0 && n.is_multiple_of(faults.close_every) {
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                );
                return;
            }
            if conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
            conn.set_read_timeout(faults.idle_close).unwrap();
        }
        // A read timeout is the idle limit: the connection is dropped.
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn options(addr: SocketAddr, rate: f64, secs: f64) -> OpenloopOptions {
    OpenloopOptions {
        label: "test".into(),
        server: "test server".into(),
        addr,
        rate,
        max_rate: 0.0,
        connections: 8,
        secs,
        warmup_secs: 0.2,
        ids: 1000,
        pids: vec![std::process::id()],
        tick: Duration::from_micros(50),
    }
}

/// Runs the load on this thread; its result, the thread's CPU seconds and
/// the wall seconds it took.
fn run_timed(o: &OpenloopOptions) -> (heavyread_bench::openloop::OpenloopResult, f64, f64) {
    let before = heavyread_bench::procfs::thread_cpu_secs().unwrap();
    let wall = std::time::Instant::now();
    let r = run(o).unwrap();
    let used = heavyread_bench::procfs::thread_cpu_secs().unwrap() - before;
    (r, used, wall.elapsed().as_secs_f64())
}

/// The whole tool runs on this thread: with little to do it must sleep.
fn assert_mostly_asleep(used: f64, wall: f64) {
    assert!(
        used < 0.5 * wall,
        "the tool's thread used {used:.2} s of CPU in {wall:.2} s"
    );
}

#[test]
fn offers_the_rate_and_counts_every_answer() {
    let addr = server(Faults::default());
    let r = run(&options(addr, 2000.0, 1.0)).unwrap();
    // 2000/s for 1 s: 2000 requests fall due in the window, to within the edges.
    assert!((1998..=2002).contains(&r.due), "{r:?}");
    assert_eq!(r.ok, r.due, "{r:?}");
    assert_eq!(r.errors, 0);
    assert_eq!(r.latency.count, r.ok);
    assert_eq!(r.service.count, r.ok);
    assert!(r.latency.p50 > 0.0 && r.latency.p50 <= r.latency.p99);
    assert!((r.achieved_rate - 2000.0).abs() < 10.0, "{r:?}");
    assert!(
        r.cpu_us_per_req > 0.0,
        "this process's CPU was measured: {r:?}"
    );
}

#[test]
fn a_stall_is_charged_to_every_request_due_during_it() {
    // One connection, and one answer (after the warm-up's ~400 requests)
    // takes 300 ms: the ~600 requests due meanwhile queue behind it.
    let addr = server(Faults {
        stall_at: 600,
        stall: Duration::from_millis(300),
        ..Faults::default()
    });
    let mut o = options(addr, 2000.0, 1.0);
    o.connections = 1;
    let r = run(&o).unwrap();
    assert_eq!(r.ok, r.due, "{r:?}");
    // Each of them waited for the stall: well over 10% of the samples are
    // above 100 ms, and the worst about 300 ms.
    assert!(r.latency.max >= 290_000.0, "{r:?}");
    assert!(r.latency.p90 >= 100_000.0, "{r:?}");
    assert!(r.queued >= 500, "{r:?}");
    // Their service times (send to answer) stay small but for the stalled one.
    assert!(r.service.p90 < 50_000.0, "{r:?}");
}

#[test]
fn the_dispatcher_sleeps_between_ticks_instead_of_spinning() {
    // The whole tool runs on this thread: at 2000 req/s it has little to do,
    // and a dispatcher that spun would use all of the thread's time.
    let addr = server(Faults::default());
    let (r, used, wall) = run_timed(&options(addr, 2000.0, 1.5));
    assert_eq!(r.ok, r.due, "{r:?}");
    assert_mostly_asleep(used, wall);
    // Requests still go out on time: late by about a tick, not a millisecond.
    assert!(r.latency.p50 < 1_000.0, "{r:?}");
}

#[test]
fn a_connection_the_server_dropped_loses_its_request_and_is_made_again() {
    // The 600th request (in the measured window) is never answered: its
    // connection is closed under it.
    let addr = server(Faults {
        drop_at: 600,
        ..Faults::default()
    });
    let r = run(&options(addr, 2000.0, 1.0)).unwrap();
    // `errors` is what was due and not answered: this one.
    assert_eq!(r.errors, 1, "{r:?}");
    assert_eq!(r.reconnects, 1, "{r:?}");
}

#[test]
fn connections_the_server_closes_while_idle_are_made_again_before_use() {
    // 25 requests a second over 8 connections: each waits 320 ms between
    // requests, and the server closes a connection idle for 30 ms after an
    // answer. Every request would find its connection closed if the tool
    // did not notice the close while the connection waited and make it
    // again (a new connection is not closed before its first request, so
    // no request races a close).
    let addr = server(Faults {
        idle_close: Some(Duration::from_millis(30)),
        ..Faults::default()
    });
    let r = run(&options(addr, 25.0, 2.0)).unwrap();
    assert!((49..=51).contains(&r.due), "{r:?}");
    assert_eq!((r.ok, r.errors), (r.due, 0), "{r:?}");
    // Each request's connection was closed after its answer.
    assert!(r.reconnects >= r.due, "{r:?}");
}

#[test]
fn connections_the_server_says_it_closes_are_made_again_without_losing_a_request() {
    // One connection; the 600th answer (in the measured window) comes after
    // 50 ms and says `Connection: close`, as does every 600th. The ~100
    // requests due during the stall wait in the backlog: the next one must
    // go out on a new connection, not on the one the server closes.
    let addr = server(Faults {
        stall_at: 600,
        stall: Duration::from_millis(50),
        close_every: 600,
        ..Faults::default()
    });
    let mut o = options(addr, 2000.0, 1.0);
    o.connections = 1;
    let r = run(&o).unwrap();
    assert!(r.queued >= 50, "{r:?}");
    assert_eq!((r.ok, r.errors), (r.due, 0), "{r:?}");
    // 2,400 requests with the warm-up: 4 closes.
    assert!((3..=4).contains(&r.reconnects), "{r:?}");
}

#[test]
fn a_server_that_closes_every_connection_does_not_make_the_tool_spin() {
    // After 300 requests (in the warm-up) every connection is closed at
    // once: requests fail, and connections are made again ever more
    // slowly instead of in a tight loop.
    let addr = server(Faults {
        refuse_after: 300,
        ..Faults::default()
    });
    let (r, used, wall) = run_timed(&options(addr, 2000.0, 1.5));
    assert_eq!(r.ok, 0, "{r:?}");
    // 8 connections, each made again at once, then after 1, 2, 4 ... ms up
    // to 1 s: about 15 times each in the run's 4 s or so, not thousands.
    assert!(r.reconnects <= 8 * 20, "{r:?}");
    assert_mostly_asleep(used, wall);
}

#[test]
fn a_server_that_goes_down_is_tried_ever_more_slowly_and_used_again_once_back() {
    // The 500th request (measured) takes the server down for 500 ms:
    // connects are refused at once meanwhile. Connections are tried again
    // after 1, 2, 4 ... ms (not in a tight loop), and once it listens again
    // they are made again and answers come back.
    let addr = server(Faults {
        down_after: 500,
        down_for: Duration::from_millis(500),
        ..Faults::default()
    });
    let (r, used, wall) = run_timed(&options(addr, 2000.0, 1.5));
    // Lost: that request, and the next one sent on each of the 8
    // connections before it was found closed (one each; twice that is the
    // bound). The rest waited for a connection and was answered once the
    // server was back.
    assert!((1..=16).contains(&r.errors), "{r:?}");
    assert!(r.queued > 500, "{r:?}");
    // Back by about 0.15 + 0.5 + 0.5 s at the latest: a good part of the
    // 1.5 s measured from 0.2 s on is answered.
    assert!(r.ok > r.due / 4, "{r:?}");
    // Each of the 8 connections made again once the server was back
    // (refused connects do not count).
    assert!((8..=16).contains(&r.reconnects), "{r:?}");
    // Tried again after 0, 1, 2, 4 ... 256 ms during the 500 ms down: 9
    // or 10 refused connects each (72 in a run here), where a tool that
    // tried again at once made 80,490.
    assert!((8..=8 * 20).contains(&r.failed_connects), "{r:?}");
    assert_mostly_asleep(used, wall);
}
