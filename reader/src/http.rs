//! HTTP/1.1 for the reader, as pure functions over byte slices: request
//! heads are parsed with httparse into exactly what the server needs
//! ([`parse_request`]), and responses are appended to a reusable buffer
//! ([`write_entry`], [`write_not_modified`], [`write_simple`]). Nothing
//! here allocates, blocks or panics on any input.
//!
//! The reader serves no request bodies: a request that announces one
//! (`Content-Length` above zero, any `Transfer-Encoding`) is rejected, so
//! the next pipelined request always starts right after the head and there
//! is nothing to smuggle.

use std::mem::MaybeUninit;

use heavyread_sync::record::{valid_id, MAX_ID_LEN};

/// Upper bound of `--max-headers` (the size of the parser's header array on the stack).
pub const MAX_HEADERS_CAP: usize = 128;

/// `If-None-Match` and `If-Match` header lines kept per request, each. With
/// more `If-None-Match` lines the request is answered as if none matched (a
/// 200 is always a correct answer); with more `If-Match` lines, as if none
/// matched too, which is a 412 (a match that is not checked is not proven).
const MAX_INM: usize = 4;

/// Size limits of a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, without its line ending; longer gets 414.
    pub max_request_line: usize,
    /// Largest head (request line, headers, blank line); larger gets 431.
    pub max_header_bytes: usize,
    /// Most header fields (at most [`MAX_HEADERS_CAP`]); more gets 431.
    pub max_headers: usize,
}

/// The methods served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: the same headers as `GET`, no body.
    Head,
}

/// What a request asks for, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `/post?id=ID`.
    Post,
    /// `/health`.
    Health,
    /// `/ready`.
    Ready,
    /// `/metrics`.
    Metrics,
    /// Any other path.
    Unknown,
}

/// The statuses the reader answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 200.
    Ok,
    /// 304.
    NotModified,
    /// 400.
    BadRequest,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 408.
    RequestTimeout,
    /// 412.
    PreconditionFailed,
    /// 414.
    UriTooLong,
    /// 431.
    HeadersTooLarge,
    /// 503.
    ServiceUnavailable,
}

impl Status {
    /// Every status, in [`Status::index`] order.
    pub const ALL: [Status; 10] = [
        Status::Ok,
        Status::NotModified,
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::PreconditionFailed,
        Status::UriTooLong,
        Status::HeadersTooLarge,
        Status::ServiceUnavailable,
    ];

    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::NotModified => 304,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::PreconditionFailed => 412,
            Status::UriTooLong => 414,
            Status::HeadersTooLarge => 431,
            Status::ServiceUnavailable => 503,
        }
    }

    /// Position in [`Status::ALL`], for per-status counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The status line, with its line ending.
    pub fn line(self) -> &'static [u8] {
        match self {
            Status::Ok => b"HTTP/1.1 200 OK\r\n",
            Status::NotModified => b"HTTP/1.1 304 Not Modified\r\n",
            Status::BadRequest => b"HTTP/1.1 400 Bad Request\r\n",
            Status::NotFound => b"HTTP/1.1 404 Not Found\r\n",
            Status::MethodNotAllowed => b"HTTP/1.1 405 Method Not Allowed\r\n",
            Status::RequestTimeout => b"HTTP/1.1 408 Request Timeout\r\n",
            Status::PreconditionFailed => b"HTTP/1.1 412 Precondition Failed\r\n",
            Status::UriTooLong => b"HTTP/1.1 414 URI Too Long\r\n",
            Status::HeadersTooLarge => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            Status::ServiceUnavailable => b"HTTP/1.1 503 Service Unavailable\r\n",
        }
    }
}

/// Why a request is refused; the connection is closed after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not HTTP/1.x syntax.
    Malformed,
    /// An HTTP/1.1 request without `Host`.
    MissingHost,
    /// More than one `Host`.
    DuplicateHost,
    /// A `Host` value that is no `host[:port]`.
    BadHost,
    /// `Content-Length` above zero: bodies are not accepted.
    Body,
    /// `Content-Length` that is not a number, or several that disagree.
    BadContentLength,
    /// Any `Transfer-Encoding`.
    TransferEncoding,
    /// A request target that is neither a path nor an absolute URL.
    BadTarget,
    /// A method other than GET and HEAD.
    MethodNotAllowed,
    /// The request line is longer than the limit.
    UriTooLong,
    /// The head is larger, or has more fields, than the limits.
    HeadersTooLarge,
}

impl Reject {
    /// The status answered.
    pub fn status(self) -> Status {
        match self {
            Reject::MethodNotAllowed => Status::MethodNotAllowed,
            Reject::UriTooLong => Status::UriTooLong,
            Reject::HeadersTooLarge => Status::HeadersTooLarge,
            _ => Status::BadRequest,
        }
    }

    /// The JSON body answered.
    pub fn body(self) -> &'static [u8] {
        match self {
            Reject::Malformed => br#"{"error":"malformed request"}"#,
            Reject::MissingHost => br#"{"error":"missing Host header"}"#,
            Reject::DuplicateHost => br#"{"error":"more than one Host header"}"#,
            Reject::BadHost => br#"{"error":"invalid Host header"}"#,
            Reject::Body => br#"{"error":"request body not allowed"}"#,
            Reject::BadContentLength => br#"{"error":"invalid Content-Length"}"#,
            Reject::TransferEncoding => br#"{"error":"Transfer-Encoding not supported"}"#,
            Reject::BadTarget => br#"{"error":"invalid request target"}"#,
            Reject::MethodNotAllowed => br#"{"error":"method not allowed"}"#,
            Reject::UriTooLong => br#"{"error":"request line too long"}"#,
            Reject::HeadersTooLarge => br#"{"error":"request headers too large"}"#,
        }
    }

    /// Extra header lines of the answer.
    pub fn extra_headers(self) -> &'static [u8] {
        match self {
            Reject::MethodNotAllowed => b"Allow: GET, HEAD\r\n",
            _ => b"",
        }
    }
}

/// A complete, acceptable request head, borrowing from the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// GET or HEAD.
    pub method: Method,
    /// What the path asks for.
    pub target: Target,
    /// Everything after `?` (without a fragment), still percent-encoded.
    pub query: &'a [u8],
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// HTTP/1.0: a kept-alive answer must say `Connection: keep-alive`.
    pub http10: bool,
    /// The client's `X-Request-Id`, if it sent one (sanity is checked later).
    pub request_id: Option<&'a [u8]>,
    if_none_match: TagLines<'a>,
    if_match: TagLines<'a>,
}

/// The values of one entity-tag condition's header lines (`If-None-Match`
/// or `If-Match`), the first [`MAX_INM`] of them kept.
#[derive(Debug, Clone, Copy, Default)]
struct TagLines<'a> {
    values: [&'a [u8]; MAX_INM],
    /// Lines seen (may exceed [`MAX_INM`]).
    lines: usize,
}

impl<'a> TagLines<'a> {
    fn push(&mut self, value: &'a [u8]) {
        if let Some(slot) = self.values.get_mut(self.lines) {
            *slot = value;
        }
        self.lines += 1;
    }

    /// Whether a kept line matches `etag` (see [`list_matches`]); `None`
    /// when there were more lines than are kept, so no answer is proven.
    fn matches(&self, etag: &[u8], strong: bool) -> Option<bool> {
        let kept = self.values.get(..self.lines)?;
        Some(kept.iter().any(|v| list_matches(v, etag, strong)))
    }
}

impl<'a> Request<'a> {
    /// True when `If-None-Match` holds `*` or an entity tag equal (weakly) to
    /// `etag` (quoted, as in [`heavyread_sync::Entry::etag`]).
    pub fn not_modified(&self, etag: &[u8]) -> bool {
        self.if_none_match.matches(etag, false) == Some(true)
    }

    /// True when `If-Match` is present and fails for a representation
    /// whose etag is `etag` (RFC 9110, section 13.1.1): none of its entity
    /// tags is strongly equal to it, and it is not `*`. The answer is then
    /// 412 (evaluated before `If-None-Match`, section 13.2.2). More lines
    /// than are kept cannot be proven to match, and fail.
    pub fn precondition_failed(&self, etag: &[u8]) -> bool {
        self.if_match.lines > 0 && self.if_match.matches(etag, true) != Some(true)
    }

    /// Whether the request carried `If-None-Match` at all.
    pub fn has_if_none_match(&self) -> bool {
        self.if_none_match.lines > 0
    }
}

/// The outcome of parsing the start of a read buffer.
#[derive(Debug, Clone, Copy)]
pub enum Parse<'a> {
    /// Not a whole head yet, and within the limits: read more.
    Partial,
    /// A head of `len` bytes (the next request starts right after it).
    Complete(Request<'a>, usize),
    /// Refuse and close; `request_id` is the client's, when it got that
    /// far; the flag says the method was HEAD (the answer has no body then).
    Reject(Reject, Option<&'a [u8]>, bool),
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

/// True when the request line (after the empty lines a server should
/// tolerate before it) is longer than the limit, or has no end within it.
fn request_line_too_long(buf: &[u8], limits: &Limits) -> bool {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    let scan = &line[..line.len().min(limits.max_request_line + 2)];
    match scan.iter().position(|&b| b == b'\n') {
        Some(nl) => {
            let len = if nl > 0 && scan[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            len > limits.max_request_line
        }
        None => line.len() > limits.max_request_line + 1,
    }
}

/// Parses the request head at the start of `buf`.
pub fn parse_request<'a>(buf: &'a [u8], limits: &Limits) -> Parse<'a> {
    // Left uninitialised: httparse writes the ones it parses (zeroing all
    // 128 would cost 4 KiB of stores per request).
    let mut headers = [const { MaybeUninit::<httparse::Header<'a>>::uninit() }; MAX_HEADERS_CAP];
    let max_headers = limits.max_headers.clamp(1, MAX_HEADERS_CAP);
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(buf, &mut headers[..max_headers]);
    // Known once the request line is parsed, even when the head is refused.
    let head = req.method == Some("HEAD");
    // An over-long request line is 414 whatever else is wrong. A complete
    // head's line is exactly `METHOD SP target SP HTTP/1.x` (httparse's
    // default is one space between them), so its length needs no scan.
    let too_long = match parsed {
        Ok(httparse::Status::Complete(_)) => {
            req.method.map_or(0, str::len) + req.path.map_or(0, str::len) + 10
                > limits.max_request_line
        }
        _ => request_line_too_long(buf, limits),
    };
    if too_long {
        return Parse::Reject(Reject::UriTooLong, None, head);
    }
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) if len > limits.max_header_bytes => {
            return Parse::Reject(Reject::HeadersTooLarge, None, head)
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_header_bytes => {
            return Parse::Reject(Reject::HeadersTooLarge, None, head)
        }
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parse::Reject(Reject::HeadersTooLarge, None, head)
        }
        Err(_) => return Parse::Reject(Reject::Malformed, None, head),
    };

    let http10 = req.version == Some(0);
    let mut request_id = None;
    let mut if_none_match = TagLines::default();
    let mut if_match = TagLines::default();
    let mut hosts = 0usize;
    let mut bad_host = false;
    let mut content_length: Option<u64> = None;
    let mut bad_length = false;
    let mut transfer_encoding = false;
    let mut close = false;
    let mut keep_alive = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = trim(h.value);
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            bad_host |= !valid_host(value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            match parse_u64(value) {
                Some(n) if content_length.is_none_or(|c| c == n) => content_length = Some(n),
                _ => bad_length = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim(token);
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"if-none-match") {
            if_none_match.push(value);
        } else if name.eq_ignore_ascii_case(b"if-match") {
            if_match.push(value);
        } else if name.eq_ignore_ascii_case(b"x-request-id") && request_id.is_none() {
            request_id = Some(value);
        }
    }

    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => return Parse::Reject(Reject::MethodNotAllowed, request_id, head),
    };
    let reject = if transfer_encoding {
        Some(Reject::TransferEncoding)
    } else if bad_length {
        Some(Reject::BadContentLength)
    } else if content_length.is_some_and(|n| n > 0) {
        Some(Reject::Body)
    } else if hosts > 1 {
        Some(Reject::DuplicateHost)
    } else if bad_host {
        Some(Reject::BadHost)
    } else if hosts == 0 && !http10 {
        Some(Reject::MissingHost)
    } else {
        None
    };
    if let Some(r) = reject {
        return Parse::Reject(r, request_id, head);
    }
    let Some((path, query)) = split_target(req.path.unwrap_or("").as_bytes()) else {
        return Parse::Reject(Reject::BadTarget, request_id, head);
    };
    let target = match path {
        b"/post" => Target::Post,
        b"/health" => Target::Health,
        b"/ready" => Target::Ready,
        b"/metrics" => Target::Metrics,
        _ => Target::Unknown,
    };
    Parse::Complete(
        Request {
            method,
            target,
            query,
            keep_alive: if http10 { keep_alive && !close } else { !close },
            http10,
            request_id,
            if_none_match,
            if_match,
        },
        len,
    )
}

/// Whether a `Host` value is `uri-host [ ":" port ]` (RFC 9112, section
/// 3.2; RFC 3986, section 3.2.2): an IPv6 or IPv4 literal in brackets
/// (hex digits, `:` and `.`; the rare `IPvFuture` form is refused), or a
/// name of unreserved characters, sub-delims and percent-encodings (which
/// covers IPv4 addresses and an empty host); then optionally `:` and digits.
fn valid_host(v: &[u8]) -> bool {
    let rest = if v.first() == Some(&b'[') {
        let Some(close) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &v[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        &v[close + 1..]
    } else {
        let end = v.iter().position(|&b| b == b':').unwrap_or(v.len());
        if !reg_name(&v[..end]) {
            return false;
        }
        &v[end..]
    };
    match rest.split_first() {
        None => true,
        Some((b':', port)) => port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

/// RFC 3986's `reg-name`: unreserved, sub-delims and `%` with two hex digits.
fn reg_name(n: &[u8]) -> bool {
    let mut i = 0;
    while i < n.len() {
        match n[i] {
            b'%' => {
                let hex = |j: usize| n.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return false;
                }
                i += 3;
            }
            b if b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                ) =>
            {
                i += 1
            }
            _ => return false,
        }
    }
    true
}

/// Whether the head at the start of `buf`, complete or not, is a HEAD
/// request as far as the parser got (for answering a head that never
/// completed, whose answer then has no body either).
pub fn is_head(buf: &[u8]) -> bool {
    let mut req = httparse::Request::new(&mut []);
    // The method is recorded before any error about what follows it.
    let _ = req.parse(buf);
    req.method == Some("HEAD")
}

/// Digits only (no sign, no list); `None` when empty, not a number or too large.
fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// `(path, query)` of an origin-form (`/p?q`) or absolute-form
/// (`http://host/p?q`) target; `None` for anything else.
fn split_target(t: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = if t.first() == Some(&b'/') {
        t
    } else {
        let after_scheme = if t.len() >= 7 && t[..7].eq_ignore_ascii_case(b"http://") {
            &t[7..]
        } else if t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"https://") {
            &t[8..]
        } else {
            return None;
        };
        let end = after_scheme
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(after_scheme.len());
        if end == 0 {
            return None;
        }
        &after_scheme[end..]
    };
    // A fragment is not part of a request target; tolerate and drop it.
    // One pass to the first `?` or `#`, then the query up to a `#`.
    let (path, query) = match rest.iter().position(|&b| b == b'?' || b == b'#') {
        Some(q) if rest[q] == b'?' => {
            let query = &rest[q + 1..];
            let end = query.iter().position(|&b| b == b'#').unwrap_or(query.len());
            (&rest[..q], &query[..end])
        }
        Some(f) => (&rest[..f], &b""[..]),
        None => (rest, &b""[..]),
    };
    Some((if path.is_empty() { b"/" } else { path }, query))
}

/// Why `/post` did not get a usable id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdError {
    /// No `id` parameter.
    Missing,
    /// Bad percent-encoding, empty, too long, outside the id alphabet, or given twice.
    Malformed,
}

impl IdError {
    /// The JSON body answered with 400.
    pub fn body(self) -> &'static [u8] {
        match self {
            IdError::Missing => br#"{"error":"missing id parameter"}"#,
            IdError::Malformed => br#"{"error":"malformed id parameter"}"#,
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `src` into `dst`; `None` on a bad escape or when `dst` is too small.
/// `+` stays `+` (it only means a space in form bodies, and is not an id character anyway).
fn percent_decode(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    let (mut i, mut n) = (0, 0);
    while i < src.len() {
        let b = if src[i] == b'%' {
            let hi = hex(*src.get(i + 1)?)?;
            let lo = hex(*src.get(i + 2)?)?;
            i += 3;
            hi << 4 | lo
        } else {
            i += 1;
            src[i - 1]
        };
        *dst.get_mut(n)? = b;
        n += 1;
    }
    Some(n)
}

/// The ids of the `GET|HEAD /post?id=<id>` request lines in `input`, in
/// order, for prefetching their posts before the requests are parsed: found
/// by that text at the start of `input` or of a line (a hint, never an
/// answer: each request is still parsed and checked in full). An id is taken
/// up to a space or `&`, and only when it is in the id alphabet as it stands.
pub fn post_id_hints(input: &[u8]) -> impl Iterator<Item = &str> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(POST_ID));
    FINDER.find_iter(input).filter_map(|at| {
        let before = &input[..at];
        let line = before
            .strip_suffix(b"GET ")
            .or_else(|| before.strip_suffix(b"HEAD "))?;
        if !(line.is_empty() || line.ends_with(b"\n")) {
            return None;
        }
        let rest = &input[at + POST_ID.len()..];
        let end = rest
            .iter()
            .take(MAX_ID_LEN + 1)
            .position(|&b| b == b' ' || b == b'&')?;
        let id = &rest[..end];
        if valid_id(id) {
            std::str::from_utf8(id).ok()
        } else {
            None
        }
    })
}

/// What [`post_id_hints`] looks for.
const POST_ID: &[u8] = b"/post?id=";

/// The `id` parameter of a query string, percent-decoded into `buf` and
/// checked against the id alphabet.
pub fn query_id<'q>(query: &'q [u8], buf: &'q mut [u8; MAX_ID_LEN]) -> Result<&'q str, IdError> {
    // The common case, `id=<id>` alone: a valid id has no `&`, `%` or `=`,
    // so it is taken as it stands, without decoding or copying.
    if let Some(id) = query.strip_prefix(b"id=") {
        if valid_id(id) {
            return std::str::from_utf8(id).map_err(|_| IdError::Malformed);
        }
    }
    decode_query_id(query, buf)
}

/// [`query_id`] for any query: every `&`-separated pair percent-decoded.
fn decode_query_id<'b>(query: &[u8], buf: &'b mut [u8; MAX_ID_LEN]) -> Result<&'b str, IdError> {
    let mut found: Option<usize> = None;
    for pair in query.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        let mut k = [0u8; 2];
        if percent_decode(key, &mut k) != Some(2) || &k != b"id" {
            continue;
        }
        if found.is_some() {
            return Err(IdError::Malformed);
        }
        let n = percent_decode(value, buf).ok_or(IdError::Malformed)?;
        if !valid_id(&buf[..n]) {
            return Err(IdError::Malformed);
        }
        found = Some(n);
    }
    let n = found.ok_or(IdError::Missing)?;
    std::str::from_utf8(&buf[..n]).map_err(|_| IdError::Malformed)
}

/// Whether an `If-None-Match` value (`*` or a list of entity tags, weak or
/// strong) matches `etag` (quoted) under the weak comparison RFC 9110 asks
/// for. A malformed list matches nothing from the bad member on.
pub fn etag_list_matches(value: &[u8], etag: &[u8]) -> bool {
    list_matches(value, etag, false)
}

/// [`etag_list_matches`], or with `strong` the strong comparison of
/// `If-Match`, under which a weak tag (`W/"..."`) matches nothing.
fn list_matches(value: &[u8], etag: &[u8], strong: bool) -> bool {
    let mut i = 0;
    let n = value.len();
    loop {
        while i < n && matches!(value[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        if i == n {
            return false;
        }
        if value[i] == b'*' {
            return true;
        }
        let weak = value[i..].starts_with(b"W/");
        if weak {
            i += 2;
        }
        if value.get(i) != Some(&b'"') {
            return false;
        }
        let Some(close) = value[i + 1..].iter().position(|&b| b == b'"') else {
            return false;
        };
        let end = i + 1 + close;
        if &value[i..=end] == etag && !(weak && strong) {
            return true;
        }
        i = end + 1;
        while i < n && matches!(value[i], b' ' | b'\t') {
            i += 1;
        }
        if i < n && value[i] != b',' {
            return false;
        }
    }
}

/// What every answer carries besides its own headers.
#[derive(Debug, Clone, Copy)]
pub struct Common<'a> {
    /// `Date` value, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    pub date: &'a [u8],
    /// `X-Request-Id` value.
    pub request_id: &'a [u8],
    /// Whether the connection stays open.
    pub keep_alive: bool,
    /// An HTTP/1.0 client: staying open must be said.
    pub http10: bool,
}

fn put_usize(out: &mut Vec<u8>, mut n: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn start(out: &mut Vec<u8>, status: Status, c: &Common<'_>) {
    out.extend_from_slice(status.line());
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(c.date);
    out.extend_from_slice(b"\r\n");
}

fn request_id(out: &mut Vec<u8>, c: &Common<'_>) {
    out.extend_from_slice(b"X-Request-Id: ");
    out.extend_from_slice(c.request_id);
    out.extend_from_slice(b"\r\n");
}

fn cache_control(out: &mut Vec<u8>, value: &[u8]) {
    if !value.is_empty() {
        out.extend_from_slice(b"Cache-Control: ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

fn finish(out: &mut Vec<u8>, c: &Common<'_>) {
    if !c.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if c.http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A 200 for a stored post: `entry_headers` is the entry's ready `ETag` and
/// `Content-Length` lines; `body` is `None` for HEAD.
pub fn write_entry(
    out: &mut Vec<u8>,
    c: &Common<'_>,
    cache: &[u8],
    entry_headers: &[u8],
    body: Option<&[u8]>,
) {
    start(out, Status::Ok, c);
    out.extend_from_slice(b"Content-Type: application/json\r\n");
    cache_control(out, cache);
    request_id(out, c);
    out.extend_from_slice(entry_headers);
    finish(out, c);
    if let Some(body) = body {
        out.extend_from_slice(body);
    }
}

/// A 304: the validators and caching headers a 200 would have had, no body.
pub fn write_not_modified(out: &mut Vec<u8>, c: &Common<'_>, cache: &[u8], etag_line: &[u8]) {
    start(out, Status::NotModified, c);
    cache_control(out, cache);
    request_id(out, c);
    out.extend_from_slice(etag_line);
    finish(out, c);
}

/// Any other answer: `body` with its length, `Cache-Control: no-store`, and
/// `extra` header lines; the body is left out for HEAD.
pub fn write_simple(
    out: &mut Vec<u8>,
    c: &Common<'_>,
    status: Status,
    content_type: &[u8],
    extra: &[u8],
    body: &[u8],
    head: bool,
) {
    start(out, status, c);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(content_type);
    out.extend_from_slice(b"\r\nCache-Control: no-store\r\n");
    request_id(out, c);
    out.extend_from_slice(extra);
    out.extend_from_slice(b"Content-Length: ");
    put_usize(out, body.len());
    out.extend_from_slice(b"\r\n");
    finish(out, c);
    if !head {
        out.extend_from_slice(body);
    }
}

/// JSON content type.
pub const JSON: &[u8] = b"application/json";
/// Prometheus text exposition format.
pub const PROMETHEUS: &[u8] = b"text/plain; version=0.0.4; charset=utf-8";

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for seconds since the Unix epoch.
pub fn http_date(unix_secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + u64::from(month <= 2)).min(9999);

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |out: &mut [u8; 29], at: usize, v: u64| {
        out[at] = b'0' + (v / 10 % 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    };
    two(&mut out, 5, day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two(&mut out, 12, year / 100);
    two(&mut out, 14, year % 100);
    two(&mut out, 17, secs / 3600);
    two(&mut out, 20, secs / 60 % 60);
    two(&mut out, 23, secs % 60);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_request_line: 64,
        max_header_bytes: 256,
        max_headers: 8,
    };

    fn complete(buf: &[u8]) -> (Request<'_>, usize) {
        match parse_request(buf, &LIMITS) {
            Parse::Complete(r, n) => (r, n),
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(buf)),
        }
    }

    fn rejected(buf: &[u8]) -> Reject {
        match parse_request(buf, &LIMITS) {
            Parse::Reject(r, _, _) => r,
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn post_id_hints_are_the_ids_of_post_requests_in_order() {
        let input = b"GET /post?id=a-1 HTTP/1.1\r\nHost: h\r\n\r\n\
                      HEAD /post?id=B.2&x=1 HTTP/1.1\r\nHost: h\r\n\r\n\
                      GET /health HTTP/1.1\r\nHost: h\r\n\r\n\
                      GET /post?id=%41 HTTP/1.1\r\nHost: h\r\n\r\n\
                      GET /post?id=bad!id HTTP/1.1\r\nReferer: GET /post?id=c_3 x\r\n\r\n\
                      GET /post?id=d~4 HTTP/1.1\r\nX: /post?id=e5 x\r\n\r\n\
                      POST /post?id=f6 HTTP/1.1\r\n\r\n\
                      GET /post?id=cut-off-at-the-end";
        let hints: Vec<&str> = post_id_hints(input).collect();
        // Percent-encoded, out-of-alphabet and unterminated ids are left to
        // the parser, and so are ids in headers and other methods.
        assert_eq!(hints, ["a-1", "B.2", "d~4"]);
        // Each hint borrows the input, where the request's own id will be.
        let at = hints[0].as_ptr() as usize - input.as_ptr() as usize;
        assert_eq!(&input[at..at + 3], b"a-1");
        let long = format!(
            "GET /post?id={} HTTP/1.1\r\n\r\n",
            "x".repeat(MAX_ID_LEN + 1)
        );
        assert_eq!(post_id_hints(long.as_bytes()).count(), 0);
        let longest = format!("GET /post?id={} HTTP/1.1\r\n\r\n", "x".repeat(MAX_ID_LEN));
        assert_eq!(post_id_hints(longest.as_bytes()).count(), 1);
        assert_eq!(post_id_hints(b"").count(), 0);
    }

    #[test]
    fn get_post_parses_with_its_query_and_length() {
        let buf = b"GET /post?id=a1 HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\n";
        let (r, n) = complete(buf);
        assert_eq!(n, 37);
        assert_eq!(
            (r.method, r.target, r.query),
            (Method::Get, Target::Post, &b"id=a1"[..])
        );
        assert!(r.keep_alive && !r.http10);
        assert!(matches!(parse_request(&buf[n..], &LIMITS), Parse::Partial));
    }

    #[test]
    fn routes_are_exact_paths() {
        for (t, want) in [
            (&b"/health"[..], Target::Health),
            (b"/ready?x=1", Target::Ready),
            (b"/metrics", Target::Metrics),
            (b"/post", Target::Post),
            (b"/posts", Target::Unknown),
            (b"/", Target::Unknown),
            (b"http://h:1/ready", Target::Ready),
            (b"HTTPS://h/post?id=a", Target::Post),
            (b"http://h?id=a", Target::Unknown),
        ] {
            let mut buf = b"GET ".to_vec();
            buf.extend_from_slice(t);
            buf.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(
                complete(&buf).0.target,
                want,
                "{}",
                String::from_utf8_lossy(t)
            );
        }
        assert_eq!(
            rejected(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
            Reject::BadTarget
        );
        assert_eq!(
            rejected(b"GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            Reject::BadTarget
        );
        assert_eq!(
            rejected(b"GET http:///post HTTP/1.1\r\nHost: h\r\n\r\n"),
            Reject::BadTarget
        );
    }

    #[test]
    fn keep_alive_follows_version_rules() {
        let ka = |b: &[u8]| complete(b).0.keep_alive;
        assert!(ka(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n"
        ));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
        assert!(complete(b"GET / HTTP/1.0\r\n\r\n").0.http10);
    }

    #[test]
    fn methods_other_than_get_and_head_get_405() {
        assert_eq!(
            complete(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n").0.method,
            Method::Head
        );
        for m in ["POST", "PUT", "DELETE", "OPTIONS", "get", "PATCH", "BREW"] {
            let buf =
                format!("{m} /post?id=a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
            assert_eq!(rejected(buf.as_bytes()), Reject::MethodNotAllowed, "{m}");
        }
        assert_eq!(
            Reject::MethodNotAllowed.extra_headers(),
            b"Allow: GET, HEAD\r\n"
        );
    }

    #[test]
    fn bodies_and_transfer_encodings_are_refused() {
        let r =
            |h: &str| rejected(format!("GET /post?id=a HTTP/1.1\r\nHost: h\r\n{h}\r\n").as_bytes());
        assert_eq!(r("Content-Length: 3\r\n"), Reject::Body);
        assert_eq!(
            r("Transfer-Encoding: chunked\r\n"),
            Reject::TransferEncoding
        );
        assert_eq!(
            r("Transfer-Encoding: identity\r\nContent-Length: 0\r\n"),
            Reject::TransferEncoding
        );
        assert_eq!(
            r("Content-Length: 0\r\nContent-Length: 1\r\n"),
            Reject::BadContentLength
        );
        assert_eq!(r("Content-Length: -1\r\n"), Reject::BadContentLength);
        assert_eq!(r("Content-Length: +0\r\n"), Reject::BadContentLength);
        assert_eq!(r("Content-Length: 0, 0\r\n"), Reject::BadContentLength);
        assert_eq!(
            r("Content-Length: 99999999999999999999\r\n"),
            Reject::BadContentLength
        );
        assert_eq!(r("Content-Length:\r\n"), Reject::BadContentLength);
        // An explicit empty body is harmless.
        complete(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\ncontent-length:  0 \r\n\r\n");
    }

    #[test]
    fn host_rules_follow_rfc_9112() {
        assert_eq!(rejected(b"GET / HTTP/1.1\r\n\r\n"), Reject::MissingHost);
        assert_eq!(
            rejected(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            Reject::DuplicateHost
        );
        assert_eq!(
            rejected(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"),
            Reject::DuplicateHost
        );
        complete(b"GET / HTTP/1.0\r\n\r\n");
        // A value must be host[:port] (section 3.2): names, addresses, IP
        // literals, ports and an empty value pass; anything else is 400.
        for ok in [
            "example.com",
            "127.0.0.1:8081",
            "[::1]:8081",
            "xn--bcher-kva.example",
            "a%20b",
            "",
            "[::1]",
            "h:",
            "1.2.3.4:80",
        ] {
            complete(format!("GET / HTTP/1.1\r\nHost: {ok}\r\n\r\n").as_bytes());
        }
        for bad in [
            "a b",
            "a/b",
            "user@host",
            "h?x",
            "h#f",
            "\"h\"",
            "h\\x",
            "h:abc",
            "a:b:c",
            "[x",
            "[::1",
            "a]b",
            "[]",
            "[::1]x",
            "%zz",
            "a%4",
        ] {
            assert_eq!(
                rejected(format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n").as_bytes()),
                Reject::BadHost,
                "Host: {bad}"
            );
        }
        assert_eq!(
            rejected("GET / HTTP/1.1\r\nHost: h\u{e9}.example\r\n\r\n".as_bytes()),
            Reject::BadHost
        );
    }

    #[test]
    fn a_complete_heads_line_length_is_judged_as_by_scanning_it() {
        // Heads around the 64-byte line limit, with either line ending and
        // empty lines before them: the length worked out from the parsed
        // parts gives the same answer as finding the line's end.
        for lead in [&b""[..], b"\r\n", b"\n\r\n"] {
            for method in ["GET", "HEAD"] {
                for path_len in 40..60 {
                    for eol in ["\r\n", "\n"] {
                        let mut buf = lead.to_vec();
                        buf.extend_from_slice(
                            format!(
                                "{method} /{} HTTP/1.1{eol}Host: h{eol}{eol}",
                                "a".repeat(path_len)
                            )
                            .as_bytes(),
                        );
                        let got = matches!(
                            parse_request(&buf, &LIMITS),
                            Parse::Reject(Reject::UriTooLong, _, _)
                        );
                        assert_eq!(
                            got,
                            request_line_too_long(&buf, &LIMITS),
                            "{:?}",
                            String::from_utf8_lossy(&buf)
                        );
                        // The line's length decides, either way.
                        assert_eq!(got, method.len() + 2 + path_len + 9 > 64);
                    }
                }
            }
        }
    }

    #[test]
    fn limits_give_414_and_431() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(60));
        assert_eq!(rejected(long.as_bytes()), Reject::UriTooLong);
        // Too long even before the line is complete.
        assert_eq!(
            rejected(format!("GET /{}", "a".repeat(80)).as_bytes()),
            Reject::UriTooLong
        );
        // Exactly at the limit is fine: "GET /" + 46 + " HTTP/1.1" = 64.
        complete(format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(50)).as_bytes());
        let many = format!("GET / HTTP/1.1\r\nHost: h\r\n{}\r\n", "A: b\r\n".repeat(8));
        assert_eq!(rejected(many.as_bytes()), Reject::HeadersTooLarge);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nA: {}\r\n\r\n",
            "b".repeat(250)
        );
        assert_eq!(rejected(big.as_bytes()), Reject::HeadersTooLarge);
        // A partial head that already fills the budget is refused without waiting.
        let partial = format!("GET / HTTP/1.1\r\nHost: h\r\nA: {}", "b".repeat(256));
        assert_eq!(rejected(partial.as_bytes()), Reject::HeadersTooLarge);
        assert_eq!(Reject::HeadersTooLarge.status().code(), 431);
        assert_eq!(Reject::UriTooLong.status().code(), 414);
    }

    #[test]
    fn garbage_is_malformed_early() {
        assert_eq!(rejected(b"\x16\x03\x01\x02\x00"), Reject::Malformed);
        assert_eq!(rejected(b"GET / HTTP/2.0\r\n\r\n"), Reject::Malformed);
        assert_eq!(rejected(b"GET /a b HTTP/1.1\r\n\r\n"), Reject::Malformed);
        assert_eq!(
            rejected(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"),
            Reject::Malformed
        );
        assert_eq!(
            rejected(b"GET / HTTP/1.1\r\nA: b\r\n continued\r\n\r\n"),
            Reject::Malformed
        );
        assert!(matches!(parse_request(b"GE", &LIMITS), Parse::Partial));
        assert!(matches!(parse_request(b"", &LIMITS), Parse::Partial));
        // Empty lines before a request are tolerated.
        complete(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    }

    #[test]
    fn query_ids_are_percent_decoded_and_checked() {
        let id = |q: &str| {
            let mut buf = [0u8; MAX_ID_LEN];
            query_id(q.as_bytes(), &mut buf).map(str::to_owned)
        };
        assert_eq!(id("id=abc"), Ok("abc".into()));
        assert_eq!(id("x=1&id=A-b_c.d~e&y"), Ok("A-b_c.d~e".into()));
        assert_eq!(id("%69%64=%61%62"), Ok("ab".into()));
        assert_eq!(id("id=%4a%4B"), Ok("JK".into()));
        assert_eq!(id("&&id=z&&"), Ok("z".into()));
        assert_eq!(id(""), Err(IdError::Missing));
        assert_eq!(id("ids=1&xid=2&i=3"), Err(IdError::Missing));
        assert_eq!(id("id"), Err(IdError::Malformed));
        assert_eq!(id("id="), Err(IdError::Malformed));
        assert_eq!(id("id=a%2"), Err(IdError::Malformed));
        assert_eq!(id("id=a%"), Err(IdError::Malformed));
        assert_eq!(id("id=%zz"), Err(IdError::Malformed));
        assert_eq!(id("id=a%20b"), Err(IdError::Malformed));
        assert_eq!(id("id=a+b"), Err(IdError::Malformed));
        assert_eq!(id("id=%C3%A9"), Err(IdError::Malformed));
        assert_eq!(id("id=a/b"), Err(IdError::Malformed));
        assert_eq!(id("id=a&id=a"), Err(IdError::Malformed));
        assert_eq!(id(&format!("id={}", "a".repeat(128))), Ok("a".repeat(128)));
        assert_eq!(
            id(&format!("id={}", "a".repeat(129))),
            Err(IdError::Malformed)
        );
        assert_eq!(
            id(&format!("id={}", "%61".repeat(129))),
            Err(IdError::Malformed)
        );
    }

    /// Random strings over the bytes that matter to queries and targets.
    fn random_strings(alphabet: &[u8], count: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut x = seed;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..count)
            .map(|_| {
                let len = (next() % 24) as usize;
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_plain_id_shortcut_answers_as_the_full_decoder_does() {
        let mut queries = random_strings(b"id=&%6a-9.#+ ", 20_000, 0x9e37_79b9);
        for q in &mut queries[..5_000] {
            q.splice(0..0, b"id=".iter().copied());
        }
        for q in &queries {
            let (mut buf, mut full) = ([0u8; MAX_ID_LEN], [0u8; MAX_ID_LEN]);
            assert_eq!(
                query_id(q, &mut buf),
                decode_query_id(q, &mut full),
                "{:?}",
                String::from_utf8_lossy(q)
            );
        }
    }

    #[test]
    fn targets_split_at_the_first_question_mark_and_drop_the_fragment() {
        // The split done in two passes: drop from the first `#`, then split at the first `?`.
        fn two_passes(t: &[u8]) -> (&[u8], &[u8]) {
            let rest = &t[..t.iter().position(|&b| b == b'#').unwrap_or(t.len())];
            let (path, query) = match rest.iter().position(|&b| b == b'?') {
                Some(q) => (&rest[..q], &rest[q + 1..]),
                None => (rest, &b""[..]),
            };
            (if path.is_empty() { b"/" } else { path }, query)
        }
        for mut t in random_strings(b"/?#ab=", 20_000, 0x2545_f491) {
            t.insert(0, b'/');
            assert_eq!(
                split_target(&t),
                Some(two_passes(&t)),
                "{:?}",
                String::from_utf8_lossy(&t)
            );
        }
        assert_eq!(
            split_target(b"/post#x?id=1"),
            Some((&b"/post"[..], &b""[..]))
        );
        assert_eq!(
            split_target(b"/post?id=1#x?y"),
            Some((&b"/post"[..], &b"id=1"[..]))
        );
    }

    #[test]
    fn if_none_match_lists_weak_tags_and_star() {
        let tag = br#""0123""#;
        assert!(etag_list_matches(br#""0123""#, tag));
        assert!(etag_list_matches(br#"W/"0123""#, tag));
        assert!(etag_list_matches(br#""aaaa", W/"0123""#, tag));
        assert!(etag_list_matches(br#" "a,b" ,"0123" "#, tag));
        assert!(etag_list_matches(b"*", tag));
        assert!(!etag_list_matches(br#""0124""#, tag));
        assert!(!etag_list_matches(br#"0123"#, tag));
        assert!(!etag_list_matches(br#""0123"#, tag));
        assert!(!etag_list_matches(br#""a" "0123""#, tag));
        assert!(!etag_list_matches(b"", tag));
        assert!(!etag_list_matches(b"W/", tag));
        let r = complete(b"GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"x\"\r\nif-none-match: W/\"0123\"\r\n\r\n").0;
        assert!(r.has_if_none_match() && r.not_modified(tag));
        let r = complete(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").0;
        assert!(!r.has_if_none_match() && !r.not_modified(tag));
    }

    #[test]
    fn first_request_id_is_kept() {
        let r = complete(
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id:  abc \r\nx-request-id: d\r\n\r\n",
        )
        .0;
        assert_eq!(r.request_id, Some(&b"abc"[..]));
    }

    fn common(keep_alive: bool, http10: bool) -> Common<'static> {
        Common {
            date: b"Sun, 06 Nov 1994 08:49:37 GMT",
            request_id: b"r1",
            keep_alive,
            http10,
        }
    }

    #[test]
    fn entry_answers_have_exact_bytes() {
        let mut out = Vec::new();
        let headers = b"ETag: \"e\"\r\nContent-Length: 2\r\n";
        write_entry(
            &mut out,
            &common(true, false),
            b"no-cache",
            headers,
            Some(b"{}"),
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: application/json\r\n\
             Cache-Control: no-cache\r\nX-Request-Id: r1\r\nETag: \"e\"\r\nContent-Length: 2\r\n\r\n{}"
        );
        out.clear();
        write_entry(&mut out, &common(true, true), b"", headers, None);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: application/json\r\n\
             X-Request-Id: r1\r\nETag: \"e\"\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
        );
        out.clear();
        write_not_modified(
            &mut out,
            &common(false, false),
            b"max-age=5",
            b"ETag: \"e\"\r\n",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 304 Not Modified\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nCache-Control: max-age=5\r\n\
             X-Request-Id: r1\r\nETag: \"e\"\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn simple_answers_have_exact_bytes() {
        let mut out = Vec::new();
        let r = Reject::MethodNotAllowed;
        write_simple(
            &mut out,
            &common(false, false),
            r.status(),
            JSON,
            r.extra_headers(),
            r.body(),
            false,
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "HTTP/1.1 405 Method Not Allowed\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: application/json\r\nCache-Control: no-store\r\nX-Request-Id: r1\r\n\
             Allow: GET, HEAD\r\nContent-Length: 30\r\nConnection: close\r\n\r\n{\"error\":\"method not allowed\"}"
        );
        out.clear();
        write_simple(
            &mut out,
            &common(true, false),
            Status::Ok,
            JSON,
            b"",
            b"{}",
            true,
        );
        assert!(out.ends_with(b"Content-Length: 2\r\n\r\n"));
    }

    #[test]
    fn http_dates_match_known_instants() {
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&http_date(1_709_251_199), b"Thu, 29 Feb 2024 23:59:59 GMT");
        assert_eq!(&http_date(4_102_444_800), b"Fri, 01 Jan 2100 00:00:00 GMT");
    }

    #[test]
    fn status_index_matches_all() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
            let line = s.line();
            assert!(line.starts_with(format!("HTTP/1.1 {} ", s.code()).as_bytes()));
        }
    }
}
