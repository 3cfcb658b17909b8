//! `POST /bulk`: NDJSON seeding, checked in Redis.

mod common;

use common::{post, request, served, Env};
use serde_json::json;

const NDJSON: (&str, &str) = ("Content-Type", "application/x-ndjson");

fn ndjson(lines: &[String]) -> Vec<u8> {
    let mut out = lines.join("\n").into_bytes();
    out.push(b'\n');
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_posts_all_land_in_redis() {
    let env = Env::start().await;
    let n = 10_000;
    let lines: Vec<String> = (0..n)
        .map(|i| {
            post(
                &format!("bulk-{i}"),
                &format!("title {i}"),
                &format!("content of post {i}"),
                "seeder",
            )
        })
        .collect();
    let r = request(env.addr(), "POST", "/bulk", &[NDJSON], &ndjson(&lines)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({
            "lines": n, "last_line": n, "applied": n, "rejected": 0, "unconfirmed": 0,
            "last_version": n, "errors": [], "errors_truncated": false
        })
    );
    let snap = env.snapshot();
    assert_eq!(snap.posts.len(), n);
    assert_eq!(snap.version, Some(n as u64));
    // The log covers every version once, each with its post's id.
    let changes = log_changes(&env);
    assert_eq!(
        changes.iter().map(|c| c.0).collect::<Vec<_>>(),
        (1..=n as u64).collect::<Vec<_>>()
    );
    assert!(
        snap.log_len < n as u64 / 100,
        "{} log entries for {n} posts: the batches were not logged per call",
        snap.log_len
    );
    // Every record is the exact serialization of its line, with distinct versions 1..=n.
    let mut versions = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("bulk-{i}");
        let raw = &snap.posts[id.as_bytes()];
        let rec = heavyread_sync::RecordRef::decode(raw).unwrap();
        assert_eq!(
            rec.body,
            served(
                &id,
                &format!("title {i}"),
                &format!("content of post {i}"),
                "seeder"
            )
        );
        assert_eq!(rec.etag, heavyread_sync::record::etag_of(rec.body));
        versions.push(rec.version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=n as u64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_reported_by_number_and_the_others_applied() {
    let env = Env::start_with(|c| {
        c.max_body_bytes = 512;
        c.max_content_bytes = 256;
        // Small chunks so the good lines span several pipelined round trips.
        c.bulk_chunk = 3;
    })
    .await;
    let mut lines: Vec<String> = (1..=20)
        .map(|i| post(&format!("l{i}"), "t", "c", "a"))
        .collect();
    lines[2] = "{not json".into(); // line 3
    lines[6] = post("bad id", "t", "c", "a"); // line 7
    lines[7] = "   ".into(); // line 8: blank, skipped, not an error
    lines[11] = r#"{"id":"l12","title":"t","content":"c","author":"a","x":1}"#.into(); // line 12
    lines[14] = post("l15", "t", &"c".repeat(600), "a"); // line 15: longer than a body may be
    lines[16] = post("l17", "", "c", "a"); // line 17
    let body = lines.join("\n").into_bytes(); // line 20 has no final newline
    let r = request(env.addr(), "POST", "/bulk", &[NDJSON], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let reported: Vec<(u64, u64, Option<&str>)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["status"].as_u64().unwrap(),
                e["field"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        reported,
        vec![
            (3, 400, None),
            (7, 422, Some("id")),
            (12, 422, Some("x")),
            (15, 413, None),
            (17, 422, Some("title"))
        ]
    );
    assert_eq!(v["errors"][3]["error"], "line exceeds 512 bytes");
    assert_eq!(v["errors"][4]["error"], "title must not be empty");
    assert_eq!(v["lines"], 19);
    assert_eq!(v["last_line"], 20);
    assert_eq!(v["applied"], 14);
    assert_eq!(v["rejected"], 5);
    let snap = env.snapshot();
    let mut ids: Vec<String> = snap
        .posts
        .keys()
        .map(|k| String::from_utf8(k.clone()).unwrap())
        .collect();
    ids.sort_by_key(|id| id[1..].parse::<u32>().unwrap());
    let expected: Vec<String> = [1, 2, 4, 5, 6, 9, 10, 11, 13, 14, 16, 18, 19, 20]
        .iter()
        .map(|i| format!("l{i}"))
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(snap.version, Some(14));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_chunk_caps_the_posts_of_a_round_trip_however_the_body_arrives() {
    // One small body, so it reaches the writer as one piece: each post must
    // still go to Redis in a round trip of its own, one log entry each.
    let env = Env::start_with(|c| c.bulk_chunk = 1).await;
    let lines: Vec<String> = (0..30)
        .map(|i| post(&format!("c{i}"), "t", "c", "a"))
        .collect();
    let r = request(env.addr(), "POST", "/bulk", &[NDJSON], &ndjson(&lines)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["applied"], 30);
    let snap = env.snapshot();
    assert_eq!(snap.version, Some(30));
    assert_eq!(
        snap.log_len, 30,
        "one batch call, so one log entry, per --bulk-chunk of 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_line_for_the_same_id_wins_across_chunks() {
    let env = Env::start_with(|c| c.bulk_chunk = 2).await;
    let lines: Vec<String> = (0..7)
        .map(|i| post("same", &format!("v{i}"), "c", "a"))
        .collect();
    let r = request(env.addr(), "POST", "/bulk", &[NDJSON], &ndjson(&lines)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["last_version"], 7);
    let (version, _, body) = env.record("same").unwrap();
    assert_eq!(version, 7);
    assert_eq!(body, served("same", "v6", "c", "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_over_the_limit_is_413_and_applies_only_the_lines_before_it() {
    let env = Env::start_with(|c| {
        c.max_body_bytes = 1024;
        c.bulk_max_bytes = 4096;
    })
    .await;
    let before = env.snapshot();
    // Declared too large: refused before anything is read.
    let r = request(
        env.addr(),
        "POST",
        "/bulk",
        &[NDJSON, ("Content-Length", "5000")],
        b"",
    )
    .await;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.json(),
        json!({"error": "request body exceeds 4096 bytes", "limit": 4096})
    );
    assert_eq!(env.snapshot(), before);

    // Streamed (chunked) past the limit: the complete lines before the cut are applied.
    let lines: Vec<String> = (0..200)
        .map(|i| post(&format!("c{i:03}"), "t", "c", "a"))
        .collect();
    let data = ndjson(&lines);
    let mut body = Vec::new();
    for piece in data.chunks(1000) {
        body.extend(format!("{:x}\r\n", piece.len()).bytes());
        body.extend_from_slice(piece);
        body.extend(b"\r\n");
    }
    body.extend(b"0\r\n\r\n");
    let r = request(
        env.addr(),
        "POST",
        "/bulk",
        &[NDJSON, ("Transfer-Encoding", "chunked")],
        &body,
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"], "request body exceeds 4096 bytes");
    let applied = v["applied"].as_u64().unwrap();
    let last_line = v["last_line"].as_u64().unwrap();
    assert_eq!(applied, last_line);
    // Only complete lines within the first 4096 bytes can have been applied.
    let line_len = lines[0].len() as u64 + 1;
    assert!(last_line >= 1 && last_line <= 4096 / line_len, "{v}");
    let snap = env.snapshot();
    let expected: Vec<Vec<u8>> = (0..applied)
        .map(|i| format!("c{i:03}").into_bytes())
        .collect();
    assert_eq!(snap.posts.keys().cloned().collect::<Vec<_>>(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_bulk_applies_nothing() {
    let env = Env::start().await;
    let r = request(env.addr(), "POST", "/bulk", &[NDJSON], b"\n\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["lines"], 0);
    assert_eq!(r.json()["last_version"], serde_json::Value::Null);
    assert_eq!(env.snapshot().version, None);
}

/// One change log entry: stream id and field/value pairs.
type LogEntry = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// The log of `{hr}` as one (version, id, ts field) per change: an entry
/// `<last>-<n>` holds n changes, its ids joined by spaces and its
/// timestamps back to back.
fn log_changes(env: &Env) -> Vec<(u64, String, Vec<u8>)> {
    let mut c = env.redis.connection();
    let log: Vec<LogEntry> = redis::cmd("XRANGE")
        .arg("{hr}:log")
        .arg("-")
        .arg("+")
        .query(&mut c)
        .unwrap();
    let mut out = Vec::new();
    for (entry, fields) in log {
        let (last, n) = entry.split_once('-').expect("stream id");
        let (last, n): (u64, u64) = (last.parse().unwrap(), n.parse().unwrap());
        let field = |name: &[u8]| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{entry} has no {:?}", String::from_utf8_lossy(name)))
        };
        assert_eq!(field(b"op"), b"put", "{entry}");
        let ids = String::from_utf8(field(b"id")).unwrap();
        let ids: Vec<&str> = ids.split(' ').collect();
        let ts = field(b"ts");
        assert_eq!((ids.len() as u64, ts.len() as u64), (n, 8 * n), "{entry}");
        for (k, (id, ts)) in ids.iter().zip(ts.chunks(8)).enumerate() {
            out.push((last - n + 1 + k as u64, (*id).to_owned(), ts.to_vec()));
        }
    }
    out
}

/// The records published on `{hr}:changes` until there are `n` of them, read
/// from a connection that subscribed (and got the confirmation) before the
/// writes; also returns how many messages carried them.
fn published(sub: &mut redis::Connection, n: usize) -> (Vec<Vec<u8>>, usize) {
    let (mut out, mut messages) = (Vec::new(), 0);
    while out.len() < n {
        let payload = match sub.recv_response().expect("a published record") {
            redis::Value::Array(parts) | redis::Value::Push { data: parts, .. } => {
                match parts.as_slice() {
                    [_, _, redis::Value::BulkString(payload)] => payload.clone(),
                    other => panic!("not a message: {other:?}"),
                }
            }
            other => panic!("not a message: {other:?}"),
        };
        messages += 1;
        for rec in heavyread_sync::record::records(&payload) {
            out.push(rec.expect("published record decodes").encode());
        }
    }
    assert_eq!(out.len(), n, "more records published than written");
    (out, messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_applied_line_gets_its_own_version_and_is_logged_and_published_in_line_order() {
    // Chunks span several batch calls and end inside one; a /create between
    // two bulks makes the writer's expected versions wrong for the second.
    let env = Env::start_with(|c| c.bulk_chunk = 300).await;
    let mut sub = env.redis.connection();
    sub.send_packed_command(
        &redis::cmd("SUBSCRIBE")
            .arg("{hr}:changes")
            .get_packed_command(),
    )
    .unwrap();
    sub.recv_response().expect("subscription confirmed");
    sub.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();

    let mut expected: Vec<(String, Vec<u8>)> = Vec::new();
    for round in 0..2 {
        let mut lines = Vec::new();
        for i in 0..700 {
            // Ids repeat inside a bulk; line 100 of each bulk is malformed.
            let id = format!("r{}", i % 450);
            let title = format!("round {round} line {i}");
            if i == 99 {
                lines.push("{oops".to_owned());
                continue;
            }
            lines.push(post(&id, &title, "c", "a"));
            expected.push((id.clone(), served(&id, &title, "c", "a")));
        }
        let r = request(env.addr(), "POST", "/bulk", &[NDJSON], &ndjson(&lines)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["applied"], 699);
        assert_eq!(r.json()["errors"][0]["line"], 100);
        if round == 0 {
            let c = env.create(&post("between", "t", "c", "a")).await;
            assert_eq!(c.status, 201, "{}", c.text());
            expected.push(("between".into(), served("between", "t", "c", "a")));
        }
    }

    let n = expected.len();
    let (messages, calls) = published(&mut sub, n);
    // 2 × 699 posts in chunks of 300 (batch calls of at most 256), plus the /create.
    assert!(calls < n / 100, "{calls} messages for {n} changes");
    let snap = env.snapshot();
    assert_eq!(snap.version, Some(n as u64));
    assert_eq!(snap.log_len, calls as u64, "one log entry per message");
    let log = log_changes(&env);
    assert_eq!(log.len(), n);
    let mut last_of = std::collections::HashMap::new();
    for (k, ((id, body), raw)) in expected.iter().zip(&messages).enumerate() {
        let version = k as u64 + 1;
        let rec = heavyread_sync::RecordRef::decode(raw).expect("published record decodes");
        assert_eq!(
            (rec.version, rec.id, rec.body),
            (version, id.as_str(), body.as_slice()),
            "message {k}"
        );
        assert_eq!(rec.etag, heavyread_sync::record::etag_of(body));
        assert_eq!(
            log[k],
            (
                version,
                id.clone(),
                rec.written_at_ns.to_be_bytes().to_vec()
            ),
            "log entry of version {version}"
        );
        last_of.insert(id.clone(), raw.clone());
    }
    assert_eq!(snap.posts.len(), last_of.len());
    for (id, raw) in last_of {
        assert_eq!(snap.posts[id.as_bytes()], raw, "{id} holds its last record");
    }
}
