//! The reader's request-head parser over arbitrary bytes and limits: never
//! a panic, framing stays inside the buffer and the limits, a `Partial`
//! answer only while the head still fits, and ids that come out (also as
//! prefetch hints) are valid.

#![no_main]

use heavyread_reader::http::{
    etag_list_matches, parse_request, post_id_hints, query_id, Limits, Parse, MAX_HEADERS_CAP,
};
use heavyread_sync::record::{valid_id, MAX_ID_LEN};
use libfuzzer_sys::fuzz_target;

const ETAG: &[u8] = b"\"0123456789abcdef0123456789abcdef\"";

fn check(buf: &[u8], limits: &Limits) -> Option<usize> {
    match parse_request(buf, limits) {
        Parse::Complete(req, len) => {
            assert!(
                len > 0 && len <= buf.len(),
                "head of {len} bytes in {}",
                buf.len()
            );
            assert!(
                len <= limits.max_header_bytes,
                "head of {len} bytes over the limit"
            );
            let mut id = [0u8; MAX_ID_LEN];
            if let Ok(id) = query_id(req.query, &mut id) {
                assert!(valid_id(id.as_bytes()), "query_id let {id:?} through");
            }
            let _ = req.not_modified(ETAG);
            if let Some(rid) = req.request_id {
                let _ = etag_list_matches(rid, ETAG);
            }
            Some(len)
        }
        Parse::Partial => {
            assert!(
                buf.len() < limits.max_header_bytes,
                "partial with {} bytes buffered (limit {})",
                buf.len(),
                limits.max_header_bytes
            );
            None
        }
        Parse::Reject(..) => None,
    }
}

fuzz_target!(|data: &[u8]| {
    // The first three bytes choose the limits, the rest is what arrived.
    let [a, b, c, rest @ ..] = data else {
        return;
    };
    let line = 16 + usize::from(*a) * 16;
    let limits = Limits {
        max_request_line: line,
        max_header_bytes: line + 2 + usize::from(*b) * 32,
        max_headers: 1 + usize::from(*c) % MAX_HEADERS_CAP,
    };
    // Pipelining: keep parsing after each complete head, as a connection does.
    let mut at = 0;
    while let Some(len) = check(&rest[at..], &limits) {
        at += len;
    }
    // The prefetch's id hints: valid ids, inside the input.
    for id in post_id_hints(rest) {
        assert!(valid_id(id.as_bytes()), "post_id_hints let {id:?} through");
        let at = id.as_ptr() as usize - rest.as_ptr() as usize;
        assert!(at + id.len() <= rest.len());
    }
    // The `If-None-Match` matcher alone, on the raw bytes.
    let _ = etag_list_matches(rest, ETAG);
});
