//! Whatever bytes arrive, the server answers or closes and keeps serving.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_and_truncated_input_never_takes_the_server_down() {
    let f = Fixture::start(|c| {
        c.header_timeout = Duration::from_millis(200);
        c.max_header_bytes = 2048;
        c.max_request_line = 512;
    });
    f.put("g", "{}");
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let valid = b"GET /post?id=g HTTP/1.1\r\nHost: t\r\nIf-None-Match: W/\"x\", *\r\n\r\n";
    for round in 0..200 {
        let mut blob: Vec<u8> = if round % 2 == 0 {
            (0..rng.next() % 3000).map(|_| rng.next() as u8).collect()
        } else {
            // A valid request with a few bytes changed, cut short or repeated.
            let mut v = valid.repeat(1 + (rng.next() % 3) as usize);
            for _ in 0..(rng.next() % 4) {
                let at = (rng.next() as usize) % v.len();
                v[at] = rng.next() as u8;
            }
            v.truncate(1 + (rng.next() as usize) % v.len());
            v
        };
        if round % 7 == 0 {
            blob.extend_from_slice(b"\r\n\r\n");
        }
        let mut s = connect(f.addr());
        let _ = s.write_all(&blob);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let resp = read_to_close(&mut s);
        if !resp.is_empty() {
            assert!(
                resp.starts_with(b"HTTP/1.1 "),
                "round {round}: {:?}",
                String::from_utf8_lossy(&resp)
            );
        }
    }
    let resp = get(f.addr(), "/post?id=g");
    assert_eq!(status_of(&resp), 200);
    assert_eq!(status_of(&get(f.addr(), "/health")), 200);
}

/// A refused HEAD request gets the refusal's head and no body (RFC 9110,
/// section 9.3.2): body bytes after it would be taken for the next answer
/// by a client that reads the head's Content-Length as HEAD's.
#[test]
fn a_refused_head_request_gets_no_body() {
    let f = Fixture::start(|c| {
        c.max_header_bytes = 2048;
        c.max_request_line = 512;
    });
    let long_header = format!("X-Big: {}\r\n", "a".repeat(3000));
    let long_line = format!("HEAD /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(600));
    let cases: Vec<(&str, String, u16)> = vec![
        ("no Host", "HEAD /post?id=g HTTP/1.1\r\n\r\n".into(), 400),
        (
            "two Hosts",
            "HEAD /post?id=g HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(),
            400,
        ),
        (
            "a body",
            "HEAD /post?id=g HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx".into(),
            400,
        ),
        (
            "Transfer-Encoding",
            "HEAD /post?id=g HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .into(),
            400,
        ),
        (
            "an ftp target",
            "HEAD ftp://h/post HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            400,
        ),
        (
            "a head over the limit",
            format!("HEAD /health HTTP/1.1\r\nHost: t\r\n{long_header}\r\n"),
            431,
        ),
        ("a request line over the limit", long_line, 414),
    ];
    for (what, raw, status) in cases {
        let out = exchange(f.addr(), raw.as_bytes());
        assert_eq!(
            status_of(&out),
            status,
            "{what}: {:?}",
            String::from_utf8_lossy(&out)
        );
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "{what}: no whole head in {:?}",
                    String::from_utf8_lossy(&out)
                )
            })
            + 4;
        assert!(
            header(&out, "content-length").is_some_and(|v| v != "0"),
            "{what}: the head says the GET answer's length: {:?}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(
            &out[end..],
            b"",
            "{what}: a body after the head: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    // The same refusal to GET carries its body.
    let out = exchange(f.addr(), b"GET /post?id=g HTTP/1.1\r\n\r\n");
    assert_eq!(body_of(&out), br#"{"error":"missing Host header"}"#);
}

/// A bare CR after a request is no empty line (RFC 9112, section 2.2): the
/// next request is refused whether the CR came in the same read as it or
/// in the read before.
#[test]
fn a_bare_cr_between_requests_is_refused_however_the_bytes_are_split() {
    let f = Fixture::start(|c| c.idle_timeout = Duration::from_secs(10));
    let first = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n\r";
    let next = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
    // One write.
    let mut s = connect(f.addr());
    s.write_all(&[&first[..], &next[..]].concat()).unwrap();
    assert_eq!(status_of(&read_response(&mut s, false)), 200);
    assert_eq!(status_of(&read_response(&mut s, false)), 400);
    // Two writes, the first answered before the second is sent.
    let mut s = connect(f.addr());
    s.write_all(first).unwrap();
    assert_eq!(status_of(&read_response(&mut s, false)), 200);
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(next).unwrap();
    let resp = read_response(&mut s, false);
    assert_eq!(
        status_of(&resp),
        400,
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    // CRLF and a bare LF between requests are empty lines, and ignored.
    let mut s = connect(f.addr());
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n\r\n\n")
        .unwrap();
    assert_eq!(status_of(&read_response(&mut s, false)), 200);
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(next).unwrap();
    assert_eq!(status_of(&read_response(&mut s, false)), 200);
}
