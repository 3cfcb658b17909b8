//! Hostile input over real sockets: smuggling attempts, huge and numerous
//! headers, NUL and non-UTF-8 bytes, absurd ids, path tricks, 10k pipelined
//! requests in one write, 1,000 slowloris connections, and connections
//! closed mid-request or mid-answer.
//!
//! Every case gets one clear error answer and a close (or just a close);
//! meanwhile a loop of good requests keeps getting 200s. Afterwards the
//! reader still answers `/health`, its open-connections gauge and this
//! process's descriptor count are back where they started, and the store
//! and Redis are unchanged.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

/// The descriptor count is per process: one test at a time in this binary.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const GOOD_BODY: &str = r#"{"id":"good","title":"still here"}"#;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// A sample of the reader's `/metrics` page (the value of an unlabelled series).
fn gauge(f: &Fixture, name: &str) -> f64 {
    let page = f.reader.render_metrics();
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{page}"))
}

fn redis_version(f: &Fixture) -> u64 {
    f.rt.block_on(f.publisher.version())
        .expect("read the version")
}

/// What must be the same after the attack as before it.
struct Baseline {
    fds: usize,
    open: f64,
    store: Vec<(String, u64, String)>,
    version: u64,
}

/// The fixture with one post, and the state to compare with at the end.
fn start(tweak: impl FnOnce(&mut heavyread_reader::Config)) -> (Fixture, Baseline) {
    let f = Fixture::start(tweak);
    f.put("good", GOOD_BODY);
    // Let the sync thread's connections settle before counting descriptors.
    std::thread::sleep(Duration::from_millis(100));
    let b = Baseline {
        fds: open_fds(),
        open: gauge(&f, "heavyread_reader_open_connections"),
        store: f.reader.store().snapshot(),
        version: redis_version(&f),
    };
    (f, b)
}

/// The reader is alive and serving, nothing leaked, nothing changed.
fn assert_unharmed(f: &Fixture, b: &Baseline) {
    assert_eq!(status_of(&get(f.addr(), "/health")), 200, "/health");
    let resp = get(f.addr(), "/post?id=good");
    assert_eq!(status_of(&resp), 200);
    assert_eq!(body_of(&resp), GOOD_BODY.as_bytes());
    // Closed connections are unregistered by their tasks, and the server's
    // sockets are closed by then: wait for both to come back.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let open = gauge(f, "heavyread_reader_open_connections");
        let fds = open_fds();
        if open == b.open && fds <= b.fds + 2 {
            break;
        }
        assert!(
            Instant::now() < end,
            "leak: {open} open connections (was {}), {fds} descriptors (was {})",
            b.open,
            b.fds
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(f.reader.store().snapshot(), b.store, "the store changed");
    assert_eq!(redis_version(f), b.version, "Redis changed");
}

/// Good requests in a loop while an attack runs: a keep-alive connection,
/// and a fresh connection every tenth request (accepting must keep working).
struct GoodLoop {
    stop: Arc<AtomicBool>,
    /// Good requests served so far.
    served: Arc<AtomicU64>,
    handle: JoinHandle<Result<(u64, Duration), String>>,
}

impl GoodLoop {
    fn start(addr: SocketAddr) -> GoodLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let served = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&served);
        let handle = std::thread::spawn(move || {
            let mut ok = 0u64;
            let mut slowest = Duration::ZERO;
            let mut kept: Option<TcpStream> = None;
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                let fresh = ok % 10 == 9;
                let resp = if fresh {
                    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    s.write_all(
                        b"GET /post?id=good HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    )
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
                    s.write_all(b"GET /post?id=good HTTP/1.1\r\nHost: t\r\n\r\n")
                        .map_err(|e| format!("write: {e}"))?;
                    try_read_response(s)
                };
                let resp = resp.map_err(|e| format!("good request {ok} failed: {e}"))?;
                if status_of(&resp) != 200 || body_of(&resp) != GOOD_BODY.as_bytes() {
                    return Err(format!(
                        "good request {ok} got {:?}",
                        String::from_utf8_lossy(&resp)
                    ));
                }
                slowest = slowest.max(t.elapsed());
                ok += 1;
                count.store(ok, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(3));
            }
            Ok((ok, slowest))
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

    /// Stops the loop; panics unless every good request got its 200 quickly.
    fn finish(self, at_least: u64) {
        // Short attacks end quickly: let the loop reach its count (if it
        // failed, the join below says why).
        self.wait_for(at_least);
        self.stop.store(true, Ordering::Relaxed);
        let (ok, slowest) = self
            .handle
            .join()
            .expect("good loop panicked")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(ok >= at_least, "only {ok} good requests were served");
        assert!(
            slowest < Duration::from_secs(2),
            "a good request took {slowest:?}"
        );
    }
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

/// Sends `raw` from a second thread (the server may stop reading and close
/// early) while this one reads everything until the server closes.
fn send_and_read(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let raw = raw.to_vec();
    let writer = std::thread::spawn(move || {
        // The server closes once it has refused: a failed write is expected.
        if w.write_all(&raw).is_ok() {
            let _ = w.shutdown(Shutdown::Write);
        }
    });
    let out = read_to_close(&mut s);
    writer.join().unwrap();
    out
}

/// Splits a stream of answers (every one with a Content-Length body).
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
        out.push(one);
        all = rest;
    }
    out
}

/// One refusal: exactly one answer with a status from `statuses`, saying
/// `Connection: close`, and then the close (nothing after it is answered).
fn refused(addr: SocketAddr, what: &str, raw: &[u8], statuses: &[u16]) {
    let out = send_and_read(addr, raw);
    assert!(
        !out.is_empty(),
        "{what}: closed without an answer (expected one of {statuses:?})"
    );
    let answers = split_answers(&out);
    assert_eq!(
        answers.len(),
        1,
        "{what}: {} answers: {:?}",
        answers.len(),
        String::from_utf8_lossy(&out)
    );
    let status = status_of(answers[0]);
    assert!(
        statuses.contains(&status),
        "{what}: status {status}, expected one of {statuses:?}: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(
        header(answers[0], "connection").as_deref(),
        Some("close"),
        "{what}: the refusal must close"
    );
    if status >= 400 {
        let body = String::from_utf8_lossy(body_of(answers[0])).into_owned();
        assert!(body.starts_with("{\"error\":\""), "{what}: body {body}");
    }
}

/// The answer to a single request that must be served normally.
fn served(addr: SocketAddr, what: &str, raw: &[u8]) -> Vec<u8> {
    let out = send_and_read(addr, raw);
    let answers = split_answers(&out);
    assert_eq!(
        answers.len(),
        1,
        "{what}: {:?}",
        String::from_utf8_lossy(&out)
    );
    answers[0].to_vec()
}

const SMUGGLED: &str = "GET /post?id=good HTTP/1.1\r\nHost: h\r\nX-Request-Id: smuggled\r\n\r\n";

#[test]
fn smuggling_attempts_get_one_refusal_and_a_close() {
    let _serial = serial();
    let (f, base) = start(|c| c.idle_timeout = Duration::from_secs(5));
    let good = GoodLoop::start(f.addr());
    let cases: &[(&str, String)] = &[
        (
            "CL then TE",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE then CL",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE chunked with a smuggled request in a chunk",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len()),
        ),
        (
            "TE identity",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE with a tab",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE chunked, chunked",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n{SMUGGLED}"),
        ),
        (
            "two TE lines",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE with a space before the colon",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE folded onto a second line",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE on HTTP/1.0",
            format!("GET /post?id=good HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n{SMUGGLED}"),
        ),
        (
            "conflicting Content-Lengths",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}", SMUGGLED.len()),
        ),
        (
            "duplicate equal Content-Lengths above zero",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nContent-Length: {0}\r\nContent-Length: {0}\r\n\r\n{SMUGGLED}", SMUGGLED.len()),
        ),
        (
            "Content-Length list",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nContent-Length: {0}, {0}\r\n\r\n{SMUGGLED}", SMUGGLED.len()),
        ),
        (
            "a body on GET",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{SMUGGLED}", SMUGGLED.len()),
        ),
        (
            "signed Content-Length",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nContent-Length: +0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "hex Content-Length",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nContent-Length: 0x0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "overflowing Content-Length",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n{SMUGGLED}"),
        ),
        (
            "POST with a body holding a request",
            format!("POST /post?id=good HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{SMUGGLED}", SMUGGLED.len()),
        ),
        (
            "two Host headers",
            format!("GET /post?id=good HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n{SMUGGLED}"),
        ),
        (
            "no Host on HTTP/1.1",
            format!("GET /post?id=good HTTP/1.1\r\n\r\n{SMUGGLED}"),
        ),
        (
            "bare CR inside the head",
            format!("GET /post?id=good HTTP/1.1\rHost: h\r\n\r\n{SMUGGLED}"),
        ),
        (
            "a header without a colon",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nX-Smuggle\r\n\r\n{SMUGGLED}"),
        ),
        (
            "HTTP/2 preface",
            format!("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n{SMUGGLED}"),
        ),
        (
            "unknown version",
            format!("GET /post?id=good HTTP/1.2\r\nHost: h\r\n\r\n{SMUGGLED}"),
        ),
        (
            "CONNECT",
            format!("CONNECT good:443 HTTP/1.1\r\nHost: good:443\r\n\r\n{SMUGGLED}"),
        ),
        (
            "Upgrade to h2c on a GET with a body",
            format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: {}\r\n\r\n{SMUGGLED}", SMUGGLED.len()),
        ),
    ];
    for (what, raw) in cases {
        refused(f.addr(), what, raw.as_bytes(), &[400, 405]);
    }
    // The same smuggling attempts after a good request on the same
    // connection: the good one is answered, the rest refused and closed.
    for (what, raw) in cases {
        let mut both = b"GET /post?id=good HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
        both.extend_from_slice(raw.as_bytes());
        let out = send_and_read(f.addr(), &both);
        let answers = split_answers(&out);
        assert_eq!(
            answers.len(),
            2,
            "{what} after a good request: {:?}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(status_of(answers[0]), 200, "{what}");
        assert!(matches!(status_of(answers[1]), 400 | 405), "{what}");
        assert!(
            !out.windows(8).any(|w| w == b"smuggled"),
            "{what}: smuggled request answered"
        );
    }
    // Upgrade without a body is just a GET: answered, not switched.
    let resp = served(
        f.addr(),
        "Upgrade: h2c",
        b"GET /post?id=good HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: close, Upgrade\r\n\r\n",
    );
    assert_eq!(status_of(&resp), 200);
    good.finish(10);
    assert_unharmed(&f, &base);
}

#[test]
fn huge_and_numerous_headers_get_414_or_431() {
    let _serial = serial();
    let (f, base) = start(|c| c.idle_timeout = Duration::from_secs(5));
    let good = GoodLoop::start(f.addr());
    let addr = f.addr();
    // Request lines over --max-request-line (4096): short, huge, and never ending.
    for len in [4097usize, 64 << 10, 4 << 20] {
        let raw = format!(
            "GET /post?id={} HTTP/1.1\r\nHost: h\r\n\r\n",
            "a".repeat(len)
        );
        refused(
            addr,
            &format!("request line of {len}"),
            raw.as_bytes(),
            &[414],
        );
    }
    refused(
        addr,
        "unterminated request line",
        "x".repeat(1 << 20).as_bytes(),
        &[400, 414],
    );
    refused(
        addr,
        "long target without a line end",
        format!("GET /{}", "a".repeat(1 << 20)).as_bytes(),
        &[414],
    );
    // Heads over --max-header-bytes (8192): one huge field, many small ones.
    for (what, raw) in [
        (
            "a 9 KB header",
            format!(
                "GET /post?id=good HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
                "b".repeat(9000)
            ),
        ),
        (
            "a 4 MB header",
            format!(
                "GET /post?id=good HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
                "b".repeat(4 << 20)
            ),
        ),
        (
            "a 9 KB header name",
            format!(
                "GET /post?id=good HTTP/1.1\r\nHost: h\r\n{}: b\r\n\r\n",
                "N".repeat(9000)
            ),
        ),
        (
            "65 header fields",
            format!(
                "GET /post?id=good HTTP/1.1\r\nHost: h\r\n{}\r\n",
                "A: b\r\n".repeat(64)
            ),
        ),
        (
            "10,000 header fields",
            format!(
                "GET /post?id=good HTTP/1.1\r\nHost: h\r\n{}\r\n",
                "A: b\r\n".repeat(10_000)
            ),
        ),
        (
            "10,000 empty-valued fields",
            format!(
                "GET /post?id=good HTTP/1.1\r\nHost: h\r\n{}\r\n",
                "A:\r\n".repeat(10_000)
            ),
        ),
        (
            "100 If-None-Match lines of 100 tags",
            format!(
                "GET /post?id=good HTTP/1.1\r\nHost: h\r\n{}\r\n",
                format!("If-None-Match: {}\r\n", "\"x\", ".repeat(100)).repeat(100)
            ),
        ),
        (
            "endless header lines",
            format!(
                "GET /post?id=good HTTP/1.1\r\nHost: h\r\n{}",
                "A: b\r\n".repeat(200_000)
            ),
        ),
    ] {
        refused(addr, what, raw.as_bytes(), &[431]);
    }
    // At the limits exactly, a request is served.
    let at_limit = format!(
        "GET /post?id=good HTTP/1.1\r\nHost: h\r\n{}Connection: close\r\n\r\n",
        "A: b\r\n".repeat(62)
    );
    assert_eq!(
        status_of(&served(addr, "64 fields", at_limit.as_bytes())),
        200
    );
    // Many If-None-Match lines within the limits: answered with the body (never a wrong 304).
    let many_inm = format!(
        "GET /post?id=good HTTP/1.1\r\nHost: h\r\n{}Connection: close\r\n\r\n",
        "If-None-Match: *\r\n".repeat(20)
    );
    assert_eq!(
        status_of(&served(addr, "20 If-None-Match", many_inm.as_bytes())),
        200
    );
    good.finish(10);
    assert_unharmed(&f, &base);
    let page = f.reader.render_metrics();
    assert!(page.contains("status=\"431\""), "{page}");
    assert!(page.contains("status=\"414\""), "{page}");
}

#[test]
fn nul_and_non_utf8_bytes_get_400_or_are_ignored() {
    let _serial = serial();
    let (f, base) = start(|c| c.idle_timeout = Duration::from_secs(5));
    let good = GoodLoop::start(f.addr());
    let addr = f.addr();
    let cases: &[(&str, &[u8])] = &[
        (
            "NUL in the target",
            b"GET /post?id=go\0od HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        (
            "NUL in the method",
            b"G\0T /post?id=good HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        (
            "NUL in the version",
            b"GET /post?id=good HTTP/1.\0\r\nHost: h\r\n\r\n",
        ),
        (
            "NUL in a header value",
            b"GET /post?id=good HTTP/1.1\r\nHost: h\0x\r\n\r\n",
        ),
        (
            "NUL in a header name",
            b"GET /post?id=good HTTP/1.1\r\nHo\0st: h\r\n\r\n",
        ),
        ("NUL line", b"\0\r\n\r\n"),
        ("only NULs", &[0u8; 4096]),
        (
            "non-UTF-8 header name",
            b"GET /post?id=good HTTP/1.1\r\nHost: h\r\nX-\xff\xfe: v\r\n\r\n",
        ),
        (
            "non-UTF-8 method",
            b"G\xc3\xa9T /post?id=good HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        (
            "DEL in the target",
            b"GET /post?id=go\x7fod HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        (
            "escape sequence in the target",
            b"GET /post?id=\x1b[2J HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        (
            "TLS client hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\x00\r\n\r\n",
        ),
        ("SSH banner", b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
        ("a lone LF head", b"\n\n\n\nGET\n\n"),
        (
            "form feed as whitespace",
            b"GET\x0c/post?id=good HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
    ];
    for (what, raw) in cases {
        refused(addr, what, raw, &[400, 405]);
    }
    // Non-UTF-8 in the target or the Host: either refused by the parser or
    // a malformed id or host.
    for (what, raw) in [
        (
            "obs-text Host",
            &b"GET /post?id=good HTTP/1.1\r\nHost: h\xff\r\nConnection: close\r\n\r\n"[..],
        ),
        (
            "Latin-1 id",
            b"GET /post?id=caf\xe9 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        ),
        (
            "invalid UTF-8 id",
            b"GET /post?id=\xff\xfe\xfd HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        ),
        (
            "overlong UTF-8 slash",
            b"GET /post?id=a\xc0\xafb HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        ),
        (
            "UTF-8 path",
            b"GET /p\xc3\xb6st?id=good HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let out = send_and_read(addr, raw);
        let answers = split_answers(&out);
        assert_eq!(answers.len(), 1, "{what}");
        assert!(
            matches!(status_of(answers[0]), 400 | 404),
            "{what}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    // Non-UTF-8 in a header the reader ignores or checks: served, and the
    // bad request id is replaced by a generated one, never echoed.
    let resp = served(
        addr,
        "obs-text request id",
        b"GET /post?id=good HTTP/1.1\r\nHost: h\r\nX-Request-Id: \xff\xfe<script>\r\nUser-Agent: \xc3\x28\r\nX-Other: h\xff\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&resp), 200);
    let rid = header(&resp, "x-request-id").expect("a request id");
    assert!(!rid.contains("script") && rid.is_ascii(), "echoed {rid:?}");
    let resp = served(
        addr,
        "non-UTF-8 If-None-Match",
        b"GET /post?id=good HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"\xff\xfe\", W/\"\x80\"\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&resp), 200);
    good.finish(10);
    assert_unharmed(&f, &base);
}

#[test]
fn absurd_ids_and_path_tricks_get_clear_statuses() {
    let _serial = serial();
    let (f, base) = start(|c| c.idle_timeout = Duration::from_secs(5));
    let good = GoodLoop::start(f.addr());
    let addr = f.addr();
    let status = |target: &[u8]| {
        let mut raw = b"GET ".to_vec();
        raw.extend_from_slice(target);
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        let out = send_and_read(addr, &raw);
        let answers = split_answers(&out);
        assert_eq!(
            answers.len(),
            1,
            "{}: {:?}",
            String::from_utf8_lossy(target),
            String::from_utf8_lossy(&out)
        );
        status_of(answers[0])
    };
    let long_id = "a".repeat(129);
    let longer_id = "a".repeat(4000);
    let encoded_long = "%61".repeat(129);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        // Served: the id exactly, percent-encoded, with other parameters, a fragment, absolute form.
        (b"/post?id=good".to_vec(), 200),
        (b"/post?id=%67%6F%6f%64".to_vec(), 200),
        (b"/post?x=1&id=good&y=%zz".to_vec(), 200),
        (b"/post?id=good#../../etc/passwd".to_vec(), 200),
        (b"http://evil.example/post?id=good".to_vec(), 200),
        // Valid ids that are not there.
        (b"/post?id=GOOD".to_vec(), 404),
        (b"/post?id=good.".to_vec(), 404),
        (b"/post?id=..".to_vec(), 404),
        (format!("/post?id={}", "z".repeat(128)).into_bytes(), 404),
        // Malformed: too long, outside the alphabet, encodings of bad bytes, twice.
        (format!("/post?id={long_id}").into_bytes(), 400),
        (format!("/post?id={longer_id}").into_bytes(), 400),
        (format!("/post?id={encoded_long}").into_bytes(), 400),
        (b"/post?id=".to_vec(), 400),
        (b"/post?id".to_vec(), 400),
        (b"/post?id=good%00".to_vec(), 400),
        (b"/post?id=%00".to_vec(), 400),
        (b"/post?id=good%0d%0aX-Injected:%20yes".to_vec(), 400),
        (b"/post?id=../good".to_vec(), 400),
        (b"/post?id=..%2Fgood".to_vec(), 400),
        (b"/post?id=..%2f..%2f..%2fetc%2fpasswd".to_vec(), 400),
        (b"/post?id=%2e%2e%5c%2e%2e%5cwindows".to_vec(), 400),
        (b"/post?id=%2567ood".to_vec(), 400),
        (b"/post?id=%C3%A9".to_vec(), 400),
        (b"/post?id=%F0%9F%92%A9".to_vec(), 400),
        (b"/post?id=%EF%BC%8E%EF%BC%8E".to_vec(), 400),
        (b"/post?id=%".to_vec(), 400),
        (b"/post?id=%g0".to_vec(), 400),
        (b"/post?id=good%".to_vec(), 400),
        (b"/post?id=go+od".to_vec(), 400),
        (b"/post?id=good;drop".to_vec(), 400),
        (b"/post?id=%27%20OR%201=1--".to_vec(), 400),
        (b"/post?id=%3Cscript%3E".to_vec(), 400),
        (b"/post?id=*".to_vec(), 400),
        (b"/post?id=good&id=good".to_vec(), 400),
        (b"/post?id=good&%69d=good".to_vec(), 400),
        (b"/post?ID=good".to_vec(), 400),
        (b"/post?ids=good".to_vec(), 400),
        (b"/post".to_vec(), 400),
        (b"/post?".to_vec(), 400),
        // Path tricks: paths are matched exactly, never decoded or normalised.
        (b"/post/../health".to_vec(), 404),
        (b"/health/../post?id=good".to_vec(), 404),
        (b"/%70ost?id=good".to_vec(), 404),
        (b"/post%3Fid=good".to_vec(), 404),
        (b"//post?id=good".to_vec(), 404),
        (b"/post/?id=good".to_vec(), 404),
        (b"/./post?id=good".to_vec(), 404),
        (b"/POST?id=good".to_vec(), 404),
        (b"/post;id=good".to_vec(), 404),
        (b"/post%00?id=good".to_vec(), 404),
        (b"/post\\..\\metrics".to_vec(), 404),
        (b"/metrics/../../etc/passwd".to_vec(), 404),
        (b"/../../../../etc/passwd".to_vec(), 404),
        (b"/".to_vec(), 404),
        (b"*".to_vec(), 400),
        (b"post?id=good".to_vec(), 400),
        (b"file:///etc/passwd".to_vec(), 400),
        (b"http://".to_vec(), 400),
        (b"http:///post?id=good".to_vec(), 400),
        (b"javascript:alert(1)".to_vec(), 400),
    ];
    for (target, want) in &cases {
        let got = status(target);
        assert_eq!(got, *want, "GET {}", String::from_utf8_lossy(target));
    }
    // A 400 for an id keeps the connection (the request was well-formed);
    // the next request on it is served.
    let mut s = connect(addr);
    s.write_all(b"GET /post?id=../x HTTP/1.1\r\nHost: h\r\n\r\nGET /post?id=good HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    assert_eq!(status_of(&read_response(&mut s, false)), 400);
    assert_eq!(status_of(&read_response(&mut s, false)), 200);
    drop(s);
    good.finish(10);
    assert_unharmed(&f, &base);
}

#[test]
fn ten_thousand_pipelined_requests_in_one_write_are_answered_in_order() {
    let _serial = serial();
    // Timeouts far from this test's subject: on a loaded machine a client
    // thread that writes the rest of a request, or reads answers, can be
    // held off for longer than the fixture's 400 ms and 2 s.
    let (f, base) = start(|c| {
        c.idle_timeout = Duration::from_secs(10);
        c.header_timeout = Duration::from_secs(10);
        c.write_timeout = Duration::from_secs(10);
    });
    let good = GoodLoop::start(f.addr());
    let n = 10_000;
    let mut raw = Vec::with_capacity(n * 80);
    for i in 0..n {
        let target = match i % 5 {
            0 | 1 => "/post?id=good",
            2 => "/post?id=missing",
            3 => "/post?id=../x",
            _ => "/health",
        };
        let close = if i == n - 1 {
            "Connection: close\r\n"
        } else {
            ""
        };
        raw.extend_from_slice(
            format!("GET {target} HTTP/1.1\r\nHost: h\r\nX-Request-Id: r{i}\r\n{close}\r\n")
                .as_bytes(),
        );
    }
    let started = Instant::now();
    let out = send_and_read(f.addr(), &raw);
    let took = started.elapsed();
    let answers = split_answers(&out);
    assert_eq!(answers.len(), n, "answers");
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(
            header(a, "x-request-id"),
            Some(format!("r{i}")),
            "answer {i} out of order"
        );
        let want = match i % 5 {
            0 | 1 | 4 => 200,
            2 => 404,
            _ => 400,
        };
        assert_eq!(status_of(a), want, "answer {i}");
    }
    assert!(
        took < Duration::from_secs(10),
        "10k pipelined answers took {took:?}"
    );

    // A bad request in the middle: everything before it is answered, it is
    // refused, and nothing after it is.
    let mut raw = Vec::new();
    for i in 0..n {
        if i == n / 2 {
            raw.extend_from_slice(
                b"GET /post?id=good HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            );
        } else {
            raw.extend_from_slice(
                format!("GET /post?id=good HTTP/1.1\r\nHost: h\r\nX-Request-Id: q{i}\r\n\r\n")
                    .as_bytes(),
            );
        }
    }
    let out = send_and_read(f.addr(), &raw);
    let answers = split_answers(&out);
    assert_eq!(answers.len(), n / 2 + 1);
    assert!(answers[..n / 2].iter().all(|a| status_of(a) == 200));
    assert_eq!(status_of(answers[n / 2]), 400);
    assert_eq!(
        header(answers[n / 2], "connection").as_deref(),
        Some("close")
    );

    // 10k pipelined on each of 20 connections at once, read concurrently.
    let per = 10_000;
    let one = b"GET /post?id=good HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut block = one.repeat(per - 1);
    block.extend_from_slice(b"GET /post?id=good HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let block = Arc::new(block);
    let addr = f.addr();
    let readers: Vec<_> = (0..20)
        .map(|_| {
            let block = Arc::clone(&block);
            std::thread::spawn(move || split_answers(&send_and_read(addr, &block)).len())
        })
        .collect();
    for r in readers {
        let got = r.join().unwrap();
        if got != per {
            let page = f.reader.render_metrics();
            let timeouts: Vec<&str> = page
                .lines()
                .filter(|l| l.starts_with("heavyread_reader_connection_timeouts_total"))
                .collect();
            panic!("{got} answers of {per} on a connection; {timeouts:?}");
        }
    }
    good.finish(10);
    assert_unharmed(&f, &base);
}

#[test]
fn a_thousand_slowloris_connections_get_408_while_good_requests_are_served() {
    let _serial = serial();
    let header_timeout = Duration::from_secs(1);
    let (f, base) = start(|c| {
        c.header_timeout = header_timeout;
        c.idle_timeout = Duration::from_secs(5);
    });
    let good = GoodLoop::start(f.addr());
    let addr = f.addr();
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let s = TcpStream::connect(addr).expect("connect a slow client");
            s.set_nodelay(true).unwrap();
            s
        })
        .collect();
    // Each starts a head, then dribbles a header line every 100 ms, forever.
    for s in &mut slow {
        s.write_all(b"GET /post?id=good HTTP/1.1\r\nHost: h\r\n")
            .unwrap();
    }
    let connected = started.elapsed();
    let dribble_until = Instant::now() + header_timeout + Duration::from_millis(500);
    while Instant::now() < dribble_until {
        for s in &mut slow {
            // Writes fail once the server cut the connection: that is the point.
            let _ = s.write_all(b"X-Slow: 1\r\n");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every one was answered 408 and closed, and within a bounded time.
    let deadline = Instant::now() + Duration::from_secs(5);
    for (i, s) in slow.iter_mut().enumerate() {
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        ))
        .unwrap();
        let out = read_to_close(s);
        let answers = split_answers(&out);
        assert_eq!(
            answers.len(),
            1,
            "slow client {i}: {:?}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(status_of(answers[0]), 408, "slow client {i}");
    }
    let all_cut = started.elapsed();
    assert!(
        all_cut < connected + header_timeout + Duration::from_secs(5),
        "cut after {all_cut:?} (connecting took {connected:?})"
    );
    drop(slow);
    let page = f.reader.render_metrics();
    assert!(
        page.contains("heavyread_reader_connection_timeouts_total{phase=\"header\"} 1000\n"),
        "{page}"
    );

    // 1,000 connections that never send a byte are closed by the idle timeout.
    let silent: Vec<TcpStream> = (0..1000).map(|_| connect(addr)).collect();
    let t = Instant::now();
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert!(
            read_to_close(&mut s).is_empty(),
            "an idle close sends nothing"
        );
    }
    assert!(
        t.elapsed() < Duration::from_secs(9),
        "idle close took {:?}",
        t.elapsed()
    );
    good.finish(50);
    assert_unharmed(&f, &base);
}

#[test]
fn connections_closed_mid_request_or_mid_answer_leave_nothing_behind() {
    let _serial = serial();
    let (f, base) = start(|c| {
        c.idle_timeout = Duration::from_secs(5);
        c.write_timeout = Duration::from_secs(1);
    });
    let good = GoodLoop::start(f.addr());
    let addr = f.addr();
    let head = b"GET /post?id=good HTTP/1.1\r\nHost: h\r\nX-Request-Id: cut\r\n\r\n";
    for round in 0..300 {
        let mut s = connect(addr);
        match round % 6 {
            // Cut inside the request line, inside a header, before the blank line.
            0 => s.write_all(&head[..7]).unwrap(),
            1 => s.write_all(&head[..30]).unwrap(),
            2 => s.write_all(&head[..head.len() - 2]).unwrap(),
            // Half-close mid-head: the server sees end-of-file and closes.
            3 => {
                s.write_all(&head[..20]).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                let out = read_to_close(&mut s);
                assert!(
                    out.is_empty(),
                    "answered a cut head: {:?}",
                    String::from_utf8_lossy(&out)
                );
            }
            // Whole requests, then gone without reading: unread answers make
            // the close a reset while the server may still be writing.
            4 => s.write_all(&head.repeat(200)).unwrap(),
            // A pipelined burst cut in the middle of a request.
            _ => {
                let mut burst = head.repeat(50);
                burst.extend_from_slice(&head[..25]);
                s.write_all(&burst).unwrap();
            }
        }
        drop(s);
    }
    // A client that sends many requests and never reads: the answers fill
    // the socket buffers and the write timeout cuts it.
    let mut stuck = connect(addr);
    let mut w = stuck.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let burst = b"GET /post?id=good HTTP/1.1\r\nHost: h\r\n\r\n".repeat(1000);
        let mut sent = 0usize;
        while w.write_all(&burst).is_ok() {
            sent += burst.len();
            if sent > 512 << 20 {
                break;
            }
        }
        sent
    });
    let sent = flood.join().unwrap();
    assert!(
        sent < 512 << 20,
        "the server kept reading for a client that never reads"
    );
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Drain what was sent before the cut; it ends in a close or a reset.
    let _ = read_to_close(&mut stuck);
    drop(stuck);
    let end = Instant::now() + Duration::from_secs(5);
    while !f
        .reader
        .render_metrics()
        .contains("heavyread_reader_connection_timeouts_total{phase=\"write\"} 1\n")
    {
        assert!(Instant::now() < end, "{}", f.reader.render_metrics());
        std::thread::sleep(Duration::from_millis(20));
    }
    good.finish(10);
    assert_unharmed(&f, &base);
}
