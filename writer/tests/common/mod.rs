//! Shared helpers for the writer's integration tests: a real redis-server, a
//! writer on 127.0.0.1:0, a tiny raw HTTP/1.1 client, and Redis snapshots.

#![allow(dead_code)] // Each test file uses a different subset of these helpers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use heavyread_sync::testing::RedisServer;
use heavyread_sync::RecordRef;
use heavyread_writer::{Config, WriterHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A redis-server and a writer in front of it.
pub struct Env {
    pub redis: RedisServer,
    pub writer: WriterHandle,
}

impl Env {
    pub async fn start() -> Env {
        Self::start_with(|_| {}).await
    }

    /// Starts with the test defaults, then `tweak` applied to the config.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Env {
        let redis = RedisServer::start();
        let mut config = Config::new(redis.url());
        config.redis_timeout = Duration::from_millis(500);
        config.drain_timeout = Duration::from_secs(2);
        tweak(&mut config);
        let writer = heavyread_writer::start(config)
            .await
            .expect("start the writer");
        wait_ready(writer.addr()).await;
        Env { redis, writer }
    }

    pub fn addr(&self) -> SocketAddr {
        self.writer.addr()
    }

    /// `{hr}:version`, the posts hash and the log length, read directly from Redis.
    pub fn snapshot(&self) -> Snapshot {
        snapshot(&self.redis, "hr")
    }

    /// The decoded stored record of `id`: (version, etag, body).
    pub fn record(&self, id: &str) -> Option<(u64, [u8; 16], Vec<u8>)> {
        let mut c = self.redis.connection();
        let raw: Option<Vec<u8>> = redis::cmd("HGET")
            .arg("{hr}:posts")
            .arg(id)
            .query(&mut c)
            .unwrap();
        raw.map(|r| {
            let rec = RecordRef::decode(&r).expect("stored record decodes");
            assert_eq!(rec.id, id);
            (rec.version, rec.etag, rec.body.to_vec())
        })
    }

    pub async fn create(&self, body: &str) -> Resp {
        post_json(self.addr(), "/create", body).await
    }
}

/// Polls `/ready` until it answers 200 (10 s at most).
pub async fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = try_request(addr, "GET", "/ready", &[], b"").await {
            if r.status == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "writer at {addr} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What Redis holds for a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub version: Option<u64>,
    pub posts: BTreeMap<Vec<u8>, Vec<u8>>,
    pub log_len: u64,
}

pub fn snapshot(redis: &RedisServer, prefix: &str) -> Snapshot {
    let mut c = redis.connection();
    let version: Option<u64> = redis::cmd("GET")
        .arg(format!("{{{prefix}}}:version"))
        .query(&mut c)
        .unwrap();
    let posts: BTreeMap<Vec<u8>, Vec<u8>> = redis::cmd("HGETALL")
        .arg(format!("{{{prefix}}}:posts"))
        .query(&mut c)
        .unwrap();
    let log_len: u64 = redis::cmd("XLEN")
        .arg(format!("{{{prefix}}}:log"))
        .query(&mut c)
        .unwrap();
    Snapshot {
        version,
        posts,
        log_len,
    }
}

/// A post as JSON, fields in the given order.
pub fn post(id: &str, title: &str, content: &str, author: &str) -> String {
    serde_json::json!({"id": id, "title": title, "content": content, "author": author}).to_string()
}

/// The exact bytes the writer must store for a post.
pub fn served(id: &str, title: &str, content: &str, author: &str) -> Vec<u8> {
    let mut out = b"{\"id\":".to_vec();
    out.extend(serde_json::to_vec(id).unwrap());
    for (k, v) in [("title", title), ("content", content), ("author", author)] {
        out.extend(format!(",\"{k}\":").bytes());
        out.extend(serde_json::to_vec(v).unwrap());
    }
    out.push(b'}');
    out
}

/// An HTTP response as read off the socket.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), answer read to EOF.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    try_request(addr, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let mut has_te = false;
    for (k, v) in headers {
        has_te |= k.eq_ignore_ascii_case("transfer-encoding");
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_te
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    let out = raw_bytes(addr, &bytes).await?;
    parse_response(&out, method == "HEAD")
}

/// Sends raw bytes, reads until the server closes, parses one response.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Resp> {
    let out = raw_bytes(addr, bytes).await?;
    parse_response(&out, false)
}

/// Sends raw bytes, returns everything read until the server closes.
pub async fn raw_bytes(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("response timed out"))??;
    Ok(out)
}

/// Parses one response; `head` for the answer to a HEAD (no body whatever the length says).
pub fn parse_response(out: &[u8], is_head: bool) -> std::io::Result<Resp> {
    let bad = |m: &str| std::io::Error::other(format!("{m}: {:?}", String::from_utf8_lossy(out)));
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&out[..end]).map_err(|_| bad("head not utf-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &out[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if is_head {
        Vec::new()
    } else if chunked {
        dechunk(rest).ok_or_else(|| bad("bad chunked body"))?
    } else if let Some((_, len)) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        if rest.len() < len {
            return Err(bad("short body"));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..nl])
                .ok()?
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        b = &b[nl + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

pub async fn post_json(addr: SocketAddr, path: &str, body: &str) -> Resp {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"").await
}

/// MD5 of `body` as lowercase hex, computed independently of the writer.
pub fn md5_hex(body: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of a sample line in Prometheus text, e.g. `name{a="b"}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
