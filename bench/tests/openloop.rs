//! The open-loop load tool against a small real HTTP server on a socket:
//! it offers the rate it is asked for, counts every answer, and charges a
//! stall to every request that was due during it (no coordinated omission).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use heavyread_bench::openloop::{run, OpenloopOptions};

/// Serves `200 ok` to every request on every connection; the `stall_at`-th
/// request (counted across connections, 0 = never) is answered after `stall`.
fn server(stall_at: u64, stall: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let seen = seen.clone();
            std::thread::spawn(move || serve(conn, &seen, stall_at, stall));
        }
    });
    addr
}

fn serve(mut conn: TcpStream, seen: &AtomicU64, stall_at: u64, stall: Duration) {
    conn.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
            if n == stall_at {
                std::thread::sleep(stall);
            }
            if conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
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

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn offers_the_rate_and_counts_every_answer() {
    let addr = server(0, Duration::ZERO);
    let r = block_on(run(&options(addr, 2000.0, 1.0))).unwrap();
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
    let addr = server(600, Duration::from_millis(300));
    let mut o = options(addr, 2000.0, 1.0);
    o.connections = 1;
    let r = block_on(run(&o)).unwrap();
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
    let addr = server(0, Duration::ZERO);
    let o = options(addr, 2000.0, 1.5);
    let before = heavyread_bench::procfs::thread_cpu_secs().unwrap();
    let wall = std::time::Instant::now();
    let r = block_on(run(&o)).unwrap();
    let used = heavyread_bench::procfs::thread_cpu_secs().unwrap() - before;
    let wall = wall.elapsed().as_secs_f64();
    assert_eq!(r.ok, r.due, "{r:?}");
    assert!(
        used < 0.5 * wall,
        "the tool's thread used {used:.2} s of CPU in {wall:.2} s"
    );
    // Requests still go out on time: late by about a tick, not a millisecond.
    assert!(r.latency.p50 < 1_000.0, "{r:?}");
}
