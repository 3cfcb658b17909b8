//! A bounded store against a real redis-server: 100 MB of posts behind a
//! 10 MB budget, every id served with the right bytes and ETag from memory
//! or a read-through fill, updates and deletes for resident and evicted ids,
//! and coalesced misses.

mod common;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::*;
use heavyread_sync::record::etag_of;
use heavyread_sync::store::{ENTRY_OVERHEAD, RING_SLOT_OVERHEAD};
use heavyread_sync::testing::RedisServer;
use heavyread_sync::{FillOutcome, Filler, Publisher, Store, Subscriber};

const LIMIT: Duration = Duration::from_secs(30);
const POSTS: usize = 25_000;
const BODY: usize = 4_000;
const BUDGET: u64 = 10_000_000;

/// Drives one future to completion on this thread.
fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let end = Instant::now() + LIMIT;
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(Instant::now() < end, "a fill never completed");
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

/// `(version, body, quoted etag)` for `id`, from memory or a fill.
fn read(store: &Store, filler: &Filler, id: &str) -> Option<(u64, Vec<u8>, Vec<u8>)> {
    {
        let g = store.guard();
        if let Some(e) = store.get(id, &g) {
            return Some((e.version(), e.body().to_vec(), e.etag().to_vec()));
        }
    }
    if filler.is_known_absent(id) {
        return None;
    }
    let outcome: FillOutcome = block_on(filler.request(id).expect("fill queued"));
    outcome
        .expect("fill answered")
        .map(|e| (e.version(), e.body().to_vec(), e.etag().to_vec()))
}

fn post_body(i: usize, round: u64) -> Vec<u8> {
    let mut b = format!(r#"{{"id":"p{i}","round":{round},"content":""#).into_bytes();
    b.resize(BODY - 2, b'a' + (i % 26) as u8);
    b.extend_from_slice(b"\"}");
    b
}

async fn seed(p: &Publisher) {
    let bodies: Vec<(String, Vec<u8>)> = (0..POSTS)
        .map(|i| (format!("p{i}"), post_body(i, 0)))
        .collect();
    for chunk in bodies.chunks(500) {
        let items: Vec<(&str, &[u8])> = chunk
            .iter()
            .map(|(id, b)| (id.as_str(), b.as_slice()))
            .collect();
        p.put_many(&items).await.expect("seed");
    }
}

fn bounded_subscriber(redis: &RedisServer) -> Subscriber {
    let (_store, writer) = Store::bounded(BUDGET);
    let sub = Subscriber::spawn(sync_config(redis, "hr"), writer).expect("spawn");
    wait_bootstrapped(&sub);
    sub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_of_100_mb_is_served_right_through_a_10_mb_budget() {
    let redis = RedisServer::start();
    let p = publisher(&redis, "hr", 1_000_000).await;
    seed(&p).await;
    let sub = bounded_subscriber(&redis);
    let store = Arc::clone(sub.store());
    let filler = sub.filler().expect("a bounded store has fills").clone();
    // The bootstrap filled the budget and stopped.
    assert!(store.bytes() <= BUDGET, "{} after bootstrap", store.bytes());
    assert!(store.len() < POSTS / 5, "{} entries resident", store.len());

    // Slack: the one entry being inserted when eviction runs.
    let slack = (BODY + 64) as u64 + 2 * 8 + ENTRY_OVERHEAD + RING_SLOT_OVERHEAD;
    let mut max_bytes = 0;
    // A skewed pass: ids below 500 are read often, the rest once.
    let order: Vec<usize> = (0..POSTS).flat_map(|i| [i, (i * 7) % 500]).collect();
    tokio::task::spawn_blocking(move || {
        for (n, &i) in order.iter().enumerate() {
            let id = format!("p{i}");
            let (version, body, etag) = read(&store, &filler, &id).expect("every id exists");
            let want = post_body(i, 0);
            assert_eq!(body, want, "{id}: wrong bytes");
            assert_eq!(etag, quoted(&etag_of(&want)).as_bytes(), "{id}: wrong etag");
            assert!(version > 0);
            max_bytes = max_bytes.max(store.bytes());
            if n % 5_000 == 0 {
                assert!(
                    store.bytes() <= BUDGET + slack,
                    "{} > budget + slack",
                    store.bytes()
                );
            }
        }
        assert!(max_bytes <= BUDGET + slack, "{max_bytes} > budget + slack");
        let c = filler.counters();
        assert!(c.fills.load(Ordering::Relaxed) > (POSTS / 2) as u64);
        assert_eq!(c.fill_errors.load(Ordering::Relaxed), 0);
        assert!(store.evictions() > 0);
        // The hot ids stayed: most of their reads were hits.
        let g = store.guard();
        let hot_resident = (0..500)
            .filter(|i| store.get(&format!("p{i}"), &g).is_some())
            .count();
        assert!(
            hot_resident > 250,
            "only {hot_resident} of 500 hot ids resident"
        );
    })
    .await
    .unwrap();
    drop(sub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_deletes_stay_right_for_resident_and_evicted_ids() {
    let redis = RedisServer::start();
    let p = publisher(&redis, "hr", 1_000_000).await;
    let (store, writer) = Store::bounded(2_000_000);
    let sub = Subscriber::spawn(sync_config(&redis, "hr"), writer).expect("spawn");
    wait_bootstrapped(&sub);
    let filler = sub.filler().unwrap().clone();
    for i in 0..1_000 {
        p.put(&format!("p{i}"), &post_body(i, 0)).await.unwrap();
    }
    let s2 = Arc::clone(&store);
    let f2 = filler.clone();
    // p0 is read until it is resident (its fill admitted); p999 is the newest
    // write, not resident: changes to ids not held are not admitted.
    tokio::task::spawn_blocking(move || {
        wait_for("p0 resident", LIMIT, || {
            read(&s2, &f2, "p0");
            s2.contains("p0")
        });
    })
    .await
    .unwrap();
    // Evict everything but a little: fill many others (p0 kept hot).
    let s2 = Arc::clone(&store);
    let f2 = filler.clone();
    tokio::task::spawn_blocking(move || {
        for i in 1..1_000 {
            read(&s2, &f2, "p0");
            read(&s2, &f2, &format!("p{i}"));
        }
        // The sync thread admits fills after their readers got them: wait
        // until it has admitted them all (each may evict), p0 still read.
        wait_for("fills admitted", LIMIT, || {
            read(&s2, &f2, "p0");
            f2.in_flight() == 0 && s2.contains("p0")
        });
    })
    .await
    .unwrap();
    assert!(store.contains("p0"), "the hot id was evicted");
    let evicted = (1..1_000)
        .map(|i| format!("p{i}"))
        .find(|id| !store.contains(id))
        .expect("some id evicted");

    // Updates: the resident entry is updated in place, the evicted id is
    // not admitted but a read fills the new version.
    let w0 = p.put("p0", &post_body(0, 1)).await.unwrap();
    let i_ev: usize = evicted[1..].parse().unwrap();
    let we = p.put(&evicted, &post_body(i_ev, 1)).await.unwrap();
    wait_for("both changes seen", LIMIT, || {
        sub.status().snapshot().last_version >= we.version
    });
    let (s2, f2, ev2) = (Arc::clone(&store), filler.clone(), evicted.clone());
    let st = Arc::clone(sub.status());
    tokio::task::spawn_blocking(move || {
        let g = s2.guard();
        let p0 = s2.get("p0", &g).map(|e| e.version());
        assert_eq!(
            p0,
            Some(w0.version),
            "the resident p0 was not updated: {:?}, {} entries, {} evictions",
            st.snapshot(),
            s2.len(),
            s2.evictions()
        );
        drop(g);
        assert!(!s2.contains(&ev2), "a change to an evicted id was admitted");
        let (v, body, _) = read(&s2, &f2, &ev2).unwrap();
        assert_eq!((v, body), (we.version, post_body(i_ev, 1)));
    })
    .await
    .unwrap();

    // Deletes always apply; a deleted id reads as absent, is remembered as
    // absent, and comes back when it is created again.
    let d0 = p.delete("p0").await.unwrap().unwrap();
    let de = p.delete(&evicted).await.unwrap().unwrap();
    wait_for("deletes seen", LIMIT, || {
        sub.status().snapshot().last_version >= d0.max(de)
    });
    let (s2, f2, ev2) = (Arc::clone(&store), filler.clone(), evicted.clone());
    tokio::task::spawn_blocking(move || {
        assert!(!s2.contains("p0"));
        assert!(read(&s2, &f2, "p0").is_none());
        assert!(read(&s2, &f2, &ev2).is_none());
        wait_for("absence remembered", LIMIT, || f2.is_known_absent(&ev2));
    })
    .await
    .unwrap();
    let back = p.put(&evicted, b"{\"back\":true}").await.unwrap();
    wait_for("re-creation seen", LIMIT, || {
        sub.status().snapshot().last_version >= back.version
    });
    let (s2, f2) = (Arc::clone(&store), filler.clone());
    tokio::task::spawn_blocking(move || {
        assert!(
            !f2.is_known_absent(&evicted),
            "a created id stays known absent"
        );
        let (v, body, _) = read(&s2, &f2, &evicted).unwrap();
        assert_eq!((v, &body[..]), (back.version, &b"{\"back\":true}"[..]));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_for_one_id_make_one_redis_read() {
    let redis = RedisServer::start();
    let p = publisher(&redis, "hr", 1_000_000).await;
    let (store, writer) = Store::bounded(2_000_000);
    let sub = Subscriber::spawn(sync_config(&redis, "hr"), writer).expect("spawn");
    wait_bootstrapped(&sub);
    // Written after the bootstrap: not resident.
    let w = p.put("one", b"{\"one\":1}").await.unwrap();
    wait_for("write seen", LIMIT, || {
        sub.status().snapshot().last_version >= w.version
    });
    assert!(!store.contains("one"));
    let filler = sub.filler().unwrap().clone();
    let reads0 = filler.counters().redis_reads.load(Ordering::Relaxed);
    // Redis holds every client for a moment, so all misses arrive while
    // the first read is in flight.
    let mut con = redis.connection();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(400)
        .arg("ALL")
        .query(&mut con)
        .unwrap();
    const N: usize = 32;
    let barrier = Arc::new(Barrier::new(N));
    let threads: Vec<_> = (0..N)
        .map(|_| {
            let (f, s, b) = (filler.clone(), Arc::clone(&store), Arc::clone(&barrier));
            std::thread::spawn(move || {
                b.wait();
                read(&s, &f, "one")
            })
        })
        .collect();
    for t in threads {
        let (v, body, _) = t.join().unwrap().expect("found");
        assert_eq!((v, &body[..]), (w.version, &b"{\"one\":1}"[..]));
    }
    let c = filler.counters();
    assert_eq!(
        c.redis_reads.load(Ordering::Relaxed) - reads0,
        1,
        "{N} concurrent misses made more than one Redis read"
    );
    assert_eq!(c.coalesced.load(Ordering::Relaxed), (N - 1) as u64);
    drop(sub);
}

#[test]
fn a_fill_answers_an_error_when_redis_is_down_and_recovers() {
    let mut redis = RedisServer::start();
    let (store, writer) = Store::bounded(2_000_000);
    let mut cfg = sync_config(&redis, "hr");
    cfg.command_timeout = Duration::from_millis(300);
    let sub = Subscriber::spawn(cfg, writer).expect("spawn");
    wait_bootstrapped(&sub);
    let filler = sub.filler().unwrap().clone();
    redis.kill();
    let outcome = block_on(filler.request("x").unwrap());
    assert!(
        outcome.is_err(),
        "a fill with Redis down must fail: {outcome:?}"
    );
    assert!(filler.counters().fill_errors.load(Ordering::Relaxed) >= 1);
    redis.start_again();
    {
        let mut con = redis.connection();
        let _: () = redis::cmd("HSET")
            .arg("{hr}:posts")
            .arg("junk")
            .arg("not a record")
            .query(&mut con)
            .unwrap();
    }
    // Garbage in the hash is an error answer, not a panic or a stored entry.
    wait_for("fills work again", LIMIT, || {
        matches!(block_on(filler.request("x").unwrap()), Ok(None))
    });
    let outcome = block_on(filler.request("junk").unwrap());
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(!store.contains("junk"));
}
