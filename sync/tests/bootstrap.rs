//! A bootstrap of many posts, of every size class, against a real
//! redis-server: each entry serves exactly the bytes the writer stored, and
//! the store's accounting is the sum over its entries.

mod common;

use std::collections::HashMap;

use common::*;
use heavyread_sync::record::{etag_hex, etag_of, MAX_ID_LEN};
use heavyread_sync::store::ENTRY_OVERHEAD;
use heavyread_sync::testing::RedisServer;
use heavyread_sync::Keys;

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
