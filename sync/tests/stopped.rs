//! A reader process that is stopped and continued (SIGSTOP or a terminal's
//! SIGTSTP, then SIGCONT: a debugger, Ctrl-Z and `fg`, a supervisor pausing
//! it) keeps its subscription. Linux ends the sync thread's wait for a
//! message, a socket read with a timeout, with EINTR when the process
//! continues; that is no lost connection. In a file of its own, its tests
//! one at a time: stopping the process stops every test running in it, and
//! a stop that lands in another test's short command read ends that test's
//! session.

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use heavyread_sync::testing::RedisServer;
use heavyread_sync::Keys;

const LIMIT: Duration = Duration::from_secs(30);

/// Another process stops this one, and continues it 50 ms later.
fn stop_for_50ms() {
    let pid = std::process::id();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -STOP {pid}; sleep 0.05; kill -CONT {pid}"))
        .status()
        .expect("run sh");
    assert!(status.success(), "{status}");
}

/// Held by each test for its whole run (plain `cargo test` runs a file's
/// tests side by side in one process).
async fn alone() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE.lock().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_and_continued_process_keeps_its_subscription() {
    let _alone = alone().await;
    let redis = RedisServer::start();
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 1000).await;
    let mut cfg = sync_config(&redis, "hr");
    // No ping while the test runs: the sync thread waits in its read for a
    // message all along.
    cfg.ping_interval = Duration::from_secs(60);
    let sub = spawn(cfg);
    wait_bootstrapped(&sub);
    p.put("before", &body("before", 0)).await.unwrap();
    wait_converged(&redis, &sub, &keys, LIMIT);
    let counters = counters(&sub);
    let reconnects = counters.counters.reconnects.load(Ordering::Relaxed);
    assert!(sub.status().snapshot().connected);

    for i in 0..5u64 {
        stop_for_50ms();
        // A change made after each pause arrives.
        let id = format!("after-{i}");
        p.put(&id, &body(&id, i)).await.unwrap();
        wait_converged(&redis, &sub, &keys, LIMIT);
    }

    assert_eq!(
        counters.counters.reconnects.load(Ordering::Relaxed),
        reconnects,
        "the subscription was dropped and made again: {:?}",
        sub.status().snapshot()
    );
    assert_eq!(counters.counters.full_resyncs.load(Ordering::Relaxed), 1);
    assert!(sub.status().snapshot().connected);
}

/// Stops closer together than the ping interval still let the idle wait end
/// in a PING: each wait goes on for what is left of it instead of starting
/// over, so the reader's contact with Redis (which its readiness is judged
/// by) stays fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_closer_together_than_the_ping_interval_do_not_hold_the_ping_off() {
    let _alone = alone().await;
    let redis = RedisServer::start();
    // A PING after 200 ms without a message.
    let sub = spawn(sync_config(&redis, "hr"));
    wait_bootstrapped(&sub);
    let start = std::time::Instant::now();
    let mut stops = 0;
    // A stop of 50 ms every 50 ms or so (the time to start sh), for 3 s.
    while start.elapsed() < Duration::from_secs(3) {
        stop_for_50ms();
        stops += 1;
    }
    let snapshot = sub.status().snapshot();
    let since = snapshot.since_contact.expect("a contact time");
    assert!(
        since < Duration::from_secs(1),
        "no contact for {since:?} after {stops} stops in {:?}: {snapshot:?}",
        start.elapsed()
    );
}
