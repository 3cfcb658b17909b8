//! End to end: a real redis-server, the writer, and two readers, all over
//! real HTTP. What a client writes is what every reader serves, with the same
//! bytes and ETag, through updates, deletes, bulk loads and a Redis outage.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use heavyread_reader::ReaderHandle;
use heavyread_sync::record::{Op, RecordRef};

fn reader_config(redis_url: &str) -> heavyread_reader::Config {
    let mut c = heavyread_reader::Config::new(redis_url);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.cores = Some(1);
    c.io_memory = 64 << 10;
    c.drain_timeout = Duration::from_secs(2);
    c.redis_ping_interval = Duration::from_millis(200);
    c.redis_ping_timeout = Duration::from_millis(600);
    c.redis_command_timeout = Duration::from_secs(2);
    c.max_staleness = Duration::from_secs(2);
    c
}

/// A writer, two ready readers, and the Redis they share.
struct Stack {
    env: Env,
    readers: Vec<ReaderHandle>,
}

impl Stack {
    async fn start() -> Stack {
        let env = Env::start().await;
        let url = env.redis.url();
        let readers = tokio::task::spawn_blocking(move || {
            (0..2)
                .map(|_| {
                    let r = heavyread_reader::start(reader_config(&url)).expect("start reader");
                    assert!(r.wait_ready(Duration::from_secs(20)), "reader ready");
                    r
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        Stack { env, readers }
    }

    fn reader_addrs(&self) -> Vec<SocketAddr> {
        self.readers.iter().map(|r| r.local_addr()).collect()
    }

    /// Waits until every reader's store equals Redis (ids, versions, etags).
    fn wait_converged(&self, limit: Duration) {
        let start = Instant::now();
        let mut con = self.env.redis.connection();
        loop {
            let (all, version): (Vec<(String, Vec<u8>)>, Option<u64>) = redis::pipe()
                .atomic()
                .hgetall("{hr}:posts")
                .get("{hr}:version")
                .query(&mut con)
                .unwrap();
            let mut want: Vec<(String, u64, String)> = all
                .iter()
                .map(|(id, raw)| {
                    let r = RecordRef::decode(raw).unwrap();
                    assert_eq!(r.op, Op::Put);
                    (id.clone(), r.version, format!("\"{}\"", md5_hex(r.body)))
                })
                .collect();
            want.sort();
            let done = self.readers.iter().all(|r| {
                r.status().snapshot().last_version == version.unwrap_or(0)
                    && r.store().snapshot() == want
            });
            if done {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "readers did not converge to Redis within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Expected status, path, headers and body of a rejected request.
type Case<'a> = (u16, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>);

/// `GET /post?id=` on a fresh connection, optionally with If-None-Match.
async fn get_post(addr: SocketAddr, id: &str, inm: Option<&str>) -> Resp {
    let headers: Vec<(&str, &str)> = inm.map(|t| vec![("If-None-Match", t)]).unwrap_or_default();
    request(addr, "GET", &format!("/post?id={id}"), &headers, b"").await
}

/// Polls every reader until `id` is served with `etag` (or 404 when `None`).
async fn wait_served(addrs: &[SocketAddr], id: &str, etag: Option<&str>) {
    for &addr in addrs {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = get_post(addr, id, None).await;
            let ok = match etag {
                Some(t) => r.status == 200 && r.header("etag") == Some(t),
                None => r.status == 404,
            };
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{addr} never served {id} as {etag:?}: {}",
                r.status
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_delete_reach_both_readers_with_identical_bytes_and_etags() {
    let s = Stack::start().await;
    let addrs = s.reader_addrs();

    let created = s
        .env
        .create(&post("p1", "Hello", "first body", "ann"))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let etag1 = created.json()["etag"].as_str().unwrap().to_owned();
    assert_eq!(
        etag1,
        format!(
            "\"{}\"",
            md5_hex(&served("p1", "Hello", "first body", "ann"))
        )
    );
    wait_served(&addrs, "p1", Some(&etag1)).await;
    let mut bodies = Vec::new();
    for &addr in &addrs {
        let r = get_post(addr, "p1", None).await;
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, served("p1", "Hello", "first body", "ann"));
        bodies.push(r.body);
    }
    assert_eq!(bodies[0], bodies[1]);

    let updated = s
        .env
        .create(&post("p1", "Hello again", "second body", "ann"))
        .await;
    assert_eq!(updated.status, 201);
    let etag2 = updated.json()["etag"].as_str().unwrap().to_owned();
    assert_ne!(etag1, etag2);
    wait_served(&addrs, "p1", Some(&etag2)).await;
    for &addr in &addrs {
        let old = get_post(addr, "p1", Some(&etag1)).await;
        assert_eq!(old.status, 200, "the old ETag no longer matches");
        assert_eq!(old.body, served("p1", "Hello again", "second body", "ann"));
        let new = get_post(addr, "p1", Some(&etag2)).await;
        assert_eq!(new.status, 304);
        assert!(new.body.is_empty());
        assert_eq!(new.header("etag"), Some(etag2.as_str()));
    }

    let deleted = request(s.env.addr(), "DELETE", "/post?id=p1", &[], b"").await;
    assert_eq!(deleted.status, 200);
    wait_served(&addrs, "p1", None).await;
    for &addr in &addrs {
        let gone = get_post(addr, "p1", None).await;
        assert_eq!(gone.status, 404);
        assert_eq!(gone.header("content-type"), Some("application/json"));
    }
    s.wait_converged(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_bulk_posts_are_served_by_both_readers_and_bad_lines_are_not() {
    let s = Stack::start().await;
    let mut ndjson = String::new();
    for i in 0..10_000 {
        ndjson.push_str(&post(
            &format!("b{i}"),
            &format!("title {i}"),
            &"c".repeat(i % 300),
            "bulk",
        ));
        ndjson.push('\n');
    }
    let r = request(
        s.env.addr(),
        "POST",
        "/bulk",
        &[("Content-Type", "application/x-ndjson")],
        ndjson.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["applied"], 10_000);
    s.wait_converged(Duration::from_secs(30));
    for reader in &s.readers {
        assert_eq!(reader.store().len(), 10_000);
    }
    for i in [0usize, 1, 4_999, 9_999] {
        for &addr in &s.reader_addrs() {
            let got = get_post(addr, &format!("b{i}"), None).await;
            assert_eq!(got.status, 200);
            assert_eq!(
                got.body,
                served(
                    &format!("b{i}"),
                    &format!("title {i}"),
                    &"c".repeat(i % 300),
                    "bulk"
                )
            );
        }
    }

    // Lines 2 and 4 are bad; the others are applied and served, the bad never are.
    let mixed = [
        post("m1", "ok", "x", "a"),
        "{not json".to_owned(),
        post("m3", "ok", "x", "a"),
        post("bad id!", "ok", "x", "a"),
        post("m5", "ok", "x", "a"),
    ]
    .join("\n");
    let r = request(
        s.env.addr(),
        "POST",
        "/bulk",
        &[("Content-Type", "application/x-ndjson")],
        mixed.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    let lines: Vec<u64> = r.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 4]);
    s.wait_converged(Duration::from_secs(10));
    for reader in &s.readers {
        let g = reader.store().guard();
        assert!(reader.store().get("m5", &g).is_some());
        assert!(reader.store().get("bad id!", &g).is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_writes_change_neither_redis_nor_any_reader() {
    let s = Stack::start().await;
    assert_eq!(s.env.create(&post("keep", "t", "c", "a")).await.status, 201);
    s.wait_converged(Duration::from_secs(10));
    let redis_before = s.env.snapshot();
    let stores_before: Vec<_> = s.readers.iter().map(|r| r.store().snapshot()).collect();

    let too_big = post("keep", "t", &"x".repeat(2 << 20), "a");
    let cases: Vec<Case> = vec![
        (
            400,
            "/create",
            vec![("Content-Type", "application/json")],
            b"{\"id\":".to_vec(),
        ),
        (
            415,
            "/create",
            vec![("Content-Type", "text/plain")],
            post("keep", "t", "c", "a").into_bytes(),
        ),
        (
            422,
            "/create",
            vec![("Content-Type", "application/json")],
            post("bad/id", "t", "c", "a").into_bytes(),
        ),
        (
            422,
            "/create",
            vec![("Content-Type", "application/json")],
            post("keep", "", "c", "a").into_bytes(),
        ),
        (
            422,
            "/create",
            vec![("Content-Type", "application/json")],
            br#"{"id":"keep","title":"t","content":"c","author":"a","extra":1}"#.to_vec(),
        ),
        (
            413,
            "/create",
            vec![("Content-Type", "application/json")],
            too_big.into_bytes(),
        ),
    ];
    for (status, path, headers, body) in cases {
        let r = request(s.env.addr(), "POST", path, &headers, &body).await;
        assert_eq!(r.status, status, "{}", r.text());
        assert!(r.json()["error"].is_string());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.env.snapshot(), redis_before);
    let stores_after: Vec<_> = s.readers.iter().map(|r| r.store().snapshot()).collect();
    assert_eq!(stores_after, stores_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_gives_503_on_writes_while_readers_keep_serving_then_converges() {
    let mut s = Stack::start().await;
    let addrs = s.reader_addrs();
    let r = s.env.create(&post("o1", "before", "outage", "a")).await;
    assert_eq!(r.status, 201);
    let etag = r.json()["etag"].as_str().unwrap().to_owned();
    wait_served(&addrs, "o1", Some(&etag)).await;

    s.env.redis.kill();
    let during = s.env.create(&post("o2", "during", "outage", "a")).await;
    assert_eq!(during.status, 503, "{}", during.text());
    for &addr in &addrs {
        let r = get_post(addr, "o1", None).await;
        assert_eq!(r.status, 200, "readers keep serving while Redis is down");
        assert_eq!(r.header("etag"), Some(etag.as_str()));
    }

    s.env.redis.start_again();
    let deadline = Instant::now() + Duration::from_secs(20);
    let etag2 = loop {
        let r = s.env.create(&post("o2", "after", "outage", "a")).await;
        if r.status == 201 {
            break r.json()["etag"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "writes never succeeded again: {}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    wait_served(&addrs, "o2", Some(&etag2)).await;
    s.wait_converged(Duration::from_secs(20));
}

/// `GET /post?id=` on a keep-alive connection; returns (status, body).
fn keep_alive_get(s: &mut TcpStream, id: &str) -> (u16, Vec<u8>) {
    s.write_all(format!("GET /post?id={id} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => panic!("connection ended inside a head: {other:?}"),
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let status: u16 = text[9..12].parse().unwrap();
    let len = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_shows_an_older_version_after_a_newer_one() {
    let s = Stack::start().await;
    assert_eq!(
        s.env.create(&post("hot", "seq", "0", "a")).await.status,
        201
    );
    wait_served(
        &s.reader_addrs(),
        "hot",
        Some(&format!("\"{}\"", md5_hex(&served("hot", "seq", "0", "a")))),
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let pollers: Vec<_> = s
        .reader_addrs()
        .into_iter()
        .map(|addr| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(addr).unwrap();
                let mut seen = Vec::new();
                loop {
                    // A read that starts after the stop was seen starts after
                    // every reader served the last version, so it must get it;
                    // one answered before then may still be older.
                    let stopping = stop.load(Ordering::Acquire);
                    let (status, body) = keep_alive_get(&mut conn, "hot");
                    assert_eq!(status, 200);
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let n: u64 = v["content"].as_str().unwrap().parse().unwrap();
                    seen.push(n);
                    if stopping {
                        break seen;
                    }
                }
            })
        })
        .collect();
    for n in 1..=300u64 {
        let r = s.env.create(&post("hot", "seq", &n.to_string(), "a")).await;
        assert_eq!(r.status, 201);
    }
    let last = format!("\"{}\"", md5_hex(&served("hot", "seq", "300", "a")));
    wait_served(&s.reader_addrs(), "hot", Some(&last)).await;
    stop.store(true, Ordering::Release);
    for p in pollers {
        let seen = p.join().unwrap();
        assert!(seen.len() > 10, "the poller kept reading");
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "a newer version was followed by an older one"
        );
        assert_eq!(
            *seen.last().unwrap(),
            300,
            "a read made after every reader served version 300 got an older one"
        );
    }
}
