//! Hostile input over real sockets against the writer (axum on hyper):
//! request smuggling, invalid chunked bodies, huge and numerous headers,
//! NUL and non-UTF-8 bytes, absurd ids, path tricks, 10k pipelined requests
//! in one write, 1,000 slowloris connections, slow heads and stalled bodies
//! cut by the header and body timeouts, and connections closed mid-request.
//!
//! Every case gets a clear error answer or a close; a loop of good requests
//! (reads from Redis, and writes of one canary post) keeps succeeding
//! meanwhile. Afterwards the writer answers `/health`, its in-flight gauge
//! and this process's descriptor count are back where they started, and
//! Redis holds exactly what it held plus the canary writes: no hostile
//! request wrote anything, and a smuggled request is never executed.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{post, snapshot, Env, Snapshot};

/// The descriptor count is per process: one test at a time in this binary.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The writer's body limit in these tests (as in validation.rs).
const MAX_BODY: usize = 4096;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// Raises this process's soft open-file limit to its hard limit (best
/// effort, with util-linux's `prlimit`): a thousand client sockets and the
/// writer's thousand server sockets live in this one process.
fn raise_nofile() {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let hard = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .unwrap_or("unlimited")
        .to_owned();
    let _ = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={hard}:{hard}"))
        .status();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The first value of header `name` in a response head (case-insensitive).
fn header(resp: &[u8], name: &str) -> Option<String> {
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&resp[..end]).into_owned();
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

fn status_of(resp: &[u8]) -> u16 {
    String::from_utf8_lossy(&resp[9..12])
        .parse()
        .unwrap_or_else(|_| panic!("no status in {:?}", String::from_utf8_lossy(resp)))
}

fn body_of(resp: &[u8]) -> &[u8] {
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    &resp[at..]
}

/// Splits a stream of answers (each with a Content-Length body; 1xx have none).
fn split_answers(mut all: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !all.is_empty() {
        let end = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("a partial answer: {:?}", String::from_utf8_lossy(all)))
            + 4;
        let len: usize = header(&all[..end], "content-length")
            .map_or(0, |v| v.parse().expect("a numeric Content-Length"));
        assert!(all.len() >= end + len, "a truncated answer");
        let (one, rest) = all.split_at(end + len);
        if status_of(one) >= 200 {
            out.push(one);
        }
        all = rest;
    }
    out
}

/// Reads until the server closes (a reset after the answer counts as a close).
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed after {} bytes: {e}", out.len()),
        }
    }
}

/// Sends `raw` from a second thread while this one reads until the server
/// closes, or until it has sent nothing for 5 s (it kept the connection).
///
/// No half-close: hyper (with its default `half_close(false)`) treats a
/// client's FIN as the end of the connection and drops the answer of a
/// request still being handled. Requests that must end carry
/// `Connection: close`; [`send_half_closed`] is for bodies cut by EOF.
fn send_and_read(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    exchange(addr, raw, false)
}

/// Like [`send_and_read`], then half-closes: the server sees end-of-file.
fn send_half_closed(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    exchange(addr, raw, true)
}

fn exchange(addr: SocketAddr, raw: &[u8], half_close: bool) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    let raw = raw.to_vec();
    let writer = std::thread::spawn(move || {
        // The server may close once it has refused: a failed write is expected.
        if w.write_all(&raw).is_ok() && half_close {
            let _ = w.shutdown(Shutdown::Write);
        }
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A reset after the answer, or a connection kept open: done either way.
            Err(_) => break,
        }
    }
    drop(s);
    writer.join().unwrap();
    out
}

/// Reads one answer (head, then `Content-Length` bytes); never panics.
fn try_read_response(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let len = header(&out[..end + 4], "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                out.truncate(end + 4 + len);
                return Ok(out);
            }
        }
        match s.read(&mut buf) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("closed after {:?}", String::from_utf8_lossy(&out)),
                ))
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A writer with a small body limit, one post, and what to compare with at the end.
struct Fixture {
    env: Env,
    rt: tokio::runtime::Runtime,
    fds: usize,
    in_flight: f64,
    redis: Snapshot,
}

impl Fixture {
    fn start() -> Fixture {
        Self::start_with(|_| {})
    }

    /// Starts with the body limit above, then `tweak` applied to the config.
    fn start_with(tweak: impl FnOnce(&mut heavyread_writer::Config)) -> Fixture {
        let rt = runtime();
        let env = rt.block_on(Env::start_with(|c| {
            c.max_body_bytes = MAX_BODY;
            tweak(c);
        }));
        let created = rt.block_on(env.create(&post("good", "t", "still here", "a")));
        assert_eq!(created.status, 201);
        std::thread::sleep(Duration::from_millis(100));
        let mut f = Fixture {
            env,
            rt,
            fds: 0,
            in_flight: 0.0,
            redis: Snapshot {
                version: None,
                posts: Default::default(),
                log_len: 0,
            },
        };
        f.in_flight = f.in_flight();
        f.fds = open_fds();
        f.redis = snapshot(&f.env.redis, "hr");
        f
    }

    fn addr(&self) -> SocketAddr {
        self.env.addr()
    }

    /// `heavyread_writer_requests_in_flight` (the scrape itself included).
    fn in_flight(&self) -> f64 {
        let r = self.rt.block_on(common::get(self.addr(), "/metrics"));
        common::metric(&r.text(), "heavyread_writer_requests_in_flight").expect("in-flight gauge")
    }

    /// Alive, nothing leaked, and Redis changed only by `canary_writes`.
    fn assert_unharmed(&self, canary_writes: u64) {
        let health = self.rt.block_on(common::get(self.addr(), "/health"));
        assert_eq!(health.status, 200, "/health");
        let good = self.rt.block_on(common::get(self.addr(), "/post?id=good"));
        assert_eq!(good.status, 200, "GET /post?id=good");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let in_flight = self.in_flight();
            let fds = open_fds();
            if in_flight == self.in_flight && fds <= self.fds + 2 {
                break;
            }
            assert!(
                Instant::now() < end,
                "leak: {in_flight} requests in flight (was {}), {fds} descriptors (was {})",
                self.in_flight,
                self.fds
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut now = snapshot(&self.env.redis, "hr");
        assert!(
            !now.posts.contains_key(&b"smuggled"[..]),
            "a smuggled request was executed"
        );
        let canary = now.posts.remove(&b"canary"[..]);
        assert_eq!(canary.is_some(), canary_writes > 0);
        assert_eq!(
            now.posts, self.redis.posts,
            "hostile requests changed posts"
        );
        assert_eq!(
            now.version.unwrap_or(0),
            self.redis.version.unwrap_or(0) + canary_writes,
            "versions other than the canary's were written"
        );
        assert_eq!(now.log_len, self.redis.log_len + canary_writes);
    }
}

/// Good requests while an attack runs: `GET /post?id=good` on a keep-alive
/// connection, on a fresh connection every tenth time, and every fifth time
/// a `POST /create` of the canary post that must answer 201.
struct GoodLoop {
    stop: Arc<AtomicBool>,
    /// Good requests served so far.
    served: Arc<AtomicU64>,
    handle: JoinHandle<Result<(u64, u64, Duration), String>>,
}

impl GoodLoop {
    fn start(addr: SocketAddr) -> GoodLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let served = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&served);
        let handle = std::thread::spawn(move || {
            let (mut ok, mut writes) = (0u64, 0u64);
            let mut slowest = Duration::ZERO;
            let mut kept: Option<TcpStream> = None;
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                let write = ok % 5 == 4;
                let fresh = ok % 10 == 9;
                let req = if write {
                    let body = post("canary", &format!("t{ok}"), "c", "a");
                    format!(
                        "POST /create HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "GET /post?id=good HTTP/1.1\r\nHost: h\r\n\r\n".to_owned()
                };
                let resp = if fresh {
                    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    s.write_all(req.as_bytes())
                        .map_err(|e| format!("write: {e}"))?;
                    try_read_response(&mut s)
                } else {
                    if kept.is_none() {
                        let s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        s.set_nodelay(true).unwrap();
                        kept = Some(s);
                    }
                    let s = kept.as_mut().expect("connected above");
                    s.write_all(req.as_bytes())
                        .map_err(|e| format!("write: {e}"))?;
                    try_read_response(s)
                };
                let resp = resp.map_err(|e| format!("good request {ok} failed: {e}"))?;
                let want = if write { 201 } else { 200 };
                if status_of(&resp) != want {
                    return Err(format!(
                        "good request {ok} got {:?}",
                        String::from_utf8_lossy(&resp)
                    ));
                }
                if !write && body_of(&resp) != common::served("good", "t", "still here", "a") {
                    return Err(format!("good read {ok} got the wrong body"));
                }
                writes += u64::from(write);
                slowest = slowest.max(t.elapsed());
                ok += 1;
                count.store(ok, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(3));
            }
            Ok((ok, writes, slowest))
        });
        let good = GoodLoop {
            stop,
            served,
            handle,
        };
        // The loop runs before the attack starts.
        good.wait_for(3);
        good
    }

    /// Waits (up to 20 s) until `n` good requests were served or the loop ended.
    fn wait_for(&self, n: u64) {
        let end = Instant::now() + Duration::from_secs(20);
        while self.served.load(Ordering::Relaxed) < n
            && !self.handle.is_finished()
            && Instant::now() < end
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the loop; panics unless every good request succeeded quickly.
    /// Returns the number of canary writes.
    fn finish(self, at_least: u64) -> u64 {
        // Short attacks end quickly: let the loop reach its count (if it
        // failed, the join below says why).
        self.wait_for(at_least);
        self.stop.store(true, Ordering::Relaxed);
        let (ok, writes, slowest) = self
            .handle
            .join()
            .expect("good loop panicked")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(ok >= at_least, "only {ok} good requests were served");
        assert!(
            slowest < Duration::from_secs(2),
            "a good request took {slowest:?}"
        );
        writes
    }
}

/// `POST /create` head with a JSON Content-Type and `extra` header lines.
fn create_head(extra: &str) -> String {
    format!("POST /create HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n{extra}\r\n")
}

/// A JSON body that frames fine but is not a post (422, nothing written).
const NOT_A_POST: &str = r#"{"id":"x"}"#;

/// A well-formed write of the post `smuggled`: Redis must never hold it.
fn smuggled() -> String {
    let body = post("smuggled", "t", "c", "a");
    format!(
        "POST /create HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

/// Sends one hostile exchange: at most `max_answers` answers, each with a
/// status in `statuses`, then a close.
fn hostile(addr: SocketAddr, what: &str, raw: &[u8], statuses: &[u16], max_answers: usize) {
    let out = send_and_read(addr, raw);
    let answers = split_answers(&out);
    assert!(
        answers.len() <= max_answers,
        "{what}: {} answers: {:?}",
        answers.len(),
        String::from_utf8_lossy(&out)
    );
    for a in &answers {
        assert!(
            statuses.contains(&status_of(a)),
            "{what}: status {}, expected one of {statuses:?}: {:?}",
            status_of(a),
            String::from_utf8_lossy(&out)
        );
    }
}

#[test]
fn smuggling_attempts_are_never_executed() {
    let _serial = serial();
    let f = Fixture::start();
    let good = GoodLoop::start(f.addr());
    let s = smuggled();
    let outer = format!("{}0\r\n\r\n", chunk(NOT_A_POST));
    let cases: &[(&str, String, &[u16])] = &[
        (
            "CL then TE",
            format!("{}{outer}{s}", create_head("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n")),
            &[422],
        ),
        (
            "TE then CL",
            format!("{}{outer}{s}", create_head("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n")),
            &[422],
        ),
        (
            "CL covering the smuggled request, TE chunked",
            format!(
                "{}{outer}{s}",
                create_head(&format!(
                    "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                    outer.len() + s.len()
                ))
            ),
            &[422],
        ),
        (
            "the smuggled request inside a chunk, short CL",
            format!(
                "{}{}0\r\n\r\n",
                create_head("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"),
                chunk(&s)
            ),
            &[400, 422],
        ),
        (
            "conflicting Content-Lengths",
            format!(
                "{}{NOT_A_POST}{s}",
                create_head(&format!(
                    "Content-Length: {}\r\nContent-Length: {}\r\n",
                    NOT_A_POST.len(),
                    NOT_A_POST.len() + s.len()
                ))
            ),
            &[400],
        ),
        (
            "Content-Length list of different values",
            format!(
                "{}{NOT_A_POST}{s}",
                create_head(&format!("Content-Length: {}, {}\r\n", NOT_A_POST.len(), NOT_A_POST.len() + s.len()))
            ),
            &[400],
        ),
        (
            "TE gzip",
            format!("{}{outer}{s}", create_head("Transfer-Encoding: gzip\r\n")),
            &[400, 415, 501],
        ),
        (
            "TE chunked, identity",
            format!("{}{outer}{s}", create_head("Transfer-Encoding: chunked, identity\r\n")),
            &[400, 501],
        ),
        (
            "TE with a space before the colon",
            format!("{}{outer}{s}", create_head("Transfer-Encoding : chunked\r\n")),
            &[400],
        ),
        (
            "TE folded onto a second line",
            format!("{}{outer}{s}", create_head("Transfer-Encoding:\r\n chunked\r\n")),
            &[400],
        ),
        (
            "TE on HTTP/1.0",
            format!(
                "POST /create HTTP/1.0\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{outer}{s}"
            ),
            &[400],
        ),
        (
            "signed Content-Length",
            format!("{}{NOT_A_POST}{s}", create_head("Content-Length: +10\r\n")),
            &[400],
        ),
        (
            "negative Content-Length",
            format!("{}{NOT_A_POST}{s}", create_head("Content-Length: -1\r\n")),
            &[400],
        ),
        (
            "hex Content-Length",
            format!("{}{NOT_A_POST}{s}", create_head("Content-Length: 0xa\r\n")),
            &[400],
        ),
        (
            "Content-Length with an inner space",
            format!("{}{NOT_A_POST}{s}", create_head("Content-Length: 1 0\r\n")),
            &[400],
        ),
        (
            "overflowing Content-Length",
            format!("{}{NOT_A_POST}{s}", create_head("Content-Length: 99999999999999999999\r\n")),
            &[400],
        ),
        (
            "Content-Length of 2^62: refused before the body",
            format!("{}{NOT_A_POST}{s}", create_head("Content-Length: 4611686018427387904\r\n")),
            &[413],
        ),
        (
            "Expect 100-continue with a body over the limit",
            format!(
                "{}{NOT_A_POST}{s}",
                create_head("Content-Length: 1000000\r\nExpect: 100-continue\r\n")
            ),
            &[413],
        ),
        (
            "bare CR in the head",
            format!("POST /create HTTP/1.1\rHost: h\r\nContent-Length: 0\r\n\r\n{s}"),
            &[400],
        ),
        (
            "HTTP/2 preface",
            format!("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n{s}"),
            &[400, 404, 405, 505],
        ),
    ];
    for (what, raw, statuses) in cases {
        hostile(f.addr(), what, raw.as_bytes(), statuses, 1);
    }
    // Duplicate equal lengths are unambiguous: one body, then the next request.
    let dup = format!(
        "{}{NOT_A_POST}",
        create_head(&format!(
            "Content-Length: {0}\r\nContent-Length: {0}\r\nConnection: close\r\n",
            NOT_A_POST.len()
        ))
    );
    hostile(
        f.addr(),
        "duplicate equal Content-Lengths",
        dup.as_bytes(),
        &[422],
        1,
    );
    let writes = good.finish(10);
    f.assert_unharmed(writes);
}

#[test]
fn invalid_chunked_bodies_get_400_or_a_close() {
    let _serial = serial();
    let f = Fixture::start();
    let good = GoodLoop::start(f.addr());
    let s = smuggled();
    let te = create_head("Transfer-Encoding: chunked\r\n");
    let cases: Vec<(&str, String)> = vec![
        (
            "non-hex size",
            format!("{te}zz\r\n{NOT_A_POST}\r\n0\r\n\r\n{s}"),
        ),
        (
            "overflowing size",
            format!("{te}ffffffffffffffffffffff\r\n{NOT_A_POST}\r\n0\r\n\r\n{s}"),
        ),
        (
            "negative size",
            format!("{te}-a\r\n{NOT_A_POST}\r\n0\r\n\r\n{s}"),
        ),
        (
            "0x size",
            format!("{te}0xa\r\n{NOT_A_POST}\r\n0\r\n\r\n{s}"),
        ),
        (
            "size with a leading space",
            format!("{te} a\r\n{NOT_A_POST}\r\n0\r\n\r\n{s}"),
        ),
        (
            "data longer than its size",
            format!("{te}4\r\n{NOT_A_POST}\r\n0\r\n\r\n{s}"),
        ),
        (
            "data without its CRLF",
            format!("{te}a\r\n{NOT_A_POST}0\r\n\r\n{s}"),
        ),
        (
            "size line without CRLF",
            format!("{te}a{NOT_A_POST}\r\n0\r\n\r\n{s}"),
        ),
        (
            "a 1 MB chunk extension",
            format!(
                "{te}a;{}\r\n{NOT_A_POST}\r\n0\r\n\r\n{s}",
                "e".repeat(1 << 20)
            ),
        ),
        (
            "a 1 MB trailer",
            format!(
                "{te}{}0\r\nX-T: {}\r\n\r\n{s}",
                chunk(NOT_A_POST),
                "t".repeat(1 << 20)
            ),
        ),
        (
            "100,000 trailer fields",
            format!(
                "{te}{}0\r\n{}\r\n{s}",
                chunk(NOT_A_POST),
                "T: t\r\n".repeat(100_000)
            ),
        ),
        (
            "4097 one-byte chunks (over the 4096-byte limit)",
            // Drained after the 413, so nothing may follow it here: a request
            // after a fully read body is a legitimate pipelined one.
            format!(
                "{}{}0\r\n\r\n",
                create_head("Transfer-Encoding: chunked\r\nConnection: close\r\n"),
                "1\r\nx\r\n".repeat(MAX_BODY + 1)
            ),
        ),
        (
            "NUL in the size",
            format!("{te}a\0\r\n{NOT_A_POST}\r\n0\r\n\r\n{s}"),
        ),
    ];
    for (what, raw) in &cases {
        hostile(f.addr(), what, raw.as_bytes(), &[400, 413, 422, 431], 1);
    }
    // Bodies cut short by the client's end-of-file.
    let eof_cases: &[(&str, String)] = &[
        (
            "truncated in a chunk, then EOF",
            format!("{te}a\r\n{{\"id\""),
        ),
        (
            "no last chunk, then EOF",
            format!("{te}{}", chunk(NOT_A_POST)),
        ),
        (
            "last chunk without the final CRLF, then EOF",
            format!("{te}{}0\r\n", chunk(NOT_A_POST)),
        ),
        (
            "size far beyond the data, then EOF",
            format!("{te}ffffff\r\n{NOT_A_POST}"),
        ),
        (
            "Content-Length beyond the data, then EOF",
            format!("{}{NOT_A_POST}", create_head("Content-Length: 1000\r\n")),
        ),
    ];
    for (what, raw) in eof_cases {
        let out = send_half_closed(f.addr(), raw.as_bytes());
        let answers = split_answers(&out);
        assert!(
            answers.len() <= 1,
            "{what}: {:?}",
            String::from_utf8_lossy(&out)
        );
        for a in answers {
            assert_eq!(
                status_of(a),
                400,
                "{what}: {:?}",
                String::from_utf8_lossy(a)
            );
        }
    }
    // A well-formed chunked body is read like any other (here: not a post).
    let fine = format!(
        "{}{}0\r\n\r\n",
        create_head("Transfer-Encoding: chunked\r\nConnection: close\r\n"),
        chunk(NOT_A_POST)
    );
    hostile(f.addr(), "valid chunked body", fine.as_bytes(), &[422], 1);
    let writes = good.finish(10);
    f.assert_unharmed(writes);
}

#[test]
fn huge_and_numerous_headers_get_414_or_431() {
    let _serial = serial();
    let f = Fixture::start();
    let good = GoodLoop::start(f.addr());
    let addr = f.addr();
    let cases: &[(&str, String, &[u16])] = &[
        (
            "a 100 KB target",
            format!(
                "GET /post?id={} HTTP/1.1\r\nHost: h\r\n\r\n",
                "a".repeat(100 << 10)
            ),
            &[414, 431],
        ),
        (
            "a 4 MB target",
            format!(
                "GET /post?id={} HTTP/1.1\r\nHost: h\r\n\r\n",
                "a".repeat(4 << 20)
            ),
            &[414, 431],
        ),
        (
            "101 header fields",
            format!(
                "GET /health HTTP/1.1\r\nHost: h\r\n{}\r\n",
                "A: b\r\n".repeat(100)
            ),
            &[431],
        ),
        (
            "10,000 header fields",
            format!(
                "GET /health HTTP/1.1\r\nHost: h\r\n{}\r\n",
                "A: b\r\n".repeat(10_000)
            ),
            &[431],
        ),
        (
            "a 1 MB header value",
            format!(
                "GET /health HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
                "b".repeat(1 << 20)
            ),
            &[431],
        ),
        (
            "a 1 MB header name",
            format!(
                "GET /health HTTP/1.1\r\nHost: h\r\n{}: b\r\n\r\n",
                "N".repeat(1 << 20)
            ),
            &[431],
        ),
        (
            "endless header lines",
            format!(
                "GET /health HTTP/1.1\r\nHost: h\r\n{}",
                "A: b\r\n".repeat(300_000)
            ),
            &[431],
        ),
        (
            "a 1 MB Authorization on a write",
            format!(
                "{}{NOT_A_POST}",
                create_head(&format!(
                    "Authorization: Bearer {}\r\nContent-Length: {}\r\n",
                    "t".repeat(1 << 20),
                    NOT_A_POST.len()
                ))
            ),
            &[431],
        ),
    ];
    for (what, raw, statuses) in cases {
        hostile(addr, what, raw.as_bytes(), statuses, 1);
    }
    let writes = good.finish(10);
    f.assert_unharmed(writes);
}

#[test]
fn nul_and_non_utf8_bytes_get_4xx() {
    let _serial = serial();
    let f = Fixture::start();
    let good = GoodLoop::start(f.addr());
    let addr = f.addr();
    let with_body = |head: &str, body: &[u8]| {
        let mut raw = create_head(&format!(
            "{head}Content-Length: {}\r\nConnection: close\r\n",
            body.len()
        ))
        .into_bytes();
        raw.extend_from_slice(body);
        raw
    };
    let cases: &[(&str, Vec<u8>, &[u16])] = &[
        (
            "NUL in the target",
            b"GET /post?id=go\0od HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "NUL in the method",
            b"PO\0T /create HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "NUL in a header value",
            b"GET /health HTTP/1.1\r\nHost: h\0x\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "NUL in a header name",
            b"GET /health HTTP/1.1\r\nHo\0st: h\r\n\r\n".to_vec(),
            &[400],
        ),
        ("only NULs", vec![0u8; 4096], &[400]),
        (
            "non-UTF-8 target",
            b"GET /post?id=\xff\xfe HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "non-UTF-8 header name",
            b"GET /health HTTP/1.1\r\nX-\xff: v\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "non-UTF-8 method",
            b"P\xc3\x96ST /create HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "TLS client hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "non-UTF-8 Content-Type",
            {
                let body = post("nul1", "t", "c", "a");
                let mut raw =
                    b"POST /create HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\xff\r\n"
                        .to_vec();
                raw.extend_from_slice(
                    format!(
                        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
                raw
            },
            &[415],
        ),
        (
            "raw NUL inside a JSON string",
            with_body(
                "",
                b"{\"id\":\"a\0\",\"title\":\"t\",\"content\":\"c\",\"author\":\"a\"}",
            ),
            &[400],
        ),
        (
            "invalid UTF-8 in JSON",
            with_body(
                "",
                b"{\"id\":\"a\",\"title\":\"\xc0\xaf\",\"content\":\"c\",\"author\":\"a\"}",
            ),
            &[400],
        ),
        (
            "a lone surrogate escape",
            with_body(
                "",
                br#"{"id":"a","title":"\ud800","content":"c","author":"a"}"#,
            ),
            &[400, 422],
        ),
        (
            "an escaped NUL id",
            with_body(
                "",
                br#"{"id":"a\u0000","title":"t","content":"c","author":"a"}"#,
            ),
            &[422],
        ),
        (
            "a byte-order mark",
            with_body(
                "",
                "\u{feff}{\"id\":\"a\",\"title\":\"t\",\"content\":\"c\",\"author\":\"a\"}"
                    .as_bytes(),
            ),
            &[400],
        ),
        (
            "UTF-16 JSON",
            with_body(
                "",
                &"{\"id\":\"a\"}"
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes)
                    .collect::<Vec<u8>>(),
            ),
            &[400],
        ),
        (
            "2,000 nested arrays",
            with_body(
                "",
                format!("{}{}", "[".repeat(2000), "]".repeat(2000)).as_bytes(),
            ),
            &[400, 413, 422],
        ),
    ];
    for (what, raw, statuses) in cases {
        hostile(addr, what, raw, statuses, 1);
    }
    let writes = good.finish(10);
    f.assert_unharmed(writes);
}

#[test]
fn absurd_ids_and_path_tricks_get_clear_statuses() {
    let _serial = serial();
    let f = Fixture::start();
    let good = GoodLoop::start(f.addr());
    let addr = f.addr();
    let req = |method: &str, target: &str, body: Option<&str>| {
        let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n");
        if let Some(b) = body {
            raw.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            raw.push_str("\r\n");
        }
        let out = send_and_read(addr, raw.as_bytes());
        let answers = split_answers(&out);
        assert_eq!(
            answers.len(),
            1,
            "{method} {target}: {:?}",
            String::from_utf8_lossy(&out)
        );
        let st = status_of(answers[0]);
        if st >= 400 {
            let body = String::from_utf8_lossy(body_of(answers[0])).into_owned();
            assert!(body.starts_with("{\"error\":"), "{method} {target}: {body}");
        }
        st
    };
    // Ids in the JSON body.
    for id in [
        "a".repeat(129),
        "a".repeat(3000),
        "../etc/passwd".into(),
        "..\\..\\windows".into(),
        "a\u{0}b".into(),
        "%00".into(),
        "%2e%2e%2f".into(),
        "é".into(),
        "\u{202e}gnp.exe".into(),
        "💩".into(),
        "ｇｏｏｄ".into(),
        "good\r\nX-Injected: 1".into(),
        "<script>".into(),
        "' OR 1=1--".into(),
        " good".into(),
        "".into(),
    ] {
        let body = post(&id, "t", "c", "a");
        assert_eq!(req("POST", "/create", Some(&body)), 422, "id {id:?}");
    }
    let cases: &[(&str, &str, u16)] = &[
        ("GET", "/post?id=good", 200),
        ("GET", "/post?id=%67ood", 200),
        ("GET", "/post?id=nope", 404),
        ("GET", "/post?id=..", 404),
        ("GET", "/post?id=", 422),
        ("GET", "/post?id=%00", 422),
        ("GET", "/post?id=..%2Fgood", 422),
        ("GET", "/post?id=%C3%A9", 422),
        ("GET", "/post?id=good%0d%0aX-Injected:%201", 422),
        ("GET", "/post?id=go+od", 422),
        ("GET", "/post?id=%FF%FE", 422),
        ("GET", "/post?ID=good", 400),
        ("GET", "/post", 400),
        ("DELETE", "/post?id=../good", 422),
        ("DELETE", "/post?id=%00", 422),
        ("DELETE", "/post?id=nope", 404),
        ("GET", "/post/../health", 404),
        ("GET", "/health/../post?id=good", 404),
        ("GET", "/%70ost?id=good", 404),
        ("GET", "//post?id=good", 404),
        ("GET", "/post/?id=good", 404),
        ("GET", "/POST?id=good", 404),
        ("GET", "/post;id=good", 404),
        ("GET", "/post%00?id=good", 404),
        ("GET", "/../../etc/passwd", 404),
        ("POST", "/create/../bulk", 404),
        ("POST", "//create", 404),
        ("POST", "/%63reate", 404),
        ("POST", "/CREATE", 404),
        ("POST", "/create/", 404),
        ("GET", "/create", 405),
        ("PUT", "/create", 405),
        ("TRACE", "/post?id=good", 405),
    ];
    for (method, target, want) in cases {
        let body = (*method == "POST").then_some(NOT_A_POST);
        assert_eq!(req(method, target, body), *want, "{method} {target}");
    }
    // Absolute form reaches the route by its path (the host is not trusted for anything).
    assert_eq!(
        req("POST", "http://evil.example/create", Some(NOT_A_POST)),
        422
    );
    // Duplicate ids in a query: refused, not "first one wins".
    assert!(matches!(
        req("DELETE", "/post?id=good&id=nope", None),
        400 | 422
    ));
    let writes = good.finish(10);
    f.assert_unharmed(writes);
}

#[test]
fn ten_thousand_pipelined_requests_in_one_write_are_answered_in_order() {
    let _serial = serial();
    let f = Fixture::start();
    let good = GoodLoop::start(f.addr());
    let n = 10_000;
    let invalid_post = format!(
        "{}{NOT_A_POST}",
        create_head(&format!("Content-Length: {}\r\n", NOT_A_POST.len()))
    );
    let mut raw = Vec::new();
    for i in 0..n {
        let one = match i % 4 {
            0 => "GET /health HTTP/1.1\r\nHost: h\r\n\r\n".to_owned(),
            1 => "GET /post?id=good HTTP/1.1\r\nHost: h\r\n\r\n".to_owned(),
            2 => "DELETE /post?id=../x HTTP/1.1\r\nHost: h\r\n\r\n".to_owned(),
            _ => invalid_post.clone(),
        };
        raw.extend_from_slice(one.as_bytes());
    }
    raw.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let started = Instant::now();
    let out = send_and_read(f.addr(), &raw);
    let took = started.elapsed();
    let answers = split_answers(&out);
    assert_eq!(answers.len(), n + 1, "answers");
    for (i, a) in answers.iter().take(n).enumerate() {
        let want = match i % 4 {
            0 | 1 => 200,
            _ => 422,
        };
        assert_eq!(status_of(a), want, "answer {i} out of order");
    }
    assert!(
        took < Duration::from_secs(30),
        "10k pipelined answers took {took:?}"
    );
    let writes = good.finish(10);
    f.assert_unharmed(writes);
}

/// Opens `n` connections that each send `first` and then dribble a header
/// line every 200 ms for `dribble`; returns them still open.
fn slowloris(addr: SocketAddr, n: usize, first: &[u8], dribble: Duration) -> Vec<TcpStream> {
    let mut slow: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(addr).expect("connect a slow client"))
        .collect();
    for s in &mut slow {
        s.write_all(first).unwrap();
    }
    let until = Instant::now() + dribble;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        for s in &mut slow {
            let _ = s.write_all(b"X-Slow: 1\r\n");
        }
    }
    slow
}

/// How many of `conns` the server has closed (a read sees end-of-file or a reset).
fn closed_by_server(conns: &[TcpStream]) -> usize {
    conns
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 1024];
            let closed = loop {
                match (&**s).read(&mut b) {
                    Ok(0) => break true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            s.set_nonblocking(false).unwrap();
            closed
        })
        .count()
}

#[test]
fn a_thousand_slowloris_connections_do_not_stop_good_requests() {
    let _serial = serial();
    raise_nofile();
    // The default timeouts (10 s for a head, 30 s for a /create body) are
    // longer than this attack: it shows the writer holding 1,000 slow clients
    // at once without hurting good ones.
    let f = Fixture::start();
    let good = GoodLoop::start(f.addr());
    let addr = f.addr();
    let slow = slowloris(
        addr,
        1000,
        b"GET /health HTTP/1.1\r\nHost: h\r\n",
        Duration::from_secs(3),
    );
    let cut = closed_by_server(&slow);
    assert_eq!(
        cut, 0,
        "the writer cut {cut} slow heads before the header timeout"
    );
    drop(slow);
    // Slow bodies: each holds a /create handler in read_body.
    let head = create_head("Content-Length: 1000\r\n");
    let mut first = head.into_bytes();
    first.extend_from_slice(b"{\"id\":\"slow\",");
    let mut slow: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(addr).expect("connect a slow client"))
        .collect();
    for s in &mut slow {
        s.write_all(&first).unwrap();
    }
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let in_flight = f.in_flight();
        if in_flight >= f.in_flight + 1000.0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "{in_flight} in flight, wanted 1000 more"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        closed_by_server(&slow),
        0,
        "slow bodies cut before the body timeout"
    );
    // Clients that go away free everything (checked by assert_unharmed).
    drop(slow);
    let writes = good.finish(50);
    f.assert_unharmed(writes);
}

/// The header timeout in the tests below.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// The body timeout in the tests below.
const BODY_TIMEOUT: Duration = Duration::from_secs(1);

#[test]
fn slow_heads_are_cut_after_a_header_timeout() {
    let _serial = serial();
    let f = Fixture::start_with(|c| c.header_timeout = HEADER_TIMEOUT);
    let good = GoodLoop::start(f.addr());
    // A header line every 200 ms for three header timeouts: a head that
    // keeps growing is still cut when the whole head is late.
    let slow = slowloris(
        f.addr(),
        10,
        b"GET /health HTTP/1.1\r\nHost: h\r\n",
        3 * HEADER_TIMEOUT,
    );
    assert_eq!(
        closed_by_server(&slow),
        slow.len(),
        "slow heads still open after three header timeouts"
    );
    drop(slow);
    let writes = good.finish(10);
    f.assert_unharmed(writes);
}

/// Reads to the close the one answer of a body timeout, sent about
/// `BODY_TIMEOUT` after `sent`: a 408 that closes the connection.
fn read_408(s: &mut TcpStream, sent: Instant) -> Vec<u8> {
    let out = read_to_close(s);
    let waited = sent.elapsed();
    assert!(
        waited >= BODY_TIMEOUT && waited < BODY_TIMEOUT + Duration::from_secs(4),
        "answered after {waited:?}"
    );
    let answers = split_answers(&out);
    assert_eq!(answers.len(), 1, "{:?}", String::from_utf8_lossy(&out));
    let a = answers[0];
    assert_eq!(status_of(a), 408, "{:?}", String::from_utf8_lossy(a));
    assert_eq!(header(a, "connection").as_deref(), Some("close"));
    a.to_vec()
}

#[test]
fn stalled_bodies_get_408_after_the_body_timeout() {
    let _serial = serial();
    let f = Fixture::start_with(|c| c.body_timeout = BODY_TIMEOUT);
    let good = GoodLoop::start(f.addr());
    // Whole heads announcing 100 bytes, then 10 bytes of a valid write, then silence.
    let body = format!("{:<100}", post("stalled", "t", "c", "a"));
    assert_eq!(body.len(), 100);
    let head = create_head("Content-Length: 100\r\n");
    let sent = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut s = TcpStream::connect(f.addr()).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&body.as_bytes()[..10]).unwrap();
            s
        })
        .collect();
    let served_before = good.served.load(Ordering::Relaxed);
    let expected = format!("{{\"error\":\"request body not complete within {BODY_TIMEOUT:?}\"}}");
    for s in &mut stalled {
        let a = read_408(s, sent);
        assert_eq!(
            header(&a, "content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(body_of(&a), expected.as_bytes());
    }
    drop(stalled);
    // Good requests, writes included, went on while the stalled ones waited.
    let served = good.served.load(Ordering::Relaxed) - served_before;
    assert!(served >= 10, "only {served} good requests during the stall");
    let writes = good.finish(10);
    f.assert_unharmed(writes);
}

/// A `/create` body that trickles in, never silent for a whole body
/// timeout, is still cut once the body timeout has passed since its head:
/// a slow client cannot hold a handler for as long as it likes.
#[test]
fn a_trickled_create_body_gets_408_once_the_body_timeout_has_passed() {
    let _serial = serial();
    let f = Fixture::start_with(|c| c.body_timeout = BODY_TIMEOUT);
    let body = post("trickled", "t", "c", "a");
    let head = create_head(&format!("Content-Length: {}\r\n", body.len()));
    let mut s = TcpStream::connect(f.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let sent = Instant::now();
    s.write_all(head.as_bytes()).unwrap();
    // One byte every 100 ms: the whole body would take several seconds.
    let mut w = s.try_clone().unwrap();
    let bytes = body.into_bytes();
    let trickle = std::thread::spawn(move || {
        for b in bytes {
            if w.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let a = read_408(&mut s, sent);
    assert_eq!(
        body_of(&a),
        format!("{{\"error\":\"request body not complete within {BODY_TIMEOUT:?}\"}}").as_bytes()
    );
    drop(s);
    trickle.join().unwrap();
    let now = snapshot(&f.env.redis, "hr");
    assert!(
        !now.posts.contains_key(b"trickled".as_slice()),
        "the trickled post was stored"
    );
}

/// A large `/create` body that arrives steadily, faster than 64 KiB/s,
/// gets the time it needs beyond the body timeout: 240 KiB at about
/// 160 KiB/s take 1.5 s against a body timeout of 1 s, and are stored.
#[test]
fn a_large_create_body_on_a_slow_link_gets_more_than_the_body_timeout() {
    let _serial = serial();
    let f = Fixture::start_with(|c| {
        c.body_timeout = BODY_TIMEOUT;
        c.max_body_bytes = 1 << 20;
        c.max_content_bytes = 256 << 10;
    });
    let body = post("slowlink", "t", &"c".repeat(240 << 10), "a");
    let head = create_head(&format!("Content-Length: {}\r\n", body.len()));
    let mut s = TcpStream::connect(f.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let sent = Instant::now();
    s.write_all(head.as_bytes()).unwrap();
    let mut cut = None;
    for piece in body.as_bytes().chunks(16 << 10) {
        if let Err(e) = s.write_all(piece) {
            cut = Some((e, sent.elapsed()));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = try_read_response(&mut s).expect("an answer");
    assert!(
        cut.is_none(),
        "cut while sending: {cut:?}; answered {:?}",
        String::from_utf8_lossy(&out)
    );
    let waited = sent.elapsed();
    assert!(waited > BODY_TIMEOUT, "sent in {waited:?}: showed nothing");
    assert_eq!(status_of(&out), 201, "{:?}", String::from_utf8_lossy(&out));
    let now = snapshot(&f.env.redis, "hr");
    assert!(now.posts.contains_key(b"slowlink".as_slice()));
}

#[test]
fn a_stalled_bulk_body_gets_408_and_applies_complete_lines_only() {
    let _serial = serial();
    let f = Fixture::start_with(|c| c.body_timeout = BODY_TIMEOUT);
    let line = |i: usize| post(&format!("bulkstall-{i}"), "t", "c", "a");
    // Two complete lines and the start of a third, of a body announced longer.
    let partial = line(2);
    let body = format!(
        "{}\n{}\n{}",
        line(0),
        line(1),
        &partial[..partial.len() / 2]
    );
    let mut s = TcpStream::connect(f.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /bulk HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{body}",
        body.len() + 1000
    )
    .unwrap();
    let sent = Instant::now();
    let a = read_408(&mut s, sent);
    let report: serde_json::Value = serde_json::from_slice(body_of(&a)).expect("a JSON report");
    assert_eq!(
        report["error"],
        format!("request body stalled: nothing received for {BODY_TIMEOUT:?}")
    );
    assert_eq!(report["lines"], 2);
    assert_eq!(report["last_line"], 2);
    assert_eq!(report["applied"], 2);
    assert_eq!(report["rejected"], 0);
    let now = snapshot(&f.env.redis, "hr");
    let has = |i: usize| now.posts.contains_key(format!("bulkstall-{i}").as_bytes());
    assert!(has(0) && has(1), "complete lines were not applied");
    assert!(!has(2), "the stalled line was applied");
}

#[test]
fn connections_closed_mid_request_leave_nothing_behind() {
    let _serial = serial();
    let f = Fixture::start();
    let good = GoodLoop::start(f.addr());
    let addr = f.addr();
    let body = post("cut", "t", "c", "a");
    let full = format!(
        "{}{body}",
        create_head(&format!("Content-Length: {}\r\n", body.len()))
    );
    let chunked = format!(
        "{}{}0\r\n\r\n",
        create_head("Transfer-Encoding: chunked\r\n"),
        chunk(&body)
    );
    let invalid = format!(
        "{}{NOT_A_POST}",
        create_head(&format!("Content-Length: {}\r\n", NOT_A_POST.len()))
    );
    for round in 0..300 {
        let mut s = TcpStream::connect(addr).expect("connect");
        match round % 6 {
            // Inside the request line, inside the headers, and inside the body
            // of a valid write (the write must not happen).
            0 => s.write_all(&full.as_bytes()[..6]).unwrap(),
            1 => s.write_all(&full.as_bytes()[..40]).unwrap(),
            2 => s.write_all(&full.as_bytes()[..full.len() - 5]).unwrap(),
            // Inside a chunk, and before the last chunk, of a valid write.
            3 => s
                .write_all(&chunked.as_bytes()[..chunked.len() - 12])
                .unwrap(),
            4 => {
                // Half-close inside the body: the body is incomplete, nothing is written.
                s.write_all(&full.as_bytes()[..full.len() - 5]).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let out = read_to_close(&mut s);
                for a in split_answers(&out) {
                    assert!(
                        status_of(a) >= 400,
                        "cut body answered {:?}",
                        String::from_utf8_lossy(a)
                    );
                }
            }
            // Many complete (invalid) requests, gone without reading the answers.
            _ => s.write_all(invalid.repeat(200).as_bytes()).unwrap(),
        }
        drop(s);
    }
    let writes = good.finish(10);
    f.assert_unharmed(writes);
}

#[test]
fn a_bulk_body_cut_mid_line_applies_complete_lines_only() {
    let _serial = serial();
    let f = Fixture::start();
    let addr = f.addr();
    let line = |i: usize| post(&format!("bulkcut-{i}"), "t", "c", "a");
    // Three complete lines, then a fourth that is valid JSON but has no line
    // end and the body is shorter than announced: the client went away.
    let body = format!("{}\n{}\n{}\n{}", line(0), line(1), line(2), line(3));
    let by_length = format!(
        "POST /bulk HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{body}",
        body.len() + 100
    );
    let chunked = format!(
        "POST /bulk HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        chunk(&body)
    );
    for (what, raw) in [("Content-Length", by_length), ("chunked", chunked)] {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(raw.as_bytes()).unwrap();
        // Half-close: hyper sees the body end early, and the answer can still come.
        s.shutdown(Shutdown::Write).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let out = read_to_close(&mut s);
        for a in split_answers(&out) {
            assert_eq!(
                status_of(a),
                400,
                "{what}: {:?}",
                String::from_utf8_lossy(a)
            );
        }
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let now = snapshot(&f.env.redis, "hr");
            let has = |i: usize| now.posts.contains_key(format!("bulkcut-{i}").as_bytes());
            assert!(!has(3), "{what}: the cut line was applied");
            if (0..3).all(has) {
                break;
            }
            assert!(
                Instant::now() < end,
                "{what}: complete lines were not applied"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut c = f.env.redis.connection();
        let _: () = redis::cmd("DEL").arg("{hr}:posts").query(&mut c).unwrap();
    }
}
