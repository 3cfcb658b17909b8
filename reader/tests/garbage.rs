//! Whatever bytes arrive, the server answers or closes and keeps serving.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_and_truncated_input_never_takes_the_server_down() {
    let f = Fixture::start(|c| {
        c.header_timeout = Duration::from_millis(200);
        c.max_header_bytes = 2048;
        c.max_request_line = 512;
    });
    f.put("g", "{}");
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let valid = b"GET /post?id=g HTTP/1.1\r\nHost: t\r\nIf-None-Match: W/\"x\", *\r\n\r\n";
    for round in 0..200 {
        let mut blob: Vec<u8> = if round % 2 == 0 {
            (0..rng.next() % 3000).map(|_| rng.next() as u8).collect()
        } else {
            // A valid request with a few bytes changed, cut short or repeated.
            let mut v = valid.repeat(1 + (rng.next() % 3) as usize);
            for _ in 0..(rng.next() % 4) {
                let at = (rng.next() as usize) % v.len();
                v[at] = rng.next() as u8;
            }
            v.truncate(1 + (rng.next() as usize) % v.len());
            v
        };
        if round % 7 == 0 {
            blob.extend_from_slice(b"\r\n\r\n");
        }
        let mut s = connect(f.addr());
        let _ = s.write_all(&blob);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let resp = read_to_close(&mut s);
        if !resp.is_empty() {
            assert!(
                resp.starts_with(b"HTTP/1.1 "),
                "round {round}: {:?}",
                String::from_utf8_lossy(&resp)
            );
        }
    }
    let resp = get(f.addr(), "/post?id=g");
    assert_eq!(status_of(&resp), 200);
    assert_eq!(status_of(&get(f.addr(), "/health")), 200);
}
