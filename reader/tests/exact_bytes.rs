//! Exact bytes on the wire for every kind of answer, over real sockets, with
//! the post written through the publisher into a real Redis.

mod common;

use common::*;

const BODY: &str = r#"{"id":"p1","title":"Hello","content":"World","author":"ann"}"#;

fn fixture() -> (Fixture, String) {
    let f = Fixture::start(|c| c.cache_control = "public, max-age=5".into());
    let w = f.put("p1", BODY);
    let etag = quoted_etag(&w);
    (f, etag)
}

fn req(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: t\r\nX-Request-Id: req-1\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

#[test]
fn get_post_answers_200_with_stored_bytes() {
    let (f, etag) = fixture();
    let resp = exchange(f.addr(), &req("/post?id=p1", ""));
    assert_eq!(
        normalize(&resp),
        format!(
            "HTTP/1.1 200 OK\r\nDate: <date>\r\nContent-Type: application/json\r\nCache-Control: public, max-age=5\r\n\
             X-Request-Id: req-1\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
            BODY.len()
        )
    );
}

#[test]
fn head_post_answers_headers_without_body() {
    let (f, etag) = fixture();
    let raw =
        "HEAD /post?id=p1 HTTP/1.1\r\nHost: t\r\nX-Request-Id: req-1\r\nConnection: close\r\n\r\n";
    let resp = exchange(f.addr(), raw.as_bytes());
    assert_eq!(
        normalize(&resp),
        format!(
            "HTTP/1.1 200 OK\r\nDate: <date>\r\nContent-Type: application/json\r\nCache-Control: public, max-age=5\r\n\
             X-Request-Id: req-1\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            BODY.len()
        )
    );
}

#[test]
fn if_none_match_single_list_weak_and_star_answer_304() {
    let (f, etag) = fixture();
    let expected = format!(
        "HTTP/1.1 304 Not Modified\r\nDate: <date>\r\nCache-Control: public, max-age=5\r\nX-Request-Id: req-1\r\n\
         ETag: {etag}\r\nConnection: close\r\n\r\n"
    );
    for inm in [
        etag.clone(),
        format!("\"00000000000000000000000000000000\", {etag}"),
        format!("W/{etag}"),
        "*".to_owned(),
    ] {
        let resp = exchange(
            f.addr(),
            &req("/post?id=p1", &format!("If-None-Match: {inm}\r\n")),
        );
        assert_eq!(normalize(&resp), expected, "If-None-Match: {inm}");
    }
    // A different tag gets the full answer.
    let resp = exchange(
        f.addr(),
        &req(
            "/post?id=p1",
            "If-None-Match: \"00000000000000000000000000000000\"\r\n",
        ),
    );
    assert_eq!(status_of(&resp), 200);
    assert_eq!(body_of(&resp), BODY.as_bytes());
}

/// `If-Match` (RFC 9110, section 13.1.1): strong comparison, `*` for any
/// current post, 412 when it fails, and evaluated before `If-None-Match`.
#[test]
fn if_match_that_fails_answers_412_before_if_none_match_is_looked_at() {
    let (f, etag) = fixture();
    let other = "\"00000000000000000000000000000000\"";
    let body = r#"{"error":"If-Match does not match the current ETag"}"#;
    let failed = format!(
        "HTTP/1.1 412 Precondition Failed\r\nDate: <date>\r\nContent-Type: application/json\r\n\
         Cache-Control: no-store\r\nX-Request-Id: req-1\r\nETag: {etag}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    for (headers, status) in [
        (format!("If-Match: {etag}\r\n"), 200),
        (format!("If-Match: {other}, {etag}\r\n"), 200),
        (format!("If-Match: {other}\r\nIf-Match: {etag}\r\n"), 200),
        ("If-Match: *\r\n".to_owned(), 200),
        (format!("If-Match: {other}\r\n"), 412),
        // Weak tags never match strongly.
        (format!("If-Match: W/{etag}\r\n"), 412),
        // Failing If-Match wins over a matching If-None-Match...
        (
            format!("If-Match: {other}\r\nIf-None-Match: {etag}\r\n"),
            412,
        ),
        // ...and a passing one leaves If-None-Match its say.
        (
            format!("If-Match: {etag}\r\nIf-None-Match: {etag}\r\n"),
            304,
        ),
    ] {
        let resp = exchange(f.addr(), &req("/post?id=p1", &headers));
        assert_eq!(
            status_of(&resp),
            status,
            "{headers:?}: {}",
            String::from_utf8_lossy(&resp)
        );
        match status {
            200 => assert_eq!(body_of(&resp), BODY.as_bytes(), "{headers:?}"),
            412 => assert_eq!(normalize(&resp), failed, "{headers:?}"),
            _ => {}
        }
    }
    // HEAD: the same head, no body.
    let raw = format!(
        "HEAD /post?id=p1 HTTP/1.1\r\nHost: t\r\nX-Request-Id: req-1\r\nIf-Match: {other}\r\nConnection: close\r\n\r\n"
    );
    let resp = exchange(f.addr(), raw.as_bytes());
    assert_eq!(normalize(&resp), failed.strip_suffix(body).unwrap());
    // Preconditions are ignored when the answer would not be 2xx (section 13.2.1).
    let resp = exchange(
        f.addr(),
        &req("/post?id=nope", &format!("If-Match: {etag}\r\n")),
    );
    assert_eq!(status_of(&resp), 404);
}

#[test]
fn unknown_id_answers_404_json() {
    let (f, _) = fixture();
    let resp = exchange(f.addr(), &req("/post?id=nope", ""));
    assert_eq!(
        normalize(&resp),
        "HTTP/1.1 404 Not Found\r\nDate: <date>\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
         X-Request-Id: req-1\r\nContent-Length: 26\r\nConnection: close\r\n\r\n{\"error\":\"post not found\"}"
    );
    // `*` does not match what does not exist.
    let resp = exchange(f.addr(), &req("/post?id=nope", "If-None-Match: *\r\n"));
    assert_eq!(status_of(&resp), 404);
    let resp = exchange(f.addr(), &req("/nowhere", ""));
    assert_eq!(
        normalize(&resp),
        "HTTP/1.1 404 Not Found\r\nDate: <date>\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
         X-Request-Id: req-1\r\nContent-Length: 25\r\nConnection: close\r\n\r\n{\"error\":\"no such route\"}"
    );
}

#[test]
fn missing_or_malformed_id_answers_400() {
    let (f, _) = fixture();
    let resp = exchange(f.addr(), &req("/post", ""));
    assert_eq!(
        normalize(&resp),
        "HTTP/1.1 400 Bad Request\r\nDate: <date>\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
         X-Request-Id: req-1\r\nContent-Length: 32\r\nConnection: close\r\n\r\n{\"error\":\"missing id parameter\"}"
    );
    for target in [
        "/post?id=a%20b",
        "/post?id=%zz",
        "/post?id=",
        "/post?id=a&id=b",
        "/post?id=%C3%A9",
    ] {
        let resp = exchange(f.addr(), &req(target, ""));
        assert_eq!(
            normalize(&resp),
            "HTTP/1.1 400 Bad Request\r\nDate: <date>\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
             X-Request-Id: req-1\r\nContent-Length: 34\r\nConnection: close\r\n\r\n{\"error\":\"malformed id parameter\"}",
            "{target}"
        );
    }
    // Percent-encoded ids that decode into the alphabet are served.
    let resp = exchange(f.addr(), &req("/post?%69d=%70%31", ""));
    assert_eq!(status_of(&resp), 200);
}

#[test]
fn bad_syntax_answers_400_and_closes() {
    let (f, _) = fixture();
    let resp = exchange(
        f.addr(),
        b"GET /post?id=p1 HTTP/1.1\r\nBad Header: x\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
    );
    assert_eq!(
        normalize(&resp),
        "HTTP/1.1 400 Bad Request\r\nDate: <date>\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
         X-Request-Id: <id>\r\nContent-Length: 29\r\nConnection: close\r\n\r\n{\"error\":\"malformed request\"}"
    );
}

#[test]
fn smuggling_shapes_answer_400() {
    let (f, _) = fixture();
    for (extra, body) in [
        (
            "Transfer-Encoding: chunked\r\n",
            r#"{"error":"Transfer-Encoding not supported"}"#,
        ),
        (
            "Content-Length: 5\r\n",
            r#"{"error":"request body not allowed"}"#,
        ),
        (
            "Content-Length: 0\r\nContent-Length: 5\r\n",
            r#"{"error":"invalid Content-Length"}"#,
        ),
    ] {
        let mut raw = req("/post?id=p1", extra);
        raw.extend_from_slice(b"hello");
        let resp = exchange(f.addr(), &raw);
        assert_eq!(
            normalize(&resp),
            format!(
                "HTTP/1.1 400 Bad Request\r\nDate: <date>\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
                 X-Request-Id: req-1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
            "{extra}"
        );
    }
    let resp = exchange(f.addr(), b"GET /post?id=p1 HTTP/1.1\r\n\r\n");
    assert_eq!(status_of(&resp), 400, "HTTP/1.1 without Host");
}

#[test]
fn other_methods_answer_405_with_allow() {
    let (f, _) = fixture();
    let resp = exchange(
        f.addr(),
        b"POST /post?id=p1 HTTP/1.1\r\nHost: t\r\nX-Request-Id: req-1\r\nContent-Length: 2\r\n\r\n{}",
    );
    assert_eq!(
        normalize(&resp),
        "HTTP/1.1 405 Method Not Allowed\r\nDate: <date>\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
         X-Request-Id: req-1\r\nAllow: GET, HEAD\r\nContent-Length: 30\r\nConnection: close\r\n\r\n{\"error\":\"method not allowed\"}"
    );
}

#[test]
fn long_request_line_answers_414() {
    let f = Fixture::start(|c| c.max_request_line = 100);
    let raw = format!(
        "GET /post?id={} HTTP/1.1\r\nHost: t\r\n\r\n",
        "a".repeat(100)
    );
    let resp = exchange(f.addr(), raw.as_bytes());
    assert_eq!(
        normalize(&resp),
        "HTTP/1.1 414 URI Too Long\r\nDate: <date>\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
         X-Request-Id: <id>\r\nContent-Length: 33\r\nConnection: close\r\n\r\n{\"error\":\"request line too long\"}"
    );
}

#[test]
fn large_or_many_headers_answer_431() {
    let f = Fixture::start(|c| {
        c.max_header_bytes = 1024;
        c.max_request_line = 512;
        c.max_headers = 8;
    });
    let expected = "HTTP/1.1 431 Request Header Fields Too Large\r\nDate: <date>\r\nContent-Type: application/json\r\n\
                    Cache-Control: no-store\r\nX-Request-Id: <id>\r\nContent-Length: 37\r\nConnection: close\r\n\r\n\
                    {\"error\":\"request headers too large\"}";
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(2000)
    );
    assert_eq!(normalize(&exchange(f.addr(), big.as_bytes())), expected);
    let many = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-A: b\r\n".repeat(9)
    );
    assert_eq!(normalize(&exchange(f.addr(), many.as_bytes())), expected);
}

#[test]
fn keep_alive_follows_http_1_0_and_1_1_rules() {
    let (f, etag) = fixture();
    // HTTP/1.0 without keep-alive: answer and close.
    let resp = exchange(f.addr(), b"GET /health HTTP/1.0\r\nX-Request-Id: a\r\n\r\n");
    assert_eq!(
        normalize(&resp),
        "HTTP/1.1 200 OK\r\nDate: <date>\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
         X-Request-Id: a\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"status\":\"ok\"}"
    );
    // HTTP/1.0 with keep-alive: stays open and says so.
    let mut s = connect(f.addr());
    use std::io::Write;
    s.write_all(b"GET /post?id=p1 HTTP/1.0\r\nConnection: keep-alive\r\nX-Request-Id: b\r\n\r\n")
        .unwrap();
    let first = read_response(&mut s, false);
    assert_eq!(header(&first, "connection").as_deref(), Some("keep-alive"));
    assert_eq!(header(&first, "etag"), Some(etag.clone()));
    // HTTP/1.1 on the same connection: persistent by default, no Connection header.
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Request-Id: c\r\n\r\n")
        .unwrap();
    let second = read_response(&mut s, false);
    assert_eq!(header(&second, "connection"), None);
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let third = read_response(&mut s, false);
    assert_eq!(header(&third, "connection").as_deref(), Some("close"));
    assert!(
        read_to_close(&mut s).is_empty(),
        "closed after Connection: close"
    );
}

#[test]
fn request_ids_are_echoed_when_sane_and_generated_otherwise() {
    let (f, _) = fixture();
    let echoed = exchange(f.addr(), &req("/health", ""));
    assert_eq!(header(&echoed, "x-request-id").as_deref(), Some("req-1"));
    let long = "x".repeat(65);
    let raw = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\nX-Request-Id: {long}\r\nConnection: close\r\n\r\n"
    );
    let a = header(&exchange(f.addr(), raw.as_bytes()), "x-request-id").unwrap();
    let b = header(&get(f.addr(), "/health"), "x-request-id").unwrap();
    assert_ne!(a, b);
    for id in [&a, &b] {
        assert_eq!(id.split('-').count(), 3, "{id}");
        assert!(
            id.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'),
            "{id}"
        );
    }
}

#[test]
fn health_and_ready_answer_json() {
    let (f, _) = fixture();
    let resp = get(f.addr(), "/ready");
    assert_eq!(status_of(&resp), 200);
    assert_eq!(body_of(&resp), br#"{"status":"ready"}"#);
    let resp = get(f.addr(), "/health");
    assert_eq!(body_of(&resp), br#"{"status":"ok"}"#);
}
