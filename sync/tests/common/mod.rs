//! Shared helpers of the sync crate's integration tests.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use heavyread_sync::record::{etag_hex, put_template, Op, RecordRef};
use heavyread_sync::testing::RedisServer;
use heavyread_sync::{Keys, Publisher, Store, Subscriber, SyncConfig};
use redis::Value;

/// `(version, quoted etag)` per id.
pub type State = BTreeMap<String, (u64, String)>;

/// HGETALL pairs and the version counter, read in one transaction.
type RawState = (Vec<(Vec<u8>, Vec<u8>)>, Option<u64>);

pub fn quoted(etag: &[u8; 16]) -> String {
    format!("\"{}\"", String::from_utf8_lossy(&etag_hex(etag)))
}

/// Everything Redis holds for `keys`, decoded, and its version counter.
pub fn redis_state(con: &mut redis::Connection, keys: &Keys) -> (State, u64) {
    let (all, version): RawState = redis::pipe()
        .atomic()
        .hgetall(&keys.posts)
        .get(&keys.version)
        .query(con)
        .expect("read redis state");
    let mut state = State::new();
    for (field, value) in all {
        if let Ok(r) = RecordRef::decode(&value) {
            if r.op == Op::Put && r.id.as_bytes() == field.as_slice() {
                state.insert(r.id.to_owned(), (r.version, quoted(&r.etag)));
            }
        }
    }
    (state, version.unwrap_or(0))
}

pub fn store_state(store: &Store) -> State {
    store
        .snapshot()
        .into_iter()
        .map(|(id, v, etag)| (id, (v, etag)))
        .collect()
}

/// Waits until the store equals Redis exactly and the subscriber applied
/// Redis's version; returns how long that took.
pub fn wait_converged(
    redis: &RedisServer,
    sub: &Subscriber,
    keys: &Keys,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let mut con = redis.connection();
    loop {
        let (want, version) = redis_state(&mut con, keys);
        let got = store_state(sub.store());
        let last = sub.status().snapshot().last_version;
        if got == want && last == version {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            let missing: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(v))
                .take(5)
                .collect();
            let extra: Vec<_> = got
                .iter()
                .filter(|(k, _)| !want.contains_key(*k))
                .take(5)
                .collect();
            panic!(
                "not converged after {limit:?}: redis version {version}, applied {last}, \
                 redis has {} ids, store {}; differing {missing:?}; ghosts {extra:?}; status {:?}",
                want.len(),
                got.len(),
                sub.status().snapshot()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Fast settings so faults are noticed quickly in tests.
pub fn sync_config(redis: &RedisServer, prefix: &str) -> SyncConfig {
    let mut c = SyncConfig::new(redis.url());
    c.prefix = prefix.to_owned();
    c.ping_interval = Duration::from_millis(200);
    c.ping_timeout = Duration::from_millis(800);
    c.command_timeout = Duration::from_secs(5);
    c.backoff_min = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(300);
    c
}

pub fn spawn(config: SyncConfig) -> Subscriber {
    let (_store, writer) = Store::new();
    Subscriber::spawn(config, writer).expect("spawn subscriber")
}

pub fn wait_bootstrapped(sub: &Subscriber) {
    wait_for("bootstrap", Duration::from_secs(30), || {
        sub.status().snapshot().bootstrapped
    });
}

pub async fn publisher(redis: &RedisServer, prefix: &str, log_max_len: u64) -> Publisher {
    let p = Publisher::new(&redis.url(), prefix, log_max_len, Duration::from_secs(5))
        .expect("publisher");
    p.load_library().await.expect("load library");
    p
}

/// About 350 bytes of JSON for post `i`, deterministic.
pub fn body(id: &str, i: u64) -> Vec<u8> {
    let filler = "lorem ipsum dolor sit amet consectetur ".repeat(7);
    format!(
        r#"{{"id":"{id}","title":"Post number {i}","content":"{}","author":"author-{}"}}"#,
        &filler[..(250 + (i % 50) as usize).min(filler.len())],
        i % 97
    )
    .into_bytes()
}

/// Kills every pub/sub client of `redis` (the subscriber's subscription).
pub fn kill_pubsub(con: &mut redis::Connection) -> u64 {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(con)
        .unwrap_or(0)
}

pub fn counters(sub: &Subscriber) -> Arc<heavyread_sync::SyncStatus> {
    Arc::clone(sub.status())
}

/// A put that retries while the publisher reconnects after a Redis restart.
pub async fn put_retry(p: &Publisher, id: &str, body: &[u8]) -> heavyread_sync::Written {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match p.put(id, body).await {
            Ok(w) => return w,
            Err(e) if Instant::now() < deadline => {
                assert!(e.is_unavailable(), "unexpected error: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("put kept failing: {e}"),
        }
    }
}

// ---- what the write functions leave in Redis and on the channel

/// One log entry: stream id and field/value pairs, as stored.
pub type LogEntry = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// The posts hash: id → record.
pub type Posts = BTreeMap<Vec<u8>, Vec<u8>>;

/// Everything a change writes, except the epoch (random per dataset).
#[derive(Debug, PartialEq, Eq)]
pub struct Written {
    pub version: Option<u64>,
    pub posts: Posts,
    pub log: Vec<LogEntry>,
}

pub fn written(con: &mut redis::Connection, keys: &Keys) -> Written {
    let (version, posts, log): (Option<u64>, Posts, Vec<LogEntry>) = redis::pipe()
        .atomic()
        .get(&keys.version)
        .hgetall(&keys.posts)
        .cmd("XRANGE")
        .arg(&keys.log)
        .arg("-")
        .arg("+")
        .query(con)
        .expect("read what the functions wrote");
    Written {
        version,
        posts,
        log,
    }
}

/// `FCALL name 4 <keys> channel maxlen <args...>`.
pub fn fcall(keys: &Keys, name: &str, maxlen: u64, args: &[&[u8]]) -> redis::Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(name)
        .arg(4)
        .arg(keys.function_keys().to_vec())
        .arg(&keys.channel)
        .arg(maxlen);
    for a in args {
        cmd.arg(*a);
    }
    cmd
}

/// A connection subscribed to `channels`, confirmed before it is returned.
pub fn subscribed(redis: &RedisServer, channels: &[&str]) -> redis::Connection {
    let mut sub = redis.connection();
    sub.send_packed_command(&redis::cmd("SUBSCRIBE").arg(channels).get_packed_command())
        .unwrap();
    for _ in channels {
        let confirm = sub.recv_response().unwrap();
        assert!(
            format!("{confirm:?}").contains("subscribe"),
            "not a confirmation: {confirm:?}"
        );
    }
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sub
}

/// The next `n` messages: (channel, payload).
pub fn messages(sub: &mut redis::Connection, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|_| match sub.recv_response().expect("a published record") {
            Value::Array(parts) | Value::Push { data: parts, .. } => match parts.as_slice() {
                [Value::BulkString(kind), Value::BulkString(channel), Value::BulkString(payload)]
                    if kind == b"message" =>
                {
                    (
                        String::from_utf8_lossy(channel).into_owned(),
                        payload.clone(),
                    )
                }
                other => panic!("not a message: {other:?}"),
            },
            other => panic!("not a message: {other:?}"),
        })
        .collect()
}

/// True when nothing more arrives within a short wait (the connection is
/// not read again afterwards).
pub fn silent(sub: &mut redis::Connection) -> bool {
    sub.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    match sub.recv_response() {
        Ok(v) => panic!("unexpected message {v:?}"),
        Err(e) => e.is_timeout(),
    }
}

/// Posts `(id_of(i), body(id, i))`, one for each `i`.
pub fn posts(
    range: impl IntoIterator<Item = u64>,
    id_of: impl Fn(u64) -> String,
) -> Vec<(String, Vec<u8>)> {
    range
        .into_iter()
        .map(|i| {
            let id = id_of(i);
            let b = body(&id, i);
            (id, b)
        })
        .collect()
}

/// Puts `items` in order through [`Publisher::put_many`].
pub async fn put_items(p: &Publisher, items: &[(String, Vec<u8>)]) -> Vec<heavyread_sync::Written> {
    let refs: Vec<(&str, &[u8])> = items
        .iter()
        .map(|(i, b)| (i.as_str(), b.as_slice()))
        .collect();
    p.put_many(&refs).await.unwrap()
}

/// Adds a log entry far ahead of the version, so that the next write's
/// XADD fails (its entry id would be too small).
pub fn tamper_log(con: &mut redis::Connection, keys: &Keys) {
    let _: String = redis::cmd("XADD")
        .arg(&keys.log)
        .arg("999-1")
        .arg("op")
        .arg("x")
        .query(con)
        .unwrap();
}

/// Put templates (version zero) of `body(ids[i], i)` with writer timestamp
/// `stamps[i]`.
pub fn templates(ids: &[String], stamps: &[u64]) -> Vec<Vec<u8>> {
    ids.iter()
        .zip(stamps)
        .enumerate()
        .map(|(i, (id, &ts))| put_template(id, &body(id, i as u64), ts).unwrap().0)
        .collect()
}

/// The same 40 puts made one by one beside a batch of them (see
/// [`singles_beside`]).
pub struct SideBySide {
    /// The posts' ids: some repeat, so a later one wins in the hash.
    pub ids: Vec<String>,
    /// Each post's writer timestamp, all different.
    pub stamps: Vec<u64>,
    /// The posts' put templates (version zero).
    pub templates: Vec<Vec<u8>>,
    /// The templates as a batch sends them: with no version (zero), the
    /// version each post will get, or a wrong one, in turn.
    pub sent: Vec<Vec<u8>>,
}

/// Puts a first post under both prefixes, then 40 posts one by one through
/// `heavyread_put` under `singles` (versions 2..=41), and returns them with
/// the templates a batch of the same posts under `batch` sends.
pub fn singles_beside(con: &mut redis::Connection, singles: &Keys, batch: &Keys) -> SideBySide {
    let ids: Vec<String> = (0..40)
        .map(|i| format!("p{}", if i % 9 == 4 { i / 3 } else { i }))
        .collect();
    let stamps: Vec<u64> = (0..40).map(|i| 1_000_000 + i * 7).collect();
    let templates = templates(&ids, &stamps);
    let (first, _) = put_template("first", b"{}", 5).unwrap();
    for keys in [singles, batch] {
        let v: u64 = fcall(keys, "heavyread_put", 1000, &[b"first", first.as_slice()])
            .query(con)
            .unwrap();
        assert_eq!(v, 1);
    }
    let mut versions = Vec::new();
    for (id, t) in ids.iter().zip(&templates) {
        let v: u64 = fcall(
            singles,
            "heavyread_put",
            1000,
            &[id.as_bytes(), t.as_slice()],
        )
        .query(con)
        .unwrap();
        versions.push(v);
    }
    assert_eq!(versions, (2..=41).collect::<Vec<u64>>());
    let sent = templates
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut t = t.clone();
            let stamp = match i % 3 {
                0 => 0,
                1 => i as u64 + 2,
                _ => i as u64 + 1_000,
            };
            t[2..10].copy_from_slice(&stamp.to_be_bytes());
            t
        })
        .collect();
    SideBySide {
        ids,
        stamps,
        templates,
        sent,
    }
}

/// The payloads of `got` published on `channel`, in order.
pub fn on(got: &[(String, Vec<u8>)], channel: &str) -> Vec<Vec<u8>> {
    got.iter()
        .filter(|(c, _)| c == channel)
        .map(|(_, m)| m.clone())
        .collect()
}
