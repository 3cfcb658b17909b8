//! The full resync's HSCAN, pipelined one page ahead.
//!
//! A page's cursor is the first thing in its reply, and the next page needs
//! only that cursor. redis-rs hands a reply over when all of it is parsed, so
//! with it Redis sits idle while this side receives and parses a page, and
//! this side sits idle while Redis builds the next: at a million posts that
//! is most of a cold start. [`Scanner`] speaks RESP2 on its own connection:
//! it reads the cursor, sends the next HSCAN at once, and only then reads the
//! rest of the page, so Redis builds page N + 1 while page N crosses the
//! socket. A page is handed over as the reply's own bytes with the positions
//! of its fields and values ([`Page`]): no allocation per entry.
//!
//! Plain TCP and Unix sockets only (with `AUTH` and `SELECT` from the URL);
//! TLS connections keep the redis-rs loop ([`Scanner::connect`] says `None`).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo};

use crate::Error;

/// Largest bulk string accepted (Redis's own `proto-max-bulk-len` default).
const MAX_BULK: usize = 512 << 20;
/// Largest element count accepted in one HSCAN reply.
const MAX_ITEMS: usize = 1 << 26;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 256 << 10;

/// One HSCAN page: the reply's bytes and where each field and value lies in
/// them, field then value, in reply order.
#[derive(Debug, Default)]
pub struct Page {
    data: Vec<u8>,
    /// Offsets and lengths in `data`: as wide as the page may be (a page
    /// of a large `--scan-batch` of large records can pass 4 GiB).
    spans: Vec<(usize, usize)>,
}

impl Page {
    /// Builds a page from owned pairs (the redis-rs fallback and tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        let mut page = Page::default();
        for (field, value) in pairs {
            for part in [field, value] {
                let start = page.data.len();
                page.data.extend_from_slice(part);
                page.spans.push((start, part.len()));
            }
        }
        page
    }

    /// Entries (field, value) on this page.
    pub fn len(&self) -> usize {
        self.spans.len() / 2
    }

    /// True when the page has no entries.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The entries, in reply order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.spans.chunks_exact(2).map(|p| {
            let at = |(s, l): (usize, usize)| &self.data[s..s + l];
            (at(p[0]), at(p[1]))
        })
    }
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// An HSCAN over one hash, one request ahead of the page being read.
pub struct Scanner {
    stream: Box<dyn Stream>,
    key: Vec<u8>,
    count: usize,
    /// The page being read is built in place in this buffer: bytes read
    /// are `..end`, parsed `..pos`; past `end` it is zeroed room for reads.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Bytes of the last page, to size the next buffer.
    last_page: usize,
    /// False once the cursor 0 has been read: no request is outstanding.
    more: bool,
}

impl Scanner {
    /// Connects as `info` says and sends the first HSCAN of `key`. `None`
    /// when the address is one this scanner does not speak (TLS).
    pub fn connect(
        info: &ConnectionInfo,
        key: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Option<Self>, Error> {
        let stream: Box<dyn Stream> = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let mut last = None;
                let mut found = None;
                for addr in (host.as_str(), *port).to_socket_addrs().map_err(io_error)? {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let s = match (found, last) {
                    (Some(s), _) => s,
                    (None, Some(e)) => return Err(io_error(e)),
                    (None, None) => {
                        return Err(io_error(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{host} resolves to no address"),
                        )))
                    }
                };
                s.set_nodelay(true).map_err(io_error)?;
                s.set_read_timeout(Some(timeout)).map_err(io_error)?;
                s.set_write_timeout(Some(timeout)).map_err(io_error)?;
                Box::new(s)
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => {
                let s = std::os::unix::net::UnixStream::connect(path).map_err(io_error)?;
                s.set_read_timeout(Some(timeout)).map_err(io_error)?;
                s.set_write_timeout(Some(timeout)).map_err(io_error)?;
                Box::new(s)
            }
            _ => return Ok(None),
        };
        let mut scanner = Scanner {
            stream,
            key: key.as_bytes().to_vec(),
            count: count.max(1),
            buf: Vec::new(),
            pos: 0,
            end: 0,
            last_page: 0,
            more: true,
        };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = settings.username() {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            scanner.send(&args)?;
            scanner.expect_ok("AUTH")?;
        }
        if settings.db() != 0 {
            let db = settings.db().to_string();
            scanner.send(&[b"SELECT", db.as_bytes()])?;
            scanner.expect_ok("SELECT")?;
        }
        scanner.request(b"0")?;
        Ok(Some(scanner))
    }

    /// The next page, or `None` after the page that carried cursor 0.
    pub fn next_page(&mut self) -> Result<Option<Page>, Error> {
        if !self.more {
            return Ok(None);
        }
        let start = self.pos;
        let head = self.line()?;
        match self.buf[head.0] {
            b'*' if self.number(head)? == 2 => {}
            b'-' => return Err(self.server_error(head)),
            _ => return Err(Error::Protocol("HSCAN reply is not a pair".into())),
        }
        let cursor = self.bulk()?;
        let cursor_text = self.buf[cursor.0..cursor.0 + cursor.1].to_vec();
        std::str::from_utf8(&cursor_text)
            .ok()
            .and_then(|c| c.parse::<u64>().ok())
            .ok_or_else(|| Error::Protocol("HSCAN cursor is not a number".into()))?;
        // The next page is asked for before this one is read.
        if cursor_text == b"0" {
            self.more = false;
        } else {
            self.request(&cursor_text)?;
        }
        let items = self.line()?;
        if self.buf[items.0] != b'*' {
            return Err(Error::Protocol("HSCAN items are not an array".into()));
        }
        let n = self.number(items)?;
        if n % 2 != 0 || n > MAX_ITEMS {
            return Err(Error::Protocol(format!("HSCAN page has {n} items")));
        }
        let mut spans = Vec::with_capacity(n);
        for _ in 0..n {
            let (s, l) = self.bulk()?;
            spans.push((s - start, l));
        }
        // Hand over this reply's bytes; what follows it starts the next buffer.
        let end = self.pos;
        let mut next = Vec::with_capacity(self.last_page.max(READ_CHUNK) + READ_CHUNK);
        next.extend_from_slice(&self.buf[end..self.end]);
        self.end = next.len();
        let mut data = std::mem::replace(&mut self.buf, next);
        self.pos = 0;
        data.truncate(end);
        if start > 0 {
            data.drain(..start);
        }
        self.last_page = data.len();
        Ok(Some(Page { data, spans }))
    }

    fn request(&mut self, cursor: &[u8]) -> Result<(), Error> {
        let count = self.count.to_string();
        let key = std::mem::take(&mut self.key);
        let r = self.send(&[b"HSCAN", &key, cursor, b"COUNT", count.as_bytes()]);
        self.key = key;
        r
    }

    fn send(&mut self, args: &[&[u8]]) -> Result<(), Error> {
        let mut out = Vec::with_capacity(64 + args.iter().map(|a| a.len() + 16).sum::<usize>());
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&out).map_err(io_error)
    }

    fn expect_ok(&mut self, what: &str) -> Result<(), Error> {
        let line = self.line()?;
        let text = &self.buf[line.0..line.0 + line.1];
        let r = match text.first() {
            Some(b'+') => Ok(()),
            Some(b'-') => Err(self.server_error(line)),
            _ => Err(Error::Protocol(format!(
                "{what} answered something else than OK"
            ))),
        };
        // Nothing else is outstanding: start the next reply at the buffer's front.
        self.buf.drain(..self.pos);
        self.end -= self.pos;
        self.pos = 0;
        r
    }

    fn server_error(&self, line: (usize, usize)) -> Error {
        let text = String::from_utf8_lossy(&self.buf[line.0 + 1..line.0 + line.1]);
        Error::Protocol(format!("HSCAN failed: {text}"))
    }

    /// The integer after the type byte of a header line.
    fn number(&self, line: (usize, usize)) -> Result<usize, Error> {
        std::str::from_utf8(&self.buf[line.0 + 1..line.0 + line.1])
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| Error::Protocol("HSCAN reply has a bad length".into()))
    }

    /// A bulk string's (start, length) in the buffer.
    fn bulk(&mut self) -> Result<(usize, usize), Error> {
        let head = self.line()?;
        if self.buf[head.0] != b'$' {
            return Err(Error::Protocol("HSCAN entry is not a string".into()));
        }
        let len = self.number(head)?;
        if len > MAX_BULK {
            return Err(Error::Protocol(format!("HSCAN entry of {len} bytes")));
        }
        let start = self.pos;
        self.fill_to(start + len + 2)?;
        if &self.buf[start + len..start + len + 2] != b"\r\n" {
            return Err(Error::Protocol("HSCAN entry is not terminated".into()));
        }
        self.pos = start + len + 2;
        Ok((start, len))
    }

    /// The next line, without its CRLF, as (start, length); never empty.
    fn line(&mut self) -> Result<(usize, usize), Error> {
        let mut from = self.pos;
        loop {
            if let Some(i) = self.buf[from..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let start = self.pos;
                let len = from + i - start;
                if len == 0 {
                    return Err(Error::Protocol("empty line in a reply".into()));
                }
                self.pos = from + i + 2;
                return Ok((start, len));
            }
            if self.end - self.pos > 64 {
                return Err(Error::Protocol("reply header line too long".into()));
            }
            from = self.end.saturating_sub(1).max(self.pos);
            self.read_more(self.end + 1)?;
        }
    }

    /// Reads until the buffer holds `end` bytes.
    fn fill_to(&mut self, end: usize) -> Result<(), Error> {
        while self.end < end {
            self.read_more(end)?;
        }
        Ok(())
    }

    /// One read of at least what is missing up to `end`, at most a chunk more.
    fn read_more(&mut self, end: usize) -> Result<(), Error> {
        let have = self.end;
        let want = end.saturating_sub(have).max(READ_CHUNK);
        if self.buf.len() < have + want {
            // Grown (and zeroed) only past what earlier reads already zeroed.
            self.buf.resize(have + want, 0);
        }
        let n = loop {
            match self.stream.read(&mut self.buf[have..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e)),
            }
        };
        self.end = have + n;
        if n == 0 {
            return Err(io_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "redis closed the connection during HSCAN",
            )));
        }
        Ok(())
    }
}

fn io_error(e: io::Error) -> Error {
    Error::Redis(redis::RedisError::from(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scanner over canned reply bytes, with what it sent captured.
    struct Canned {
        input: io::Cursor<Vec<u8>>,
        sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
        /// Most bytes handed out per read, to cut replies anywhere.
        step: usize,
    }

    impl Read for Canned {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(self.step);
            self.input.read(&mut out[..n])
        }
    }

    impl Write for Canned {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.sent.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn scanner(
        replies: &[u8],
        step: usize,
    ) -> (Scanner, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
        let sent = std::sync::Arc::default();
        let s = Scanner {
            stream: Box::new(Canned {
                input: io::Cursor::new(replies.to_vec()),
                sent: std::sync::Arc::clone(&sent),
                step,
            }),
            key: b"{hr}:posts".to_vec(),
            count: 3,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            last_page: 0,
            more: true,
        };
        (s, sent)
    }

    fn reply(cursor: &str, pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut r = format!(
            "*2\r\n${}\r\n{cursor}\r\n*{}\r\n",
            cursor.len(),
            pairs.len() * 2
        );
        for (f, v) in pairs {
            r += &format!("${}\r\n{f}\r\n${}\r\n{v}\r\n", f.len(), v.len());
        }
        r.into_bytes()
    }

    fn owned(page: &Page) -> Vec<(String, String)> {
        page.entries()
            .map(|(f, v)| {
                (
                    String::from_utf8(f.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn pages_follow_the_cursor_and_each_request_goes_out_before_its_page_is_read() {
        let mut replies = reply("17", &[("a", "one"), ("b", "two\r\nlines")]);
        replies.extend(reply("0", &[("c", ""), ("dd", "x")]));
        for step in [1, 2, 7, 1 << 20] {
            let (mut s, sent) = scanner(&replies, step);
            let p1 = s.next_page().unwrap().unwrap();
            // Page 1 is read, and page 2 was asked for with its cursor.
            let asked = String::from_utf8(sent.lock().unwrap().clone()).unwrap();
            assert!(
                asked.ends_with("$2\r\n17\r\n$5\r\nCOUNT\r\n$1\r\n3\r\n"),
                "{asked:?}"
            );
            assert_eq!(
                owned(&p1),
                [
                    ("a".into(), "one".into()),
                    ("b".into(), "two\r\nlines".into())
                ]
            );
            let p2 = s.next_page().unwrap().unwrap();
            assert_eq!(
                owned(&p2),
                [("c".into(), "".into()), ("dd".into(), "x".into())]
            );
            assert_eq!(p2.len(), 2);
            // Cursor 0 ended the scan: no third request, no third page.
            assert!(s.next_page().unwrap().is_none());
            assert_eq!(sent.lock().unwrap().len(), asked.len(), "step {step}");
        }
    }

    #[test]
    fn malformed_replies_fail_cleanly() {
        let cases: [(&[u8], &str); 8] = [
            (b"-ERR wrong kind\r\n", "wrong kind"),
            (b"*3\r\n", "not a pair"),
            (b"*2\r\n$1\r\nx\r\n*0\r\n", "cursor is not a number"),
            (b"*2\r\n$1\r\n0\r\n$3\r\nabc\r\n", "not an array"),
            (b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\na\r\n", "1 items"),
            (b"*2\r\n$1\r\n0\r\n*2\r\n:1\r\n:2\r\n", "not a string"),
            (b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\nab\r\n", "not terminated"),
            (b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\na", "closed the connection"),
        ];
        for (bytes, why) in cases {
            let (mut s, _) = scanner(bytes, 3);
            let e = s.next_page().unwrap_err().to_string();
            assert!(e.contains(why), "{:?}: {e}", String::from_utf8_lossy(bytes));
        }
        let (mut s, _) = scanner(format!("*2\r\n${}\r\n", MAX_BULK + 1).as_bytes(), 64);
        assert!(s.next_page().unwrap_err().to_string().contains("bytes"));
        let (mut s, _) = scanner(&[b'*'; 100], 100);
        assert!(s.next_page().unwrap_err().to_string().contains("too long"));
    }

    #[test]
    fn pages_from_pairs_read_back() {
        let p = Page::from_pairs([(&b"k"[..], &b"v1"[..]), (b"", b"v2")]);
        assert_eq!(
            owned(&p),
            [("k".into(), "v1".into()), ("".into(), "v2".into())]
        );
        assert!(Page::default().is_empty());
    }
}
