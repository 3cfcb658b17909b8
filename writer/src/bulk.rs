//! `POST /bulk`: NDJSON, one post a line, for seeding many posts quickly.
//!
//! The body is streamed: lines are cut as chunks arrive (each line at most
//! `--max-body-bytes`, the whole body at most `--bulk-max-bytes`), each line
//! is validated like a `/create` body, and valid posts go to Redis in
//! chunks of `--bulk-chunk` puts, each chunk one pipelined round trip of
//! batch calls (`heavyread_put_packed`: one call stores up to a few hundred
//! posts, each with its own version, in line order, and logs and publishes
//! them as one entry and one message). One chunk is in flight while the
//! next is parsed and its records built, and chunks are sent in order, so a
//! later line for the same id always wins. Rejected lines are reported by number (1-based, counting
//! every line including blank ones, which are skipped) with the reason;
//! valid lines are applied regardless.
//!
//! Answers: 200 with the report when the whole body was read. 413 when the
//! body passes `--bulk-max-bytes` while streaming: the complete lines read
//! until then (up to `last_line`) are applied and reported. 408, likewise,
//! when the client sends nothing for `--body-timeout` (and the connection is
//! closed; a body cut by the client is a 400 the same way). 503 when Redis
//! fails, 504 when it does not answer within `--redis-timeout`: `applied`
//! counts the puts Redis confirmed, `unconfirmed` those whose outcome is
//! unknown, and the other valid lines read (`lines - applied - rejected -
//! unconfirmed`) and all later ones were not sent; every line is an upsert,
//! so sending the whole body again is safe.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::Json;
use heavyread_sync::PutBatch;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::http::{
    content_length, drain, next_chunk, refuse_body, refused, require_media, AppState,
};
use crate::metrics::LineResult;
use crate::post::{Post, PostError};

/// Rejected lines listed in one answer; the rest are only counted.
pub const MAX_REPORTED_ERRORS: usize = 1_000;

/// Media types `/bulk` takes.
const NDJSON_TYPES: [&str; 5] = [
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/jsonlines",
    "application/json",
];

/// One rejected line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    /// 1-based line number.
    pub line: u64,
    /// What `/create` would have answered for it: 400, 413 or 422.
    pub status: u16,
    /// The field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Why.
    pub error: String,
}

/// The answer of `/bulk`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Set when the request stopped early (400, 408, 413, 503 or 504).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Non-blank lines read.
    pub lines: u64,
    /// Number of the last complete line read (blank ones included).
    pub last_line: u64,
    /// Puts Redis confirmed.
    pub applied: u64,
    /// Lines rejected by validation.
    pub rejected: u64,
    /// Puts sent whose outcome is unknown (Redis failed during the round trip).
    pub unconfirmed: u64,
    /// The highest version Redis gave these puts.
    pub last_version: Option<u64>,
    /// The first [`MAX_REPORTED_ERRORS`] rejected lines, in order.
    pub errors: Vec<LineError>,
    /// True when more lines were rejected than listed.
    pub errors_truncated: bool,
}

impl Report {
    fn reject(&mut self, line: u64, status: u16, field: Option<String>, error: String) {
        self.rejected += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(LineError {
                line,
                status,
                field,
                error,
            });
        } else {
            self.errors_truncated = true;
        }
    }
}

/// Why a bulk stopped before the end of its body.
enum Stop {
    TooLarge(u64),
    Redis(ApiError),
    Read(ApiError),
}

type InFlight = JoinHandle<(usize, Result<Vec<heavyread_sync::Written>, ApiError>)>;

struct Run<'a> {
    state: &'a AppState,
    report: Report,
    batch: PutBatch,
    in_flight: Option<InFlight>,
}

impl Run<'_> {
    fn line(&mut self, no: u64, line: Line<'_>) {
        self.report.last_line = no;
        let bytes = match line {
            Line::TooLong => {
                let limit = self.state.max_body_bytes;
                self.report.lines += 1;
                self.report
                    .reject(no, 413, None, format!("line exceeds {limit} bytes"));
                return;
            }
            Line::Text(b) => b,
        };
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if bytes.trim_ascii().is_empty() {
            return;
        }
        self.report.lines += 1;
        match Post::parse(bytes, &self.state.limits) {
            Ok(post) => {
                let body = post.to_body();
                if let Err(e) = self.batch.push(&post.id, &body) {
                    // Validation keeps ids and bodies within the record's
                    // limits, so only a bug gets here; still a line error.
                    self.report.reject(no, 422, None, e.to_string());
                }
            }
            Err(e) => {
                let status = e.status();
                let field = e.field_name().map(str::to_owned);
                let message = match e {
                    PostError::Malformed(m) => format!("malformed JSON: {m}"),
                    PostError::Invalid { message, .. } => message,
                };
                self.report.reject(no, status, field, message);
            }
        }
    }

    /// Waits for the chunk in flight and counts its outcome.
    async fn settle(&mut self) -> Result<(), Stop> {
        let Some(task) = self.in_flight.take() else {
            return Ok(());
        };
        match task.await {
            Ok((_, Ok(written))) => {
                self.report.applied += written.len() as u64;
                self.state
                    .metrics
                    .bulk_lines(LineResult::Applied, written.len() as u64);
                if let Some(v) = written.iter().map(|w| w.version).max() {
                    self.report.last_version = Some(self.report.last_version.unwrap_or(0).max(v));
                }
                Ok(())
            }
            Ok((n, Err(e))) => {
                self.report.unconfirmed += n as u64;
                Err(Stop::Redis(e))
            }
            Err(join) => {
                // The put task panicked or was cancelled; its outcome is unknown.
                tracing::error!(error = %join, "bulk put task failed");
                Err(Stop::Redis(ApiError::Internal(
                    "bulk put task failed".into(),
                )))
            }
        }
    }

    /// Sends the pending batch once the previous one is confirmed.
    async fn flush(&mut self, force: bool) -> Result<(), Stop> {
        if self.batch.is_empty() || (!force && !full(&self.batch, self.state.bulk_chunk)) {
            return Ok(());
        }
        self.settle().await?;
        let batch = std::mem::replace(
            &mut self.batch,
            PutBatch::with_capacity(self.state.bulk_chunk),
        );
        let backend = self.state.backend.clone();
        self.in_flight = Some(tokio::spawn(async move {
            let r = backend.put_batch(&batch).await;
            (batch.len(), r)
        }));
        // A task spawned from a worker waits in that worker's LIFO slot,
        // which other workers cannot steal, until the spawner yields. Yield
        // now, so the chunk goes to Redis while the next one is parsed rather
        // than when this handler next waits.
        tokio::task::yield_now().await;
        Ok(())
    }
}

/// `POST /bulk`.
pub(crate) async fn bulk(
    State(s): State<AppState>,
    version: Version,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(e) = s
        .authorize(&headers)
        .and_then(|()| require_media(&headers, &NDJSON_TYPES, "application/x-ndjson"))
    {
        let read = refuse_body(body, version, &headers).await;
        return refused(e, read);
    }
    if content_length(&headers).is_some_and(|n| n > s.bulk_max_bytes) {
        let read = refuse_body(body, version, &headers).await;
        let e = ApiError::TooLarge {
            limit: s.bulk_max_bytes,
        };
        return refused(e, read);
    }
    let mut run = Run {
        state: &s,
        report: Report::default(),
        batch: PutBatch::with_capacity(s.bulk_chunk),
        in_flight: None,
    };
    let outcome = read_all(&mut run, body).await;
    // Apply every complete valid line read, unless Redis is what failed.
    let outcome = match outcome {
        Err(Stop::Redis(e)) => Err(Stop::Redis(e)),
        read => {
            let sent = match run.flush(true).await {
                Ok(()) => run.settle().await,
                Err(e) => Err(e),
            };
            // A Redis failure while applying outranks the reason reading stopped.
            match sent {
                Err(e) => Err(e),
                Ok(()) => read,
            }
        }
    };
    let mut report = run.report;
    s.metrics.bulk_lines(LineResult::Rejected, report.rejected);
    let status = match outcome {
        Ok(()) => StatusCode::OK,
        Err(Stop::TooLarge(limit)) => {
            let e = ApiError::TooLarge { limit };
            report.error = Some(e.message());
            e.status()
        }
        Err(Stop::Redis(e)) | Err(Stop::Read(e)) => {
            report.error = Some(e.message());
            e.status()
        }
    };
    let mut resp = (status, Json(report)).into_response();
    if status != StatusCode::OK {
        // Reading stopped early (at most a bounded drain followed): the
        // rest of the body may still come, so the connection cannot be
        // reused.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

async fn read_all(run: &mut Run<'_>, body: Body) -> Result<(), Stop> {
    let max_total = run.state.bulk_max_bytes;
    let mut lines = Lines::new(run.state.max_body_bytes);
    let mut total: u64 = 0;
    let mut stream = body.into_data_stream();
    let stall = run.state.body_timeout;
    while let Some(chunk) = next_chunk(&mut stream, stall).await.map_err(Stop::Read)? {
        total += chunk.len() as u64;
        if total > max_total {
            let _ = drain(stream).await;
            return Err(Stop::TooLarge(max_total));
        }
        lines.push(&chunk);
        while let Some((no, line)) = lines.next_line() {
            run.line(no, line);
            // A full batch goes out before the next line is added, so
            // --bulk-chunk bounds a round trip however many lines a piece
            // of the body holds.
            if let Err(e) = run.flush(false).await {
                // The client is still sending: read a bounded rest of the
                // body before answering, as for a 413, so that closing does
                // not reset the connection with its data unread (which can
                // cost the client the answer).
                let _ = drain(stream).await;
                return Err(e);
            }
        }
    }
    if let Some((no, line)) = lines.finish() {
        run.line(no, line);
    }
    Ok(())
}

/// A line cut from the stream.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    /// The line without its `\n`.
    Text(&'a [u8]),
    /// Longer than the limit; its bytes were dropped.
    TooLong,
}

/// Body bytes a batch may hold before it goes to Redis, whatever its
/// number of posts: with large posts a batch of `--bulk-chunk` posts would
/// hold (three times over: the batch filling, the one in Redis, the
/// client library's copy of it) up to `--bulk-chunk` times
/// `--max-body-bytes`, gigabytes per request.
const BATCH_BYTES: u64 = 8 << 20;

/// Whether a batch goes to Redis now.
fn full(batch: &PutBatch, chunk: usize) -> bool {
    batch.len() >= chunk || batch.body_bytes() >= BATCH_BYTES
}

/// Cuts a byte stream into lines of bounded length, keeping at most one
/// partial line (≤ the limit) between chunks.
struct Lines {
    buf: Vec<u8>,
    /// Start of the unread part of `buf`.
    start: usize,
    /// Bytes of the unread part already searched for `\n`: a line that
    /// arrives in many small chunks is searched once, not again with every
    /// chunk (which would cost its length squared over the chunk size).
    scanned: usize,
    /// Bytes compared with `\n` so far.
    #[cfg(test)]
    searched: usize,
    /// Number of the next line (1-based).
    next_no: u64,
    max: usize,
    /// Inside a line already reported too long: drop bytes up to its `\n`.
    skipping: bool,
}

impl Lines {
    fn new(max: usize) -> Self {
        Lines {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            #[cfg(test)]
            searched: 0,
            next_no: 1,
            max,
            skipping: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(chunk);
    }

    fn next_line(&mut self) -> Option<(u64, Line<'_>)> {
        loop {
            let rest = &self.buf[self.start..];
            let seen = self.scanned.min(rest.len());
            self.scanned = rest.len();
            let found = rest[seen..].iter().position(|&b| b == b'\n');
            #[cfg(test)]
            {
                self.searched += found.map_or(rest.len() - seen, |at| at + 1);
            }
            match found {
                Some(at) => {
                    let nl = seen + at;
                    let from = self.start;
                    self.start += nl + 1;
                    self.scanned = 0;
                    let no = self.next_no;
                    self.next_no += 1;
                    if self.skipping {
                        self.skipping = false;
                        continue;
                    }
                    let line = if nl > self.max {
                        Line::TooLong
                    } else {
                        Line::Text(&self.buf[from..from + nl])
                    };
                    return Some((no, line));
                }
                None => {
                    if self.skipping {
                        self.buf.clear();
                        self.start = 0;
                        self.scanned = 0;
                        return None;
                    }
                    if rest.len() > self.max {
                        // Report it now and drop its bytes as they come.
                        self.buf.clear();
                        self.start = 0;
                        self.scanned = 0;
                        self.skipping = true;
                        return Some((self.next_no, Line::TooLong));
                    }
                    return None;
                }
            }
        }
    }

    /// The last line when the body does not end with `\n`.
    fn finish(&mut self) -> Option<(u64, Line<'_>)> {
        if self.skipping || self.start >= self.buf.len() {
            return None;
        }
        let no = self.next_no;
        self.next_no += 1;
        let from = std::mem::replace(&mut self.start, self.buf.len());
        Some((no, Line::Text(&self.buf[from..])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(chunks: &[&[u8]], max: usize) -> Vec<(u64, Option<Vec<u8>>)> {
        let mut l = Lines::new(max);
        let mut out = Vec::new();
        let mut take = |no, line: Line<'_>| {
            out.push((
                no,
                match line {
                    Line::Text(b) => Some(b.to_vec()),
                    Line::TooLong => None,
                },
            ))
        };
        for c in chunks {
            l.push(c);
            while let Some((no, line)) = l.next_line() {
                take(no, line);
            }
        }
        if let Some((no, line)) = l.finish() {
            take(no, line);
        }
        out
    }

    #[test]
    fn lines_are_cut_across_chunks() {
        let got = cut(&[b"ab", b"c\nde", b"f\n\ng"], 10);
        assert_eq!(
            got,
            vec![
                (1, Some(b"abc".to_vec())),
                (2, Some(b"def".to_vec())),
                (3, Some(b"".to_vec())),
                (4, Some(b"g".to_vec())),
            ]
        );
    }

    #[test]
    fn long_lines_are_reported_once_and_numbering_continues() {
        let got = cut(&[b"ok\n0123", b"456789", b"abc\nnext\n"], 5);
        assert_eq!(
            got,
            vec![
                (1, Some(b"ok".to_vec())),
                (2, None),
                (3, Some(b"next".to_vec()))
            ]
        );
        // A long line complete within one chunk.
        let got = cut(&[b"0123456789\nx"], 5);
        assert_eq!(got, vec![(1, None), (2, Some(b"x".to_vec()))]);
        // A line of exactly the limit is fine.
        let got = cut(&[b"01234\n"], 5);
        assert_eq!(got, vec![(1, Some(b"01234".to_vec()))]);
    }

    #[test]
    fn a_line_in_many_small_chunks_is_searched_once() {
        // A line of 100,000 bytes sent a byte at a time: each byte is
        // compared with `\n` once, not once per later chunk.
        let mut l = Lines::new(1 << 20);
        for _ in 0..100_000 {
            l.push(b"x");
            assert!(l.next_line().is_none());
        }
        l.push(b"\nnext\n");
        let (no, line) = l.next_line().expect("the long line");
        assert_eq!(no, 1);
        assert!(matches!(line, Line::Text(b) if b.len() == 100_000));
        let (no, line) = l.next_line().expect("the next line");
        assert_eq!((no, matches!(line, Line::Text(b"next"))), (2, true));
        assert!(
            l.searched <= 100_000 + 6,
            "searched {} bytes for 100,006",
            l.searched
        );
    }

    #[test]
    fn any_chunking_cuts_the_same_lines() {
        let body: &[u8] = b"first\n0123456789abcdef\n\nshort\nxx\n0123456789\nlast";
        for max in [4, 5, 10, 16] {
            let whole = cut(&[body], max);
            for size in 1..=body.len() {
                let chunks: Vec<&[u8]> = body.chunks(size).collect();
                assert_eq!(cut(&chunks, max), whole, "max {max}, chunks of {size}");
            }
        }
        // And the expected cut itself, at a limit of 10.
        assert_eq!(
            cut(&[body], 10),
            vec![
                (1, Some(b"first".to_vec())),
                (2, None),
                (3, Some(b"".to_vec())),
                (4, Some(b"short".to_vec())),
                (5, Some(b"xx".to_vec())),
                (6, Some(b"0123456789".to_vec())),
                (7, Some(b"last".to_vec())),
            ]
        );
    }

    #[test]
    fn a_batch_goes_out_at_its_post_count_or_its_bytes() {
        let mut b = PutBatch::with_capacity(4);
        let small = vec![b'x'; 100];
        for i in 0..3 {
            b.push(&format!("s{i}"), &small).unwrap();
        }
        assert!(!full(&b, 4), "3 small posts of a chunk of 4");
        b.push("s3", &small).unwrap();
        assert!(full(&b, 4), "4 posts");
        // Large posts: the bytes decide long before the count.
        let large = vec![b'y'; 1 << 20];
        let mut b = PutBatch::with_capacity(1000);
        for i in 0..7 {
            b.push(&format!("l{i}"), &large).unwrap();
        }
        assert!(!full(&b, 1000), "7 MiB");
        b.push("l7", &large).unwrap();
        assert!(full(&b, 1000), "8 MiB in 8 posts of a chunk of 1000");
    }

    #[test]
    fn memory_stays_bounded_on_an_endless_line() {
        let mut l = Lines::new(8);
        for _ in 0..1000 {
            l.push(&[b'x'; 100]);
            while l.next_line().is_some() {}
            assert!(l.buf.len() <= 108);
        }
    }
}
