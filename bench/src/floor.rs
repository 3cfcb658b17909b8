//! `floor`: the syscall floor, what a server that makes one `recv` and one
//! `send` per read costs at the least.
//!
//! A single-threaded server on level-triggered epoll that answers every
//! request head it receives with one fixed, prebuilt `200` of the same
//! shape as the reader's answers (status line, `Date`, `Content-Type`,
//! `Cache-Control`, `X-Request-Id`, a quoted MD5 `ETag`, `Content-Length`,
//! a JSON body). It does no HTTP parsing and no lookups: per readable
//! connection it makes one `recv`, counts the heads in what arrived (a head
//! ends with `\r\n\r\n`), appends that many copies of the answer to a buffer
//! and makes one `send`. What it costs per request is the kernel's loopback
//! TCP work plus the least user-space work a server can do, so a server
//! answering the same load can be compared with it in the same run.
//!
//! # Layout
//! - [`Floor`]: the listener and its epoll instance; [`Floor::run`] serves
//!   until the process is killed.
//! - `Conn`: one connection's state: the bytes of a head end that may
//!   straddle two reads (`Carry`) and an answer the socket did not take
//!   at once.
//! - [`count_heads`]: the head count (Horspool's search for `\r\n\r\n`).
//! - `crate::sys`: epoll and `accept4(2)` (the bench tools' only `unsafe`).
//!
//! Errors never stop the server: a connection whose `recv` or `send` fails,
//! or whose peer closed, is closed; nothing from the network can panic it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

use anyhow::{bail, Context, Result};
use heavyread_sync::record::{etag_hex, etag_of};
use tracing::warn;

use crate::sys;

/// `--body-len` when not given: the suite's mean post size.
pub const DEFAULT_BODY_LEN: usize = 350;

/// The largest `--body-len`: a 1 MiB answer is far beyond any post.
pub const MAX_BODY_LEN: usize = 1 << 20;

/// Bytes one `recv` may return: as much as any pipelined batch of the suite.
pub const RECV_LEN: usize = 64 * 1024;

/// What ends a request head.
const HEAD_END: &[u8; 4] = b"\r\n\r\n";

/// Bytes of a head end that can be left over from one read for the next.
const CARRY: usize = HEAD_END.len() - 1;

/// Events taken from epoll per wait.
const EVENTS: usize = 256;

/// The listener's epoll token; connections use their descriptor.
const LISTENER: u64 = u64::MAX;

/// A body of exactly `len` bytes of JSON (or, below 28 bytes, `{}` padded
/// with spaces: still JSON from 2 bytes on).
pub fn body(len: usize) -> Vec<u8> {
    const OPEN: &[u8] = br#"{"id":"floor","content":""#;
    const CLOSE: &[u8] = br#""}"#;
    const FILL: &[u8] = b"the least a server can do per request ";
    if len < OPEN.len() + CLOSE.len() {
        return b"{}"
            .iter()
            .copied()
            .chain(std::iter::repeat(b' '))
            .take(len)
            .collect();
    }
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(OPEN);
    b.extend(FILL.iter().cycle().take(len - OPEN.len() - CLOSE.len()));
    b.extend_from_slice(CLOSE);
    b
}

/// The one answer the floor sends, in the reader's header order. It is
/// built once, so its `Date` and `X-Request-Id` are fixed values of the
/// usual length.
pub fn answer(body_len: usize) -> Vec<u8> {
    let body = body(body_len);
    let etag = etag_hex(&etag_of(&body));
    let mut a = Vec::with_capacity(body_len + 256);
    a.extend_from_slice(
        b"HTTP/1.1 200 OK\r\n\
          Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
          Content-Type: application/json\r\n\
          Cache-Control: no-cache\r\n\
          X-Request-Id: 5f3a09c2e1d4b877-0-1a\r\n\
          ETag: \"",
    );
    a.extend_from_slice(&etag);
    a.extend_from_slice(format!("\"\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    a.extend_from_slice(&body);
    a
}

/// Request heads that end in `text` (non-overlapping `\r\n\r\n`, leftmost
/// first), and where the bytes after the last of them start.
///
/// Horspool's search: the window's last byte decides the shift, and only
/// `\r` and `\n` occur in the pattern, so most bytes of a request are
/// skipped four at a time.
pub fn count_heads(text: &[u8]) -> (usize, usize) {
    let (mut heads, mut after) = (0, 0);
    // Index of the window's last byte.
    let mut j = HEAD_END.len() - 1;
    while let Some(&last) = text.get(j) {
        match last {
            b'\n' if text[j + 1 - HEAD_END.len()..j] == HEAD_END[..CARRY] => {
                heads += 1;
                after = j + 1;
                // The next head starts after this one.
                j += HEAD_END.len();
            }
            // `\n` is also the pattern's second byte: the window may end there.
            b'\n' => j += 2,
            // `\r` is the pattern's third byte.
            b'\r' => j += 1,
            _ => j += HEAD_END.len(),
        }
    }
    (heads, after)
}

/// The last bytes read on a connection after its last head's end (at most
/// three): the start of a head end the next read may complete.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Carry {
    bytes: [u8; CARRY],
    len: usize,
}

impl Carry {
    /// The carry after scanning `text`, whose heads ended before `after`.
    fn after(text: &[u8], after: usize) -> Self {
        let from = after.max(text.len().saturating_sub(CARRY));
        let rest = &text[from..];
        let mut c = Carry {
            bytes: [0; CARRY],
            len: rest.len(),
        };
        c.bytes[..rest.len()].copy_from_slice(rest);
        c
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// What a connection wants from epoll after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Nothing changes.
    Same,
    /// An answer is left to send: wait until the socket is writable.
    Write,
    /// The answers are all sent: wait for requests again.
    Read,
    /// The peer closed or an error occurred.
    Close,
}

/// Buffers shared by every connection (one thread serves them all).
struct Scratch {
    /// `CARRY` bytes of room for a connection's carry, then `recv`'s bytes.
    recv: Box<[u8]>,
    /// The answers to one read.
    out: Vec<u8>,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    carry: Carry,
    /// Answers the socket did not take; no read happens until they are sent.
    pending: Vec<u8>,
    /// Bytes of `pending` already sent.
    sent: usize,
}

impl Conn {
    /// One `recv`, the answers to the heads it completes, one `send`.
    fn readable(&mut self, s: &mut Scratch, answer: &[u8]) -> Next {
        let n = match self.stream.read(&mut s.recv[CARRY..]) {
            Ok(0) => return Next::Close,
            Ok(n) => n,
            Err(e) if is_transient(&e) => return Next::Same,
            Err(_) => return Next::Close,
        };
        let start = CARRY - self.carry.len;
        s.recv[start..CARRY].copy_from_slice(self.carry.as_slice());
        let text = &s.recv[start..CARRY + n];
        let (heads, after) = count_heads(text);
        self.carry = Carry::after(text, after);
        if heads == 0 {
            return Next::Same;
        }
        s.out.clear();
        for _ in 0..heads {
            s.out.extend_from_slice(answer);
        }
        match self.stream.write(&s.out) {
            Ok(n) if n == s.out.len() => Next::Same,
            Ok(n) => self.keep(&s.out[n..]),
            Err(e) if is_transient(&e) => self.keep(&s.out),
            Err(_) => Next::Close,
        }
    }

    fn keep(&mut self, rest: &[u8]) -> Next {
        self.pending.clear();
        self.pending.extend_from_slice(rest);
        self.sent = 0;
        Next::Write
    }

    /// One `send` of what is left of an answer.
    fn writable(&mut self) -> Next {
        match self.stream.write(&self.pending[self.sent..]) {
            Ok(n) => {
                self.sent += n;
                if self.sent == self.pending.len() {
                    self.pending.clear();
                    self.sent = 0;
                    Next::Read
                } else {
                    Next::Same
                }
            }
            Err(e) if is_transient(&e) => Next::Same,
            Err(_) => Next::Close,
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// The floor server, bound and ready to [`run`](Floor::run).
#[derive(Debug)]
pub struct Floor {
    listener: TcpListener,
    epoll: sys::Epoll,
    answer: Vec<u8>,
}

impl Floor {
    /// Listens on `addr` (port 0 picks a free one) with an answer of
    /// `body_len` body bytes.
    pub fn bind(addr: SocketAddr, body_len: usize) -> Result<Self> {
        if body_len > MAX_BODY_LEN {
            bail!("--body-len: {body_len} is above the largest, {MAX_BODY_LEN}");
        }
        let listener = TcpListener::bind(addr).with_context(|| format!("--listen: bind {addr}"))?;
        listener.set_nonblocking(true)?;
        let epoll = sys::Epoll::new().context("epoll_create1")?;
        epoll
            .add(listener.as_raw_fd(), libc::EPOLLIN as u32, LISTENER)
            .context("watch the listener")?;
        Ok(Floor {
            listener,
            epoll,
            answer: answer(body_len),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bytes of one answer.
    pub fn answer(&self) -> &[u8] {
        &self.answer
    }

    /// Serves until the process ends; returns only if epoll itself fails.
    pub fn run(self) -> io::Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let mut conns: Vec<Option<Conn>> = Vec::new();
        let mut scratch = Scratch {
            recv: vec![0; CARRY + RECV_LEN].into_boxed_slice(),
            out: Vec::new(),
        };
        loop {
            let n = self.epoll.wait(&mut events)?;
            for ev in &events[..n] {
                let (token, ready) = (ev.u64, ev.events);
                if token == LISTENER {
                    self.accept_all(&mut conns);
                    continue;
                }
                let Ok(fd) = usize::try_from(token) else {
                    continue;
                };
                let Some(conn) = conns.get_mut(fd).and_then(Option::as_mut) else {
                    continue;
                };
                let next = if conn.pending.is_empty() {
                    conn.readable(&mut scratch, &self.answer)
                } else if ready & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                    conn.writable()
                } else {
                    Next::Same
                };
                let interest = match next {
                    Next::Same => continue,
                    Next::Write => libc::EPOLLOUT,
                    Next::Read => libc::EPOLLIN,
                    Next::Close => {
                        // Closing the socket also removes it from epoll.
                        conns[fd] = None;
                        continue;
                    }
                };
                if self
                    .epoll
                    .modify(conn.stream.as_raw_fd(), interest as u32, token)
                    .is_err()
                {
                    conns[fd] = None;
                }
            }
        }
    }

    /// Accepts every waiting connection, non-blocking with `TCP_NODELAY`,
    /// and watches it for requests.
    fn accept_all(&self, conns: &mut Vec<Option<Conn>>) {
        loop {
            let stream = match sys::accept(self.listener.as_raw_fd()) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_transient(&e) || e.kind() == io::ErrorKind::ConnectionAborted => {
                    continue
                }
                Err(e) => {
                    // Out of descriptors or memory: the connection waits in
                    // the backlog and level-triggered epoll reports it again.
                    warn!(error = %e, "accept failed");
                    return;
                }
            };
            let fd: RawFd = stream.as_raw_fd();
            let Ok(i) = usize::try_from(fd) else {
                continue;
            };
            if stream.set_nodelay(true).is_err()
                || self.epoll.add(fd, libc::EPOLLIN as u32, i as u64).is_err()
            {
                continue;
            }
            if conns.len() <= i {
                conns.resize_with(i + 1, || None);
            }
            conns[i] = Some(Conn {
                stream,
                carry: Carry::default(),
                pending: Vec::new(),
                sent: 0,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Rng;

    /// Leftmost non-overlapping matches, the obvious way.
    fn naive(text: &[u8]) -> (usize, usize) {
        let (mut heads, mut after, mut i) = (0, 0, 0);
        while i + HEAD_END.len() <= text.len() {
            if text[i..i + HEAD_END.len()] == *HEAD_END {
                heads += 1;
                i += HEAD_END.len();
                after = i;
            } else {
                i += 1;
            }
        }
        (heads, after)
    }

    #[test]
    fn heads_are_counted_once_and_not_overlapping() {
        let req = b"GET /post?id=post-1 HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(count_heads(req), (1, req.len()));
        assert_eq!(count_heads(&req.repeat(16)), (16, 16 * req.len()));
        assert_eq!(count_heads(b"\r\n\r\n\r\n"), (1, 4));
        assert_eq!(count_heads(b"\r\n\r\n\r\n\r\n"), (2, 8));
        assert_eq!(count_heads(b"\r\r\n\r\n"), (1, 5));
        assert_eq!(count_heads(b"\r\n\r\r\n\r\n"), (1, 7));
        assert_eq!(count_heads(b"GET / HTTP/1.1\r\n\r"), (0, 0));
        assert_eq!(count_heads(b""), (0, 0));
        assert_eq!(count_heads(b"\n"), (0, 0));
    }

    #[test]
    fn the_count_matches_a_naive_search_on_random_bytes() {
        let mut rng = Rng::new(7);
        for _ in 0..20_000 {
            let len = (rng.next_u64() % 40) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| b"\r\n\r\nab"[(rng.next_u64() % 6) as usize])
                .collect();
            assert_eq!(count_heads(&text), naive(&text), "{text:?}");
        }
    }

    #[test]
    fn a_head_split_anywhere_across_reads_is_counted_once() {
        let mut rng = Rng::new(11);
        for _ in 0..5_000 {
            let len = (rng.next_u64() % 60) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| b"\r\n\r\nxy"[(rng.next_u64() % 6) as usize])
                .collect();
            // Fed in random pieces, with the carry between them as the server keeps it.
            let (mut heads, mut carry, mut at) = (0, Carry::default(), 0);
            while at < text.len() {
                let piece = 1 + (rng.next_u64() % 7) as usize;
                let end = (at + piece).min(text.len());
                let mut joined = carry.as_slice().to_vec();
                joined.extend_from_slice(&text[at..end]);
                let (n, after) = count_heads(&joined);
                heads += n;
                carry = Carry::after(&joined, after);
                at = end;
            }
            assert_eq!(heads, naive(&text).0, "{text:?}");
        }
    }

    #[test]
    fn the_carry_keeps_at_most_three_bytes_after_the_last_head() {
        assert_eq!(Carry::after(b"abc\r\n\r", 0).as_slice(), b"\r\n\r");
        assert_eq!(Carry::after(b"x\r\n\r\nab", 5).as_slice(), b"ab");
        assert_eq!(Carry::after(b"x\r\n\r\n", 5).as_slice(), b"");
        assert_eq!(Carry::after(b"", 0).as_slice(), b"");
    }

    #[test]
    fn the_answer_has_the_readers_shape_and_the_asked_body_length() {
        let a = answer(350);
        let text = String::from_utf8(a.clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body.len(), 350);
        assert!(body.starts_with('{') && body.ends_with('}'), "{body}");
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(lines[0], "HTTP/1.1 200 OK");
        let names: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split_once(": ").unwrap().0)
            .collect();
        assert_eq!(
            names,
            [
                "Date",
                "Content-Type",
                "Cache-Control",
                "X-Request-Id",
                "ETag",
                "Content-Length"
            ]
        );
        let etag = lines[5].strip_prefix("ETag: ").unwrap();
        assert_eq!(etag.len(), 34);
        assert!(etag.starts_with('"') && etag.ends_with('"'));
        assert!(etag[1..33].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(lines[6], "Content-Length: 350");
        assert_eq!(count_heads(&a), (1, a.len() - 350));
        for len in [0, 1, 2, 27, 28, 29, 1000] {
            assert_eq!(body_len(&answer(len)), len);
        }
    }

    fn body_len(a: &[u8]) -> usize {
        let (_, after) = count_heads(a);
        a.len() - after
    }

    #[test]
    fn a_body_beyond_the_largest_is_refused() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let e = Floor::bind(addr, MAX_BODY_LEN + 1).unwrap_err();
        assert!(e.to_string().contains("--body-len"), "{e}");
    }
}
