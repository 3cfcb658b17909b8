//! A bootstrap of many posts, of every size class, against a real
//! redis-server: each entry serves exactly the bytes the writer stored, and
//! the store's accounting is the sum over its entries.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use common::*;
use heavyread_sync::record::{etag_hex, etag_of, MAX_ID_LEN};
use heavyread_sync::store::ENTRY_OVERHEAD;
use heavyread_sync::testing::RedisServer;
use heavyread_sync::{Keys, Publisher};

/// A body of `len` bytes that differs from post to post.
fn sized_body(i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| b'a' + ((i as usize * 7 + j * 13) % 26) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_of_many_posts_serves_exact_bytes_and_accounts_their_sum() {
    let redis = RedisServer::start_with(false, &[]);
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 1_000_000).await;
    // Lengths around every change in the Content-Length digits, ids from one
    // byte to the longest allowed.
    let lens = [
        0usize, 1, 9, 10, 99, 100, 350, 999, 1_000, 4_095, 10_000, 70_000,
    ];
    let mut want: HashMap<String, Vec<u8>> = HashMap::new();
    let n = 30_000u64;
    let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..n {
        let id = match i % 1_000 {
            0 => format!("{}{i}", "x".repeat(MAX_ID_LEN - 5)),
            1 => (i / 1_000).to_string(),
            _ => format!("post-{i}"),
        };
        let len = if i % 100 == 0 {
            lens[(i / 100) as usize % lens.len()]
        } else {
            200 + (i % 300) as usize
        };
        batch.push((id, sized_body(i, len)));
        if batch.len() == 1_000 || i == n - 1 {
            let items: Vec<(&str, &[u8])> = batch
                .iter()
                .map(|(id, b)| (id.as_str(), b.as_slice()))
                .collect();
            p.put_many(&items).await.unwrap();
            want.extend(batch.drain(..));
        }
    }

    let sub = spawn(sync_config(&redis, "hr"));
    wait_bootstrapped(&sub);
    let store = sub.store();
    assert_eq!(store.len(), want.len());
    let g = store.guard();
    let mut accounted = 0u64;
    for (id, body) in &want {
        let e = store.get(id, &g).unwrap_or_else(|| panic!("{id} missing"));
        let head = format!(
            "ETag: \"{}\"\r\nContent-Length: {}\r\n",
            std::str::from_utf8(&etag_hex(&etag_of(body))).unwrap(),
            body.len()
        );
        assert_eq!(e.body(), body.as_slice(), "{id}");
        assert_eq!(e.headers(), head.as_bytes(), "{id}");
        assert_eq!(
            e.headers_and_body(),
            [head.as_bytes(), body].concat(),
            "{id}"
        );
        assert_eq!(e.etag(), &head.as_bytes()[6..40], "{id}");
        assert_eq!(e.etag_line(), &head.as_bytes()[..42], "{id}");
        accounted += (id.len() + head.len() + body.len()) as u64 + ENTRY_OVERHEAD;
    }
    drop(g);
    assert_eq!(store.bytes(), accounted);
    assert_eq!(store.bytes(), store.recount_bytes());
    wait_converged(&redis, &sub, &keys, std::time::Duration::from_secs(30));
}

/// Puts `ids[i]` with `bodies[i]`, in order, through `heavyread_put_many`.
async fn put_all(p: &Publisher, ids: &[String], bodies: &[Vec<u8>]) {
    let items: Vec<(&str, &[u8])> = ids
        .iter()
        .map(|i| i.as_str())
        .zip(bodies.iter().map(|b| b.as_slice()))
        .collect();
    p.put_many(&items).await.unwrap();
}

/// The pipelined scanner speaks RESP itself: it must select the URL's
/// database, and follow a cursor over many small pages (one request always
/// ahead) to exactly the hash's contents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_reads_the_urls_database_over_many_small_pages() {
    let redis = RedisServer::start_with(false, &[]);
    let db_url = format!("{}/5", redis.url().trim_end_matches('/'));
    // Database 0 holds other bodies under the same prefix.
    let p0 = publisher(&redis, "hr", 1_000_000).await;
    let p5 = Publisher::new(&db_url, "hr", 1_000_000, std::time::Duration::from_secs(5))
        .expect("publisher on db 5");
    p5.load_library().await.expect("load library");
    let n = 5_000u64;
    let ids: Vec<String> = (0..n).map(|i| format!("post-{i}")).collect();
    let b0: Vec<Vec<u8>> = (0..n).map(|i| sized_body(i, 10)).collect();
    let b5: Vec<Vec<u8>> = ids.iter().zip(0..).map(|(id, i)| body(id, i)).collect();
    put_all(&p0, &ids, &b0).await;
    put_all(&p5, &ids, &b5).await;
    // Only in database 0.
    p0.put("only-in-0", b"{}").await.unwrap();

    let mut config = sync_config(&redis, "hr");
    config.redis_url = db_url;
    config.scan_batch = 7;
    let sub = spawn(config);
    wait_bootstrapped(&sub);
    let store = sub.store();
    let g = store.guard();
    assert_eq!(store.len(), n as usize);
    for (id, want) in ids.iter().zip(&b5) {
        let e = store.get(id, &g).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(e.body(), want.as_slice(), "{id}");
    }
    assert!(store.get("only-in-0", &g).is_none());
    let malformed = sub
        .status()
        .counters
        .malformed_records
        .load(Ordering::Relaxed);
    assert_eq!(malformed, 0);
}

/// The scanner's connection dropped in the middle of a full resync: that
/// resync fails, the sync thread connects again, and the next one leaves
/// the store equal to Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_cut_off_halfway_is_retried_to_the_end() {
    let redis = RedisServer::start_with(false, &[]);
    let keys = Keys::new("hr").unwrap();
    let p = publisher(&redis, "hr", 1_000_000).await;
    let ids: Vec<String> = (0..5_000).map(|i| format!("post-{i}")).collect();
    let bodies: Vec<Vec<u8>> = ids.iter().zip(0..).map(|(id, i)| body(id, i)).collect();
    put_all(&p, &ids, &bodies).await;
    let mut config = sync_config(&redis, "hr");
    // One entry per page: thousands of round trips, time enough to cut in.
    config.scan_batch = 1;
    let sub = spawn(config);
    let mut admin = redis.connection();
    let started = std::time::Instant::now();
    let killed = loop {
        let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
        let scanner = clients
            .lines()
            .find(|l| l.contains("cmd=hscan"))
            .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
            .map(str::to_owned);
        if let Some(id) = scanner {
            let n: u64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(&id)
                .query(&mut admin)
                .unwrap();
            break n;
        }
        assert!(
            !sub.status().snapshot().bootstrapped,
            "the scan ended before it could be cut off"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "no HSCAN seen"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    assert_eq!(killed, 1);
    wait_bootstrapped(&sub);
    wait_converged(&redis, &sub, &keys, std::time::Duration::from_secs(60));
    let c = &sub.status().counters;
    assert!(
        c.full_resyncs.load(Ordering::Relaxed) >= 2,
        "the cut-off resync was retried"
    );
    assert!(c.reconnects.load(Ordering::Relaxed) >= 1);
    assert_eq!(sub.store().len(), 5_000);
}
