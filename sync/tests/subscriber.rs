//! The sync thread against a real redis-server: ordering, bootstrap under
//! writes, gaps, trimmed logs, Redis restarts and data loss, outages,
//! random fault interleavings and garbage.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use heavyread_sync::record::etag_of;
use heavyread_sync::testing::RedisServer;
use heavyread_sync::Keys;
use proptest::prelude::*;

const LIMIT: Duration = Duration::from_secs(30);

/// Test settings with a reconnect delay long enough to write (and trim)
/// while the subscriber is away.
fn slow_to_return(redis: &RedisServer) -> heavyread_sync::SyncConfig {
    let mut cfg = sync_config(redis, "hr");
    cfg.backoff_min = Duration::from_millis(1500);
    cfg.backoff_max = Duration::from_millis(1500);
    cfg
}

/// Cuts the subscription and waits until the subscriber noticed.
fn cut_subscription(con: &mut redis::Connection, sub: &heavyread_sync::Subscriber) {
    assert!(kill_pubsub(con) >= 1);
    wait_for("disconnect noticed", LIMIT, || {
        !sub.status().snapshot().connected
    });
}

fn counter(
    sub: &heavyread_sync::Subscriber,
    f: impl Fn(&heavyread_sync::status::Counters) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    f(&sub.status().counters).load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_and_deletes_arrive_in_version_order_with_exact_bytes() {
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 1000).await;
    let sub = spawn(sync_config(&redis, "hr"));
    wait_bootstrapped(&sub);

    let a1 = br#"{"id":"a","title":"first","content":"x","author":"me"}"#;
    let a2 = br#"{"id":"a","title":"second","content":"y","author":"me"}"#;
    let b1 = br#"{"id":"b","title":"bee","content":"z","author":"you"}"#;
    assert_eq!(p.put("a", a1).await.unwrap().version, 1);
    assert_eq!(p.put("b", b1).await.unwrap().version, 2);
    let w = p.put("a", a2).await.unwrap();
    assert_eq!(w.version, 3);
    assert_eq!(w.etag, etag_of(a2));
    assert_eq!(p.delete("b").await.unwrap(), Some(4));
    assert_eq!(
        p.delete("b").await.unwrap(),
        None,
        "deleting a missing id writes nothing"
    );

    wait_for("version 4 applied", LIMIT, || {
        sub.status().snapshot().last_version == 4
    });
    let store = sub.store();
    let g = store.guard();
    let a = store.get("a", &g).expect("a present");
    assert_eq!(a.body(), a2);
    assert_eq!(a.version(), 3);
    assert_eq!(a.etag(), quoted(&etag_of(a2)).as_bytes());
    assert!(store.get("b", &g).is_none());
    // Every change came live, in order: no gap, no catch-up, one bootstrap.
    assert_eq!(counter(&sub, |c| &c.records_applied), 4);
    assert_eq!(counter(&sub, |c| &c.gaps), 0);
    assert_eq!(counter(&sub, |c| &c.catch_ups), 0);
    assert_eq!(counter(&sub, |c| &c.full_resyncs), 1);
    assert!(sub.status().propagation_count() >= 4);
    wait_converged(&redis, &sub, &keys, LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_of_100k_entries_under_writes_ends_equal_to_redis() {
    let redis = RedisServer::start_with(false, &[]);
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 1_000_000).await;
    let ids: Vec<String> = (0..100_000).map(|i| format!("post-{i}")).collect();
    for chunk in ids.chunks(1000).enumerate() {
        let bodies: Vec<Vec<u8>> = chunk
            .1
            .iter()
            .enumerate()
            .map(|(j, id)| body(id, (chunk.0 * 1000 + j) as u64))
            .collect();
        let items: Vec<(&str, &[u8])> = chunk
            .1
            .iter()
            .map(|s| s.as_str())
            .zip(bodies.iter().map(|b| b.as_slice()))
            .collect();
        p.put_many(&items).await.unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let p = p.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("post-{}", (n * 7919) % 120_000);
                if n % 10 == 3 {
                    p.delete(&id).await.unwrap();
                } else {
                    p.put(&id, &body(&id, n + 1_000_000)).await.unwrap();
                }
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let sub = spawn(sync_config(&redis, "hr"));
    wait_bootstrapped(&sub);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 0, "writes ran during the bootstrap");
    wait_converged(&redis, &sub, &keys, LIMIT);
    assert!(sub.store().len() >= 90_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_subscription_converges_through_the_log_without_a_resync() {
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 100_000).await;
    let sub = spawn(sync_config(&redis, "hr"));
    wait_bootstrapped(&sub);

    let writer = {
        let p = p.clone();
        tokio::spawn(async move {
            for i in 0..1000u64 {
                let id = format!("k{}", i % 150);
                p.put(&id, &body(&id, i)).await.unwrap();
            }
        })
    };
    let mut con = redis.connection();
    let mut killed = 0;
    while !writer.is_finished() {
        killed += kill_pubsub(&mut con);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    writer.await.unwrap();
    assert!(killed > 0, "the subscription was killed at least once");
    wait_converged(&redis, &sub, &keys, LIMIT);
    assert_eq!(counter(&sub, |c| &c.full_resyncs), 1, "only the bootstrap");
    assert!(counter(&sub, |c| &c.catch_ups) >= 1);
    assert!(counter(&sub, |c| &c.reconnects) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_missed_while_away_are_caught_up_from_their_log_entries() {
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 100_000).await;
    let mut cfg = slow_to_return(&redis);
    // Catch-up fetches fewer records per HMGET than a batch entry holds; it
    // resumes at the last version of a batch entry, whose fingerprint it
    // checks first.
    cfg.catch_up_batch = 100;
    let sub = spawn(cfg);
    wait_bootstrapped(&sub);
    let batch = |from: u64, n: u64| posts(from..from + n, |i| format!("b{}", i % 500));
    // Live first: the reader's last version is the end of a batch entry.
    put_items(&p, &batch(0, 300)).await;
    wait_converged(&redis, &sub, &keys, LIMIT);
    assert_eq!(counter(&sub, |c| &c.catch_ups), 0);

    let mut con = redis.connection();
    cut_subscription(&mut con, &sub);
    put_items(&p, &batch(300, 700)).await;
    p.put("single", b"{}").await.unwrap();
    assert!(p.delete("b400").await.unwrap().is_some());
    put_items(&p, &batch(1000, 300)).await;
    let entries: u64 = redis::cmd("XLEN").arg(&keys.log).query(&mut con).unwrap();
    assert!(
        entries < 20,
        "{entries} log entries: the batches were not logged per call"
    );

    wait_converged(&redis, &sub, &keys, LIMIT);
    assert_eq!(sub.status().snapshot().last_version, 1302);
    assert_eq!(counter(&sub, |c| &c.full_resyncs), 1, "only the bootstrap");
    assert!(counter(&sub, |c| &c.catch_ups) >= 1);
    assert_eq!(counter(&sub, |c| &c.malformed_records), 0);
    let g = sub.store().guard();
    assert!(
        sub.store().get("b400", &g).is_none(),
        "the delete missed while away was applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_bound_of_one_message_still_follows_every_change() {
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 100_000).await;
    let mut cfg = sync_config(&redis, "hr");
    // Every message waits until the one before it was taken by the applier.
    cfg.channel_bytes = 1;
    let sub = spawn(cfg);
    wait_bootstrapped(&sub);
    let items = posts(0..600, |i| format!("g{}", i % 250));
    for _ in 0..3 {
        put_items(&p, &items).await;
        for i in 0..20u64 {
            p.put(&format!("one{i}"), &body("one", i)).await.unwrap();
        }
    }
    wait_converged(&redis, &sub, &keys, LIMIT);
    assert_eq!(sub.status().snapshot().last_version, 3 * 620);
    assert_eq!(counter(&sub, |c| &c.gaps), 0);
    assert_eq!(counter(&sub, |c| &c.catch_ups), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_order_messages_are_applied_by_the_subscription_thread_itself() {
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 100_000).await;
    p.put("first", b"{}").await.unwrap();
    let sub = spawn(sync_config(&redis, "hr"));
    wait_bootstrapped(&sub);
    wait_converged(&redis, &sub, &keys, LIMIT);
    // One change at a time, the sync thread idle in between: the
    // subscription thread applies them without handing them over.
    for i in 0..50u64 {
        p.put(&format!("d{}", i % 7), &body("d", i)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    wait_converged(&redis, &sub, &keys, LIMIT);
    let direct = counter(&sub, |c| &c.direct_messages);
    assert!(
        direct >= 25,
        "only {direct} of 50 messages applied directly"
    );
    assert_eq!(counter(&sub, |c| &c.records_applied), 51);
    assert_eq!(counter(&sub, |c| &c.gaps), 0);
    // Garbage is never applied directly; it is counted by the sync thread.
    let mut con = redis.connection();
    let _: u64 = redis::cmd("PUBLISH")
        .arg(&keys.channel)
        .arg(&b"garbage"[..])
        .query(&mut con)
        .unwrap();
    wait_for("garbage counted", LIMIT, || {
        counter(&sub, |c| &c.malformed_records) == 1
    });
    assert_eq!(counter(&sub, |c| &c.direct_messages), direct);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_trimmed_past_the_position_converges_through_a_full_resync() {
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 100_000).await;
    for i in 0..20u64 {
        p.put(&format!("old{i}"), &body("old", i)).await.unwrap();
    }
    let sub = spawn(slow_to_return(&redis));
    wait_bootstrapped(&sub);
    wait_converged(&redis, &sub, &keys, LIMIT);

    let mut con = redis.connection();
    cut_subscription(&mut con, &sub);
    for i in 0..50u64 {
        p.put(&format!("new{i}"), &body("new", i)).await.unwrap();
    }
    p.delete("old3").await.unwrap();
    let _: u64 = redis::cmd("XTRIM")
        .arg(&keys.log)
        .arg("MAXLEN")
        .arg(1)
        .query(&mut con)
        .unwrap();
    wait_converged(&redis, &sub, &keys, LIMIT);
    assert_eq!(
        counter(&sub, |c| &c.full_resyncs),
        2,
        "bootstrap, then the resync"
    );
    let g = sub.store().guard();
    assert!(
        sub.store().get("old3", &g).is_none(),
        "the delete missed while away was applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarts_with_aof_and_without_data_converge() {
    let mut redis = RedisServer::start_with(true, &["--appendfsync", "always"]);
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 100_000).await;
    for i in 0..100u64 {
        p.put(&format!("p{i}"), &body("p", i)).await.unwrap();
    }
    let sub = spawn(sync_config(&redis, "hr"));
    wait_bootstrapped(&sub);
    wait_converged(&redis, &sub, &keys, LIMIT);

    // With AOF: same dataset, same epoch; a catch-up, not a resync.
    redis.restart();
    for i in 100..150u64 {
        put_retry(&p, &format!("p{i}"), &body("p", i)).await;
    }
    wait_converged(&redis, &sub, &keys, LIMIT);
    assert_eq!(counter(&sub, |c| &c.full_resyncs), 1);
    assert_eq!(sub.store().len(), 150);

    // Without persistence: Redis comes back empty; versions restart at 1. The
    // store must end equal to the new state, with no ghost of the old one even
    // though the old versions are higher.
    redis.restart_empty();
    put_retry(&p, "p1", br#"{"id":"p1","fresh":true}"#).await;
    p.put("fresh", br#"{"id":"fresh"}"#).await.unwrap();
    wait_converged(&redis, &sub, &keys, LIMIT);
    let g = sub.store().guard();
    assert_eq!(sub.store().len(), 2);
    assert_eq!(
        sub.store().get("p1", &g).unwrap().body(),
        br#"{"id":"p1","fresh":true}"#
    );
    assert!(counter(&sub, |c| &c.full_resyncs) >= 2);
}

/// Redis loses its data while every connection stays up (`FLUSHALL` here;
/// a replica resynced from a master restarted without persistence does the
/// same): the new history's versions start again at 1, below what the
/// reader applied. The subscription's versions going back is the sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_lost_under_a_live_subscription_is_noticed_from_the_next_change() {
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 100_000).await;
    for i in 0..100u64 {
        p.put(&format!("p{i}"), &body("p", i)).await.unwrap();
    }
    let mut cfg = sync_config(&redis, "hr");
    // No idle check within the test: only the change stream can tell.
    cfg.ping_interval = Duration::from_secs(600);
    let sub = spawn(cfg);
    wait_bootstrapped(&sub);
    wait_converged(&redis, &sub, &keys, LIMIT);

    let mut con = redis.connection();
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    p.put("p1", br#"{"id":"p1","fresh":true}"#).await.unwrap();
    for i in 0..4u64 {
        p.put(&format!("new{i}"), &body("new", i)).await.unwrap();
    }
    wait_converged(&redis, &sub, &keys, LIMIT);
    let g = sub.store().guard();
    assert_eq!(sub.store().len(), 5, "no ghost of the lost data");
    assert_eq!(
        sub.store().get("p1", &g).unwrap().body(),
        br#"{"id":"p1","fresh":true}"#
    );
    assert_eq!(
        counter(&sub, |c| &c.reconnects),
        0,
        "the connection stayed up"
    );
    assert_eq!(
        counter(&sub, |c| &c.full_resyncs),
        2,
        "bootstrap, then the resync"
    );
}

/// As above, but nothing is written after the loss: the idle subscription's
/// check of the epoch and version finds it, and the store empties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_lost_under_an_idle_subscription_is_noticed_by_its_check() {
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 100_000).await;
    for i in 0..20u64 {
        p.put(&format!("p{i}"), &body("p", i)).await.unwrap();
    }
    let sub = spawn(sync_config(&redis, "hr"));
    wait_bootstrapped(&sub);
    wait_converged(&redis, &sub, &keys, LIMIT);

    let mut con = redis.connection();
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    wait_converged(&redis, &sub, &keys, LIMIT);
    assert_eq!(sub.store().len(), 0);
    assert_eq!(
        counter(&sub, |c| &c.reconnects),
        0,
        "the connection stayed up"
    );
    // The next history is followed from its first version.
    p.put("after", br#"{"id":"after"}"#).await.unwrap();
    wait_converged(&redis, &sub, &keys, LIMIT);
    assert_eq!(sub.store().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_keeps_serving_while_redis_is_down_and_reconnects_by_itself() {
    let mut redis = RedisServer::start_with(true, &["--appendfsync", "always"]);
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 1000).await;
    for i in 0..30u64 {
        p.put(&format!("d{i}"), &body("d", i)).await.unwrap();
    }
    let sub = spawn(sync_config(&redis, "hr"));
    wait_bootstrapped(&sub);
    wait_converged(&redis, &sub, &keys, LIMIT);
    let before = store_state(sub.store());

    redis.kill();
    wait_for("disconnected status", LIMIT, || {
        !sub.status().snapshot().connected
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        store_state(sub.store()),
        before,
        "contents kept while Redis is down"
    );
    assert!(sub.status().snapshot().bootstrapped);
    assert!(
        !sub.status().is_ready(Duration::from_millis(100)),
        "stale after the bound"
    );

    redis.start_again();
    wait_for("reconnected", LIMIT, || sub.status().snapshot().connected);
    put_retry(&p, "d0", br#"{"id":"d0","after":"outage"}"#).await;
    wait_converged(&redis, &sub, &keys, LIMIT);
    assert!(sub.status().is_ready(Duration::from_secs(5)));
    assert!(counter(&sub, |c| &c.reconnects) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_channel_or_in_the_hash_is_counted_and_ignored() {
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let mut con = redis.connection();
    let _: () = redis::cmd("HSET")
        .arg(&keys.posts)
        .arg("bad")
        .arg("not a record")
        .query(&mut con)
        .unwrap();
    let p = publisher(&redis, "hr", 1000).await;
    p.put("good", br#"{"id":"good"}"#).await.unwrap();
    let sub = spawn(sync_config(&redis, "hr"));
    wait_bootstrapped(&sub);
    assert_eq!(
        counter(&sub, |c| &c.malformed_records),
        1,
        "the garbage hash value"
    );
    let before = store_state(sub.store());
    assert_eq!(before.len(), 1);

    // A version-0 template, a truncated record and random bytes.
    let (template, _) = heavyread_sync::record::put_template("good", b"{}", 1).unwrap();
    let mut junk: Vec<Vec<u8>> = vec![
        template.clone(),
        template[..template.len() - 1].to_vec(),
        Vec::new(),
    ];
    let mut x = 0x9e3779b97f4a7c15u64;
    for n in 0..97 {
        junk.push(
            (0..n * 3)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect(),
        );
    }
    for j in &junk {
        let _: u64 = redis::cmd("PUBLISH")
            .arg(&keys.channel)
            .arg(j.as_slice())
            .query(&mut con)
            .unwrap();
    }
    wait_for("garbage counted", LIMIT, || {
        counter(&sub, |c| &c.malformed_records) == 1 + junk.len() as u64
    });
    assert_eq!(store_state(sub.store()), before, "nothing changed");
    // And the stream still works: no gap was created by the garbage.
    p.put("good", br#"{"id":"good","v":2}"#).await.unwrap();
    wait_converged(&redis, &sub, &keys, LIMIT);
    assert_eq!(counter(&sub, |c| &c.gaps), 0);
}

#[derive(Debug, Clone)]
enum Step {
    Put(u8),
    Delete(u8),
    KillSubscription,
    KillConnections,
    Pause(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..12).prop_map(Step::Put),
        2 => (0u8..12).prop_map(Step::Delete),
        1 => Just(Step::KillSubscription),
        1 => Just(Step::KillConnections),
        1 => (1u8..30).prop_map(Step::Pause),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, max_shrink_iters: 0, ..ProptestConfig::default() })]

    /// Under random puts, deletes and connection kills, no key is ever seen
    /// at an older version than before, and the end state equals Redis.
    #[test]
    fn random_faults_never_move_a_key_back_and_end_equal_to_redis(steps in proptest::collection::vec(step(), 20..80)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let redis = RedisServer::start_with(false, &[]);
        let keys = Keys::new("hr").unwrap();
        let p = rt.block_on(publisher(&redis, "hr", 10_000));
        let sub = spawn(sync_config(&redis, "hr"));
        wait_bootstrapped(&sub);

        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let store = Arc::clone(sub.store());
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut seen: HashMap<String, u64> = HashMap::new();
                let mut violations = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let g = store.guard();
                    for i in 0..12 {
                        let id = format!("id{i}");
                        if let Some(e) = store.get(&id, &g) {
                            let prev = seen.entry(id.clone()).or_insert(0);
                            if e.version() < *prev {
                                violations.push((id, *prev, e.version()));
                            }
                            *prev = (*prev).max(e.version());
                        }
                    }
                    drop(g);
                    std::thread::sleep(Duration::from_micros(200));
                }
                violations
            })
        };
        let mut con = redis.connection();
        for (n, s) in steps.iter().enumerate() {
            match s {
                Step::Put(i) => {
                    let id = format!("id{i}");
                    // The writer may see its connection killed: retry like a client would.
                    let deadline = Instant::now() + LIMIT;
                    while rt.block_on(p.put(&id, &body(&id, n as u64))).is_err() {
                        prop_assert!(Instant::now() < deadline);
                    }
                }
                Step::Delete(i) => {
                    let deadline = Instant::now() + LIMIT;
                    while rt.block_on(p.delete(&format!("id{i}"))).is_err() {
                        prop_assert!(Instant::now() < deadline);
                    }
                }
                Step::KillSubscription => { kill_pubsub(&mut con); }
                Step::KillConnections => {
                    let _: redis::RedisResult<u64> = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").arg("SKIPME").arg("yes").query(&mut con);
                }
                Step::Pause(ms) => std::thread::sleep(Duration::from_millis(u64::from(*ms))),
            }
        }
        wait_converged(&redis, &sub, &keys, LIMIT);
        stop.store(true, Ordering::Relaxed);
        let violations = watcher.join().unwrap();
        prop_assert!(violations.is_empty(), "keys moved back: {:?}", violations);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_message_was_unreadable_is_found_while_writes_are_idle() {
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 100_000).await;
    for i in 0..5u64 {
        p.put(&format!("i{i}"), &body("i", i)).await.unwrap();
    }
    let sub = spawn(sync_config(&redis, "hr"));
    wait_bootstrapped(&sub);
    wait_converged(&redis, &sub, &keys, LIMIT);
    // Version 6 is stored and logged as the function would, but its
    // message arrives unreadable, and nothing is written after it: no later
    // message can show the gap. The idle subscription's check must.
    let new_body = body("i", 60);
    let rec = heavyread_sync::RecordRef {
        op: heavyread_sync::Op::Put,
        version: 6,
        written_at_ns: 6,
        etag: etag_of(&new_body),
        id: "i0",
        body: &new_body,
    }
    .encode();
    let mut con = redis.connection();
    let _: () = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg(&keys.log)
        .arg("6-1")
        .arg("op")
        .arg("put")
        .arg("id")
        .arg("i0")
        .arg("ts")
        .arg(&rec[10..18])
        .ignore()
        .cmd("SET")
        .arg(&keys.version)
        .arg(6)
        .ignore()
        .cmd("HSET")
        .arg(&keys.posts)
        .arg("i0")
        .arg(&rec)
        .ignore()
        .cmd("PUBLISH")
        .arg(&keys.channel)
        .arg(&b"garbage"[..])
        .ignore()
        .query(&mut con)
        .unwrap();
    wait_for("the unreadable message counted", LIMIT, || {
        counter(&sub, |c| &c.malformed_records) == 1
    });
    wait_converged(&redis, &sub, &keys, LIMIT);
    assert_eq!(sub.status().snapshot().last_version, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_entry_this_reader_cannot_read_leads_to_a_full_resync_not_a_loop() {
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 100_000).await;
    for i in 0..5u64 {
        p.put(&format!("k{i}"), &body("k", i)).await.unwrap();
    }
    let sub = spawn(slow_to_return(&redis));
    wait_bootstrapped(&sub);
    wait_converged(&redis, &sub, &keys, LIMIT);

    let mut con = redis.connection();
    cut_subscription(&mut con, &sub);
    // An entry at version 6 without the fields this reader knows (another
    // tool's, or a later format), then a change through the function.
    let _: () = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg(&keys.log)
        .arg("6-1")
        .arg("note")
        .arg("written by hand")
        .ignore()
        .cmd("SET")
        .arg(&keys.version)
        .arg(6)
        .ignore()
        .query(&mut con)
        .unwrap();
    p.put("k1", &body("k", 71)).await.unwrap();
    // The catch-up cannot read the log; the hash is the truth.
    wait_converged(&redis, &sub, &keys, LIMIT);
    assert_eq!(sub.status().snapshot().last_version, 7);
    assert_eq!(
        counter(&sub, |c| &c.full_resyncs),
        2,
        "bootstrap, then the resync"
    );
    assert!(sub.status().snapshot().connected);
}

/// A Redis that stops answering without closing anything (as behind a cut
/// network) shows only in the idle subscription's ping: it times out, the
/// session ends, and once Redis answers again the reader reconnects and
/// follows the writes made since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_is_noticed_by_the_ping_and_followed_again_once_it_answers() {
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 1000).await;
    p.put("s0", &body("s", 0)).await.unwrap();
    let sub = spawn(sync_config(&redis, "hr"));
    wait_bootstrapped(&sub);
    wait_converged(&redis, &sub, &keys, LIMIT);
    assert_eq!(counter(&sub, |c| &c.ping_timeouts), 0);

    redis.pause();
    // Idle for the ping interval (200 ms), then no answer within the ping
    // timeout (800 ms).
    wait_for("a ping timeout", LIMIT, || {
        counter(&sub, |c| &c.ping_timeouts) >= 1
    });
    wait_for("disconnected status", LIMIT, || {
        !sub.status().snapshot().connected
    });
    assert!(
        !sub.status().is_ready(Duration::from_millis(500)),
        "ready while Redis was silent"
    );
    redis.resume();
    wait_for("reconnected", LIMIT, || sub.status().snapshot().connected);
    put_retry(&p, "s1", &body("s", 1)).await;
    wait_converged(&redis, &sub, &keys, LIMIT);
    assert!(counter(&sub, |c| &c.reconnects) >= 1);
}
