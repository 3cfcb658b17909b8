//! The real binary: SIGTERM stops accepting, finishes in-flight requests,
//! closes idle connections and exits 0; stopped and continued, it still
//! tells a client that finished sending from one that was too slow, and
//! holds its connection cap against a burst that queued while it was stopped.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use heavyread_sync::testing::{KillOnDrop, RedisServer};
use heavyread_sync::Publisher;

/// Starts the binary on a free port; returns it and the address it logged.
fn spawn_reader(redis_url: &str, header_timeout: &str) -> (KillOnDrop, SocketAddr) {
    spawn_reader_with(redis_url, header_timeout, &[])
}

/// [`spawn_reader`] with more environment variables.
fn spawn_reader_with(
    redis_url: &str,
    header_timeout: &str,
    extra: &[(&str, &str)],
) -> (KillOnDrop, SocketAddr) {
    let child = Command::new(env!("CARGO_BIN_EXE_heavyread-reader"))
        .envs(extra.iter().copied())
        .env("HEAVYREAD_LISTEN", "127.0.0.1:0")
        .env("HEAVYREAD_REDIS_URL", redis_url)
        .env("HEAVYREAD_CORES", "1")
        .env("HEAVYREAD_IO_MEMORY", "64KiB")
        .env("HEAVYREAD_DRAIN_TIMEOUT", "3s")
        .env("HEAVYREAD_HEADER_TIMEOUT", header_timeout)
        .env("HEAVYREAD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start heavyread-reader");
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("reader exited before listening")
            .unwrap();
        if line.contains("reader listening") {
            let at = line.find("\"addr\":\"").expect("addr field") + 8;
            let end = at + line[at..].find('"').unwrap();
            break line[at..end].parse().unwrap();
        }
    };
    // Keep draining the logs so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("reader still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let redis = RedisServer::start();
    let rt = runtime();
    let _enter = rt.enter();
    let publisher = Publisher::new(&redis.url(), "hr", 1000, Duration::from_secs(2)).unwrap();
    rt.block_on(publisher.load_library()).unwrap();
    rt.block_on(publisher.put("s", br#"{"s":1}"#)).unwrap();

    let (mut child, addr) = spawn_reader(&redis.url(), "5s");
    let end = Instant::now() + Duration::from_secs(10);
    while status_of(&get(addr, "/post?id=s")) != 200 {
        assert!(Instant::now() < end, "reader never served the post");
        std::thread::sleep(Duration::from_millis(20));
    }

    // An idle kept-alive connection, and one in the middle of a request.
    let mut idle = connect(addr);
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(status_of(&read_response(&mut idle, false)), 200);
    let mut in_flight = connect(addr);
    in_flight
        .write_all(b"GET /post?id=s HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));

    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());

    // The idle connection is closed without an answer.
    assert!(read_to_close(&mut idle).is_empty());
    // No new connections.
    let end = Instant::now() + Duration::from_secs(2);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        assert!(Instant::now() < end, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The request in flight is finished, and the connection closed after it.
    in_flight.write_all(b"\r\n").unwrap();
    let resp = read_response(&mut in_flight, false);
    assert_eq!(status_of(&resp), 200);
    assert_eq!(body_of(&resp), br#"{"s":1}"#);
    assert_eq!(header(&resp, "connection").as_deref(), Some("close"));
    assert!(read_to_close(&mut in_flight).is_empty());

    let status = wait_exit(&mut child, Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
}

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name}");
}

/// A client that sends part of a head and then its end-of-file is done: the
/// reader closes without an answer. That must hold when the reader reads
/// the end-of-file only after the head's deadline has passed (a stalled
/// process, or a loaded machine): the deadline check must not turn it into
/// a 408. A head that is really late still gets its 408.
#[test]
fn an_end_of_file_read_after_the_head_deadline_is_no_timeout() {
    let redis = RedisServer::start();
    let (mut child, addr) = spawn_reader(&redis.url(), "300ms");
    let mut cut: Vec<TcpStream> = (0..20).map(|_| connect(addr)).collect();
    for s in &mut cut {
        s.write_all(b"GET /post?id=s HTT").unwrap();
    }
    // The reader has read those bytes: every head's clock is running.
    std::thread::sleep(Duration::from_millis(100));
    signal(&child, "STOP");
    for s in &cut {
        s.shutdown(Shutdown::Write).unwrap();
    }
    // Past every head's deadline and the tick that checks it.
    std::thread::sleep(Duration::from_millis(800));
    signal(&child, "CONT");
    for (i, s) in cut.iter_mut().enumerate() {
        let out = read_to_close(s);
        assert!(
            out.is_empty(),
            "connection {i} that ended its head with end-of-file was answered: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    let mut late = connect(addr);
    late.write_all(b"GET /post?id=s HTT").unwrap();
    let out = read_to_close(&mut late);
    assert_eq!(status_of(&out), 408, "{:?}", String::from_utf8_lossy(&out));
    let page = get(addr, "/metrics");
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains("heavyread_reader_connection_timeouts_total{phase=\"header\"} 1\n"),
        "{page}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn invalid_configuration_exits_non_zero_naming_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_heavyread-reader"))
        .env("HEAVYREAD_CORES", "0")
        .env("HEAVYREAD_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("--cores"), "{logs}");
}

#[test]
fn too_little_locked_memory_fails_with_what_to_raise() {
    // 256 KiB soft and hard: below glommio's floor, and not raisable.
    let out = Command::new("prlimit")
        .arg("--memlock=262144:262144")
        .arg(env!("CARGO_BIN_EXE_heavyread-reader"))
        .env("HEAVYREAD_LISTEN", "127.0.0.1:0")
        .env("HEAVYREAD_CORES", "1")
        .output()
        .expect("prlimit (util-linux)");
    assert!(!out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("RLIMIT_MEMLOCK is 256 KiB"), "{logs}");
    assert!(logs.contains("ulimit -l"), "{logs}");
}

/// Connections that queue while the reader is stopped are accepted in one
/// burst when it continues, before any of their tasks runs: the cap must
/// count them from their accept, not from their first run.
#[test]
fn a_burst_of_queued_connections_is_held_to_the_cap() {
    let redis = RedisServer::start();
    let (mut child, addr) = spawn_reader_with(
        &redis.url(),
        "5s",
        &[("HEAVYREAD_MAX_CONNECTIONS_PER_CORE", "2")],
    );
    assert_eq!(status_of(&get(addr, "/health")), 200);
    signal(&child, "STOP");
    let mut burst: Vec<TcpStream> = (0..20).map(|_| connect(addr)).collect();
    for s in &mut burst {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
    signal(&child, "CONT");
    let mut statuses: Vec<u16> = burst
        .iter_mut()
        .map(|s| {
            let out = read_to_close(s);
            if out.is_empty() {
                0
            } else {
                status_of(&out)
            }
        })
        .collect();
    statuses.sort_unstable();
    let served = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    assert!(served <= 2, "{served} served over a cap of 2: {statuses:?}");
    assert_eq!(served + refused, 20, "{statuses:?}");
    child.kill().unwrap();
    child.wait().unwrap();
}
