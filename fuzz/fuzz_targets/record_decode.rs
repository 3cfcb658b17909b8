//! The record decoder over arbitrary bytes: never a panic; whatever it
//! accepts has a valid id, encodes back to exactly the same bytes, and a put
//! is stored with its body and etag intact.

#![no_main]

use heavyread_sync::record::{etag_hex, valid_id, Op, RecordRef};
use heavyread_sync::Store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
