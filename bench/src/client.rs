//! A small HTTP/1.1 client for measuring: one keep-alive connection, exact
//! byte counts in both directions, response heads parsed with httparse,
//! bodies by `Content-Length`. Pipelined responses are read one at a time.
//!
//! It is deliberately minimal (no chunked bodies, no redirects, no TLS):
//! the servers it measures answer with `Content-Length`, and a lean client
//! keeps its own cost out of the numbers.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most header fields a response may have.
const MAX_HEADERS: usize = 32;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 << 10;

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The `ETag` header, as sent (quoted).
    pub etag: Option<String>,
    /// Bytes of the status line and headers, including the blank line.
    pub head_len: usize,
    /// Bytes of the body.
    pub body_len: usize,
    /// The body, when asked for.
    pub body: Vec<u8>,
}

impl Response {
    /// Bytes the response took on the wire.
    pub fn wire_len(&self) -> usize {
        self.head_len + self.body_len
    }
}

/// A keep-alive connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Start of unread bytes in `buf`.
    pos: usize,
    /// Bytes written to the socket.
    pub sent: u64,
    /// Bytes read from the socket.
    pub received: u64,
}

impl Conn {
    /// Connects, with Nagle off.
    pub async fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 << 10),
            pos: 0,
            sent: 0,
            received: 0,
        })
    }

    /// Writes bytes (a request, or several pipelined).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        self.sent += bytes.len() as u64;
        Ok(())
    }

    async fn fill(&mut self) -> Result<()> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > self.buf.capacity() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + (16 << 10), 0);
        let n = self.stream.read(&mut self.buf[len..]).await;
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(len);
                return Err(e.into());
            }
        };
        self.buf.truncate(len + n);
        if n == 0 {
            bail!("connection closed by the server");
        }
        self.received += n as u64;
        Ok(())
    }

    /// Reads the next response; the body is kept only if `keep_body`.
    pub async fn read_response(&mut self, keep_body: bool) -> Result<Response> {
        let Head {
            status,
            etag,
            head_len,
            body_len,
            ..
        } = loop {
            match parse_head(&self.buf[self.pos..])? {
                Some(h) => break h,
                None if self.buf.len() - self.pos > MAX_HEAD => bail!("response head too large"),
                None => self.fill().await?,
            }
        };
        while self.buf.len() - self.pos < head_len + body_len {
            self.fill().await?;
        }
        let body_at = self.pos + head_len;
        let body = if keep_body {
            self.buf[body_at..body_at + body_len].to_vec()
        } else {
            Vec::new()
        };
        self.pos = body_at + body_len;
        Ok(Response {
            status,
            etag,
            head_len,
            body_len,
            body,
        })
    }

    /// Sends one request and reads its response.
    pub async fn exchange(&mut self, req: &[u8], keep_body: bool) -> Result<Response> {
        self.send(req).await?;
        self.read_response(keep_body).await
    }
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// `ETag`, as sent.
    pub etag: Option<String>,
    /// Bytes of the head, blank line included.
    pub head_len: usize,
    /// Bytes of the body that follows.
    pub body_len: usize,
    /// The server closes the connection after this answer (`Connection:
    /// close`, or HTTP/1.0 without `keep-alive`).
    pub close: bool,
}

/// Parses a response head, or `None` when more bytes are needed.
pub fn parse_head(bytes: &[u8]) -> Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(bytes).context("malformed response head")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.context("response without a status")?;
    let mut etag = None;
    let mut length = None;
    let (mut close, mut keep_alive) = (false, false);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).ok();
            length = Some(
                v.and_then(|v| v.trim().parse::<usize>().ok())
                    .context("bad Content-Length")?,
            );
        } else if h.name.eq_ignore_ascii_case("etag") {
            etag = std::str::from_utf8(h.value).ok().map(str::to_owned);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked responses are not supported by the bench client");
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let close = close || (resp.version == Some(0) && !keep_alive);
    // No body on 1xx, 204 and 304, whatever Content-Length says.
    let body_len = if status < 200 || status == 204 || status == 304 {
        0
    } else {
        length.context("response without Content-Length")?
    };
    Ok(Some(Head {
        status,
        etag,
        head_len,
        body_len,
        close,
    }))
}

/// A `GET` request with extra headers.
pub fn get(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n");
    for (k, v) in headers {
        r.push_str(k);
        r.push_str(": ");
        r.push_str(v);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// A `POST` request head for a body of `len` bytes, with a bearer token if given.
pub fn post_head(path: &str, content_type: &str, len: usize, token: Option<&str>) -> Vec<u8> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n{auth}\r\n"
    )
    .into_bytes()
}

/// Sends one `GET` on a fresh connection (for occasional probes such as `/ready`).
pub async fn get_once(addr: SocketAddr, path: &str) -> Result<Response> {
    let mut c = Conn::connect(addr).await?;
    c.exchange(&get(path, &[("Connection", "close")]), true)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_give_status_etag_and_lengths() {
        let r = b"HTTP/1.1 200 OK\r\nETag: \"ab\"\r\nContent-Length: 5\r\n\r\nhello";
        let h = parse_head(r).unwrap().unwrap();
        assert_eq!(
            (h.status, h.etag.as_deref(), h.body_len),
            (200, Some("\"ab\""), 5)
        );
        assert_eq!(&r[h.head_len..], b"hello");
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nETag").unwrap(), None);
    }

    #[test]
    fn heads_say_whether_the_server_closes_the_connection() {
        let close = |r: &[u8]| parse_head(r).unwrap().unwrap().close;
        assert!(!close(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(close(
            b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(close(
            b"HTTP/1.1 503 X\r\nconnection: upgrade, close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(close(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!close(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!close(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
        ));
    }

    #[test]
    fn not_modified_has_no_body() {
        let r = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 350\r\n\r\n";
        let h = parse_head(r).unwrap().unwrap();
        assert_eq!((h.status, h.head_len, h.body_len), (304, r.len(), 0));
    }

    #[test]
    fn chunked_and_lengthless_bodies_are_refused() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    #[test]
    fn requests_are_well_formed() {
        assert_eq!(
            get("/post?id=a", &[("If-None-Match", "\"x\"")]),
            b"GET /post?id=a HTTP/1.1\r\nHost: bench\r\nIf-None-Match: \"x\"\r\n\r\n"
        );
        assert!(
            String::from_utf8(post_head("/bulk", "application/x-ndjson", 12, None))
                .unwrap()
                .ends_with("Content-Length: 12\r\n\r\n")
        );
        assert!(String::from_utf8(post_head("/create", "a/b", 1, Some("t")))
            .unwrap()
            .ends_with("Content-Length: 1\r\nAuthorization: Bearer t\r\n\r\n"));
    }
}
