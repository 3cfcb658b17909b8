//! Header-read and idle timeouts close connections; the per-core
//! connection cap holds.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

/// The head of the 408 answered when a request head is not received in time.
const HEAD_408: &str = "HTTP/1.1 408 Request Timeout\r\nDate: <date>\r\nContent-Type: application/json\r\n\
    Cache-Control: no-store\r\nX-Request-Id: <id>\r\nContent-Length: 45\r\nConnection: close\r\n\r\n";

#[test]
fn slow_headers_get_408_and_are_closed_after_the_header_timeout() {
    let f = Fixture::start(|c| c.header_timeout = Duration::from_millis(300));
    let mut s = connect(f.addr());
    let started = Instant::now();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n").unwrap();
    // Keep dribbling a header line every 50 ms for ten header timeouts: the
    // deadline counts from the head's first byte, not the last, so the
    // connection is cut long before the dribbling stops.
    let mut w = s.try_clone().unwrap();
    let dribble = std::thread::spawn(move || {
        for _ in 0..60 {
            std::thread::sleep(Duration::from_millis(50));
            if w.write_all(b"X-A: b\r\n").is_err() {
                return;
            }
        }
    });
    let resp = read_to_close(&mut s);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(2500),
        "closed after {took:?} (the dribbling went on for 3 s)"
    );
    dribble.join().unwrap();
    assert_eq!(
        normalize(&resp),
        format!("{HEAD_408}{{\"error\":\"request head not received in time\"}}")
    );
    let page = f.reader.render_metrics();
    assert!(
        page.contains("heavyread_reader_connection_timeouts_total{phase=\"header\"} 1"),
        "{page}"
    );
}

#[test]
fn a_slow_head_request_gets_its_408_without_a_body() {
    let f = Fixture::start(|c| c.header_timeout = Duration::from_millis(300));
    let mut s = connect(f.addr());
    s.write_all(b"\r\nHEAD /post?id=x HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let resp = read_to_close(&mut s);
    assert_eq!(normalize(&resp), HEAD_408);
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let f = Fixture::start(|c| c.idle_timeout = Duration::from_millis(400));
    let mut s = connect(f.addr());
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut s, false);
    assert_eq!(status_of(&resp), 200);
    let idle_since = Instant::now();
    let rest = read_to_close(&mut s);
    let took = idle_since.elapsed();
    assert!(rest.is_empty(), "nothing is sent on an idle close");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(2),
        "closed after {took:?}"
    );
    // A connection that never sends anything is idle too.
    let mut quiet = connect(f.addr());
    let t = Instant::now();
    assert!(read_to_close(&mut quiet).is_empty());
    assert!(t.elapsed() < Duration::from_secs(2));
    let page = f.reader.render_metrics();
    assert!(
        page.contains("heavyread_reader_connection_timeouts_total{phase=\"idle\"} 2"),
        "{page}"
    );
}

#[test]
fn connection_cap_holds_per_core() {
    let f = Fixture::start(|c| {
        c.max_connections_per_core = 2;
        c.idle_timeout = Duration::from_secs(10);
    });
    let mut a = connect(f.addr());
    let mut b = connect(f.addr());
    for s in [&mut a, &mut b] {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(status_of(&read_response(s, false)), 200);
    }
    // A third connection is refused with 503 and closed.
    let mut c = connect(f.addr());
    let resp = read_to_close(&mut c);
    assert_eq!(
        normalize(&resp),
        "HTTP/1.1 503 Service Unavailable\r\nDate: <date>\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
         X-Request-Id: <id>\r\nContent-Length: 32\r\nConnection: close\r\n\r\n{\"error\":\"too many connections\"}"
    );
    // The two served connections still work.
    a.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(status_of(&read_response(&mut a, false)), 200);
    // Closing one frees a place.
    drop(b);
    let end = Instant::now() + Duration::from_secs(3);
    while !f
        .reader
        .render_metrics()
        .contains("heavyread_reader_open_connections 1\n")
    {
        assert!(Instant::now() < end, "the closed connection still counts");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(status_of(&get(f.addr(), "/health")), 200);
    let page = f.reader.render_metrics();
    assert!(
        page.contains("heavyread_reader_connections_rejected_total 1"),
        "{page}"
    );
}

/// A client that sends its last request and its end of file together
/// (`printf ... | nc -N`, or `sendall` then `shutdown` in a script) gets
/// its answer and then the server's end of file at once, not after the idle
/// timeout: the FIN may come in the same epoll edge as the request's bytes.
#[test]
fn a_request_followed_by_end_of_file_is_answered_and_closed_at_once() {
    let f = Fixture::start(|c| {
        c.idle_timeout = Duration::from_secs(20);
        c.header_timeout = Duration::from_secs(20);
    });
    for round in 0..30 {
        let mut s = connect(f.addr());
        // Let the reader take the connection and wait for its first bytes.
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        s.write_all(
            b"GET /health HTTP/1.1\r\nHost: t\r\n\r\nGET /ready HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // `connect` gives reads 5 s: a connection held to the idle timeout fails here.
        let resp = read_to_close(&mut s);
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "round {round}: closed after {took:?}"
        );
        let text = String::from_utf8_lossy(&resp);
        assert_eq!(
            text.matches("HTTP/1.1 200 OK").count(),
            2,
            "round {round}: {text}"
        );
        assert!(
            text.ends_with(r#"{"status":"ready"}"#),
            "round {round}: {text}"
        );
    }
    let page = f.reader.render_metrics();
    assert!(
        page.contains("heavyread_reader_connection_timeouts_total{phase=\"idle\"} 0\n"),
        "{page}"
    );
}

/// An empty line after a request (some clients end a request with an extra
/// CRLF) is ignored: the connection is idle, not inside a slow head, so it
/// gets no 408 at the header timeout and serves its next request.
#[test]
fn a_stray_empty_line_after_a_request_leaves_the_connection_idle() {
    // The fixture's header timeout is 400 ms.
    let f = Fixture::start(|c| c.idle_timeout = Duration::from_secs(10));
    let mut s = connect(f.addr());
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n\r\n")
        .unwrap();
    assert_eq!(status_of(&read_response(&mut s, false)), 200);
    std::thread::sleep(Duration::from_millis(700));
    s.write_all(b"GET /ready HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut s, false);
    assert_eq!(
        status_of(&resp),
        200,
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    let page = f.reader.render_metrics();
    assert!(
        page.contains("heavyread_reader_connection_timeouts_total{phase=\"header\"} 0\n"),
        "{page}"
    );
}

/// A reader with a cap of one connection, held by a connection that has
/// been answered: the next ones are refused.
fn at_cap() -> (Fixture, std::net::TcpStream) {
    let f = Fixture::start(|c| {
        c.max_connections_per_core = 1;
        c.idle_timeout = Duration::from_secs(10);
    });
    let mut held = connect(f.addr());
    held.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(status_of(&read_response(&mut held, false)), 200);
    (f, held)
}

/// Reads until the server closes, pausing `pause` after each read of at
/// most `chunk` bytes: what arrived, and how reading ended.
fn read_until_closed(
    s: &mut std::net::TcpStream,
    chunk: usize,
    pause: Duration,
) -> (Vec<u8>, std::io::Result<()>) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        match std::io::Read::read(s, &mut buf) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return (out, Err(e)),
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}

/// A connection over the cap whose request already arrived gets its 503
/// and then a clean end of file: closing with the request unread would
/// reset the connection instead.
#[test]
fn a_refused_connection_ends_cleanly_after_its_503() {
    let (f, _held) = at_cap();
    for round in 0..5 {
        let mut s = connect(f.addr());
        s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        // The reader answers and closes before this side reads anything.
        std::thread::sleep(Duration::from_millis(200));
        let (out, end) = read_until_closed(&mut s, 4096, Duration::ZERO);
        assert!(
            end.is_ok(),
            "round {round}: {end:?} after {:?}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(status_of(&out), 503, "round {round}");
    }
}

/// A connection that never sends a byte is closed, without an answer,
/// once a head would have had to arrive: it does not hold a slot of the
/// per-core cap for the whole idle timeout.
#[test]
fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let f = Fixture::start(|c| {
        c.header_timeout = Duration::from_millis(300);
        c.idle_timeout = Duration::from_secs(10);
    });
    let mut s = connect(f.addr());
    let started = Instant::now();
    let resp = read_to_close(&mut s);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    assert!(resp.is_empty(), "{:?}", String::from_utf8_lossy(&resp));
    let page = f.reader.render_metrics();
    assert!(
        page.contains("heavyread_reader_connection_timeouts_total{phase=\"idle\"} 1"),
        "{page}"
    );
}

/// Stray empty lines are no request: a connection that sends only those
/// is closed when a head would have had to arrive, as one that sends
/// nothing is, however often they come.
#[test]
fn a_connection_that_sends_only_empty_lines_is_closed_after_the_header_timeout() {
    let f = Fixture::start(|c| {
        c.header_timeout = Duration::from_millis(300);
        c.idle_timeout = Duration::from_secs(10);
    });
    let mut s = connect(f.addr());
    let started = Instant::now();
    let mut w = s.try_clone().unwrap();
    let crlf = std::thread::spawn(move || {
        for _ in 0..60 {
            if w.write_all(b"\r\n").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let resp = read_to_close(&mut s);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(2500),
        "closed after {took:?} (the empty lines went on for 3 s)"
    );
    assert!(resp.is_empty(), "{:?}", String::from_utf8_lossy(&resp));
    crlf.join().unwrap();
}

/// Empty lines split across reads (a CR, then its LF with the next CR)
/// never complete a head: the head clock that the first CR started runs
/// on, and the connection gets its 408 when it ends.
#[test]
fn empty_lines_split_across_reads_do_not_restart_the_head_clock() {
    let f = Fixture::start(|c| {
        c.header_timeout = Duration::from_millis(300);
        c.idle_timeout = Duration::from_secs(10);
    });
    let mut s = connect(f.addr());
    let started = Instant::now();
    s.write_all(b"\r").unwrap();
    let mut w = s.try_clone().unwrap();
    let split = std::thread::spawn(move || {
        for _ in 0..60 {
            std::thread::sleep(Duration::from_millis(50));
            if w.write_all(b"\n\r").is_err() {
                return;
            }
        }
    });
    let resp = read_to_close(&mut s);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(2500),
        "closed after {took:?} (the split lines went on for 3 s)"
    );
    assert_eq!(
        status_of(&resp),
        408,
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    split.join().unwrap();
}

/// Reads everything until the server closes, `chunk` bytes every 10 ms.
fn read_slowly(s: &mut std::net::TcpStream, chunk: usize) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let (out, end) = read_until_closed(s, chunk, Duration::from_millis(10));
    let took = started.elapsed();
    if let Err(e) = end {
        panic!("{e} after {} bytes in {took:?}", out.len());
    }
    (out, took)
}

/// A connection to `f` with a small receive buffer, so the reader's
/// writes wait on how fast this side reads.
fn small_window(f: &Fixture) -> std::net::TcpStream {
    use std::os::fd::AsRawFd;
    let s = connect(f.addr());
    let size: libc::c_int = 64 << 10;
    // SAFETY: a valid socket, and a pointer to an int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
    s
}

fn big_post(f: &Fixture) -> String {
    let body = format!(
        "{{\"id\":\"big\",\"content\":\"{}\"}}",
        "x".repeat(12 << 20)
    );
    f.put("big", &body);
    body
}

fn count_answers(out: &[u8]) -> usize {
    out.windows(b"HTTP/1.1 200 OK\r\n".len())
        .filter(|w| *w == b"HTTP/1.1 200 OK\r\n")
        .count()
}

/// The write timeout cuts a client that takes no answer bytes for that
/// long, not one that reads steadily but slowly: one 12 MiB answer, read
/// through a small receive buffer at 1.6 MB/s at most, takes several write
/// timeouts to write, and arrives whole. (The kernel reports the socket
/// writable again only once a good part of its buffer has drained, about
/// 1.4 MB at most here, so the reader sees progress in such steps: the
/// timeout must exceed one.)
#[test]
fn a_client_that_reads_slowly_but_steadily_gets_a_long_answer() {
    let f = Fixture::start(|c| {
        c.write_timeout = Duration::from_secs(3);
        c.idle_timeout = Duration::from_secs(60);
    });
    let body = big_post(&f);
    let mut s = small_window(&f);
    s.write_all(b"GET /post?id=big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (out, took) = read_slowly(&mut s, 16 << 10);
    assert_eq!(count_answers(&out), 1, "{} bytes in {took:?}", out.len());
    assert!(out.len() > body.len(), "{} bytes in {took:?}", out.len());
}

/// The last write of a long pipelined batch counts its timeout from when
/// it starts, not from when the batch was read: the first 12 MiB answer
/// takes over a second to go out, then the second has the whole write
/// timeout of its own.
#[test]
fn the_last_write_of_a_long_batch_gets_a_whole_write_timeout() {
    let f = Fixture::start(|c| {
        c.write_timeout = Duration::from_secs(2);
        c.idle_timeout = Duration::from_secs(60);
    });
    let body = big_post(&f);
    let mut s = small_window(&f);
    let mut requests = b"GET /post?id=big HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    requests
        .extend_from_slice(b"GET /post?id=big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    s.write_all(&requests).unwrap();
    let (out, took) = read_slowly(&mut s, 64 << 10);
    assert_eq!(count_answers(&out), 2, "{} bytes in {took:?}", out.len());
    assert!(
        out.len() > 2 * body.len(),
        "{} bytes in {took:?}",
        out.len()
    );
    assert!(
        took > Duration::from_secs(3),
        "read in {took:?}: the batch outlasted no write timeout, so this showed nothing"
    );
}

/// A connection over the cap whose client is still sending when the 503
/// goes out gets the 503 and a clean end of file, not a reset: the reader
/// reads and drops what comes for a short while before it closes.
#[test]
fn a_refused_client_still_sending_gets_its_503_and_a_clean_end() {
    let (f, _held) = at_cap();
    for round in 0..3 {
        let mut s = connect(f.addr());
        let mut w = s.try_clone().unwrap();
        // Requests for a while after the 503 has gone out.
        let sender = std::thread::spawn(move || {
            let burst = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n".repeat(100);
            for _ in 0..20 {
                if w.write_all(&burst).is_err() {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            true
        });
        let (out, end) = read_until_closed(&mut s, 4096, Duration::ZERO);
        let sent_all = sender.join().unwrap();
        assert!(
            end.is_ok() && sent_all,
            "round {round}: {end:?}, every burst sent: {sent_all}, after {:?}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(status_of(&out), 503, "round {round}");
    }
}
