//! `X-Request-Id`: echoed when the client's is sane, generated otherwise.
//!
//! A generated id is `<process tag>-<core>-<counter>` in hex, e.g.
//! `5f3a09c2e1d4b877-0-1a`: the tag is random per process, the counter is
//! per core, so ids are unique without any shared state, and making one
//! writes a few bytes on the stack.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

/// Longest client id echoed back.
pub const MAX_LEN: usize = 64;

/// A client id is echoed when it is 1..=[`MAX_LEN`] bytes of visible ASCII.
pub fn is_sane(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.iter().all(u8::is_ascii_graphic)
}

/// A random tag for this process (16 hex digits).
pub fn process_tag() -> u64 {
    // std's RandomState is seeded from the OS once per process: random enough, no extra crate.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// One core's generator.
#[derive(Debug)]
pub struct Generator {
    /// `<tag>-<core>-`, fixed for the core's life.
    prefix: [u8; 32],
    prefix_len: usize,
    counter: Cell<u64>,
}

/// A generated id, on the stack.
#[derive(Debug, Clone, Copy)]
pub struct Id {
    buf: [u8; 48],
    len: usize,
}

impl Id {
    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn put_hex(out: &mut [u8], mut v: u64) -> usize {
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b"0123456789abcdef"[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    let n = tmp.len() - i;
    out[..n].copy_from_slice(&tmp[i..]);
    n
}

impl Generator {
    /// A generator for executor `core` of the process tagged `tag`.
    pub fn new(tag: u64, core: usize) -> Self {
        let mut prefix = [0u8; 32];
        let mut n = 0;
        for i in (0..16).rev() {
            prefix[n] = b"0123456789abcdef"[((tag >> (4 * i)) & 0xf) as usize];
            n += 1;
        }
        prefix[n] = b'-';
        n += 1;
        n += put_hex(&mut prefix[n..], core as u64 & 0xffff_ffff);
        prefix[n] = b'-';
        n += 1;
        Generator {
            prefix,
            prefix_len: n,
            counter: Cell::new(0),
        }
    }

    /// The next id of this core.
    pub fn next_id(&self) -> Id {
        let c = self.counter.get().wrapping_add(1);
        self.counter.set(c);
        let mut buf = [0u8; 48];
        buf[..self.prefix_len].copy_from_slice(&self.prefix[..self.prefix_len]);
        let len = self.prefix_len + put_hex(&mut buf[self.prefix_len..], c);
        Id { buf, len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_short_visible_ascii() {
        assert!(is_sane(b"abc-123"));
        assert!(is_sane(&[b'x'; 64]));
        assert!(!is_sane(&[b'x'; 65]));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"a b"));
        assert!(!is_sane(b"a\x7f"));
        assert!(!is_sane("é".as_bytes()));
    }

    #[test]
    fn generated_ids_are_unique_and_sane() {
        let g = Generator::new(0x5f3a_09c2_e1d4_b877, 3);
        assert_eq!(g.next_id().as_bytes(), b"5f3a09c2e1d4b877-3-1");
        assert_eq!(g.next_id().as_bytes(), b"5f3a09c2e1d4b877-3-2");
        g.counter.set(u64::MAX - 1);
        let id = g.next_id();
        assert_eq!(id.as_bytes(), b"5f3a09c2e1d4b877-3-ffffffffffffffff");
        assert!(is_sane(id.as_bytes()));
        let g = Generator::new(0, usize::MAX);
        assert!(is_sane(g.next_id().as_bytes()));
    }
}
