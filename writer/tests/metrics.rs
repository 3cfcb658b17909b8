//! `/metrics`: valid for promtool, and the counters follow what happened.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, metric, post, request, Env};

fn promtool_check(text: &str) {
    let bin = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = Command::new(&bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {bin} (set PROMTOOL or install prometheus): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_count_requests_records_bytes_and_errors() {
    let mut env = Env::start().await;
    let addr = env.addr();
    let m = get(addr, "/metrics").await;
    assert_eq!(m.status, 200);
    assert_eq!(
        m.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    promtool_check(&m.text());

    let p1 = post("m1", "t", "content", "a");
    let p2 = post("m2", "title", "c", "author");
    assert_eq!(env.create(&p1).await.status, 201);
    assert_eq!(env.create(&p2).await.status, 201);
    assert_eq!(env.create(&post("", "t", "c", "a")).await.status, 422);
    assert_eq!(
        request(addr, "DELETE", "/post?id=m1", &[], b"")
            .await
            .status,
        200
    );
    assert_eq!(
        request(addr, "DELETE", "/post?id=m1", &[], b"")
            .await
            .status,
        404
    );
    let bulk = format!("{}\nnope\n", post("m3", "t", "c", "a"));
    let r = request(
        addr,
        "POST",
        "/bulk",
        &[("Content-Type", "application/x-ndjson")],
        bulk.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);

    let text = get(addr, "/metrics").await.text();
    promtool_check(&text);
    let v = |s: &str| metric(&text, s).unwrap_or_else(|| panic!("{s} missing in\n{text}"));
    assert_eq!(
        v(r#"heavyread_writer_requests_total{route="/create",method="POST",status="201"}"#),
        2.0
    );
    assert_eq!(
        v(r#"heavyread_writer_requests_total{route="/create",method="POST",status="422"}"#),
        1.0
    );
    assert_eq!(
        v(r#"heavyread_writer_requests_total{route="/post",method="DELETE",status="200"}"#),
        1.0
    );
    assert_eq!(
        v(r#"heavyread_writer_requests_total{route="/post",method="DELETE",status="404"}"#),
        1.0
    );
    assert_eq!(
        v(r#"heavyread_writer_requests_total{route="/bulk",method="POST",status="200"}"#),
        1.0
    );
    assert!(
        v(r#"heavyread_writer_requests_total{route="/metrics",method="GET",status="200"}"#) >= 1.0
    );
    assert_eq!(
        v(r#"heavyread_writer_request_duration_seconds_count{route="/create",method="POST"}"#),
        3.0
    );
    assert!(
        v(r#"heavyread_writer_request_duration_seconds_sum{route="/create",method="POST"}"#) > 0.0
    );
    assert_eq!(
        v(r#"heavyread_writer_records_published_total{op="put"}"#),
        3.0
    );
    assert_eq!(
        v(r#"heavyread_writer_records_published_total{op="delete"}"#),
        1.0
    );
    let bytes: usize = [
        common::served("m1", "t", "content", "a"),
        common::served("m2", "title", "c", "author"),
        common::served("m3", "t", "c", "a"),
    ]
    .iter()
    .map(Vec::len)
    .sum();
    assert_eq!(v("heavyread_writer_published_bytes_total"), bytes as f64);
    assert_eq!(
        v(r#"heavyread_writer_bulk_lines_total{result="applied"}"#),
        1.0
    );
    assert_eq!(
        v(r#"heavyread_writer_bulk_lines_total{result="rejected"}"#),
        1.0
    );
    assert_eq!(v("heavyread_writer_last_version"), 4.0);
    assert_eq!(v("heavyread_writer_redis_up"), 1.0);
    assert_eq!(
        v(r#"heavyread_writer_redis_errors_total{kind="unavailable"}"#),
        0.0
    );
    assert_eq!(
        v("heavyread_writer_requests_in_flight"),
        1.0,
        "the scrape itself"
    );

    env.redis.kill();
    assert_eq!(env.create(&post("m4", "t", "c", "a")).await.status, 503);
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = get(addr, "/metrics").await.text();
        if metric(&text, "heavyread_writer_redis_up") == Some(0.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "redis_up never went to 0");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    promtool_check(&text);
    assert!(
        metric(
            &text,
            r#"heavyread_writer_redis_errors_total{kind="unavailable"}"#
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"heavyread_writer_requests_total{route="/create",method="POST",status="503"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"heavyread_writer_records_published_total{op="put"}"#
        ),
        Some(3.0)
    );
}

/// `heavyread_writer_last_version` is what the readers' staleness alert
/// compares their applied version with: when Redis loses its data and its
/// versions start again at 1, it follows Redis down within a few seconds
/// instead of staying at the old history's highest version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_version_gauge_follows_redis_back_down_after_it_lost_its_data() {
    let env = Env::start().await;
    let addr = env.addr();
    for i in 0..5 {
        let r = env.create(&post(&format!("v{i}"), "t", "c", "a")).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let gauge = || async {
        let text = get(addr, "/metrics").await.text();
        metric(&text, "heavyread_writer_last_version").expect("the gauge")
    };
    assert_eq!(gauge().await, 5.0);
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut env.redis.connection())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge().await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "still {} 10 s after the flush",
            gauge().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The new history's writes raise it from there.
    let r = env.create(&post("after", "t", "c", "a")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(gauge().await, 1.0);
}
