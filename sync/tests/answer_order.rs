//! Redis hands a change to the subscribers before it answers the writer.
//!
//! Redis answers the clients of one event-loop turn in the reverse order in
//! which they got something to answer. The publisher sends a `PING` in the
//! same write as each change's `FCALL`, so its connection is pending first
//! and answered last (see `Publisher::call`). The first test shows that
//! premise on the real redis-server, by the kernel's receive timestamps of
//! the subscriber's message and of the publishing connection's answer; the
//! second that the publisher sends its changes that way.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;
use heavyread_sync::testing::RedisServer;

/// A raw RESP connection whose reads report when the kernel received them.
struct Timed {
    s: TcpStream,
}

impl Timed {
    fn connect(redis: &RedisServer) -> Timed {
        let s = TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_nodelay(true).unwrap();
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads an int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_TIMESTAMPNS");
        Timed { s }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// Reads until `bytes` bytes arrived; the bytes and the receive time (ns
    /// since the epoch) of the last of them.
    fn read(&mut self, bytes: usize) -> (Vec<u8>, u128) {
        let (out, stamp) = self.read_maybe_stamped(bytes);
        (out, stamp.expect("no receive timestamp"))
    }

    fn read_maybe_stamped(&mut self, bytes: usize) -> (Vec<u8>, Option<u128>) {
        let mut out = Vec::new();
        let mut stamp = None;
        while out.len() < bytes {
            let mut buf = [0u8; 4096];
            let mut control = [0u64; 16];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: a zeroed msghdr is valid; every pointer set below
            // points into a live local buffer of the length given.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            // SAFETY: `msg` describes the buffers above.
            let n = unsafe { libc::recvmsg(self.s.as_raw_fd(), &mut msg, 0) };
            assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
            out.extend_from_slice(&buf[..n as usize]);
            // SAFETY: the control buffer was filled by the kernel for `msg`.
            let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
            while !c.is_null() {
                // SAFETY: `c` is a header inside the control buffer.
                let h = unsafe { &*c };
                if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_TIMESTAMPNS {
                    // SAFETY: an SCM_TIMESTAMPNS message carries a timespec.
                    let ts =
                        unsafe { (libc::CMSG_DATA(c) as *const libc::timespec).read_unaligned() };
                    stamp = Some(ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128);
                }
                // SAFETY: as above.
                c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
            }
        }
        (out, stamp)
    }
}

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The subscriber's message and the publishing connection's answer, each
/// with its receive time, for one `PUBLISH` sent after `before`.
fn publish_once(redis: &RedisServer, before: &[u8]) -> (u128, u128) {
    let mut sub = Timed::connect(redis);
    sub.send(&resp(&[b"SUBSCRIBE", b"order"]));
    let confirm = b"*3\r\n$9\r\nsubscribe\r\n$5\r\norder\r\n:1\r\n";
    assert_eq!(sub.read(confirm.len()).0, confirm);
    let mut publisher = Timed::connect(redis);
    let mut write = before.to_vec();
    write.extend_from_slice(&resp(&[b"PUBLISH", b"order", b"hello"]));
    publisher.send(&write);
    let message = b"*3\r\n$7\r\nmessage\r\n$5\r\norder\r\n$5\r\nhello\r\n";
    let (got, sub_at) = sub.read(message.len());
    assert_eq!(got, message);
    let answer: &[u8] = if before.is_empty() {
        b":1\r\n"
    } else {
        b"+PONG\r\n:1\r\n"
    };
    let (got, pub_at) = publisher.read(answer.len());
    assert_eq!(got, answer);
    (sub_at, pub_at)
}

/// The kernel turns receive timestamps on for everyone a little after the
/// first socket asks (a deferred static key), and off after the last one
/// closes: asks on a socket kept open until packets come stamped.
fn timestamps_on(redis: &RedisServer) -> Timed {
    let mut keep = Timed::connect(redis);
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        keep.send(&resp(&[b"PING"]));
        if keep.read_maybe_stamped(7).1.is_some() {
            return keep;
        }
        assert!(
            std::time::Instant::now() < end,
            "packets never came stamped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_ping_before_a_publish_makes_redis_answer_the_subscribers_first() {
    let redis = RedisServer::start();
    let _stamped = timestamps_on(&redis);
    for round in 0..5 {
        let (sub_at, pub_at) = publish_once(&redis, &resp(&[b"PING"]));
        assert!(
            sub_at < pub_at,
            "round {round}: with a PING first, the subscriber at {sub_at} came after the answer at {pub_at}"
        );
        // The other way round without it: the PING is what changes the order.
        let (sub_at, pub_at) = publish_once(&redis, b"");
        assert!(
            pub_at < sub_at,
            "round {round}: without a PING, the answer at {pub_at} came after the subscriber at {sub_at}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_sends_each_change_behind_a_ping() {
    let redis = RedisServer::start();
    let p = publisher(&redis, "ord", 1000).await;
    let mut monitor = TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    monitor
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    monitor.write_all(&resp(&[b"MONITOR"])).unwrap();
    let mut ok = [0u8; 5];
    monitor.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");

    p.put("a", br#"{"a":1}"#).await.unwrap();
    p.delete("a").await.unwrap();
    p.put("b", br#"{"b":1}"#).await.unwrap();

    // MONITOR lines: `+<time> [<db> <client>] "<command>" ...`.
    let mut lines = BufReader::new(monitor).lines();
    let mut last: std::collections::HashMap<String, String> = Default::default();
    let mut fcalls = Vec::new();
    while fcalls.len() < 3 {
        let line = lines.next().expect("monitor ended").unwrap();
        let Some(open) = line.find('[') else { continue };
        let close = line[open..].find(']').unwrap() + open;
        let client = line[open + 1..close].to_owned();
        let command = line[close + 1..].trim().to_owned();
        if command.starts_with("\"FCALL\"") {
            let before = last.get(&client).cloned().unwrap_or_default();
            fcalls.push((command.clone(), before));
        }
        last.insert(client, command);
    }
    for (fcall, before) in &fcalls {
        assert_eq!(before, "\"PING\"", "{fcall} came after {before}");
    }
    assert!(fcalls[0].0.contains("\"heavyread_put\""), "{fcalls:?}");
    assert!(fcalls[1].0.contains("\"heavyread_delete\""), "{fcalls:?}");
}
