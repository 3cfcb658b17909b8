//! Redis's AOF rewrites around a run, against a real redis-server.

use heavyread_bench::aof::{compact, RewriteMeter, LIMIT};
use heavyread_sync::testing::RedisServer;

fn rewrites(redis: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query(&mut redis.connection())
        .unwrap();
    heavyread_bench::aof::parse_info(&info).unwrap().rewrites
}

#[tokio::test]
async fn compact_rewrites_once_and_the_meter_counts_overlapping_rewrites() {
    let redis = RedisServer::start_with(true, &[]);
    let url = redis.url();
    let before = rewrites(&redis);
    let after = compact(&url, LIMIT).await.unwrap();
    assert!(after.enabled && !after.busy, "{after:?}");
    assert_eq!(after.rewrites, before + 1, "one rewrite, waited for");
    assert_eq!(rewrites(&redis), before + 1);

    // Nothing in between: no rewrite overlaps.
    let quiet = RewriteMeter::start(&url).await.unwrap();
    assert_eq!(quiet.stop().await.unwrap(), 0);

    // One started during the run is counted.
    let meter = RewriteMeter::start(&url).await.unwrap();
    let _: String = redis::cmd("BGREWRITEAOF")
        .query(&mut redis.connection())
        .unwrap();
    assert_eq!(meter.stop().await.unwrap(), 1);
    // compact waits for it to end, then rewrites again.
    let again = compact(&url, LIMIT).await.unwrap();
    assert_eq!(again.rewrites, before + 3);
}

#[tokio::test]
async fn without_aof_compact_does_nothing() {
    let redis = RedisServer::start_with(false, &[]);
    let s = compact(&redis.url(), LIMIT).await.unwrap();
    assert!(!s.enabled);
    assert_eq!(rewrites(&redis), s.rewrites);
    assert_eq!(s.rewrites, 0);
}
