//! Create, update, get and delete against a real redis-server, checked in Redis.

mod common;

use common::{get, md5_hex, post, request, served, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_stores_the_exact_served_bytes_with_their_md5_etag() {
    let env = Env::start().await;
    // Fields in another order than the stored one: the writer normalizes.
    let body = r#"{"author":"ann","content":"héllo \"world\"\n","title":"First","id":"post-1"}"#;
    let r = env.create(body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let expected = served("post-1", "First", "héllo \"world\"\n", "ann");
    let etag = format!("\"{}\"", md5_hex(&expected));
    // The exact answer: id, version, etag (quoted as in HTTP), in that order.
    assert_eq!(
        r.text(),
        format!(
            r#"{{"id":"post-1","version":1,"etag":{}}}"#,
            serde_json::to_string(&etag).unwrap()
        )
    );
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("location"), Some("/post?id=post-1"));
    assert_eq!(r.header("content-type"), Some("application/json"));

    let (version, raw_etag, stored) = env.record("post-1").expect("stored");
    assert_eq!(version, 1);
    assert_eq!(stored, expected);
    assert_eq!(format!("\"{}\"", md5_hex(&stored)), etag);
    assert_eq!(heavyread_sync::record::etag_of(&stored), raw_etag);
    let snap = env.snapshot();
    assert_eq!(snap.version, Some(1));
    assert_eq!(snap.log_len, 1);

    let g = get(env.addr(), "/post?id=post-1").await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body, expected);
    assert_eq!(g.header("etag"), Some(etag.as_str()));
    assert_eq!(g.header("x-heavyread-version"), Some("1"));
    assert_eq!(g.header("content-type"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_replaces_the_body_and_takes_the_next_version() {
    let env = Env::start().await;
    let r1 = env.create(&post("p", "v1", "one", "a")).await;
    assert_eq!(r1.status, 201);
    let r2 = env.create(&post("p", "v2", "two", "a")).await;
    assert_eq!(r2.status, 201);
    assert_eq!(r2.json()["version"], 2);
    assert_ne!(r1.json()["etag"], r2.json()["etag"]);
    let (version, _, body) = env.record("p").unwrap();
    assert_eq!(version, 2);
    assert_eq!(body, served("p", "v2", "two", "a"));
    let snap = env.snapshot();
    assert_eq!(snap.posts.len(), 1);
    assert_eq!(snap.version, Some(2));
    // The same post again is a new version with the same etag.
    let r3 = env.create(&post("p", "v2", "two", "a")).await;
    assert_eq!(r3.json()["version"], 3);
    assert_eq!(r3.json()["etag"], r2.json()["etag"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_post_and_a_second_delete_is_404() {
    let env = Env::start().await;
    env.create(&post("gone", "t", "c", "a")).await;
    env.create(&post("kept", "t", "c", "a")).await;
    let d = request(env.addr(), "DELETE", "/post?id=gone", &[], b"").await;
    assert_eq!(d.status, 200, "{}", d.text());
    assert_eq!(d.text(), r#"{"id":"gone","version":3}"#);
    assert!(env.record("gone").is_none());
    assert!(env.record("kept").is_some());
    let before = env.snapshot();
    assert_eq!(before.version, Some(3));
    assert_eq!(before.log_len, 3);

    let again = request(env.addr(), "DELETE", "/post?id=gone", &[], b"").await;
    assert_eq!(again.status, 404);
    assert_eq!(again.text(), r#"{"error":"post not found","id":"gone"}"#);
    let g = get(env.addr(), "/post?id=gone").await;
    assert_eq!(g.status, 404);
    assert_eq!(g.json()["error"], "post not found");
    // A delete of nothing writes nothing.
    assert_eq!(env.snapshot(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_unknown_routes_answer_json() {
    let env = Env::start().await;
    let h = get(env.addr(), "/health").await;
    assert_eq!((h.status, h.text().as_str()), (200, r#"{"status":"ok"}"#));
    let r = get(env.addr(), "/ready").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, r#"{"status":"ready"}"#)
    );
    let n = get(env.addr(), "/nope").await;
    assert_eq!(
        (n.status, n.text().as_str()),
        (404, r#"{"error":"no such route"}"#)
    );
    let m = request(env.addr(), "PUT", "/create", &[], b"").await;
    assert_eq!(m.status, 405);
    assert_eq!(m.header("allow"), Some("POST"));
    assert_eq!(m.text(), r#"{"error":"method not allowed"}"#);
    // HEAD on a GET route: headers, no body.
    env.create(&post("h", "t", "c", "a")).await;
    let head = request(env.addr(), "HEAD", "/post?id=h", &[], b"").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(head.header("etag").is_some());
}
