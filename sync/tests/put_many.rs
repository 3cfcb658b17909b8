//! `heavyread_put_many` (library version 3) against a real redis-server,
//! called directly: writers before `heavyread_put_batch` seeded with it and
//! the library keeps it, so its contract must hold. A batch is exactly that
//! many single puts in a row (versions, hash, log entries with their `ts`,
//! published records and their order) whatever versions its templates
//! carry, also when it spans several of the function's HSET calls, and a
//! rejected batch writes and publishes nothing. The publisher's batching,
//! which now goes through `heavyread_put_packed`, is tested in put_batch.rs.

mod common;

use common::*;
use heavyread_sync::record::{etag_of, put_template, Op, RecordRef};
use heavyread_sync::testing::RedisServer;
use heavyread_sync::Keys;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_writes_exactly_what_that_many_single_puts_write() {
    let redis = RedisServer::start();
    let (one, many) = (Keys::new("one").unwrap(), Keys::new("many").unwrap());
    publisher(&redis, "one", 1000).await;
    let mut con = redis.connection();
    let mut sub = subscribed(&redis, &[&one.channel, &many.channel]);

    // Repeated ids (each keeps its own log entry and message) and a
    // different writer timestamp per post, so a `ts` taken from the wrong
    // post would show; the batch's templates carry no, the right or a wrong
    // version: the function must write the same records.
    let SideBySide {
        ids,
        templates,
        sent,
        ..
    } = singles_beside(&mut con, &one, &many);
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
    let (pa, pb) = (on(&got, &one.channel), on(&got, &many.channel));
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
async fn a_long_batch_between_single_puts_logs_and_publishes_every_post() {
    let redis = RedisServer::start_with(false, &[]);
    let keys = Keys::new("hr").unwrap();
    publisher(&redis, "hr", 10_000).await;
    let mut con = redis.connection();
    let mut sub = subscribed(&redis, &[&keys.channel]);
    let put = |con: &mut redis::Connection, id: &str, ts: u64| -> u64 {
        let (t, _) = put_template(id, b"{}", ts).unwrap();
        fcall(
            &keys,
            "heavyread_put",
            10_000,
            &[id.as_bytes(), t.as_slice()],
        )
        .query(con)
        .unwrap()
    };

    assert_eq!(put(&mut con, "before", 1), 1);
    // More posts than one HSET of the function takes (1024 fields, 512 posts).
    let n = 1100;
    let items: Vec<(String, Vec<u8>, u64)> = (0..n)
        .map(|i| {
            let id = format!("b{i}");
            let b = body(&id, i as u64);
            (id, b, 7_000 + 3 * i as u64)
        })
        .collect();
    let templates: Vec<Vec<u8>> = items
        .iter()
        .map(|(id, b, ts)| put_template(id, b, *ts).unwrap().0)
        .collect();
    let args: Vec<&[u8]> = templates.iter().map(|t| t.as_slice()).collect();
    let last: u64 = fcall(&keys, "heavyread_put_many", 10_000, &args)
        .query(&mut con)
        .unwrap();
    assert_eq!(last, n as u64 + 1);
    let after = put(&mut con, "after", 2);
    assert_eq!(after, n as u64 + 2);

    let state = written(&mut con, &keys);
    assert_eq!(state.version, Some(n as u64 + 2));
    assert_eq!(state.log.len(), n + 2);
    for (k, (id, b, ts)) in items.iter().enumerate() {
        let v = k as u64 + 2;
        let r = RecordRef::decode(&state.posts[id.as_bytes()]).unwrap();
        assert_eq!(
            (r.op, r.version, r.id, r.body, r.etag, r.written_at_ns),
            (Op::Put, v, id.as_str(), b.as_slice(), etag_of(b), *ts)
        );
        let (entry, fields) = &state.log[v as usize - 1];
        assert_eq!(entry, &format!("{v}-1"));
        let want: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"op".to_vec(), b"put".to_vec()),
            (b"id".to_vec(), id.as_bytes().to_vec()),
            (b"ts".to_vec(), ts.to_be_bytes().to_vec()),
        ];
        assert_eq!(fields, &want, "log entry {entry}");
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
            .enumerate()
            .map(|(k, (id, _, _))| (k as u64 + 2, id.clone())),
    );
    want.push((after, "after".to_owned()));
    assert_eq!(order, want, "one message per post, in version order");
    for (_, m) in &got[1..=n] {
        let r = RecordRef::decode(m).unwrap();
        assert_eq!(m, &state.posts[r.id.as_bytes()], "published is stored");
    }
    assert!(silent(&mut sub));
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
    tamper_log(&mut con, &keys);
    let tampered = written(&mut con, &keys);
    let r: redis::RedisResult<u64> =
        fcall(&keys, "heavyread_put_many", 1000, &[a, b.as_slice()]).query(&mut con);
    assert!(r.is_err(), "a batch was logged below the log's last entry");
    assert_eq!(written(&mut con, &keys), tampered);
    assert!(silent(&mut sub), "a rejected batch published something");
}

/// `heavyread_put` and `heavyread_delete` trim the log with each XADD, and
/// `heavyread_put_many` once per call, to about the log's max length: it
/// never grows without bound, and keeps at least that many entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_writes_and_put_many_keep_the_log_near_its_max_length() {
    const MAXLEN: u64 = 100;
    let redis = RedisServer::start_with(false, &[]);
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", MAXLEN).await;
    let mut con = redis.connection();
    let xlen = |con: &mut redis::Connection| -> u64 {
        redis::cmd("XLEN").arg(&keys.log).query(con).unwrap()
    };
    for i in 0..1500u64 {
        p.put(&format!("t{}", i % 300), &body("t", i))
            .await
            .unwrap();
    }
    for i in 0..300u64 {
        assert!(p.delete(&format!("t{i}")).await.unwrap().is_some());
    }
    assert_eq!(written(&mut con, &keys).version, Some(1800));
    // MAXLEN ~ drops only whole stream nodes (up to 100 entries each).
    let n = xlen(&mut con);
    assert!(
        (MAXLEN..3 * MAXLEN).contains(&n),
        "{n} log entries after 1,800 single writes"
    );

    for call in 0..20u64 {
        let ids: Vec<String> = (0..50).map(|i| format!("m{call}-{i}")).collect();
        let stamps: Vec<u64> = (0..50).map(|i| call * 50 + i + 1).collect();
        let tpls = templates(&ids, &stamps);
        let args: Vec<&[u8]> = tpls.iter().map(Vec::as_slice).collect();
        let _: u64 = fcall(&keys, "heavyread_put_many", MAXLEN, &args)
            .query(&mut con)
            .unwrap();
    }
    assert_eq!(written(&mut con, &keys).version, Some(2800));
    let n = xlen(&mut con);
    assert!(
        (MAXLEN..3 * MAXLEN).contains(&n),
        "{n} log entries after 1,000 posts through put_many"
    );
}
