//! Pipelined requests are answered in order, all answers to one read in one
//! write; a request dribbled in byte by byte works the same.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

#[test]
fn hundred_pipelined_requests_get_hundred_answers_in_order() {
    let f = Fixture::start(|_| {});
    for i in 0..10 {
        f.put(&format!("p{i}"), &format!("{{\"n\":{i}}}"));
    }
    let mut raw = Vec::new();
    for i in 0..100 {
        let target = match i % 4 {
            0 => format!("/post?id=p{}", i % 10),
            1 => "/health".to_owned(),
            2 => "/post?id=missing".to_owned(),
            _ => format!("/post?id=p{}", (i + 3) % 10),
        };
        raw.extend_from_slice(
            format!("GET {target} HTTP/1.1\r\nHost: t\r\nX-Request-Id: r{i:03}\r\n\r\n").as_bytes(),
        );
    }
    assert!(raw.len() < 8192, "fits one read of the default buffer");
    let mut s = connect(f.addr());
    s.write_all(&raw).unwrap();
    // All hundred answers were written at once: one read, after a pause, gets them all.
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = vec![0u8; 1 << 20];
    let n = s.read(&mut buf).unwrap();
    let all = &buf[..n];
    let mut rest = all;
    for i in 0..100 {
        let head_end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a full answer")
            + 4;
        let len: usize = header(&rest[..head_end], "content-length")
            .unwrap()
            .parse()
            .unwrap();
        let (resp, tail) = rest.split_at(head_end + len);
        assert_eq!(
            header(resp, "x-request-id"),
            Some(format!("r{i:03}")),
            "answer {i} out of order"
        );
        let want_status = if i % 4 == 2 { 404 } else { 200 };
        assert_eq!(status_of(resp), want_status, "answer {i}");
        match i % 4 {
            0 => assert_eq!(body_of(resp), format!("{{\"n\":{}}}", i % 10).as_bytes()),
            3 => assert_eq!(
                body_of(resp),
                format!("{{\"n\":{}}}", (i + 3) % 10).as_bytes()
            ),
            _ => {}
        }
        rest = tail;
    }
    assert!(
        rest.is_empty(),
        "{} bytes after the 100th answer",
        rest.len()
    );
    // The connection is still usable.
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(status_of(&read_response(&mut s, false)), 200);
}

#[test]
fn request_split_into_tiny_writes_works() {
    let f = Fixture::start(|_| {});
    let w = f.put("tiny", r#"{"t":1}"#);
    let raw = b"GET /post?id=tiny HTTP/1.1\r\nHost: t\r\nX-Request-Id: slow\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut s = connect(f.addr());
    for chunk in raw.chunks(3) {
        s.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let first = read_response(&mut s, false);
    assert_eq!(status_of(&first), 200);
    assert_eq!(header(&first, "etag"), Some(quoted_etag(&w)));
    assert_eq!(header(&first, "x-request-id").as_deref(), Some("slow"));
    assert_eq!(body_of(&first), br#"{"t":1}"#);
    let second = read_response(&mut s, false);
    assert_eq!(body_of(&second), br#"{"status":"ok"}"#);
}

#[test]
fn pipelined_head_and_conditional_requests_keep_framing() {
    let f = Fixture::start(|_| {});
    let w = f.put("h", r#"{"h":true}"#);
    let etag = quoted_etag(&w);
    let raw = format!(
        "HEAD /post?id=h HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /post?id=h HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n\
         GET /post?id=h HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    );
    let mut s = connect(f.addr());
    s.write_all(raw.as_bytes()).unwrap();
    let head = read_response(&mut s, true);
    assert_eq!(header(&head, "content-length").as_deref(), Some("10"));
    let not_modified = read_response(&mut s, true);
    assert_eq!(status_of(&not_modified), 304);
    let full = read_response(&mut s, false);
    assert_eq!(body_of(&full), br#"{"h":true}"#);
    assert!(read_to_close(&mut s).is_empty());
}

#[test]
fn large_pipelined_answers_are_flushed_in_order() {
    let f = Fixture::start(|_| {});
    let body = format!("{{\"blob\":\"{}\"}}", "x".repeat(100_000));
    f.put("big", &body);
    let mut raw = Vec::new();
    for i in 0..8 {
        raw.extend_from_slice(
            format!("GET /post?id=big HTTP/1.1\r\nHost: t\r\nX-Request-Id: b{i}\r\n\r\n")
                .as_bytes(),
        );
    }
    let mut s = connect(f.addr());
    s.write_all(&raw).unwrap();
    for i in 0..8 {
        let resp = read_response(&mut s, false);
        assert_eq!(header(&resp, "x-request-id"), Some(format!("b{i}")));
        assert_eq!(body_of(&resp), body.as_bytes());
    }
}
