//! `heavyread_put_batch`, `heavyread_put_packed` (the same with its
//! templates back to back in one argument) and the publisher's batching
//! against a real redis-server: a batch of either stores exactly what that many single puts store
//! (versions, hash) whatever versions its templates carry, but logs one
//! entry `<last>-<n>` (the ids joined by spaces, the writer timestamps back
//! to back) and publishes one message (the records back to back); a batch of
//! one writes exactly what a put writes; the publisher cuts its calls by
//! posts and by bytes, one log entry and one message per call; a rejected
//! batch (a malformed template, a tampered log) writes and publishes
//! nothing; the log keeps about the last max-length versions; and a
//! subscriber follows batches live without a gap.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use heavyread_sync::publisher::{MAX_BATCH_BYTES, MAX_BATCH_POSTS};
use heavyread_sync::record::{etag_of, put_template, records, Op, RecordRef, MAX_BODY_LEN};
use heavyread_sync::testing::RedisServer;
use heavyread_sync::Keys;

const LIMIT: Duration = Duration::from_secs(30);

/// The two batch functions; they write the same for the same templates.
const BATCH_FUNCTIONS: [&str; 2] = ["heavyread_put_batch", "heavyread_put_packed"];

/// A call of one of [`BATCH_FUNCTIONS`] with `templates`: one argument each
/// for `heavyread_put_batch`, all of them back to back in one argument for
/// `heavyread_put_packed`.
fn batch_call(keys: &Keys, function: &str, maxlen: u64, templates: &[&[u8]]) -> redis::Cmd {
    if function == "heavyread_put_packed" {
        fcall(keys, function, maxlen, &[&templates.concat()])
    } else {
        fcall(keys, function, maxlen, templates)
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

fn reset_stats(con: &mut redis::Connection) {
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(con).unwrap();
}

/// The fields of the log entry of n puts: `op put`, the ids joined by
/// single spaces, the writer timestamps back to back (8 bytes big-endian each).
fn put_fields<S: AsRef<str>>(ids: &[S], ts: &[u64]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
    vec![
        (b"op".to_vec(), b"put".to_vec()),
        (b"id".to_vec(), ids.join(" ").into_bytes()),
        (
            b"ts".to_vec(),
            ts.iter().flat_map(|t| t.to_be_bytes()).collect(),
        ),
    ]
}

/// The records of a batch message, each decoded.
fn decoded(message: &[u8]) -> Vec<RecordRef<'_>> {
    records(message)
        .collect::<Result<_, _>>()
        .expect("every record of a batch message decodes")
}

/// Checks that `ids` (distinct, in version order from version 1, the whole
/// of what `state` holds) went to Redis in calls of `sizes` posts each: one
/// log entry `<last>-<n>` per call, with the call's ids and timestamps, and
/// one message per call, its posts' stored records back to back.
fn assert_logged_per_call(state: &Written, published: &[Vec<u8>], ids: &[&str], sizes: &[usize]) {
    assert_eq!(sizes.iter().sum::<usize>(), ids.len());
    let stored: Vec<&Vec<u8>> = ids.iter().map(|id| &state.posts[id.as_bytes()]).collect();
    for (k, rec) in stored.iter().enumerate() {
        let r = RecordRef::decode(rec).unwrap();
        assert_eq!((r.version, r.id), (k as u64 + 1, ids[k]));
    }
    assert_eq!(state.log.len(), sizes.len(), "one log entry per call");
    assert_eq!(published.len(), sizes.len(), "one message per call");
    let mut start = 0;
    for ((size, (entry, fields)), message) in sizes.iter().zip(&state.log).zip(published) {
        let end = start + size;
        assert_eq!(entry, &format!("{end}-{size}"));
        let ts: Vec<u64> = stored[start..end]
            .iter()
            .map(|r| RecordRef::decode(r).unwrap().written_at_ns)
            .collect();
        assert_eq!(fields, &put_fields(&ids[start..end], &ts), "entry {entry}");
        let want: Vec<u8> = stored[start..end]
            .iter()
            .flat_map(|r| r.iter().copied())
            .collect();
        assert!(
            message == &want,
            "the message of entry {entry} is not its stored records back to back"
        );
        start = end;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stores_what_single_puts_store_with_one_log_entry_and_one_message() {
    batch_stores_what_single_puts_store("heavyread_put_batch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packed_batch_stores_what_single_puts_store_with_one_log_entry_and_one_message() {
    batch_stores_what_single_puts_store("heavyread_put_packed").await;
}

async fn batch_stores_what_single_puts_store(function: &str) {
    let redis = RedisServer::start();
    let (one, batch) = (Keys::new("one").unwrap(), Keys::new("batch").unwrap());
    publisher(&redis, "one", 1000).await;
    let mut con = redis.connection();
    let mut sub = subscribed(&redis, &[&one.channel, &batch.channel]);

    // Repeated ids (a later one wins in the hash, each keeps its place in
    // the log entry and the message) and a different writer timestamp per
    // post, so a `ts` taken from the wrong post would show; the batch's
    // templates carry no, the right or a wrong version: the function must
    // store the same records.
    let SideBySide {
        ids, stamps, sent, ..
    } = singles_beside(&mut con, &one, &batch);
    let args: Vec<&[u8]> = sent.iter().map(|t| t.as_slice()).collect();
    let last: u64 = batch_call(&batch, function, 1000, &args)
        .query(&mut con)
        .unwrap();
    assert_eq!(last, 41, "the batch answers its last version");

    let (a, b) = (written(&mut con, &one), written(&mut con, &batch));
    assert_eq!(b.version, Some(41));
    assert_eq!(b.version, a.version);
    assert!(
        b.posts == a.posts,
        "batch and single puts stored different posts"
    );
    assert_eq!(a.log.len(), 41);
    assert_eq!(
        b.log,
        vec![
            a.log[0].clone(),
            ("41-40".to_owned(), put_fields(&ids, &stamps)),
        ],
        "the first put's entry, then one entry for the whole batch"
    );
    let epoch: Option<String> = redis::cmd("GET").arg(&batch.epoch).query(&mut con).unwrap();
    assert!(epoch.is_some());

    // Published: the first put's record, then one message holding the
    // records the single puts published, back to back in version order.
    let got = messages(&mut sub, 41 + 2);
    let (pa, pb) = (on(&got, &one.channel), on(&got, &batch.channel));
    assert_eq!((pa.len(), pb.len()), (41, 2));
    assert_eq!(pb[0], pa[0]);
    assert!(
        pb[1] == pa[1..].concat(),
        "the batch message is not the single puts' records back to back"
    );
    let recs = decoded(&pb[1]);
    assert_eq!(
        recs.iter().map(|r| r.version).collect::<Vec<_>>(),
        (2..=41).collect::<Vec<u64>>()
    );
    for (r, id) in recs.iter().zip(&ids) {
        assert_eq!((r.op, r.id), (Op::Put, id.as_str()));
    }
    assert!(silent(&mut sub));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_one_writes_what_put_writes() {
    batch_of_one_writes_what_put_writes("heavyread_put_batch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packed_batch_of_one_writes_what_put_writes() {
    batch_of_one_writes_what_put_writes("heavyread_put_packed").await;
}

async fn batch_of_one_writes_what_put_writes(function: &str) {
    let redis = RedisServer::start();
    let (put, batch) = (Keys::new("put").unwrap(), Keys::new("batch").unwrap());
    publisher(&redis, "put", 1000).await;
    let mut con = redis.connection();
    let mut sub = subscribed(&redis, &[&put.channel, &batch.channel]);

    // The batch's template without a version, with a wrong one and with the
    // right one; the third replaces the first's id.
    let cases = [("x", 0u64, 11u64), ("y-1", 7, 12), ("x", 3, 13)];
    for (k, &(id, stamp, ts)) in cases.iter().enumerate() {
        let (mut t, _) = put_template(id, &body(id, k as u64), ts).unwrap();
        let v: u64 = fcall(&put, "heavyread_put", 1000, &[id.as_bytes(), t.as_slice()])
            .query(&mut con)
            .unwrap();
        t[2..10].copy_from_slice(&stamp.to_be_bytes());
        let w: u64 = batch_call(&batch, function, 1000, &[t.as_slice()])
            .query(&mut con)
            .unwrap();
        assert_eq!((v, w), (k as u64 + 1, k as u64 + 1));
    }
    let (a, b) = (written(&mut con, &put), written(&mut con, &batch));
    assert_eq!(a, b, "a batch of one and a put wrote different data");
    let entries: Vec<&str> = b.log.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(entries, ["1-1", "2-1", "3-1"]);
    for ((_, fields), &(id, _, ts)) in b.log.iter().zip(&cases) {
        assert_eq!(fields, &put_fields(&[id], &[ts]));
    }

    let got = messages(&mut sub, 2 * cases.len());
    let (pa, pb) = (on(&got, &put.channel), on(&got, &batch.channel));
    assert_eq!(pa.len(), cases.len());
    assert_eq!(
        pa, pb,
        "a batch of one and a put published different messages"
    );
    for (k, m) in pb.iter().enumerate() {
        assert_eq!(RecordRef::decode(m).unwrap().version, k as u64 + 1);
    }
    assert!(silent(&mut sub));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_longer_than_one_hset_call_stores_every_post() {
    let redis = RedisServer::start_with(false, &[]);
    let (many, batch, packed) = (
        Keys::new("many").unwrap(),
        Keys::new("batch").unwrap(),
        Keys::new("packed").unwrap(),
    );
    publisher(&redis, "many", 10_000).await;
    let mut con = redis.connection();
    let mut sub = subscribed(&redis, &[&many.channel, &batch.channel, &packed.channel]);

    // The function sets 1024 fields (512 posts) per HSET: 1100 posts take
    // three, and ids repeat across them, so the last post of an id must win
    // over one in an earlier HSET.
    let n = 1100;
    let ids: Vec<String> = (0..n).map(|i| format!("p{}", i % 700)).collect();
    let stamps: Vec<u64> = (0..n as u64).map(|i| 5_000 + 3 * i).collect();
    let templates = templates(&ids, &stamps);
    let args: Vec<&[u8]> = templates.iter().map(|t| t.as_slice()).collect();
    // put_many is that many single puts (see put_many.rs).
    let last: u64 = fcall(&many, "heavyread_put_many", 10_000, &args)
        .query(&mut con)
        .unwrap();
    assert_eq!(last, n as u64);
    for (keys, function) in [&batch, &packed].into_iter().zip(BATCH_FUNCTIONS) {
        let last: u64 = batch_call(keys, function, 10_000, &args)
            .query(&mut con)
            .unwrap();
        assert_eq!(last, n as u64, "{function}");
    }
    let a = written(&mut con, &many);
    let got = messages(&mut sub, n + 2);
    let pa = on(&got, &many.channel);
    assert_eq!(pa.len(), n);
    for (keys, function) in [&batch, &packed].into_iter().zip(BATCH_FUNCTIONS) {
        let b = written(&mut con, keys);
        assert_eq!(b.version, Some(n as u64));
        assert_eq!(b.posts.len(), 700);
        assert!(
            b.posts == a.posts,
            "{function} and single puts stored different posts"
        );
        for (id, rec) in &b.posts {
            let last = ids
                .iter()
                .rposition(|i| i.as_bytes() == id.as_slice())
                .unwrap();
            assert_eq!(RecordRef::decode(rec).unwrap().version, last as u64 + 1);
        }
        assert_eq!(b.log, vec![(format!("{n}-{n}"), put_fields(&ids, &stamps))]);
        let pb = on(&got, &keys.channel);
        assert_eq!(pb.len(), 1, "{function}");
        assert!(pb[0] == pa.concat(), "the message of {function} differs");
    }
    assert!(silent(&mut sub));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_batches_are_cut_by_posts_and_bytes_and_logged_per_call() {
    let redis = RedisServer::start_with(false, &[]);
    let (keys, bkeys) = (Keys::new("hr").unwrap(), Keys::new("bytes").unwrap());
    let p = publisher(&redis, "hr", 10_000).await;
    let mut con = redis.connection();
    let mut sub = subscribed(&redis, &[&keys.channel, &bkeys.channel]);
    reset_stats(&mut con);

    // By posts: two full calls and a partial one, between two single puts.
    assert_eq!(p.put("before", b"{}").await.unwrap().version, 1);
    let m = MAX_BATCH_POSTS;
    let n = 2 * m + 88;
    let items = posts(0..n as u64, |i| format!("b{i}"));
    let w = put_items(&p, &items).await;
    let after = p.put("after", b"{}").await.unwrap().version;
    assert_eq!(after, n as u64 + 2);
    assert_eq!(fcalls(&mut con), 2 + 3, "two single puts and three batches");
    let versions: Vec<u64> = w.iter().map(|w| w.version).collect();
    assert_eq!(versions, (2..=n as u64 + 1).collect::<Vec<_>>());

    let state = written(&mut con, &keys);
    assert_eq!(state.version, Some(n as u64 + 2));
    let entries: Vec<&str> = state.log.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        entries,
        [
            "1-1".to_owned(),
            format!("{}-{m}", m + 1),
            format!("{}-{m}", 2 * m + 1),
            format!("{}-88", n + 1),
            format!("{}-1", n + 2),
        ]
    );
    for ((id, b), w) in items.iter().zip(&w) {
        assert_eq!(w.etag, etag_of(b));
        let r = RecordRef::decode(&state.posts[id.as_bytes()]).unwrap();
        assert_eq!(
            (r.op, r.version, r.id, r.body, r.etag),
            (Op::Put, w.version, id.as_str(), b.as_slice(), w.etag)
        );
    }
    let mut ids = vec!["before"];
    ids.extend(items.iter().map(|(id, _)| id.as_str()));
    ids.push("after");
    let got = messages(&mut sub, 5);
    assert_eq!(on(&got, &keys.channel).len(), 5);
    assert_logged_per_call(&state, &on(&got, &keys.channel), &ids, &[1, m, m, 88, 1]);

    // By bytes: two of these fit in a call, three do not; a post larger
    // than a call's budget goes alone.
    reset_stats(&mut con);
    let p = publisher(&redis, "bytes", 1000).await;
    let big = MAX_BATCH_BYTES * 2 / 5;
    let mut items: Vec<(String, Vec<u8>)> = (0..7)
        .map(|i| (format!("big{i}"), vec![b'a' + i as u8; big]))
        .collect();
    items.push(("huge".into(), vec![b'z'; MAX_BATCH_BYTES + 1]));
    items.push(("small".into(), b"{}".to_vec()));
    let w = put_items(&p, &items).await;
    assert_eq!(
        w.iter().map(|w| w.version).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    // [big0 big1] [big2 big3] [big4 big5] [big6] [huge] [small]
    assert_eq!(fcalls(&mut con), 6);
    let state = written(&mut con, &bkeys);
    for ((id, b), w) in items.iter().zip(&w) {
        let r = RecordRef::decode(&state.posts[id.as_bytes()]).unwrap();
        assert_eq!((r.version, r.body), (w.version, b.as_slice()));
    }
    let ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
    let got = messages(&mut sub, 6);
    assert_eq!(on(&got, &bkeys.channel).len(), 6);
    assert_logged_per_call(&state, &on(&got, &bkeys.channel), &ids, &[2, 2, 2, 1, 1, 1]);
    assert!(silent(&mut sub));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_batch_writes_and_publishes_nothing() {
    rejected_batch_writes_and_publishes_nothing("heavyread_put_batch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_packed_batch_writes_and_publishes_nothing() {
    rejected_batch_writes_and_publishes_nothing("heavyread_put_packed").await;
}

async fn rejected_batch_writes_and_publishes_nothing(function: &str) {
    let redis = RedisServer::start();
    let keys = Keys::new("t").unwrap();
    let p = publisher(&redis, "t", 1000).await;
    p.put("a", b"1").await.unwrap();
    let mut con = redis.connection();
    let mut sub = subscribed(&redis, &[&keys.channel]);

    let (a, _) = put_template("a", b"2", 9).unwrap();
    // The edges of what is accepted: an id of the longest length, and one
    // of every character of the id alphabet.
    let (longest, _) = put_template(&"L".repeat(128), b"{}", 9).unwrap();
    let (alphabet, _) = put_template("AZaz09._~-", b"{}", 9).unwrap();
    let last: u64 = batch_call(
        &keys,
        function,
        1000,
        &[a.as_slice(), longest.as_slice(), alphabet.as_slice()],
    )
    .query(&mut con)
    .unwrap();
    assert_eq!(last, 4);
    let before = written(&mut con, &keys);
    let accepted = messages(&mut sub, 1);
    let recs = decoded(&accepted[0].1);
    assert_eq!(recs.len(), 3);
    for (k, r) in recs.iter().enumerate() {
        assert_eq!(r.version, k as u64 + 2);
        assert_eq!(before.posts[r.id.as_bytes()], r.encode());
    }

    let (b, _) = put_template("bb", b"3", 9).unwrap();
    let del = heavyread_sync::record::delete_template("a", 9).unwrap();
    let mut no_id = a.clone();
    no_id[34..36].copy_from_slice(&0u16.to_be_bytes());
    let cut = &b[..37];
    let mut format2 = a.clone();
    format2[0] = 2;
    // The body length field one more and one less than the bytes present.
    let body_len = |t: &[u8], delta: i64| {
        let at = 36 + usize::from(u16::from_be_bytes([t[34], t[35]]));
        let len = u32::from_be_bytes(t[at..at + 4].try_into().unwrap());
        let mut t = t.to_vec();
        let len = u32::try_from(i64::from(len) + delta).unwrap();
        t[at..at + 4].copy_from_slice(&len.to_be_bytes());
        t
    };
    let (long_body, short_body) = (body_len(&b, 1), body_len(&b, -1));
    // Ids with a byte outside the alphabet, everything else in order.
    let bad_char = |c: u8| {
        let (mut t, _) = put_template("sp-ace", b"{}", 9).unwrap();
        t[36 + 2] = c;
        t
    };
    let (space, slash, high) = (bad_char(b' '), bad_char(b'/'), bad_char(0xe9));
    // An id one longer than the longest, its lengths consistent.
    let mut too_long = longest.clone();
    too_long.insert(36, b'L');
    too_long[34..36].copy_from_slice(&129u16.to_be_bytes());
    assert_eq!(too_long.len(), 36 + 129 + 4 + 2);
    // A body one byte over what readers decode, its lengths consistent.
    let (mut huge, _) = put_template("huge", b"", 9).unwrap();
    let at = huge.len() - 4;
    huge[at..].copy_from_slice(&u32::try_from(MAX_BODY_LEN + 1).unwrap().to_be_bytes());
    huge.resize(huge.len() + MAX_BODY_LEN + 1, b'x');
    let huge = &huge[..];
    let (a, del, no_id, format2) = (&a[..], &del[..], &no_id[..], &format2[..]);
    let (long_body, short_body) = (&long_body[..], &short_body[..]);
    let (space, slash, high, too_long) = (&space[..], &slash[..], &high[..], &too_long[..]);

    let bad_batches: Vec<(&str, u64, Vec<&[u8]>)> = vec![
        ("cut inside its id", 1000, vec![a, cut]),
        ("cut inside its longest id", 1000, vec![a, &longest[..100]]),
        ("a delete template", 1000, vec![a, del]),
        ("an empty id", 1000, vec![a, no_id]),
        ("no post at all", 1000, vec![]),
        ("garbage", 1000, vec![a, b"garbage"]),
        ("format byte 2", 1000, vec![a, format2]),
        ("a log length of zero", 0, vec![a]),
        ("a body length one too large", 1000, vec![a, long_body]),
        ("a body length one too small", 1000, vec![a, short_body]),
        ("a space in an id", 1000, vec![a, space]),
        ("a slash in an id", 1000, vec![a, slash]),
        ("a non-ASCII byte in an id", 1000, vec![a, high]),
        ("an id of 129 bytes", 1000, vec![a, too_long]),
        ("a body over 16 MiB", 1000, vec![a, huge]),
        ("a stray byte at the end", 1000, vec![a, b"\x01"]),
    ];
    for (what, maxlen, args) in &bad_batches {
        let r: redis::RedisResult<u64> = batch_call(&keys, function, *maxlen, args).query(&mut con);
        assert!(r.is_err(), "{what} was accepted by {function}");
        assert_eq!(written(&mut con, &keys), before, "{what}");
    }
    if function == "heavyread_put_packed" {
        // Templates go in one argument: two whole ones as two are refused.
        let r: redis::RedisResult<u64> = fcall(&keys, function, 1000, &[a, a]).query(&mut con);
        assert!(r.is_err(), "two packed arguments were accepted");
        assert_eq!(written(&mut con, &keys), before);
    }
    // A log length that is not a whole number.
    let r: redis::RedisResult<u64> = redis::cmd("FCALL")
        .arg(function)
        .arg(4)
        .arg(keys.function_keys().to_vec())
        .arg(&keys.channel)
        .arg("1.5")
        .arg(a)
        .query(&mut con);
    assert!(r.is_err(), "a log length of 1.5 was accepted");
    assert_eq!(written(&mut con, &keys), before);

    // A log tampered with so that the batch's entry id is too small: the
    // XADD fails before the version, the hash or the channel see anything.
    tamper_log(&mut con, &keys);
    let tampered = written(&mut con, &keys);
    let r: redis::RedisResult<u64> =
        batch_call(&keys, function, 1000, &[a, b.as_slice()]).query(&mut con);
    assert!(r.is_err(), "{function} wrote past a tampered log");
    assert_eq!(written(&mut con, &keys), tampered);
    assert!(p.put_many(&[("a", b"4"), ("b", b"5")]).await.is_err());
    assert_eq!(written(&mut con, &keys), tampered);
    assert!(silent(&mut sub), "a rejected batch published something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_trimmed_to_about_the_last_maxlen_versions() {
    const MAXLEN: u64 = 1000;
    let redis = RedisServer::start_with(false, &[]);
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", MAXLEN).await;
    let mut con = redis.connection();
    let (batches, per) = (30u64, 200u64);
    for b in 0..batches {
        let items: Vec<(String, Vec<u8>)> = (0..per)
            .map(|i| (format!("t{}", (b * per + i) % 1500), b"{}".to_vec()))
            .collect();
        put_items(&p, &items).await;
    }
    let last = batches * per;
    let state = written(&mut con, &keys);
    assert_eq!(state.version, Some(last));

    // (last version, versions) per entry: contiguous up to the last version.
    let spans: Vec<(u64, u64)> = state
        .log
        .iter()
        .map(|(e, _)| {
            let (v, n) = e.split_once('-').unwrap();
            (v.parse().unwrap(), n.parse().unwrap())
        })
        .collect();
    assert_eq!(spans.last(), Some(&(last, per)));
    for w in spans.windows(2) {
        assert_eq!(w[1].0 - w[1].1, w[0].0, "entries {w:?} leave a hole");
    }
    let (v, n) = spans[0];
    let covered = last - (v - n + 1) + 1;
    // MINID ~ drops only whole stream nodes (up to 100 entries or 4 KiB; an
    // entry of 200 posts here is about 2.5 KiB), so somewhat more than
    // MAXLEN versions may stay, but never fewer, and far from all of them.
    assert!(covered >= MAXLEN, "the log keeps only {covered} versions");
    assert!(
        covered < 3 * MAXLEN,
        "the log still holds {covered} of {last} versions"
    );
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
        let from = round * 1000;
        let items = posts(from..from + 700, |i| {
            format!("s{}", round * 350 + (i - from) % 650)
        });
        put_items(&p, &items).await;
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
