//! The record decoder over arbitrary bytes: never a panic; whatever it
//! accepts has a valid id, encodes back to exactly the same bytes, and a put
//! is stored with its body and etag intact. Read as a message (records back
//! to back), the records accepted re-encode to a prefix of the bytes, and
//! the iteration ends at the first error or at the end.

#![no_main]

use heavyread_sync::record::{etag_hex, records, valid_id, Op, RecordRef};
use heavyread_sync::Store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut encoded = Vec::new();
    let mut errors = 0;
    for rec in records(data) {
        match rec {
            Ok(r) => {
                assert_eq!(errors, 0, "a record after an error");
                encoded.extend_from_slice(&r.encode());
            }
            Err(_) => errors += 1,
        }
    }
    assert!(errors <= 1, "more than one error from one message");
    assert!(data.starts_with(&encoded), "records not read back to back");
    assert_eq!(errors == 0, encoded.len() == data.len() && !data.is_empty());

    let Ok(rec) = RecordRef::decode(data) else {
        return;
    };
    assert!(
        valid_id(rec.id.as_bytes()),
        "decoded an invalid id {:?}",
        rec.id
    );
    assert_eq!(
        rec.encode(),
        data,
        "decode accepted a non-canonical encoding"
    );
    if rec.op == Op::Put {
        let (store, mut writer) = Store::new();
        writer.put(&rec);
        let guard = store.guard();
        let entry = store.get(rec.id, &guard).expect("a put is stored");
        assert_eq!(entry.body(), rec.body);
        assert_eq!(entry.version(), rec.version);
        assert_eq!(&entry.etag()[1..33], &etag_hex(&rec.etag));
        let len = format!("Content-Length: {}\r\n", rec.body.len());
        assert!(entry.headers().ends_with(len.as_bytes()));
    }
});
