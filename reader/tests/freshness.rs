//! A write through the sync library's publisher becomes visible over HTTP
//! with its new ETag; conditional requests follow the new tag.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn req(id: &str, inm: Option<&str>) -> Vec<u8> {
    let inm = inm
        .map(|t| format!("If-None-Match: {t}\r\n"))
        .unwrap_or_default();
    format!("GET /post?id={id} HTTP/1.1\r\nHost: t\r\n{inm}Connection: close\r\n\r\n").into_bytes()
}

#[test]
fn publisher_write_becomes_visible_with_new_etag() {
    let f = Fixture::start(|_| {});
    let v1 = f.put("fresh", r#"{"v":1}"#);
    let e1 = quoted_etag(&v1);
    let resp = exchange(f.addr(), &req("fresh", None));
    assert_eq!(header(&resp, "etag"), Some(e1.clone()));
    assert_eq!(body_of(&resp), br#"{"v":1}"#);

    // Write v2 and watch it arrive over HTTP (not through the store).
    let v2 =
        f.rt.block_on(f.publisher.put("fresh", br#"{"v":2}"#))
            .unwrap();
    assert!(v2.version > v1.version);
    let e2 = quoted_etag(&v2);
    assert_ne!(e1, e2);
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let resp = exchange(f.addr(), &req("fresh", None));
        if header(&resp, "etag").as_deref() == Some(e2.as_str()) {
            assert_eq!(body_of(&resp), br#"{"v":2}"#);
            break;
        }
        assert!(Instant::now() < end, "v2 not visible");
        std::thread::sleep(Duration::from_millis(1));
    }

    // The old tag no longer matches: full answer with the new one.
    let resp = exchange(f.addr(), &req("fresh", Some(&e1)));
    assert_eq!(status_of(&resp), 200);
    assert_eq!(header(&resp, "etag"), Some(e2.clone()));
    assert_eq!(body_of(&resp), br#"{"v":2}"#);
    // The new tag does: 304 with it and no body.
    let resp = exchange(f.addr(), &req("fresh", Some(&e2)));
    assert_eq!(status_of(&resp), 304);
    assert_eq!(header(&resp, "etag"), Some(e2.clone()));
    assert!(body_of(&resp).is_empty());

    // A delete makes it 404.
    f.delete("fresh");
    assert_eq!(
        status_of(&exchange(f.addr(), &req("fresh", Some(&e2)))),
        404
    );
}
