//! `heavyread_put_many` against a real redis-server: a batch is exactly that
//! many single puts in a row (versions, hash, log entries with their `ts`,
//! published records and their order) whatever versions its templates carry,
//! batches are cut by posts and bytes, a rejected batch writes and publishes
//! nothing, and a subscriber follows batches live without a gap, also when
//! another writer's changes make the publisher's expected versions wrong.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use heavyread_sync::publisher::{MAX_BATCH_BYTES, MAX_BATCH_POSTS};
use heavyread_sync::record::{etag_of, put_template, Op, RecordRef};
use heavyread_sync::testing::RedisServer;
use heavyread_sync::Keys;
use redis::Value;

const LIMIT: Duration = Duration::from_secs(30);

/// One log entry: stream id and field/value pairs, as stored.
type LogEntry = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// The posts hash: id → record.
type Posts = BTreeMap<Vec<u8>, Vec<u8>>;

/// Everything a change writes, except the epoch (random per dataset).
#[derive(Debug, PartialEq, Eq)]
struct Written {
    version: Option<u64>,
    posts: Posts,
    log: Vec<LogEntry>,
}

fn written(con: &mut redis::Connection, keys: &Keys) -> Written {
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
fn fcall(keys: &Keys, name: &str, maxlen: u64, args: &[&[u8]]) -> redis::Cmd {
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
fn subscribed(redis: &RedisServer, channels: &[&str]) -> redis::Connection {
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
fn messages(sub: &mut redis::Connection, n: usize) -> Vec<(String, Vec<u8>)> {
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
fn silent(sub: &mut redis::Connection) -> bool {
    sub.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    match sub.recv_response() {
        Ok(v) => panic!("unexpected message {v:?}"),
        Err(e) => e.is_timeout(),
    }
}

/// FCALL calls Redis served since the last `CONFIG RESETSTAT`.
fn fcalls(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_fcall:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_writes_exactly_what_that_many_single_puts_write() {
    let redis = RedisServer::start();
    let (one, many) = (Keys::new("one").unwrap(), Keys::new("many").unwrap());
    publisher(&redis, "one", 1000).await;
    let mut con = redis.connection();
    let mut sub = subscribed(&redis, &[&one.channel, &many.channel]);

    // Repeated ids (a later one wins in the hash, each keeps its own log
    // entry and message) and a different writer timestamp per post, so a
    // `ts` taken from the wrong post would show.
    let ids: Vec<String> = (0..40)
        .map(|i| format!("p{}", if i % 9 == 4 { i / 3 } else { i }))
        .collect();
    let templates: Vec<Vec<u8>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            put_template(id, &body(id, i as u64), 1_000_000 + i as u64 * 7)
                .unwrap()
                .0
        })
        .collect();
    // The same first change on both sides, so the batch starts past version 1.
    let (first, _) = put_template("first", b"{}", 5).unwrap();
    for keys in [&one, &many] {
        let v: u64 = fcall(keys, "heavyread_put", 1000, &[b"first", first.as_slice()])
            .query(&mut con)
            .unwrap();
        assert_eq!(v, 1);
    }

    let mut singles = Vec::new();
    for (id, t) in ids.iter().zip(&templates) {
        let v: u64 = fcall(&one, "heavyread_put", 1000, &[id.as_bytes(), t.as_slice()])
            .query(&mut con)
            .unwrap();
        singles.push(v);
    }
    assert_eq!(singles, (2..=41).collect::<Vec<u64>>());
    // The batch's templates carry no version (zero), the version each post
    // will get, or a wrong one: the function must write the same records.
    let sent: Vec<Vec<u8>> = templates
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
    let args: Vec<&[u8]> = sent.iter().map(|t| t.as_slice()).collect();
    let last: u64 = fcall(&many, "heavyread_put_many", 1000, &args)
        .query(&mut con)
        .unwrap();
    assert_eq!(last, 41, "the batch answers its last version");

    let (a, b) = (written(&mut con, &one), written(&mut con, &many));
    assert_eq!(a, b, "batch and single puts wrote different data");
    assert_eq!(b.version, Some(41));
    assert_eq!(b.log.len(), 41);
    for (n, (entry, fields)) in b.log.iter().enumerate().skip(1) {
        let t = &templates[n - 1];
        assert_eq!(entry, &format!("{}-1", n + 1));
        let want: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"op".to_vec(), b"put".to_vec()),
            (b"id".to_vec(), ids[n - 1].as_bytes().to_vec()),
            (b"ts".to_vec(), t[10..18].to_vec()),
        ];
        assert_eq!(fields, &want, "log entry {entry}");
    }
    let epochs: (Option<String>, Option<String>) = redis::pipe()
        .get(&one.epoch)
        .get(&many.epoch)
        .query(&mut con)
        .unwrap();
    assert!(epochs.0.is_some() && epochs.1.is_some());

    // Published: the same records, one per post, in version order.
    let got = messages(&mut sub, 2 * 41);
    let on = |channel: &str| -> Vec<Vec<u8>> {
        got.iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, m)| m.clone())
            .collect()
    };
    let (pa, pb) = (on(&one.channel), on(&many.channel));
    assert_eq!(pa, pb, "batch and single puts published different records");
    for (k, raw) in pb.iter().enumerate() {
        let r = RecordRef::decode(raw).expect("published record decodes");
        assert_eq!(r.version, k as u64 + 1, "publish order is version order");
        if k > 0 {
            let mut want = templates[k - 1].clone();
            want[2..10].copy_from_slice(&r.version.to_be_bytes());
            assert_eq!(raw, &want, "the template with its version set");
            // Whatever the hash holds for the id is its last record.
            let last_of_id = ids.iter().rposition(|i| i == r.id).unwrap();
            if last_of_id == k - 1 {
                assert_eq!(&b.posts[r.id.as_bytes()], raw);
            }
        }
    }
    assert!(silent(&mut sub));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_many_batches_by_posts_with_consecutive_versions_between_single_puts() {
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 10_000).await;
    let mut con = redis.connection();
    let mut sub = subscribed(&redis, &[&keys.channel]);
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut con)
        .unwrap();

    assert_eq!(p.put("before", b"{}").await.unwrap().version, 1);
    let n = 2 * MAX_BATCH_POSTS + 88;
    let items: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let id = format!("b{i}");
            let b = body(&id, i as u64);
            (id, b)
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = items
        .iter()
        .map(|(i, b)| (i.as_str(), b.as_slice()))
        .collect();
    let w = p.put_many(&refs).await.unwrap();
    let after = p.put("after", b"{}").await.unwrap().version;
    assert_eq!(after, n as u64 + 2);
    assert_eq!(fcalls(&mut con), 2 + 3, "two single puts and three batches");

    let versions: Vec<u64> = w.iter().map(|w| w.version).collect();
    assert_eq!(versions, (2..=n as u64 + 1).collect::<Vec<_>>());
    let state = written(&mut con, &keys);
    assert_eq!(state.version, Some(n as u64 + 2));
    assert_eq!(state.log.len(), n + 2);
    for ((id, b), w) in items.iter().zip(&w) {
        assert_eq!(w.etag, etag_of(b));
        let r = RecordRef::decode(&state.posts[id.as_bytes()]).unwrap();
        assert_eq!(
            (r.op, r.version, r.id, r.body, r.etag),
            (Op::Put, w.version, id.as_str(), b.as_slice(), w.etag)
        );
        let (entry, fields) = &state.log[w.version as usize - 1];
        assert_eq!(entry, &format!("{}-1", w.version));
        assert_eq!(fields[1], (b"id".to_vec(), id.as_bytes().to_vec()));
        assert_eq!(fields[2].1, r.written_at_ns.to_be_bytes());
    }
    let got = messages(&mut sub, n + 2);
    let order: Vec<(u64, String)> = got
        .iter()
        .map(|(_, m)| {
            let r = RecordRef::decode(m).unwrap();
            (r.version, r.id.to_owned())
        })
        .collect();
    let mut want = vec![(1, "before".to_owned())];
    want.extend(
        items
            .iter()
            .zip(&w)
            .map(|((id, _), w)| (w.version, id.clone())),
    );
    want.push((after, "after".to_owned()));
    assert_eq!(order, want, "one message per post, in version order");
    assert!(silent(&mut sub));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_many_cuts_batches_by_bytes_and_sends_an_oversized_post_alone() {
    let redis = RedisServer::start_with(false, &[]);
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 1000).await;
    let mut con = redis.connection();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut con)
        .unwrap();
    // Two of these fit in a batch, three do not.
    let big = MAX_BATCH_BYTES * 2 / 5;
    let mut items: Vec<(String, Vec<u8>)> = (0..7)
        .map(|i| (format!("big{i}"), vec![b'a' + i as u8; big]))
        .collect();
    items.push(("huge".into(), vec![b'z'; MAX_BATCH_BYTES + 1]));
    items.push(("small".into(), b"{}".to_vec()));
    let refs: Vec<(&str, &[u8])> = items
        .iter()
        .map(|(i, b)| (i.as_str(), b.as_slice()))
        .collect();
    let w = p.put_many(&refs).await.unwrap();
    assert_eq!(
        w.iter().map(|w| w.version).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    // [big0 big1] [big2 big3] [big4 big5] [big6] [huge] [small]
    assert_eq!(fcalls(&mut con), 6);
    let state = written(&mut con, &keys);
    for ((id, b), w) in items.iter().zip(&w) {
        let r = RecordRef::decode(&state.posts[id.as_bytes()]).unwrap();
        assert_eq!((r.version, r.body), (w.version, b.as_slice()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_batch_writes_and_publishes_nothing() {
    let redis = RedisServer::start();
    let keys = Keys::new("t").unwrap();
    let p = publisher(&redis, "t", 1000).await;
    p.put("a", b"1").await.unwrap();
    let mut con = redis.connection();
    let mut sub = subscribed(&redis, &[&keys.channel]);
    let before = written(&mut con, &keys);

    let (a, _) = put_template("a", b"2", 9).unwrap();
    let (b, _) = put_template("bb", b"3", 9).unwrap();
    let del = heavyread_sync::record::delete_template("a", 9).unwrap();
    let mut no_id = a.clone();
    no_id[34..36].copy_from_slice(&0u16.to_be_bytes());
    let cut = &b[..37];
    let (a, del, no_id) = (a.as_slice(), del.as_slice(), no_id.as_slice());
    let bad_batches: Vec<(u64, Vec<&[u8]>)> = vec![
        // The second template is cut inside its id.
        (1000, vec![a, cut]),
        // A delete template.
        (1000, vec![a, del]),
        // An empty id.
        (1000, vec![a, no_id]),
        // No post at all.
        (1000, vec![]),
        // Garbage.
        (1000, vec![a, b"garbage"]),
        // A log length of zero.
        (0, vec![a]),
    ];
    for (maxlen, args) in &bad_batches {
        let r: redis::RedisResult<u64> =
            fcall(&keys, "heavyread_put_many", *maxlen, args).query(&mut con);
        assert!(r.is_err(), "{args:?} was accepted");
        assert_eq!(written(&mut con, &keys), before);
    }

    // A log tampered with so that the batch's first entry id is too small:
    // the first XADD fails before the version, the hash or the channel see
    // anything.
    let _: String = redis::cmd("XADD")
        .arg(&keys.log)
        .arg("999-1")
        .arg("op")
        .arg("x")
        .query(&mut con)
        .unwrap();
    let tampered = written(&mut con, &keys);
    assert!(p.put_many(&[("a", b"4"), ("b", b"5")]).await.is_err());
    assert_eq!(written(&mut con, &keys), tampered);
    assert!(silent(&mut sub), "a rejected batch published something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_follows_batches_live_without_a_gap() {
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 100_000).await;
    let sub = spawn(sync_config(&redis, "hr"));
    wait_bootstrapped(&sub);

    // Another writer's changes land between the batches, so the versions
    // this publisher expects are often wrong and Redis must fix them.
    let other = publisher(&redis, "hr", 100_000).await;
    let mut changes = 0u64;
    for round in 0..5u64 {
        // Each round rewrites half of the previous round's ids, and repeats
        // some ids inside the batch itself.
        let items: Vec<(String, Vec<u8>)> = (0..700u64)
            .map(|i| {
                let id = format!("s{}", round * 350 + i % 650);
                let b = body(&id, round * 1000 + i);
                (id, b)
            })
            .collect();
        let refs: Vec<(&str, &[u8])> = items
            .iter()
            .map(|(i, b)| (i.as_str(), b.as_slice()))
            .collect();
        p.put_many(&refs).await.unwrap();
        changes += items.len() as u64;
        other.put(&format!("single{round}"), b"{}").await.unwrap();
        assert!(other
            .delete(&format!("s{}", round * 350))
            .await
            .unwrap()
            .is_some());
        changes += 2;
    }
    wait_converged(&redis, &sub, &keys, LIMIT);
    let c = &sub.status().counters;
    assert_eq!(sub.status().snapshot().last_version, changes);
    assert_eq!(c.gaps.load(Ordering::Relaxed), 0, "a batch left a gap");
    assert_eq!(c.catch_ups.load(Ordering::Relaxed), 0);
    assert_eq!(c.malformed_records.load(Ordering::Relaxed), 0);
    assert_eq!(c.records_applied.load(Ordering::Relaxed), changes);
}
