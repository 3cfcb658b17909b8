//! A reader with `--max-memory` over real HTTP and a real redis-server:
//! 100 MB of posts behind a 10 MB budget, every id served with its exact
//! bytes and ETag (from memory or a read-through fill), pipelined requests
//! across a miss answered in order, 304 on filled entries, 404 remembered,
//! 503 when Redis cannot answer, and the metrics that say so.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use heavyread_sync::record::{etag_hex, etag_of};

const POSTS: usize = 25_000;
const BODY: usize = 4_000;
const BUDGET: u64 = 10_000_000;

fn post_body(i: usize) -> Vec<u8> {
    let mut b = format!(r#"{{"id":"p{i}","content":""#).into_bytes();
    b.resize(BODY - 2, b'a' + (i % 26) as u8);
    b.extend_from_slice(b"\"}");
    b
}

fn quoted(body: &[u8]) -> String {
    format!(
        "\"{}\"",
        String::from_utf8(etag_hex(&etag_of(body)).to_vec()).unwrap()
    )
}

fn metric(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

fn bounded(f: &mut heavyread_reader::Config) {
    f.max_memory = Some(BUDGET);
    f.fill_timeout = Duration::from_millis(400);
    // Long enough that a slow machine cannot expire a remembered absent id
    // between two requests of one test.
    f.negative_ttl = Duration::from_secs(60);
}

/// GETs ids `lo..hi` (step `step`) on one keep-alive connection and checks each answer.
fn read_all(addr: SocketAddr, ids: impl Iterator<Item = usize>) {
    let mut s = connect(addr);
    for i in ids {
        write!(s, "GET /post?id=p{i} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let resp = read_response(&mut s, false);
        assert_eq!(status_of(&resp), 200, "p{i}: {}", normalize(&resp));
        let want = post_body(i);
        assert_eq!(body_of(&resp), &want[..], "p{i}: wrong bytes");
        assert_eq!(
            header(&resp, "etag").as_deref(),
            Some(quoted(&want).as_str()),
            "p{i}"
        );
    }
}

#[test]
fn a_bounded_reader_serves_100_mb_through_a_10_mb_budget() {
    let f = Fixture::start(bounded);
    // Written while the reader runs: none of it is admitted (the store only
    // follows ids it holds), so every first read is a fill.
    let bodies: Vec<(String, Vec<u8>)> = (0..POSTS)
        .map(|i| (format!("p{i}"), post_body(i)))
        .collect();
    for chunk in bodies.chunks(500) {
        let items: Vec<(&str, &[u8])> = chunk
            .iter()
            .map(|(id, b)| (id.as_str(), b.as_slice()))
            .collect();
        f.rt.block_on(f.publisher.put_many(&items)).expect("seed");
    }
    let store = f.reader.store();
    assert!(
        store.len() < 10,
        "writes to ids not held were admitted: {}",
        store.len()
    );

    // Four clients, each over a quarter of the ids, plus a hot set read often.
    let addr = f.addr();
    let started = Instant::now();
    std::thread::scope(|s| {
        for part in 0..4 {
            s.spawn(move || read_all(addr, (part..POSTS).step_by(4)));
        }
        s.spawn(move || read_all(addr, (0..20_000).map(|i| i % 200)));
    });
    let took = started.elapsed();

    // Slack: the one entry being inserted when the sync thread evicts.
    let slack = 2 * (BODY as u64 + 512);
    let page = f.reader.render_metrics();
    assert_eq!(metric(&page, "heavyread_reader_store_budget_bytes"), BUDGET);
    let resident = metric(&page, "heavyread_reader_store_bytes");
    assert!(resident <= BUDGET + slack, "{resident} bytes resident");
    let (hits, misses) = (
        metric(&page, "heavyread_reader_cache_hits_total"),
        metric(&page, "heavyread_reader_cache_misses_total"),
    );
    assert_eq!(
        hits + misses,
        (POSTS + 20_000) as u64,
        "every lookup is a hit or a miss"
    );
    assert!(misses >= POSTS as u64 - 10, "{misses} misses");
    assert!(metric(&page, "heavyread_reader_fills_total") >= POSTS as u64 - 10);
    assert!(metric(&page, "heavyread_reader_evictions_total") > 0);
    assert_eq!(metric(&page, "heavyread_reader_fill_errors_total"), 0);
    // The hot set mostly stayed in memory.
    assert!(hits > 15_000, "{hits} hits for 20,000 reads of 200 hot ids");
    assert_eq!(promtool_check(&page), "", "promtool on\n{page}");
    #[allow(clippy::print_stderr)] // The test's measurement, for the person running it.
    {
        eprintln!(
            "[bounded] {} reads in {took:?}: {hits} hits, {misses} misses",
            POSTS + 20_000
        );
    }
}

#[test]
fn pipelined_requests_across_a_miss_keep_their_order_and_304_works_on_fills() {
    let f = Fixture::start(bounded);
    f.rt.block_on(f.publisher.put("hot", br#"{"h":1}"#))
        .unwrap();
    // Make "hot" resident through a read (the put was not admitted: the
    // store did not hold it).
    let r = get(f.addr(), "/post?id=hot");
    assert_eq!(status_of(&r), 200);
    let cold =
        f.rt.block_on(f.publisher.put("cold", br#"{"c":2}"#))
            .unwrap();
    let raw = "GET /post?id=hot HTTP/1.1\r\nHost: t\r\n\r\n\
               GET /post?id=cold HTTP/1.1\r\nHost: t\r\n\r\n\
               GET /post?id=nope HTTP/1.1\r\nHost: t\r\n\r\n\
               GET /post?id=hot HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let mut s = connect(f.addr());
    s.write_all(raw.as_bytes()).unwrap();
    let answers: Vec<Vec<u8>> = (0..4).map(|_| read_response(&mut s, false)).collect();
    let statuses: Vec<u16> = answers.iter().map(|a| status_of(a)).collect();
    assert_eq!(statuses, [200, 200, 404, 200]);
    assert_eq!(body_of(&answers[0]), br#"{"h":1}"#);
    assert_eq!(body_of(&answers[1]), br#"{"c":2}"#);
    assert_eq!(header(&answers[1], "etag"), Some(quoted_etag(&cold)));
    assert_eq!(body_of(&answers[3]), br#"{"h":1}"#);
    // If-None-Match on a post that is not resident: the fill's ETag decides.
    let mut s = connect(f.addr());
    let evictable =
        f.rt.block_on(f.publisher.put("cold2", br#"{"c":3}"#))
            .unwrap();
    write!(
        s,
        "GET /post?id=cold2 HTTP/1.1\r\nHost: t\r\nIf-None-Match: {}\r\n\r\n",
        quoted_etag(&evictable)
    )
    .unwrap();
    let r = read_response(&mut s, true);
    assert_eq!(status_of(&r), 304, "{}", normalize(&r));
    // The unknown id is remembered: asking again does not go to Redis. The
    // sync thread records it as absent when it ends the fill's registration,
    // just after the answer; until then a new request joins the finished
    // fill instead. Wait for that, so the next answer must come from the
    // negative cache.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while metric(
        &f.reader.render_metrics(),
        "heavyread_reader_fills_in_flight",
    ) > 0
    {
        assert!(std::time::Instant::now() < end, "a fill never ended");
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = f.reader.render_metrics();
    let r = get(f.addr(), "/post?id=nope");
    assert_eq!(status_of(&r), 404);
    let after = f.reader.render_metrics();
    assert_eq!(
        metric(&after, "heavyread_reader_fill_reads_total"),
        metric(&before, "heavyread_reader_fill_reads_total"),
        "a remembered absent id went to Redis again"
    );
    assert!(metric(&after, "heavyread_reader_negative_hits_total") >= 1);
}

#[test]
fn a_miss_gets_503_when_redis_cannot_answer_and_hits_keep_working() {
    let mut f = Fixture::start(bounded);
    f.rt.block_on(f.publisher.put("held", b"{}")).unwrap();
    assert_eq!(status_of(&get(f.addr(), "/post?id=held")), 200);
    // Wait until the fill is admitted, so "held" is served from memory.
    let end = Instant::now() + Duration::from_secs(5);
    while !f.reader.store().contains("held") {
        assert!(Instant::now() < end, "fill never admitted");
        std::thread::sleep(Duration::from_millis(5));
    }
    f.redis.pause();
    let started = Instant::now();
    let r = get(f.addr(), "/post?id=other");
    let took = started.elapsed();
    f.redis.resume();
    assert_eq!(status_of(&r), 503, "{}", normalize(&r));
    assert_eq!(header(&r, "retry-after").as_deref(), Some("1"));
    assert!(body_of(&r).starts_with(br#"{"error":"post not in memory"#));
    assert!(
        took < Duration::from_secs(3),
        "a miss with Redis stuck took {took:?}"
    );
    assert_eq!(status_of(&get(f.addr(), "/post?id=held")), 200);
    f.redis.kill();
    let r = get(f.addr(), "/post?id=other2");
    assert_eq!(status_of(&r), 503, "{}", normalize(&r));
    assert_eq!(
        status_of(&get(f.addr(), "/post?id=held")),
        200,
        "hits need no Redis"
    );
    let page = f.reader.render_metrics();
    assert!(metric(&page, "heavyread_reader_fill_errors_total") >= 2);
}

#[test]
fn bad_budgets_are_refused_with_a_clear_error() {
    let mut c = test_config("redis://127.0.0.1:1");
    c.max_memory = Some(1000);
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("--max-memory"), "{e}");
    let mut c = test_config("redis://127.0.0.1:1");
    c.fill_queue = 0;
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("--fill-queue"));
}
