//! Connection handling over real sockets: the header timeout closes silent
//! and idle keep-alive connections, the write timeout closes connections
//! whose client stops taking answers, the connection cap makes new
//! connections wait for a free slot, and shutdown drops what is still open
//! after the drain timeout.

mod common;

use std::time::{Duration, Instant};

use common::{get, metric, parse_response, post, Env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The header timeout in these tests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n";

/// Reads one answer to `/health` (its body is `{"status":"ok"}`).
async fn read_health(s: &mut TcpStream) {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.ends_with(b"{\"status\":\"ok\"}") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    let r = parse_response(&out, false).expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Waits (10 s at most) until the server closes `s`; returns what it sent.
async fn wait_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closed the connection within 10 s");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let env = Env::start_with(|c| c.header_timeout = HEADER_TIMEOUT).await;
    let t = Instant::now();
    let mut s = TcpStream::connect(env.addr()).await.unwrap();
    let out = wait_close(&mut s).await;
    let waited = t.elapsed();
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
    assert!(
        waited >= HEADER_TIMEOUT && waited < HEADER_TIMEOUT + Duration::from_secs(3),
        "closed after {waited:?}"
    );
    let text = get(env.addr(), "/metrics").await.text();
    assert_eq!(
        metric(
            &text,
            "heavyread_writer_connection_timeouts_total{phase=\"header\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let env = Env::start_with(|c| c.header_timeout = HEADER_TIMEOUT).await;
    let mut s = TcpStream::connect(env.addr()).await.unwrap();
    // Requests closer together than the timeout keep the connection, however long it lives.
    for _ in 0..3 {
        s.write_all(HEALTH).await.unwrap();
        read_health(&mut s).await;
        tokio::time::sleep(HEADER_TIMEOUT * 6 / 10).await;
    }
    s.write_all(HEALTH).await.unwrap();
    read_health(&mut s).await;
    // Then idle: closed once the next head is a header timeout late.
    let t = Instant::now();
    let out = wait_close(&mut s).await;
    let waited = t.elapsed();
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
    assert!(
        waited >= HEADER_TIMEOUT * 9 / 10 && waited < HEADER_TIMEOUT + Duration::from_secs(3),
        "closed after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_until_one_closes() {
    let env = Env::start_with(|c| c.max_connections = 2).await;
    // Two keep-alive connections, each served once: both hold a slot.
    let mut a = TcpStream::connect(env.addr()).await.unwrap();
    let mut b = TcpStream::connect(env.addr()).await.unwrap();
    for s in [&mut a, &mut b] {
        s.write_all(HEALTH).await.unwrap();
        read_health(s).await;
    }
    // A third connects (the kernel completes the handshake) but is not served.
    let mut c = TcpStream::connect(env.addr()).await.unwrap();
    c.write_all(HEALTH).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), c.read(&mut buf)).await;
    assert!(early.is_err(), "served over the cap: {early:?}");
    // The slots still serve their own connections.
    b.write_all(HEALTH).await.unwrap();
    read_health(&mut b).await;
    // One closes: the waiting connection takes its slot and is answered.
    drop(a);
    read_health(&mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_takes_no_answers_loses_its_connection_after_the_write_timeout() {
    let write_timeout = Duration::from_secs(1);
    // One slot: while the stuck client holds it, nobody else is served.
    let env = Env::start_with(|c| {
        c.write_timeout = write_timeout;
        c.max_connections = 1;
    })
    .await;
    let content = "x".repeat(200_000);
    let r = env.create(&post("big", "t", &content, "a")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // 100 pipelined reads of the 200 kB post (20 MB of answers, far more
    // than the socket buffers hold) from a client that never reads.
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stuck = sock.connect(env.addr()).await.unwrap();
    let reads = "GET /post?id=big HTTP/1.1\r\nHost: h\r\n\r\n".repeat(100);
    let t = Instant::now();
    stuck.write_all(reads.as_bytes()).await.unwrap();
    // The next client waits for the slot: it gets it once the writer has
    // given up on the stuck one.
    let mut next = TcpStream::connect(env.addr()).await.unwrap();
    next.write_all(HEALTH).await.unwrap();
    read_health(&mut next).await;
    let waited = t.elapsed();
    assert!(
        waited >= write_timeout / 2 && waited < write_timeout + Duration::from_secs(4),
        "served after {waited:?}"
    );
    // The stuck client got some answers, then the end of the connection.
    let got = wait_close(&mut stuck).await;
    let answers = got.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
    assert!(
        answers < 100,
        "{answers} answers of 100: the connection was not cut"
    );
    // And the metrics say why.
    drop(next);
    let text = get(env.addr(), "/metrics").await.text();
    assert_eq!(
        metric(
            &text,
            "heavyread_writer_connection_timeouts_total{phase=\"write\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_refused_from_its_head_is_not_asked_for_with_100_continue() {
    let env = Env::start_with(|c| c.bulk_max_bytes = 1 << 20).await;
    for (path, media) in [
        ("/create", "application/json"),
        ("/bulk", "application/x-ndjson"),
    ] {
        // Over both limits, then refused for its media type; the client
        // waits for a 100 Continue before sending the body.
        for (media, length, status) in [(media, 5_000_000, 413), ("text/plain", 5000, 415)] {
            let mut s = TcpStream::connect(env.addr()).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: h\r\nContent-Type: {media}\r\n\
                 Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            let out = wait_close(&mut s).await;
            let text = String::from_utf8_lossy(&out);
            assert!(
                text.starts_with(&format!("HTTP/1.1 {status} ")),
                "{path}: {text}"
            );
            assert!(!text.contains(" 100 Continue"), "{path}: {text}");
            // The body stays unread: the answer says the connection closes.
            assert!(
                text.to_ascii_lowercase()
                    .contains("\r\nconnection: close\r\n"),
                "{path}: {text}"
            );
        }
    }
    // A small body refused for its media type, sent with its head, is read
    // to its end: the connection serves the next request.
    let mut s = TcpStream::connect(env.addr()).await.unwrap();
    let twice = "POST /create HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n\
                 Content-Length: 5\r\n\r\nhello\
                 GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    s.write_all(twice.as_bytes()).await.unwrap();
    let out = wait_close(&mut s).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 415 "), "{text}");
    assert!(
        text.contains("HTTP/1.1 200 "),
        "the next request was not served: {text}"
    );
    // Without the expectation the client is sending already: the same answer.
    let mut s = TcpStream::connect(env.addr()).await.unwrap();
    let head = "POST /create HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n\
                Content-Length: 5000000\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[b' '; 100_000]).await.unwrap();
    let out = wait_close(&mut s).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_connections_still_open_after_the_drain_timeout() {
    let drain = Duration::from_millis(500);
    let Env { redis, writer } = Env::start_with(|c| c.drain_timeout = drain).await;
    // A write whose body stops half way (shorter than the 30 s body timeout).
    let body = post("never", "t", "c", "a");
    let mut s = TcpStream::connect(writer.addr()).await.unwrap();
    let head = format!(
        "POST /create HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    writer.shutdown().await.expect("a clean shutdown");
    let took = t.elapsed();
    assert!(
        took >= drain && took < drain + Duration::from_secs(3),
        "shutdown took {took:?}"
    );
    let out = wait_close(&mut s).await;
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
    let mut c = redis.connection();
    let stored: Option<Vec<u8>> = redis::cmd("HGET")
        .arg("{hr}:posts")
        .arg("never")
        .query(&mut c)
        .unwrap();
    assert!(stored.is_none(), "the cut write was applied");
}
