//! Several executors share one SO_REUSEPORT port (bound as port 0) and all
//! of them serve.

mod common;

use std::collections::BTreeSet;

use common::*;

#[test]
fn executors_share_one_port_and_all_serve() {
    let f = Fixture::start(|c| c.cores = Some(2));
    assert_eq!(f.reader.cpus().len(), 2);
    assert_ne!(f.addr().port(), 0);
    f.put("c", "{}");
    // Generated request ids carry the executor index: `<tag>-<core>-<n>`.
    let mut cores = BTreeSet::new();
    for _ in 0..64 {
        let resp = get(f.addr(), "/post?id=c");
        assert_eq!(status_of(&resp), 200);
        let id = header(&resp, "x-request-id").unwrap();
        cores.insert(id.split('-').nth(1).unwrap().to_owned());
        if cores.len() == 2 {
            break;
        }
    }
    assert_eq!(cores.into_iter().collect::<Vec<_>>(), ["0", "1"]);
    let page = f.reader.render_metrics();
    assert!(page.contains("heavyread_reader_executors 2\n"), "{page}");
}

#[test]
fn several_readers_run_in_one_process() {
    let f = Fixture::start(|_| {});
    f.put("x", r#"{"x":1}"#);
    let others: Vec<_> = (0..2)
        .map(|_| heavyread_reader::start(test_config(&f.redis.url())).expect("another reader"))
        .collect();
    for r in &others {
        assert!(r.wait_ready(std::time::Duration::from_secs(10)));
        assert_ne!(r.local_addr(), f.addr());
        let resp = get(r.local_addr(), "/post?id=x");
        assert_eq!(body_of(&resp), br#"{"x":1}"#);
    }
    for r in others {
        r.shutdown().unwrap();
    }
    assert_eq!(status_of(&get(f.addr(), "/post?id=x")), 200);
}
