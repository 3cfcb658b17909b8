//! A small blocking HTTP/1.1 client: one keep-alive connection, reopened
//! when the server closes it or an error leaves it in an unknown state, and
//! a timeout on every step so a paused or cut-off process cannot hang a test.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (empty for HEAD, 204 and 304).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request has no answer.
#[derive(Debug)]
pub enum HttpError {
    /// No connection could be made: the request was not sent.
    Connect(io::Error),
    /// The connection failed after the request may have been sent: the
    /// server may or may not have acted on it.
    Io(io::Error),
    /// The answer was not HTTP/1.1 as expected.
    Protocol(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Connect(e) => write!(f, "connect: {e}"),
            HttpError::Io(e) => write!(f, "i/o: {e}"),
            HttpError::Protocol(m) => write!(f, "protocol: {m}"),
        }
    }
}

const MAX_HEAD: usize = 64 << 10;

/// A client of one server address.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<Conn>,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
}

impl Client {
    /// A client of `addr`; connecting, each write and each read wait at most `timeout`.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Self {
        Client {
            addr,
            timeout,
            conn: None,
        }
    }

    /// The server address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Talks to `addr` from now on (a restarted process listens elsewhere).
    pub fn set_addr(&mut self, addr: SocketAddr) {
        if addr != self.addr {
            self.addr = addr;
            self.conn = None;
        }
    }

    /// Drops the connection; the next request opens a new one.
    pub fn reset(&mut self) {
        self.conn = None;
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> Result<Response, HttpError> {
        self.request("GET", path, None, b"")
    }

    /// `method path` with an optional body of `content_type`.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: systest\r\n");
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let result = self.exchange(head.as_bytes(), body, method == "HEAD");
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn connect(&mut self) -> Result<&mut Conn, HttpError> {
        if self.conn.is_none() {
            let stream =
                TcpStream::connect_timeout(&self.addr, self.timeout).map_err(HttpError::Connect)?;
            let setup = |s: &TcpStream| -> io::Result<()> {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(self.timeout))?;
                s.set_write_timeout(Some(self.timeout))
            };
            setup(&stream).map_err(HttpError::Connect)?;
            self.conn = Some(Conn {
                stream,
                buf: Vec::new(),
            });
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    fn exchange(
        &mut self,
        head: &[u8],
        body: &[u8],
        head_only: bool,
    ) -> Result<Response, HttpError> {
        let conn = self.connect()?;
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(head);
        out.extend_from_slice(body);
        conn.stream.write_all(&out).map_err(HttpError::Io)?;
        let resp = conn.read_response(head_only)?;
        let close = resp
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if close {
            self.conn = None;
        }
        Ok(resp)
    }
}

impl Conn {
    fn fill(&mut self) -> Result<(), HttpError> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.stream.read(&mut chunk).map_err(HttpError::Io)?;
        if n == 0 {
            return Err(HttpError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn read_response(&mut self, head_only: bool) -> Result<Response, HttpError> {
        let (status, headers, head_len) = loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut fields);
            match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = parsed.code.unwrap_or(0);
                    let headers = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect::<Vec<_>>();
                    break (status, headers, n);
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() > MAX_HEAD {
                        return Err(HttpError::Protocol("response head too large".into()));
                    }
                    self.fill()?;
                }
                Err(e) => return Err(HttpError::Protocol(format!("bad response head: {e}"))),
            }
        };
        self.buf.drain(..head_len);
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(resp);
        }
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            resp.body = self.read_chunked()?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| HttpError::Protocol(format!("bad content-length {len:?}")))?;
            while self.buf.len() < len {
                self.fill()?;
            }
            resp.body = self.buf.drain(..len).collect();
        } else {
            // Delimited by the end of the connection.
            loop {
                match self.fill() {
                    Ok(()) => {}
                    Err(HttpError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            resp.body = std::mem::take(&mut self.buf);
            resp.headers.push(("connection".into(), "close".into()));
        }
        Ok(resp)
    }

    fn read_line(&mut self) -> Result<String, HttpError> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(HttpError::Protocol("chunk line too long".into()));
            }
            self.fill()?;
        }
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, HttpError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| HttpError::Protocol(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                self.fill()?;
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }
}
