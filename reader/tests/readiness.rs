//! `/ready` follows the sync thread: 503 until bootstrapped, 200 while Redis
//! keeps proving the store current, 503 once it has been gone longer than
//! `--max-staleness`, while `/post` keeps answering from memory.

mod common;

use std::time::{Duration, Instant};

use common::*;
use heavyread_reader::start;
use heavyread_sync::testing::RedisServer;
use heavyread_sync::Publisher;

fn wait_status(addr: std::net::SocketAddr, target: &str, want: u16, limit: Duration) -> Vec<u8> {
    let end = Instant::now() + limit;
    loop {
        let resp = get(addr, target);
        if status_of(&resp) == want {
            return resp;
        }
        assert!(
            Instant::now() < end,
            "{target} stayed {} ({:?})",
            status_of(&resp),
            String::from_utf8_lossy(body_of(&resp))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn readiness_follows_bootstrap_and_staleness_while_posts_keep_answering() {
    let mut redis = RedisServer::start();
    let rt = runtime();
    let _enter = rt.enter();
    let publisher = Publisher::new(&redis.url(), "hr", 1000, Duration::from_secs(2)).unwrap();
    rt.block_on(publisher.load_library()).unwrap();
    rt.block_on(publisher.put("kept", br#"{"kept":true}"#))
        .unwrap();

    // Redis answers nothing yet: the reader listens but is not ready.
    redis.pause();
    let reader = start(test_config(&redis.url())).unwrap();
    let addr = reader.local_addr();
    let resp = get(addr, "/ready");
    assert_eq!(status_of(&resp), 503);
    assert_eq!(
        body_of(&resp),
        br#"{"status":"not ready","reason":"not bootstrapped"}"#
    );
    assert_eq!(status_of(&get(addr, "/health")), 200);
    assert_eq!(status_of(&get(addr, "/post?id=kept")), 404);

    // Redis comes back: bootstrap, then ready.
    redis.resume();
    wait_status(addr, "/ready", 200, Duration::from_secs(10));
    assert_eq!(body_of(&get(addr, "/post?id=kept")), br#"{"kept":true}"#);

    // Redis is gone: ready for at most --max-staleness (1 s), then 503.
    redis.kill();
    let gone = Instant::now();
    let resp = wait_status(addr, "/ready", 503, Duration::from_secs(5));
    let took = gone.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "503 after only {took:?}"
    );
    assert_eq!(
        body_of(&resp),
        br#"{"status":"not ready","reason":"stale"}"#
    );
    // ...while the posts it holds are still served, and the process is alive.
    let resp = get(addr, "/post?id=kept");
    assert_eq!(status_of(&resp), 200);
    assert_eq!(body_of(&resp), br#"{"kept":true}"#);
    assert_eq!(status_of(&get(addr, "/health")), 200);
    assert!(reader
        .render_metrics()
        .contains("heavyread_reader_ready 0\n"));

    // And ready again once Redis is back.
    redis.start_again();
    wait_status(addr, "/ready", 200, Duration::from_secs(10));
    reader.shutdown().unwrap();
}
