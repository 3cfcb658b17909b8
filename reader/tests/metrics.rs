//! `/metrics` is valid Prometheus text (promtool) and its counters follow traffic.

mod common;

use std::net::SocketAddr;

use common::*;

fn scrape(addr: SocketAddr) -> String {
    let resp = get(addr, "/metrics");
    assert_eq!(status_of(&resp), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    String::from_utf8(body_of(&resp).to_vec()).unwrap()
}

fn value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing in\n{page}"))
}

#[test]
fn metrics_pass_promtool_and_counters_move() {
    let f = Fixture::start(|_| {});
    let w = f.put("m", r#"{"m":1}"#);
    let addr = f.addr();

    let before = scrape(addr);
    assert_eq!(promtool_check(&before), "", "promtool on\n{before}");
    assert_eq!(
        value(
            &before,
            r#"heavyread_reader_requests_total{route="post",status="200"}"#
        ),
        0.0
    );
    assert_eq!(value(&before, "heavyread_reader_store_entries"), 1.0);
    assert_eq!(value(&before, "heavyread_reader_ready"), 1.0);
    assert_eq!(value(&before, "heavyread_sync_bootstrapped"), 1.0);
    assert!(value(&before, "heavyread_reader_store_bytes") > 7.0);

    for _ in 0..3 {
        assert_eq!(status_of(&get(addr, "/post?id=m")), 200);
    }
    let raw = format!(
        "GET /post?id=m HTTP/1.1\r\nHost: t\r\nIf-None-Match: {}\r\nConnection: close\r\n\r\n",
        quoted_etag(&w)
    );
    assert_eq!(status_of(&exchange(addr, raw.as_bytes())), 304);
    assert_eq!(status_of(&get(addr, "/post?id=zz")), 404);
    assert_eq!(status_of(&get(addr, "/post?id=%")), 400);
    assert_eq!(
        status_of(&exchange(
            addr,
            b"DELETE /post?id=m HTTP/1.1\r\nHost: t\r\n\r\n"
        )),
        405
    );

    let after = scrape(addr);
    assert_eq!(promtool_check(&after), "", "promtool on\n{after}");
    let v = |s: &str| value(&after, s);
    assert_eq!(
        v(r#"heavyread_reader_requests_total{route="post",status="200"}"#),
        3.0
    );
    assert_eq!(
        v(r#"heavyread_reader_requests_total{route="post",status="304"}"#),
        1.0
    );
    assert_eq!(
        v(r#"heavyread_reader_requests_total{route="post",status="404"}"#),
        1.0
    );
    assert_eq!(
        v(r#"heavyread_reader_requests_total{route="post",status="400"}"#),
        1.0
    );
    assert_eq!(
        v(r#"heavyread_reader_requests_total{route="invalid",status="405"}"#),
        1.0
    );
    assert_eq!(
        v(r#"heavyread_reader_requests_total{route="metrics",status="200"}"#),
        1.0
    );
    assert_eq!(v("heavyread_reader_not_modified_total"), 1.0);
    assert!(v("heavyread_reader_request_duration_seconds_count") >= 8.0);
    assert!(
        v("heavyread_reader_response_bytes_total")
            > value(&before, "heavyread_reader_response_bytes_total")
    );
    assert!(v("heavyread_reader_connections_accepted_total") >= 9.0);
    assert!(v("heavyread_sync_last_applied_version") >= w.version as f64);
    assert!(v("heavyread_sync_records_applied_total") >= 1.0);

    // HEAD /metrics: same headers, no body.
    let head = exchange(
        addr,
        b"HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(body_of(&head).is_empty());
    assert!(
        header(&head, "content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 1000
    );
}
