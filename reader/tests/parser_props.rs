//! Property tests of the request parser and its helpers over arbitrary and
//! mutated input: never a panic, and framing stays within the buffer.
//! `PROPTEST_CASES` raises the number of cases for long local runs.

use heavyread_reader::http::{etag_list_matches, parse_request, query_id, Limits, Parse};
use heavyread_sync::record::MAX_ID_LEN;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn limits() -> impl Strategy<Value = Limits> {
    (16usize..600, 1usize..128).prop_map(|(line, headers)| Limits {
        max_request_line: line,
        max_header_bytes: line + 1 + line * 2,
        max_headers: headers,
    })
}

const VALID: &[&[u8]] = &[
    b"GET /post?id=abc HTTP/1.1\r\nHost: h\r\n\r\n",
    b"HEAD /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /post?id=a%62c&x=1 HTTP/1.1\r\nHost: h\r\nIf-None-Match: W/\"a\", \"b\"\r\nX-Request-Id: q\r\n\r\n",
    b"GET http://h/ready HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
];

fn check(buf: &[u8], l: &Limits) {
    match parse_request(buf, l) {
        Parse::Complete(req, len) => {
            assert!(len <= buf.len() && len <= l.max_header_bytes);
            assert!(len > 0);
            let mut id = [0u8; MAX_ID_LEN];
            let _ = query_id(req.query, &mut id);
            let _ = req.not_modified(b"\"0123\"");
            let _ = req.precondition_failed(b"\"0123\"");
        }
        Parse::Partial => assert!(buf.len() < l.max_header_bytes),
        Parse::Reject(r, _, _) => {
            let _ = (r.status(), r.body());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..2048), l in limits()) {
        check(&buf, &l);
    }

    #[test]
    fn mutated_requests_never_panic(
        which in 0..VALID.len(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..8),
        l in limits(),
    ) {
        let mut buf = VALID[which].to_vec();
        for (at, byte, kind) in edits {
            let at = at % (buf.len() + 1);
            match kind {
                0 => buf.insert(at, byte),
                1 if at < buf.len() => { buf.remove(at); }
                _ if at < buf.len() => buf[at] = byte,
                _ => buf.push(byte),
            }
        }
        check(&buf, &l);
    }

    #[test]
    fn every_prefix_of_a_valid_request_is_partial(which in 0..VALID.len(), cut in any::<usize>()) {
        let l = Limits { max_request_line: 512, max_header_bytes: 4096, max_headers: 32 };
        let full = VALID[which];
        let cut = cut % full.len();
        prop_assert!(matches!(parse_request(&full[..cut], &l), Parse::Partial));
        let mut two = full.to_vec();
        two.extend_from_slice(&full[..cut]);
        match parse_request(&two, &l) {
            Parse::Complete(_, len) => prop_assert_eq!(len, full.len()),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn query_and_etag_helpers_never_panic(
        q in proptest::collection::vec(any::<u8>(), 0..400),
        v in proptest::collection::vec(any::<u8>(), 0..200),
        e in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut id = [0u8; MAX_ID_LEN];
        if let Ok(s) = query_id(&q, &mut id) {
            prop_assert!(heavyread_sync::record::valid_id(s.as_bytes()));
        }
        let _ = etag_list_matches(&v, &e);
    }
}
