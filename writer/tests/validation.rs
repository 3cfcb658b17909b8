//! Every rejected request gets its status and a JSON message naming the
//! problem, and Redis is exactly as it was before.

mod common;

use common::{post, request, Env};
use serde_json::{json, Value};

/// A chunked body: `total` bytes in chunks of 1000.
fn chunked(total: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(1000);
        out.extend(format!("{n:x}\r\n").bytes());
        out.extend(std::iter::repeat_n(b'x', n));
        out.extend(b"\r\n");
        left -= n;
    }
    out.extend(b"0\r\n\r\n");
    out
}

struct Case {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: u16,
    /// The exact body, or for `malformed` only the start of the message.
    expect: Expect,
}

enum Expect {
    Exact(Value),
    Malformed,
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn create(what: &'static str, body: impl Into<Vec<u8>>, status: u16, expect: Value) -> Case {
    Case {
        what,
        method: "POST",
        path: "/create",
        headers: vec![JSON],
        body: body.into(),
        status,
        expect: Expect::Exact(expect),
    }
}

fn invalid(what: &'static str, body: String, field: &str, error: &str) -> Case {
    create(what, body, 422, json!({"error": error, "field": field}))
}

fn cases() -> Vec<Case> {
    let id_msg = "id must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -";
    let valid = post("new", "t", "c", "a");
    vec![
        Case {
            headers: vec![],
            ..create(
                "no content type",
                valid.clone(),
                415,
                json!({"error": "Content-Type must be application/json"}),
            )
        },
        Case {
            headers: vec![("Content-Type", "text/plain")],
            ..create(
                "text/plain",
                valid.clone(),
                415,
                json!({"error": "Content-Type must be application/json"}),
            )
        },
        Case {
            headers: vec![("Content-Type", "application/x-www-form-urlencoded")],
            ..create(
                "form",
                valid.clone(),
                415,
                json!({"error": "Content-Type must be application/json"}),
            )
        },
        Case {
            expect: Expect::Malformed,
            ..create("truncated json", "{\"id\":", 400, Value::Null)
        },
        Case {
            expect: Expect::Malformed,
            ..create("trailing bytes", format!("{valid} x"), 400, Value::Null)
        },
        Case {
            expect: Expect::Malformed,
            ..create("empty body", "", 400, Value::Null)
        },
        Case {
            expect: Expect::Malformed,
            ..create(
                "invalid utf-8",
                b"{\"id\":\"\xff\"}".to_vec(),
                400,
                Value::Null,
            )
        },
        create(
            "array",
            "[1,2]",
            422,
            json!({"error": "body must be a JSON object with id, title, content and author"}),
        ),
        invalid(
            "missing title",
            r#"{"id":"a","content":"c","author":"a"}"#.into(),
            "title",
            "missing field title",
        ),
        invalid(
            "unknown field",
            r#"{"id":"a","title":"t","content":"c","author":"a","tags":["x"]}"#.into(),
            "tags",
            "unknown field \"tags\"; expected id, title, content, author",
        ),
        invalid(
            "duplicate field",
            r#"{"id":"a","id":"b","title":"t","content":"c","author":"a"}"#.into(),
            "id",
            "duplicate field id",
        ),
        invalid(
            "id not a string",
            r#"{"id":7,"title":"t","content":"c","author":"a"}"#.into(),
            "id",
            "id must be a string, not a number",
        ),
        invalid(
            "content null",
            r#"{"id":"a","title":"t","content":null,"author":"a"}"#.into(),
            "content",
            "content must be a string, not null",
        ),
        invalid("id with slash", post("a/b", "t", "c", "a"), "id", id_msg),
        invalid("id with space", post("a b", "t", "c", "a"), "id", id_msg),
        invalid("empty id", post("", "t", "c", "a"), "id", id_msg),
        invalid(
            "id too long",
            post(&"x".repeat(129), "t", "c", "a"),
            "id",
            id_msg,
        ),
        invalid("non-ascii id", post("é", "t", "c", "a"), "id", id_msg),
        invalid(
            "blank title",
            post("a", "   ", "c", "a"),
            "title",
            "title must not be empty",
        ),
        invalid(
            "long title",
            post("a", &"t".repeat(51), "c", "a"),
            "title",
            "title must be at most 50 characters",
        ),
        invalid(
            "empty author",
            post("a", "t", "c", ""),
            "author",
            "author must not be empty",
        ),
        invalid(
            "long author",
            post("a", "t", "c", &"é".repeat(21)),
            "author",
            "author must be at most 20 characters",
        ),
        invalid(
            "long content",
            post("a", "t", &"c".repeat(1001), "a"),
            "content",
            "content must be at most 1000 bytes",
        ),
        invalid(
            "invalid update of an existing post",
            post("existing", "", "c", "a"),
            "title",
            "title must not be empty",
        ),
        create(
            "body over the limit",
            post("a", "t", &"c".repeat(5000), "a"),
            413,
            json!({"error": "request body exceeds 4096 bytes", "limit": 4096}),
        ),
        Case {
            headers: vec![JSON, ("Content-Length", "100000000")],
            ..create(
                "declared length over the limit, body never sent",
                "",
                413,
                json!({"error": "request body exceeds 4096 bytes", "limit": 4096}),
            )
        },
        Case {
            headers: vec![JSON, ("Transfer-Encoding", "chunked")],
            ..create(
                "chunked body over the limit",
                chunked(6000),
                413,
                json!({"error": "request body exceeds 4096 bytes", "limit": 4096}),
            )
        },
        Case {
            what: "delete without id",
            method: "DELETE",
            path: "/post",
            headers: vec![],
            body: vec![],
            status: 400,
            expect: Expect::Exact(json!({"error": "missing query parameter id (use /post?id=ID)"})),
        },
        Case {
            what: "delete with a bad id",
            method: "DELETE",
            path: "/post?id=a%2Fb",
            headers: vec![],
            body: vec![],
            status: 422,
            expect: Expect::Exact(json!({"error": id_msg, "field": "id"})),
        },
        Case {
            what: "delete with an empty id",
            method: "DELETE",
            path: "/post?id=",
            headers: vec![],
            body: vec![],
            status: 422,
            expect: Expect::Exact(json!({"error": id_msg, "field": "id"})),
        },
        Case {
            what: "get with a bad id",
            method: "GET",
            path: "/post?id=..%20",
            headers: vec![],
            body: vec![],
            status: 422,
            expect: Expect::Exact(json!({"error": id_msg, "field": "id"})),
        },
        Case {
            what: "bulk with a wrong type",
            method: "POST",
            path: "/bulk",
            headers: vec![("Content-Type", "text/plain")],
            body: valid.clone().into_bytes(),
            status: 415,
            expect: Expect::Exact(json!({"error": "Content-Type must be application/x-ndjson"})),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_has_its_status_and_message_and_leaves_redis_unchanged() {
    let env = Env::start_with(|c| {
        c.max_body_bytes = 4096;
        c.max_content_bytes = 1000;
        c.max_title_chars = 50;
        c.max_author_chars = 20;
    })
    .await;
    assert_eq!(
        env.create(&post("existing", "t", "c", "a")).await.status,
        201
    );
    let before = env.snapshot();
    let mut failures = Vec::new();
    for case in cases() {
        let r = request(
            env.addr(),
            case.method,
            case.path,
            &case.headers,
            &case.body,
        )
        .await;
        let ok_status = r.status == case.status;
        let ok_type = r.header("content-type") == Some("application/json");
        let ok_body = match &case.expect {
            Expect::Exact(v) => serde_json::from_slice::<Value>(&r.body).ok().as_ref() == Some(v),
            Expect::Malformed => {
                serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| {
                    v["error"]
                        .as_str()
                        .map(|s| s.starts_with("malformed JSON: ") && s.contains("line 1 column"))
                }) == Some(true)
            }
        };
        if !(ok_status && ok_type && ok_body) {
            failures.push(format!("{}: got {} {}", case.what, r.status, r.text()));
        }
        assert_eq!(env.snapshot(), before, "{} changed Redis", case.what);
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // Values exactly at the limits are accepted.
    let edge = post(
        &"x".repeat(128),
        &"t".repeat(50),
        &"c".repeat(1000),
        &"é".repeat(20),
    );
    let r = env.create(&edge).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_token_is_required_on_write_routes_only() {
    let env = Env::start_with(|c| c.write_token = Some("s3cret-token".into())).await;
    let addr = env.addr();
    let body = post("p", "t", "c", "a");
    let before = env.snapshot();
    let unauthorized = json!({"error": "missing or invalid bearer token"});
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-tokenX"),
        Some("Basic s3cret-token"),
        Some("s3cret-token"),
    ] {
        let mut headers = vec![JSON];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        for (method, path, ct) in [
            ("POST", "/create", "application/json"),
            ("POST", "/bulk", "application/x-ndjson"),
            ("DELETE", "/post?id=p", "application/json"),
        ] {
            let mut h = headers.clone();
            h[0] = ("Content-Type", ct);
            let r = request(addr, method, path, &h, body.as_bytes()).await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {}", r.text());
            assert_eq!(r.json(), unauthorized);
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    }
    assert_eq!(env.snapshot(), before);

    // The token is checked before anything else: no 415 leaks without it.
    let r = request(addr, "POST", "/create", &[], b"junk").await;
    assert_eq!(r.status, 401);

    let auth = ("Authorization", "Bearer s3cret-token");
    let r = request(addr, "POST", "/create", &[JSON, auth], body.as_bytes()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = request(
        addr,
        "POST",
        "/bulk",
        &[
            ("Content-Type", "application/x-ndjson"),
            ("authorization", "bearer s3cret-token"),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["applied"], 1);
    // Reads and probes need no token.
    for path in ["/post?id=p", "/health", "/ready", "/metrics"] {
        assert_eq!(
            request(addr, "GET", path, &[], b"").await.status,
            200,
            "{path}"
        );
    }
    let r = request(addr, "DELETE", "/post?id=p", &[auth], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
}
