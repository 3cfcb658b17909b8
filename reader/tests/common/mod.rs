//! Shared helpers of the reader's integration tests: a real redis-server, a
//! publisher to write through, a reader on a free port, and raw-socket
//! HTTP helpers that check exact bytes.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use heavyread_reader::{start, Config, ReaderHandle};
use heavyread_sync::record::etag_hex;
use heavyread_sync::testing::RedisServer;
use heavyread_sync::{Publisher, Written};

/// A reader serving what a real Redis holds, and a way to write to it.
pub struct Fixture {
    pub reader: ReaderHandle,
    pub redis: RedisServer,
    pub publisher: Publisher,
    pub rt: tokio::runtime::Runtime,
}

/// Short timeouts so timing tests stay fast; one executor.
pub fn test_config(redis_url: &str) -> Config {
    let mut c = Config::new(redis_url);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.cores = Some(1);
    c.header_timeout = Duration::from_millis(400);
    c.idle_timeout = Duration::from_millis(800);
    c.write_timeout = Duration::from_secs(2);
    c.drain_timeout = Duration::from_secs(2);
    c.redis_ping_interval = Duration::from_millis(200);
    c.redis_ping_timeout = Duration::from_millis(500);
    c.redis_command_timeout = Duration::from_millis(500);
    c.max_staleness = Duration::from_secs(1);
    c.io_memory = 64 << 10;
    c
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

impl Fixture {
    /// Redis, the function library, and a ready reader configured by `tweak`.
    pub fn start(tweak: impl FnOnce(&mut Config)) -> Fixture {
        let redis = RedisServer::start();
        let rt = runtime();
        // The publisher's connection manager spawns onto the current runtime.
        let _enter = rt.enter();
        let publisher =
            Publisher::new(&redis.url(), "hr", 10_000, Duration::from_secs(2)).expect("publisher");
        rt.block_on(publisher.load_library()).expect("load library");
        let mut config = test_config(&redis.url());
        tweak(&mut config);
        let reader = start(config).expect("start reader");
        assert!(
            reader.wait_ready(Duration::from_secs(10)),
            "reader did not become ready"
        );
        Fixture {
            reader,
            redis,
            publisher,
            rt,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.reader.local_addr()
    }

    /// Writes through the publisher and waits until the reader serves that version.
    pub fn put(&self, id: &str, body: &str) -> Written {
        let w = self
            .rt
            .block_on(self.publisher.put(id, body.as_bytes()))
            .expect("put");
        self.wait_version(id, Some(w.version));
        w
    }

    /// Deletes through the publisher and waits until the reader forgot the id.
    pub fn delete(&self, id: &str) {
        self.rt.block_on(self.publisher.delete(id)).expect("delete");
        self.wait_version(id, None);
    }

    fn wait_version(&self, id: &str, version: Option<u64>) {
        let store = self.reader.store();
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let g = store.guard();
            let now = store.get(id, &g).map(|e| e.version());
            if now == version {
                return;
            }
            assert!(
                Instant::now() < end,
                "{id} stayed at {now:?}, wanted {version:?}"
            );
            drop(g);
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// `"<32 hex>"` for a body.
pub fn quoted_etag(w: &Written) -> String {
    format!("\"{}\"", String::from_utf8_lossy(&etag_hex(&w.etag)))
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends `raw` on a new connection, half-closes, and returns everything until the server closes.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    let _ = s.shutdown(Shutdown::Write);
    read_to_close(&mut s)
}

/// Reads until EOF (or a reset after the answer).
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            // A signal in this process (e.g. a child redis-server exiting) is not an answer.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read failed after {} bytes: {e}", out.len()),
        }
    }
}

/// Reads exactly one response; `head_only` for HEAD and 304 (no body despite Content-Length).
pub fn read_response(s: &mut TcpStream, head_only: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        let n = match s.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.expect("read head"),
        };
        assert!(
            n == 1,
            "connection closed inside a head: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.push(byte[0]);
    }
    if !head_only {
        let len = header(&out, "content-length").map_or(0, |v| v.parse::<usize>().unwrap());
        let start = out.len();
        out.resize(start + len, 0);
        s.read_exact(&mut out[start..]).expect("read body");
    }
    out
}

/// The first value of header `name` in a response head.
pub fn header(resp: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(resp);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

fn is_generated_id(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    parts.len() == 3
        && parts[0].len() == 16
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks and masks what changes from run to run: `Date` becomes `<date>`,
/// generated request ids become `<id>`. Panics if either is malformed.
pub fn normalize(resp: &[u8]) -> String {
    let text = String::from_utf8(resp.to_vec()).expect("utf-8 response");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("\r\nDate: ") {
        let (before, after) = rest.split_at(i + 8);
        out.push_str(before);
        let date = &after[..29];
        assert!(
            date.ends_with(" GMT") && date.as_bytes()[3] == b',' && date.len() == 29,
            "bad Date {date:?}"
        );
        out.push_str("<date>");
        rest = &after[29..];
    }
    out.push_str(rest);
    let mut masked = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("X-Request-Id: ") {
        let (before, after) = rest.split_at(i + 14);
        masked.push_str(before);
        let end = after.find("\r\n").unwrap_or(after.len());
        let id = &after[..end];
        if is_generated_id(id) {
            masked.push_str("<id>");
        } else {
            masked.push_str(id);
        }
        rest = &after[end..];
    }
    masked.push_str(rest);
    masked
}

/// Runs `promtool check metrics` on a page; returns its complaints (empty when clean).
pub fn promtool_check(page: &str) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (apt-get install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() && text.is_empty() {
        text = format!("promtool exited with {}", out.status);
    }
    text
}

/// A GET over a fresh connection; returns the whole exchange.
pub fn get(addr: SocketAddr, target: &str) -> Vec<u8> {
    exchange(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The status code of a response.
pub fn status_of(resp: &[u8]) -> u16 {
    String::from_utf8_lossy(&resp[9..12])
        .parse()
        .expect("status code")
}

/// The body of a response (after the blank line).
pub fn body_of(resp: &[u8]) -> &[u8] {
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    &resp[at..]
}
