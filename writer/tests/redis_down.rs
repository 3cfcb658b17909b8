//! Redis going away: the writer answers 503 and acknowledges nothing; when
//! Redis is back, writes succeed again without restarting the writer.

mod common;

use std::time::{Duration, Instant};

use common::{get, metric, post, request, wait_ready, Env};
use serde_json::json;

async fn wait_status(env: &Env, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(env.addr(), path).await;
        if r.status == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} stayed {} ({})",
            r.status,
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_503_and_writes_resume_when_it_is_back() {
    let mut env = Env::start().await;
    assert_eq!(env.create(&post("before", "t", "c", "a")).await.status, 201);
    env.redis.fsync_aof();
    env.redis.kill();

    let unavailable = json!({"error": "redis unavailable"});
    let r = env.create(&post("during", "t", "c", "a")).await;
    assert_eq!((r.status, r.json()), (503, unavailable.clone()));
    let r = request(env.addr(), "DELETE", "/post?id=before", &[], b"").await;
    assert_eq!((r.status, r.json()), (503, unavailable.clone()));
    let r = get(env.addr(), "/post?id=before").await;
    assert_eq!((r.status, r.json()), (503, unavailable.clone()));
    let r = request(
        env.addr(),
        "POST",
        "/bulk",
        &[("Content-Type", "application/x-ndjson")],
        post("bulk-during", "t", "c", "a").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "redis unavailable");
    assert_eq!(r.json()["applied"], 0);
    assert_eq!(r.json()["unconfirmed"], 1);
    let r = get(env.addr(), "/ready").await;
    assert_eq!((r.status, r.json()), (503, unavailable));
    // The process itself is fine.
    assert_eq!(get(env.addr(), "/health").await.status, 200);

    env.redis.start_again();
    wait_ready(env.addr()).await;
    let r = env.create(&post("after", "t", "c", "a")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Nothing answered 503 was written; what was acknowledged survived.
    assert!(env.record("before").is_some());
    assert!(env.record("during").is_none());
    assert!(env.record("bulk-during").is_none());
    assert_eq!(env.record("after").unwrap().0, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_back_without_its_data_gets_the_library_again() {
    let mut env = Env::start().await;
    assert_eq!(env.create(&post("a", "t", "c", "a")).await.status, 201);
    env.redis.restart_empty();
    // The first write after the wipe loads the library itself.
    let r = env.create(&post("b", "t", "c", "a")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["version"], 1);
    wait_status(&env, "/ready", 200).await;

    // And with no write at all, the background task loads it within a few seconds.
    env.redis.restart_empty();
    wait_status(&env, "/ready", 200).await;
    let mut c = env.redis.connection();
    let libs: redis::Value = redis::cmd("FUNCTION").arg("LIST").query(&mut c).unwrap();
    assert!(format!("{libs:?}").contains("heavyread"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_times_out_into_504_and_the_write_may_still_land() {
    let env = Env::start().await;
    env.redis.pause();
    let t = Instant::now();
    let r = env.create(&post("p", "t", "c", "a")).await;
    let took = t.elapsed();
    let metrics = get(env.addr(), "/metrics").await.text();
    env.redis.resume();
    // Not 503 "refused": the command went out before the timeout and runs
    // once Redis wakes, so the answer says the outcome is not known.
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("may still be applied"),
        "{}",
        r.text()
    );
    assert_eq!(
        metric(
            &metrics,
            "heavyread_writer_redis_errors_total{kind=\"timeout\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    // redis_timeout is 500 ms in the tests; allow scheduling slack.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    wait_ready(env.addr()).await;
    assert!(
        env.record("p").is_some(),
        "the timed-out put ran when Redis resumed, as the 504 warned"
    );
    assert_eq!(env.create(&post("p2", "t", "c", "a")).await.status, 201);
}

/// The version Redis's library answers, `None` when it has none.
fn loaded_version(env: &Env) -> Option<i64> {
    redis::cmd("FCALL_RO")
        .arg("heavyread_version")
        .arg(0)
        .query(&mut env.redis.connection())
        .ok()
}

fn load_library_as(env: &Env, v: u32) {
    let ours = format!("  return {}\n", heavyread_sync::schema::LIBRARY_VERSION);
    let source = heavyread_sync::schema::LIBRARY.replace(&ours, &format!("  return {v}\n"));
    assert_ne!(source, heavyread_sync::schema::LIBRARY);
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(source)
        .query(&mut env.redis.connection())
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_library_is_left_in_place_and_an_older_one_is_replaced() {
    let env = Env::start().await;
    let ours = heavyread_sync::schema::LIBRARY_VERSION;
    // A rolling upgrade: a newer writer loaded its library. This writer
    // checks every second; three checks later it is still there, and
    // writes and /ready work with it.
    load_library_as(&env, ours + 1);
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert_eq!(loaded_version(&env), Some(i64::from(ours) + 1));
    wait_status(&env, "/ready", 200).await;
    assert_eq!(env.create(&post("n", "t", "c", "a")).await.status, 201);
    assert_eq!(loaded_version(&env), Some(i64::from(ours) + 1));

    // An older library is replaced by this writer's within a few seconds.
    load_library_as(&env, ours - 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while loaded_version(&env) != Some(i64::from(ours)) {
        assert!(
            Instant::now() < deadline,
            "still {:?}",
            loaded_version(&env)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_status(&env, "/ready", 200).await;
}

/// A `/bulk` whose Redis goes away while the client is still sending gets
/// its 503 report, and the connection is closed: the writer reads a bounded
/// rest of the body first, so the client's writes go through and the close
/// is no reset. (On loopback the socket buffers take this whole 2 MB body
/// before the answer, so what this shows is the answer, the report and the
/// close; the read matters where the buffers are smaller than the body.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_cut_short_by_redis_still_gets_its_answer_while_the_body_is_sent() {
    let mut env = Env::start_with(|c| c.bulk_chunk = 1).await;
    env.redis.kill();
    let addr = env.addr();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let lines: String = (0..20_000)
            .map(|i| post(&format!("cut-{i}"), "t", "c", "a") + "\n")
            .collect();
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = s.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            let head = format!(
                "POST /bulk HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
                lines.len()
            );
            // The body goes out whatever the writer answers meanwhile.
            w.write_all(head.as_bytes())
                .and_then(|()| w.write_all(lines.as_bytes()))
                .map_err(|e| e.to_string())
        });
        let mut out = Vec::new();
        let read = s.read_to_end(&mut out);
        let sent = sender.join().unwrap();
        (read.map_err(|e| e.to_string()), sent, out)
    })
    .await
    .unwrap();
    let (read, sent, out) = out;
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(
        read.is_ok() && sent.is_ok(),
        "the connection was reset: read {read:?}, body sent {sent:?}, after {text:?}"
    );
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..]).expect("a JSON report");
    assert_eq!(report["error"], "redis unavailable");
    assert_eq!(report["applied"], 0);
}
