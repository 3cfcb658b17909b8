//! The syscall floor over real sockets: one answer per request head, however
//! the heads are batched or split across reads, none for bytes without a
//! head end, and every answer whole when the socket does not take it at once.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use heavyread_bench::floor::{Floor, DEFAULT_BODY_LEN};

const REQUEST: &[u8] = b"GET /post?id=post-1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// A floor on a free port, served by a thread of its own; its address and answer.
fn floor() -> (SocketAddr, Vec<u8>) {
    let f = Floor::bind("127.0.0.1:0".parse().unwrap(), DEFAULT_BODY_LEN).unwrap();
    let (addr, answer) = (f.local_addr().unwrap(), f.answer().to_vec());
    std::thread::spawn(move || f.run());
    (addr, answer)
}

/// A connection that reads whole answers (head, then `Content-Length` bytes).
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads more bytes into `buf` within `wait`; false if none came.
    fn fill(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => panic!("the floor closed the connection"),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// The next whole answer, parsed with httparse and cut at its
    /// `Content-Length`.
    fn answer(&mut self) -> Vec<u8> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut r = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = r.parse(&self.buf).unwrap() {
                assert_eq!(r.code, Some(200));
                let len: usize = r
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                    .expect("a Content-Length");
                if self.buf.len() >= head + len {
                    return self.buf.drain(..head + len).collect();
                }
            }
            assert!(self.fill(Duration::from_secs(5)), "no answer within 5 s");
        }
    }

    /// Nothing more arrives within `wait`.
    fn nothing_within(&mut self, wait: Duration) {
        assert!(
            self.buf.is_empty() && !self.fill(wait),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

#[test]
fn one_request_gets_exactly_one_answer() {
    let (addr, answer) = floor();
    let mut c = Client::connect(addr);
    c.send(REQUEST);
    assert_eq!(c.answer(), answer);
    c.nothing_within(Duration::from_millis(200));
    // The connection stays open for the next one.
    c.send(REQUEST);
    assert_eq!(c.answer(), answer);
    c.nothing_within(Duration::from_millis(100));
}

#[test]
fn sixteen_pipelined_requests_in_one_write_get_sixteen_answers() {
    let (addr, answer) = floor();
    let mut c = Client::connect(addr);
    c.send(&REQUEST.repeat(16));
    for i in 0..16 {
        assert_eq!(c.answer(), answer, "answer {i}");
    }
    c.nothing_within(Duration::from_millis(200));
}

#[test]
fn a_head_split_inside_its_end_across_two_writes_gets_one_answer() {
    let (addr, answer) = floor();
    let mut c = Client::connect(addr);
    let end = REQUEST.len() - 4;
    // After 1, 2 and 3 bytes of the closing "\r\n\r\n".
    for split in end + 1..REQUEST.len() {
        c.send(&REQUEST[..split]);
        // The pause: the first part is read on its own, and is no head yet.
        c.nothing_within(Duration::from_millis(100));
        c.send(&REQUEST[split..]);
        assert_eq!(c.answer(), answer, "split at {split}");
        c.nothing_within(Duration::from_millis(100));
    }
}

#[test]
fn bytes_without_a_head_end_get_no_answer_and_others_are_still_served() {
    let (addr, answer) = floor();
    let mut garbage = Client::connect(addr);
    // More than one read's worth: binary bytes and head ends cut short, but
    // never "\r\n\r\n"; it ends on a byte that no head end starts with.
    let junk = b"\x00\xff\r\n\rGET\r\n\r \x80\n\n\r\r".repeat(10_000);
    garbage.send(&junk);
    garbage.nothing_within(Duration::from_millis(300));

    let mut other = Client::connect(addr);
    other.send(REQUEST);
    assert_eq!(other.answer(), answer);
    other.nothing_within(Duration::from_millis(100));

    // The garbage connection is still served: a head end now ends one head.
    garbage.send(b"\r\n\r\n");
    assert_eq!(garbage.answer(), answer);
    garbage.nothing_within(Duration::from_millis(100));
}

#[test]
fn answers_the_socket_does_not_take_at_once_are_all_sent_in_order() {
    let (addr, answer) = floor();
    let mut c = Client::connect(addr);
    // About 1 MB of requests and 11 MB of answers: far more than the socket
    // buffers hold, so sends come up short while nothing is read.
    const N: usize = 20_000;
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&REQUEST.repeat(N)).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..N {
        assert_eq!(c.answer(), answer, "answer {i}");
    }
    sender.join().unwrap();
    c.nothing_within(Duration::from_millis(200));
}
