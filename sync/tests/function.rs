//! The Redis function library against a real redis-server: atomic changes,
//! nothing written on a rejected call, and recovery of a wiped library.

mod common;

use common::*;
use heavyread_sync::record::{Op, RecordRef};
use heavyread_sync::schema::{LIBRARY, LIBRARY_VERSION};
use heavyread_sync::testing::RedisServer;
use heavyread_sync::Keys;

type Snapshot = (Option<u64>, usize, usize);

/// Version, number of posts and log length.
fn snapshot(con: &mut redis::Connection, keys: &Keys) -> Snapshot {
    redis::pipe()
        .get(&keys.version)
        .hlen(&keys.posts)
        .xlen(&keys.log)
        .query(con)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_delete_store_log_and_version_together() {
    let redis = RedisServer::start();
    let keys = Keys::new("t1").unwrap();
    let p = publisher(&redis, "t1", 1000).await;
    let mut con = redis.connection();
    let w = p.put("a", b"{\"a\":1}").await.unwrap();
    assert_eq!(w.version, 1);
    let stored: Vec<u8> = redis::cmd("HGET")
        .arg(&keys.posts)
        .arg("a")
        .query(&mut con)
        .unwrap();
    let r = RecordRef::decode(&stored).unwrap();
    assert_eq!(
        (r.op, r.version, r.id, r.body),
        (Op::Put, 1, "a", &b"{\"a\":1}"[..])
    );
    assert_eq!(p.get("a").await.unwrap(), Some(stored.clone()));
    assert_eq!(snapshot(&mut con, &keys), (Some(1), 1, 1));
    let epoch: Option<String> = redis::cmd("GET").arg(&keys.epoch).query(&mut con).unwrap();
    assert!(epoch.is_some(), "the first write sets the epoch");

    assert_eq!(p.delete("missing").await.unwrap(), None);
    assert_eq!(
        snapshot(&mut con, &keys),
        (Some(1), 1, 1),
        "a missing id consumes no version"
    );
    assert_eq!(p.delete("a").await.unwrap(), Some(2));
    assert_eq!(snapshot(&mut con, &keys), (Some(2), 0, 2));
    let epoch2: Option<String> = redis::cmd("GET").arg(&keys.epoch).query(&mut con).unwrap();
    assert_eq!(epoch, epoch2, "the epoch is set once");
    assert_eq!(p.version().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_calls_write_nothing() {
    let redis = RedisServer::start();
    let keys = Keys::new("t2").unwrap();
    let p = publisher(&redis, "t2", 1000).await;
    p.put("a", b"1").await.unwrap();
    let mut con = redis.connection();
    let before = snapshot(&mut con, &keys);

    // A template whose id does not match the id argument, and garbage.
    let (template, _) = heavyread_sync::record::put_template("a", b"2", 0).unwrap();
    for (id, rec) in [("b", template.clone()), ("a", b"garbage".to_vec())] {
        let r = fcall(&mut con, &keys, "heavyread_put", "1000", id, &rec);
        assert!(r.is_err());
        assert_eq!(snapshot(&mut con, &keys), before);
    }
    // A log tampered with so that the next entry id is too small: XADD fails
    // first, so neither the version nor the hash moves.
    tamper_log(&mut con, &keys);
    let tampered = snapshot(&mut con, &keys);
    assert!(p.put("a", b"3").await.is_err());
    assert_eq!(snapshot(&mut con, &keys), tampered);
    let stored: Vec<u8> = redis::cmd("HGET")
        .arg(&keys.posts)
        .arg("a")
        .query(&mut con)
        .unwrap();
    assert_eq!(RecordRef::decode(&stored).unwrap().body, b"1");
}

/// `FCALL <function> 4 <keys> <channel> <maxlen> <id> <template>`.
fn fcall(
    con: &mut redis::Connection,
    keys: &Keys,
    function: &str,
    maxlen: &str,
    id: &str,
    template: &[u8],
) -> redis::RedisResult<redis::Value> {
    redis::cmd("FCALL")
        .arg(function)
        .arg(4)
        .arg(keys.function_keys().to_vec())
        .arg(&keys.channel)
        .arg(maxlen)
        .arg(id)
        .arg(template)
        .query(con)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_delete_refuse_templates_no_reader_could_decode() {
    let redis = RedisServer::start();
    let keys = Keys::new("t2b").unwrap();
    let p = publisher(&redis, "t2b", 1000).await;
    p.put("a", b"1").await.unwrap();
    let mut con = redis.connection();
    let mut sub = redis.connection();
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe(&keys.channel).unwrap();
    pubsub
        .set_read_timeout(Some(std::time::Duration::from_millis(50)))
        .unwrap();
    let before = snapshot(&mut con, &keys);

    let (put, _) = heavyread_sync::record::put_template("a", b"2", 0).unwrap();
    let del = heavyread_sync::record::delete_template("a", 0).unwrap();
    let id_at = heavyread_sync::record::FIXED_HEADER;
    let with = |t: &[u8], f: &dyn Fn(&mut Vec<u8>)| {
        let mut t = t.to_vec();
        f(&mut t);
        t
    };
    // Each of these passed the old check (format byte, op, and the id
    // bytes equal to the id argument), and each decodes nowhere.
    let cases: Vec<(&str, &str, String, Vec<u8>)> = vec![
        (
            "trailing bytes",
            "heavyread_put",
            "a".into(),
            with(&put, &|t| t.push(b'x')),
        ),
        (
            "body shorter than its length",
            "heavyread_put",
            "a".into(),
            with(&put, &|t| {
                t.pop();
            }),
        ),
        (
            "empty id",
            "heavyread_put",
            String::new(),
            with(&put, &|t| {
                t[id_at - 2] = 0;
                t[id_at - 1] = 0;
                t.remove(id_at);
            }),
        ),
        (
            "id outside the alphabet",
            "heavyread_put",
            "/".into(),
            with(&put, &|t| t[id_at] = b'/'),
        ),
        (
            "delete with a body",
            "heavyread_delete",
            "a".into(),
            with(&del, &|t| {
                let n = t.len();
                t[n - 1] = 1;
                t.push(b'x');
            }),
        ),
        (
            "delete with an etag",
            "heavyread_delete",
            "a".into(),
            with(&del, &|t| t[20] = 1),
        ),
        (
            "delete cut short",
            "heavyread_delete",
            "a".into(),
            del[..del.len() - 1].to_vec(),
        ),
    ];
    for (what, function, id, template) in &cases {
        let r = fcall(&mut con, &keys, function, "1000", id, template);
        let e = r.expect_err(what);
        assert!(
            e.to_string().contains("malformed record template"),
            "{what}: {e}"
        );
        assert_eq!(snapshot(&mut con, &keys), before, "{what}");
    }
    // A log length that is not an integer is refused by put too, before anything is written.
    let r = fcall(&mut con, &keys, "heavyread_put", "1.5", "a", &put);
    assert!(r.is_err(), "{r:?}");
    assert_eq!(snapshot(&mut con, &keys), before);
    assert!(
        pubsub.get_message().is_err(),
        "nothing was published for a refused call"
    );
    // The well-formed templates they came from are taken.
    fcall(&mut con, &keys, "heavyread_put", "1000", "a", &put).unwrap();
    fcall(&mut con, &keys, "heavyread_delete", "1000", "a", &del).unwrap();
    assert_eq!(snapshot(&mut con, &keys), (Some(3), 0, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_redis_gets_the_library_back_on_the_next_write() {
    let mut redis = RedisServer::start_with(false, &[]);
    let p = publisher(&redis, "t3", 1000).await;
    p.put("a", b"1").await.unwrap();
    redis.restart_empty();
    assert_eq!(
        put_retry(&p, "a", b"2").await.version,
        1,
        "versions restart with the data"
    );
    assert!(p.library_loaded().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_many_pipelines_in_order() {
    let redis = RedisServer::start();
    let p = publisher(&redis, "t4", 1000).await;
    let items: Vec<(String, Vec<u8>)> = (0..50).map(|i| (format!("id{i}"), body("x", i))).collect();
    let refs: Vec<(&str, &[u8])> = items
        .iter()
        .map(|(i, b)| (i.as_str(), b.as_slice()))
        .collect();
    let written = p.put_many(&refs).await.unwrap();
    let versions: Vec<u64> = written.iter().map(|w| w.version).collect();
    assert_eq!(versions, (1..=50).collect::<Vec<_>>());
    assert!(p.put_many(&[("bad/id", b"x")]).await.is_err());
    assert_eq!(p.version().await.unwrap(), 50);
}

/// This library with its version function answering `v` instead (the
/// other functions unchanged).
fn library_as(v: u32) -> String {
    let ours = format!("  return {LIBRARY_VERSION}\n");
    assert_eq!(
        LIBRARY.matches(&ours).count(),
        1,
        "the version function's line"
    );
    LIBRARY.replace(&ours, &format!("  return {v}\n"))
}

fn load(con: &mut redis::Connection, source: &str) {
    let name: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(source)
        .query(con)
        .unwrap();
    assert_eq!(name, "heavyread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_library_counts_as_loaded_and_an_older_or_missing_one_does_not() {
    let redis = RedisServer::start();
    let p = publisher(&redis, "t5", 1000).await;
    let mut c = redis.connection();
    let ours = i64::from(LIBRARY_VERSION);
    assert_eq!(p.library_version().await.unwrap(), Some(ours));
    assert!(p.library_loaded().await.unwrap());

    // A newer writer's library: used as it is.
    load(&mut c, &library_as(LIBRARY_VERSION + 1));
    assert_eq!(p.library_version().await.unwrap(), Some(ours + 1));
    assert!(p.library_loaded().await.unwrap());
    assert_eq!(p.put("a", b"1").await.unwrap().version, 1);
    let many = p.put_many(&[("b", b"2"), ("c", b"3")]).await.unwrap();
    assert_eq!(many.last().unwrap().version, 3);

    // An older one: not enough.
    load(&mut c, &library_as(LIBRARY_VERSION - 1));
    assert_eq!(p.library_version().await.unwrap(), Some(ours - 1));
    assert!(!p.library_loaded().await.unwrap());

    // None at all.
    let _: () = redis::cmd("FUNCTION").arg("FLUSH").query(&mut c).unwrap();
    assert_eq!(p.library_version().await.unwrap(), None);
    assert!(!p.library_loaded().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_from_ten_to_the_fourteen_keep_their_digits_in_the_log() {
    let redis = RedisServer::start();
    let keys = Keys::new("t9").unwrap();
    let p = publisher(&redis, "t9", 1000).await;
    let mut con = redis.connection();
    let _: () = redis::cmd("SET")
        .arg(&keys.version)
        .arg("99999999999999")
        .query(&mut con)
        .unwrap();
    assert_eq!(p.put("a", b"1").await.unwrap().version, 100_000_000_000_000);
    assert_eq!(p.delete("a").await.unwrap(), Some(100_000_000_000_001));
    let mut batch = heavyread_sync::PutBatch::with_capacity(2);
    batch.push("b", b"2").unwrap();
    batch.push("c", b"3").unwrap();
    let written = p.put_batch(&batch).await.unwrap();
    assert_eq!(written.last().unwrap().version, 100_000_000_000_003);
    let ids: Vec<String> = redis::cmd("XRANGE")
        .arg(&keys.log)
        .arg("-")
        .arg("+")
        .query::<Vec<(String, Vec<(String, Vec<u8>)>)>>(&mut con)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        ids,
        [
            "100000000000000-1",
            "100000000000001-1",
            "100000000000003-2"
        ]
    );
}
