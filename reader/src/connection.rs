//! One client connection: read, answer every complete request of the read
//! in order into one buffer, write it once, repeat.
//!
//! ```text
//! Idle ──first bytes──► Header ──head complete──► answer all ──► Writing ──► Idle
//!   │ idle timeout         │ header timeout (408)                    │ write timeout
//!   ▼                      ▼                                         ▼
//! close                  close                                     close
//! ```
//!
//! The `GET /post` path takes a store guard, looks the id up and copies the
//! entry's ready header lines and body into the output buffer: no JSON, no
//! allocation (buffers come from the executor's pool), no lock, and only
//! this core's counters are written. When a read holds more requests after
//! the one being answered (pipelining), the ids of the next ones (up to 16,
//! found in at most 4 KiB) are looked for and their posts prefetched
//! together ([`heavyread_sync::Store::prefetch`]), so that the lookups'
//! cache misses overlap instead of following each other. Reads and writes are plain
//! non-blocking system calls; waiting for the socket goes through the
//! executor's [`crate::poller`].

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Instant;

use glommio::net::TcpStream;
use heavyread_sync::fill::FillWait;
use heavyread_sync::record::MAX_ID_LEN;
use heavyread_sync::store::PREFETCH_MAX;
use heavyread_sync::{Entry, FillError, FillOutcome, Guard};

use crate::executor::{ConnState, Core, Phase};
use crate::http::{self, Common, IdError, Method, Parse, Request, Status, Target};
use crate::metrics::{Route, Scrape, Timeout};
use crate::poller::Socket;
use crate::request_id;
use tracing::warn;

/// Answers accumulated past this size are written before parsing more of the same read.
const FLUSH_AT: usize = 256 << 10;

/// Bytes of a read looked through at a time for the ids of the requests
/// ahead: about 40 pipelined requests of a typical client, more than the
/// [`PREFETCH_MAX`] ids one lookahead takes, and a bound on the work a read
/// of requests without ids can cause.
const LOOKAHEAD_SCAN: usize = 4 << 10;

/// How long a closing connection may keep sending before it is cut.
const MAX_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves one accepted connection until it closes.
pub async fn serve(core: Rc<Core>, stream: TcpStream) {
    let socket = match core.poller.register(stream.as_raw_fd()) {
        Ok(s) => s,
        Err(e) => {
            warn!(core = core.index, error = %e, "cannot watch a connection: closing it");
            return;
        }
    };
    let (state, registration) = core.register(stream.as_raw_fd());
    let mut input = core.take_in();
    run(&core, &socket, &state, &mut input).await;
    core.put_in(input);
    // Unregister before the socket closes, so the tick never touches a reused fd.
    drop(registration);
    drop(socket);
    drop(stream);
}

/// Why a batch ended.
struct Batch {
    /// Bytes of the input consumed by complete requests.
    consumed: usize,
    /// Requests answered.
    answered: u64,
    /// The connection closes after these answers.
    close: bool,
    /// The output buffer filled up before the input ran out of complete requests.
    more: bool,
    /// The next request needs a post read through from Redis (bounded
    /// store): it is not consumed; answer it once the fill is done.
    fill: Option<FillWait>,
}

/// A finished fill, for answering the request that waited for it.
struct Filled {
    id: Box<str>,
    outcome: FillOutcome,
}

async fn run(core: &Rc<Core>, socket: &Socket<'_>, state: &ConnState, input: &mut [u8]) {
    let config = &core.shared.config;
    let mut filled = 0usize;
    let start = Instant::now();
    // When the request head being received must be complete.
    let mut head_deadline = start + config.header_timeout;
    // A connection that has sent nothing yet waits no longer than a head
    // may take (and is closed without an answer, as an idle one is): a
    // client opening connections it never uses would otherwise hold them,
    // and the per-core cap, for the idle timeout.
    let first_deadline = start + config.idle_timeout.min(config.header_timeout);
    // Whether a request has been answered: until then the connection only
    // waits until `first_deadline`, whatever stray empty lines it sends.
    let mut served = false;
    state.arm(Phase::Idle, first_deadline);
    loop {
        if filled == 0 && core.draining.get() {
            return;
        }
        let n = if filled < input.len() {
            socket.read(&mut input[filled..]).await.unwrap_or(0)
        } else {
            0
        };
        if n == 0 {
            let expired = state.expired.take();
            // A deadline that passed while the peer's end-of-file waited to
            // be read (the executor was late, not the client) is no timeout:
            // the client is done, and the connection ends as it would have.
            if expired.is_some() && socket.peer_finished() {
                return;
            }
            match expired {
                Some(Phase::Header) => {
                    core.metrics().timed_out(Timeout::Header);
                    let mut out = core.take_out();
                    // A HEAD's answer has no body, even this one.
                    let head = http::is_head(&input[..filled]);
                    reject_with(
                        core,
                        Status::RequestTimeout,
                        br#"{"error":"request head not received in time"}"#,
                        b"",
                        None,
                        head,
                        &mut out,
                    );
                    core.metrics()
                        .request(Route::Invalid, Status::RequestTimeout);
                    if write(core, socket, state, &out, Instant::now()).await {
                        linger(core, socket, state, input).await;
                    }
                    core.put_out(out);
                }
                Some(Phase::Idle) => core.metrics().timed_out(Timeout::Idle),
                _ => {}
            }
            return;
        }
        let t0 = Instant::now();
        if filled == 0 {
            head_deadline = t0 + config.header_timeout;
            state.arm(Phase::Header, head_deadline);
        }
        filled += n;

        let mut out = core.take_out();
        let mut pos = 0;
        let mut answered = 0u64;
        let mut fill_done: Option<Filled> = None;
        // Whether `t0` is still a recent reading of the clock: a flush or a
        // fill may have waited since.
        let mut t0_recent = true;
        let close = loop {
            let b = process(core, &input[pos..filled], &mut out, &mut fill_done);
            pos += b.consumed;
            answered += b.answered;
            if let Some(wait) = b.fill {
                // Answers before the miss go out now; then wait for Redis.
                if !out.is_empty() {
                    if !write(core, socket, state, &out, Instant::now()).await {
                        core.put_out(out);
                        return;
                    }
                    out.clear();
                }
                fill_done = Some(wait_fill(core, state, wait).await);
                t0_recent = false;
                continue;
            }
            if b.close || !b.more {
                break b.close;
            }
            // A large batch: send what is ready, then go on with the same read.
            if !write(core, socket, state, &out, Instant::now()).await {
                core.put_out(out);
                return;
            }
            out.clear();
            t0_recent = false;
        };
        // The batch's clock reading serves as the write's when answering
        // took microseconds; after a flush or a fill it may be long past.
        let now = if t0_recent { t0 } else { Instant::now() };
        if !out.is_empty() && !write(core, socket, state, &out, now).await {
            core.put_out(out);
            return;
        }
        core.put_out(out);
        let t1 = Instant::now();
        if answered > 0 {
            served = true;
            core.metrics()
                .latency(answered, (t1 - t0).as_nanos() as u64);
        }
        if close {
            linger(core, socket, state, input).await;
            return;
        }
        // Empty lines (CRLF or a bare LF) before a request line are to be
        // ignored (RFC 9112, section 2.2): a client's stray CRLF after its
        // request leaves the connection idle, not inside a head that would
        // time out. A CR not followed by LF is no line end: it stays, to be
        // refused by the parser (or completed by the next read), as it
        // would be had it come in the same read as the request after it.
        // Stripped lines start no new head clock (a CR and its LF may come
        // in different reads, so a head can keep being a partial line).
        let consumed = pos;
        loop {
            match input[pos..filled] {
                [b'\n', ..] => pos += 1,
                [b'\r', b'\n', ..] => pos += 2,
                _ => break,
            }
        }
        input.copy_within(pos..filled, 0);
        filled -= pos;
        if filled == 0 {
            let idle_until = if served {
                t1 + config.idle_timeout
            } else {
                first_deadline
            };
            state.arm(Phase::Idle, idle_until);
        } else {
            if consumed > 0 {
                // The rest is the start of the next request: its head clock starts now.
                head_deadline = t1 + config.header_timeout;
            }
            state.arm(Phase::Header, head_deadline);
        }
    }
}

/// Waits for a fill, at most `--fill-timeout`.
async fn wait_fill(core: &Core, state: &ConnState, wait: FillWait) -> Filled {
    let config = &core.shared.config;
    // The connection may not be cut for a slow head while Redis answers.
    state.arm(
        Phase::Writing,
        Instant::now() + config.fill_timeout + config.write_timeout,
    );
    let id: Box<str> = wait.id().into();
    let timeout = config.fill_timeout;
    let outcome = futures_lite::future::or(wait, async move {
        glommio::timer::sleep(timeout).await;
        Err(FillError::Timeout)
    })
    .await;
    if matches!(outcome, Err(FillError::Timeout)) {
        if let Some(f) = &core.shared.filler {
            f.timed_out();
        }
    }
    Filled { id, outcome }
}

/// Writes `out`; false when the connection is gone, or took none of it for
/// `--write-timeout` (counted from `now`, a recent reading of the clock,
/// and again from each partial write: a client that keeps reading, however
/// slowly, is not cut).
async fn write(
    core: &Core,
    socket: &Socket<'_>,
    state: &ConnState,
    out: &[u8],
    now: Instant,
) -> bool {
    let timeout = core.shared.config.write_timeout;
    state.arm(Phase::Writing, now + timeout);
    let mut rest = out;
    loop {
        match socket.write(rest).await {
            Ok(n) if n > 0 => {
                rest = &rest[n..];
                if rest.is_empty() {
                    core.metrics().sent(out.len() as u64);
                    return true;
                }
                // The socket took part of it: the client is reading.
                state.arm(Phase::Writing, Instant::now() + timeout);
            }
            _ => {
                if state.expired.take() == Some(Phase::Writing) {
                    core.metrics().timed_out(Timeout::Write);
                }
                core.metrics().sent((out.len() - rest.len()) as u64);
                return false;
            }
        }
    }
}

/// Closes our side, then reads and drops whatever the client still sends
/// for a short while, so closing does not reset the connection (and lose
/// the answer just sent) while request bytes are unread.
async fn linger(core: &Core, socket: &Socket<'_>, state: &ConnState, scratch: &mut [u8]) {
    socket.shutdown_write();
    let config = &core.shared.config;
    state.arm(
        Phase::Linger,
        Instant::now() + config.header_timeout.min(MAX_LINGER),
    );
    while let Ok(n) = socket.read(scratch).await {
        if n == 0 {
            break;
        }
    }
    state.expired.take();
}

/// Answers every complete request at the start of `input` into `out`,
/// stopping before one that needs a fill (unless `filled` has its answer).
fn process(core: &Core, input: &[u8], out: &mut Vec<u8>, filled: &mut Option<Filled>) -> Batch {
    let guard = core.shared.store.guard();
    let mut b = Batch {
        consumed: 0,
        answered: 0,
        close: false,
        more: false,
        fill: None,
    };
    // Input before this offset has been looked through for ids to prefetch.
    // It starts again at every call: after a fill or a flush at most one
    // window (16 ids or 4 KiB) is looked through again, which costs only time.
    let mut scanned = 0;
    loop {
        if out.len() >= FLUSH_AT {
            b.more = true;
            return b;
        }
        match http::parse_request(&input[b.consumed..], &core.limits) {
            Parse::Partial => return b,
            Parse::Complete(req, len) => {
                if b.consumed >= scanned && b.consumed + len < input.len() {
                    // More requests follow this one (pipelining): start the
                    // lookups of this and the next ones together, so that
                    // they do not each wait for memory in turn.
                    scanned = prefetch_ahead(core, &guard, input, b.consumed);
                }
                match respond(core, &req, &guard, out, filled) {
                    Ok(keep_alive) => {
                        b.consumed += len;
                        b.answered += 1;
                        if !keep_alive {
                            b.close = true;
                            return b;
                        }
                    }
                    Err(wait) => {
                        b.fill = Some(wait);
                        return b;
                    }
                }
            }
            Parse::Reject(r, request_id, head) => {
                reject_with(
                    core,
                    r.status(),
                    r.body(),
                    r.extra_headers(),
                    request_id,
                    head,
                    out,
                );
                core.metrics().request(Route::Invalid, r.status());
                b.answered += 1;
                b.close = true;
                return b;
            }
        }
    }
}

/// Prefetches the posts of the requests from `from` on, by their ids as
/// [`http::post_id_hints`] finds them in at most [`LOOKAHEAD_SCAN`] bytes;
/// returns the offset up to which `input` has been looked through, so that
/// [`process`] looks through no byte twice (but for a request line where a
/// scan was cut).
fn prefetch_ahead(core: &Core, guard: &Guard<'_>, input: &[u8], from: usize) -> usize {
    let to = input.len().min(from + LOOKAHEAD_SCAN);
    let region = &input[from..to];
    let (mut found, mut end) = (0, to);
    let ids = http::post_id_hints(region).inspect(|id| {
        found += 1;
        end = from + (id.as_ptr() as usize - region.as_ptr() as usize) + id.len();
    });
    core.shared.store.prefetch(ids, guard);
    // The search stops at the last id taken.
    #[cfg(test)]
    tests::LOOKED_THROUGH
        .with(|n| n.set(n.get() + if found == PREFETCH_MAX { end } else { to } - from));
    if found == PREFETCH_MAX {
        // There may be more ids after the last one taken.
        end
    } else if to < input.len() {
        // Cut short: a request line may straddle the cut, so the next scan
        // may start that much before it.
        (to - CUT_LINE).max(from + 1)
    } else {
        to
    }
}

/// Longest `HEAD /post?id=<id> ` that [`http::post_id_hints`] can find.
const CUT_LINE: usize = "HEAD /post?id= ".len() + MAX_ID_LEN;

/// A refusal that closes the connection.
fn reject_with(
    core: &Core,
    status: Status,
    body: &[u8],
    extra: &[u8],
    request_id: Option<&[u8]>,
    head: bool,
    out: &mut Vec<u8>,
) {
    let generated;
    let id = match request_id {
        Some(id) if request_id::is_sane(id) => id,
        _ => {
            generated = core.ids.next_id();
            generated.as_bytes()
        }
    };
    let date = core.date.get();
    let c = Common {
        date: &date,
        request_id: id,
        keep_alive: false,
        http10: false,
    };
    http::write_simple(out, &c, status, http::JSON, extra, body, head);
}

/// Appends the answer to `req`; `Ok(false)` when the connection closes
/// after it, `Err` (nothing written) when the post must be read from Redis first.
fn respond(
    core: &Core,
    req: &Request<'_>,
    guard: &Guard<'_>,
    out: &mut Vec<u8>,
    filled: &mut Option<Filled>,
) -> Result<bool, FillWait> {
    let keep_alive = req.keep_alive && !core.draining.get();
    let generated;
    let id = match req.request_id {
        Some(id) if request_id::is_sane(id) => id,
        _ => {
            generated = core.ids.next_id();
            generated.as_bytes()
        }
    };
    let date = core.date.get();
    let c = Common {
        date: &date,
        request_id: id,
        keep_alive,
        http10: req.http10,
    };
    let head = req.method == Method::Head;
    let (route, status) = match req.target {
        Target::Post => (Route::Post, post(core, req, guard, &c, head, out, filled)?),
        Target::Health => {
            http::write_simple(
                out,
                &c,
                Status::Ok,
                http::JSON,
                b"",
                br#"{"status":"ok"}"#,
                head,
            );
            (Route::Health, Status::Ok)
        }
        Target::Ready => {
            let status = match core.not_ready_reason() {
                None => {
                    http::write_simple(
                        out,
                        &c,
                        Status::Ok,
                        http::JSON,
                        b"",
                        br#"{"status":"ready"}"#,
                        head,
                    );
                    Status::Ok
                }
                Some(why) => {
                    http::write_simple(
                        out,
                        &c,
                        Status::ServiceUnavailable,
                        http::JSON,
                        b"",
                        why,
                        head,
                    );
                    Status::ServiceUnavailable
                }
            };
            (Route::Ready, status)
        }
        Target::Metrics => {
            let mut page = core.page.borrow_mut();
            page.clear();
            let shared = &core.shared;
            crate::metrics::render(
                &mut page,
                &Scrape {
                    cores: &shared.metrics,
                    store: &shared.store,
                    status: &shared.status,
                    ready: core.not_ready_reason().is_none(),
                    filler: core.shared.filler.as_ref(),
                },
            );
            http::write_simple(
                out,
                &c,
                Status::Ok,
                http::PROMETHEUS,
                b"",
                page.as_bytes(),
                head,
            );
            (Route::Metrics, Status::Ok)
        }
        Target::Unknown => {
            http::write_simple(
                out,
                &c,
                Status::NotFound,
                http::JSON,
                b"",
                br#"{"error":"no such route"}"#,
                head,
            );
            (Route::NotFound, Status::NotFound)
        }
    };
    core.metrics().request(route, status);
    Ok(keep_alive)
}

/// `GET|HEAD /post?id=ID`.
///
/// Unbounded store: a miss is 404. Bounded store (`--max-memory`): a miss is
/// read through from Redis (`Err`: the caller waits for the fill and asks
/// again with `filled`), unless Redis recently said it has no such id.
fn post(
    core: &Core,
    req: &Request<'_>,
    guard: &Guard<'_>,
    c: &Common<'_>,
    head: bool,
    out: &mut Vec<u8>,
    filled: &mut Option<Filled>,
) -> Result<Status, FillWait> {
    let mut buf = [0u8; MAX_ID_LEN];
    let id = match http::query_id(req.query, &mut buf) {
        Ok(id) => id,
        Err(e @ (IdError::Missing | IdError::Malformed)) => {
            http::write_simple(out, c, Status::BadRequest, http::JSON, b"", e.body(), head);
            return Ok(Status::BadRequest);
        }
    };
    let store = &core.shared.store;
    // The second look at a request that waited for a fill: its miss is counted.
    let retry = filled.take_if(|f| *f.id == *id);
    if let Some(entry) = store.get(id, guard) {
        if retry.is_none() && store.budget().is_some() {
            core.metrics().hit();
        }
        return Ok(answer(core, req, c, head, entry, out));
    }
    let Some(filler) = &core.shared.filler else {
        return Ok(not_found(c, head, out));
    };
    if let Some(f) = retry {
        return Ok(match f.outcome {
            Ok(Some(entry)) => answer(core, req, c, head, &entry, out),
            Ok(None) => not_found(c, head, out),
            Err(e) => unavailable(c, head, &e, out),
        });
    }
    core.metrics().miss();
    if filler.is_known_absent(id) {
        return Ok(not_found(c, head, out));
    }
    match filler.request(id) {
        Ok(wait) => Err(wait),
        Err(e) => Ok(unavailable(c, head, &e, out)),
    }
}

fn answer(
    core: &Core,
    req: &Request<'_>,
    c: &Common<'_>,
    head: bool,
    entry: &Entry,
    out: &mut Vec<u8>,
) -> Status {
    if req.precondition_failed(entry.etag()) {
        http::write_simple(
            out,
            c,
            Status::PreconditionFailed,
            http::JSON,
            entry.etag_line(),
            br#"{"error":"If-Match does not match the current ETag"}"#,
            head,
        );
        return Status::PreconditionFailed;
    }
    if req.not_modified(entry.etag()) {
        http::write_not_modified(out, c, &core.cache_control, entry.etag_line());
        Status::NotModified
    } else {
        let body = (!head).then(|| entry.body());
        http::write_entry(out, c, &core.cache_control, entry.headers(), body);
        Status::Ok
    }
}

fn not_found(c: &Common<'_>, head: bool, out: &mut Vec<u8>) -> Status {
    http::write_simple(
        out,
        c,
        Status::NotFound,
        http::JSON,
        b"",
        br#"{"error":"post not found"}"#,
        head,
    );
    Status::NotFound
}

/// 503 for a post that is not in memory and could not be read from Redis.
fn unavailable(c: &Common<'_>, head: bool, e: &FillError, out: &mut Vec<u8>) -> Status {
    let body: &[u8] = match e {
        FillError::Busy => {
            br#"{"error":"post not in memory and too many reads from redis in flight; retry"}"#
        }
        FillError::Timeout => {
            br#"{"error":"post not in memory and redis did not answer in time; retry"}"#
        }
        FillError::Redis(_) => br#"{"error":"post not in memory and redis cannot be read; retry"}"#,
    };
    http::write_simple(
        out,
        c,
        Status::ServiceUnavailable,
        http::JSON,
        b"Retry-After: 1\r\n",
        body,
        head,
    );
    Status::ServiceUnavailable
}

#[cfg(test)]
mod tests {
    //! The `GET /post` path, driven without sockets, under an allocator that
    //! counts this thread's allocations.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use heavyread_sync::record::{etag_of, Op, RecordRef};
    use heavyread_sync::{Store, SyncStatus};

    use super::*;
    use crate::metrics::CoreMetrics;
    use crate::server::Shared;

    struct Counting;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
        /// Bytes [`prefetch_ahead`] looked through on this thread.
        pub(super) static LOOKED_THROUGH: Cell<usize> = const { Cell::new(0) };
    }

    fn looked_through() -> usize {
        LOOKED_THROUGH.with(Cell::get)
    }

    // SAFETY: defers every call to the system allocator; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    fn allocations() -> u64 {
        ALLOCATIONS.with(Cell::get)
    }

    fn core_with(id: &str, body: &[u8]) -> Core {
        core_with_posts(&[(id, body)])
    }

    fn core_with_posts(posts: &[(&str, &[u8])]) -> Core {
        let (store, mut writer) = Store::new();
        for (id, body) in posts {
            writer.put(&RecordRef {
                op: Op::Put,
                version: 1,
                written_at_ns: 1,
                etag: etag_of(body),
                id,
                body,
            });
        }
        let shared = Arc::new(Shared {
            config: crate::Config::new("redis://127.0.0.1:1"),
            store,
            status: Arc::new(SyncStatus::new()),
            filler: None,
            metrics: vec![CoreMetrics::default()].into_boxed_slice(),
            stop: AtomicBool::new(false),
            tag: 7,
        });
        Core::new(0, shared).unwrap()
    }

    /// Pipelined reads prefetch their posts ahead of the answers; whatever
    /// the prefetch finds, every request gets its own answer, in order.
    #[test]
    fn pipelined_requests_get_their_own_answers_whatever_is_prefetched() {
        let bodies: Vec<(String, String)> = (0..40)
            .map(|i| (format!("p{i}"), format!(r#"{{"id":"p{i}"}}"#)))
            .collect();
        let posts: Vec<(&str, &[u8])> = bodies
            .iter()
            .map(|(id, body)| (id.as_str(), body.as_bytes()))
            .collect();
        let core = core_with_posts(&posts);
        // 40 requests, more than one prefetch takes; one of them names other
        // posts in a header, one asks for a post that is not held, one for
        // another route, so that ids and requests do not line up.
        let mut input = String::new();
        let mut expected = Vec::new();
        for i in 0..40 {
            let (target, want) = match i {
                5 => ("/post?id=nope".to_owned(), "404 Not Found".to_owned()),
                9 => ("/health".to_owned(), r#"{"status":"ok"}"#.to_owned()),
                _ => (format!("/post?id=p{i}"), format!(r#"{{"id":"p{i}"}}"#)),
            };
            let decoy = if i == 3 {
                "Referer: /post?id=p39 x\r\nX: GET /post?id=p38 x\r\n"
            } else {
                ""
            };
            input.push_str(&format!("GET {target} HTTP/1.1\r\nHost: h\r\n{decoy}\r\n"));
            expected.push(want);
        }
        let mut out = Vec::new();
        let b = process(&core, input.as_bytes(), &mut out, &mut None);
        assert_eq!((b.answered, b.consumed, b.close), (40, input.len(), false));
        let text = String::from_utf8(out).unwrap();
        let answers: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 40);
        for (i, (answer, want)) in answers.iter().zip(&expected).enumerate() {
            assert!(answer.contains(want.as_str()), "answer {i}: {answer}");
        }
    }

    /// A read's requests are looked through for ids about once: a read of
    /// many requests without ids costs no scan per request.
    #[test]
    fn a_read_is_looked_through_for_ids_about_once() {
        let core = core_with("p0", b"{}");
        for (one, count) in [
            ("GET /post?id=p0 HTTP/1.1\r\nHost: h\r\n\r\n", 100),
            ("GET /health HTTP/1.1\r\nHost: h\r\n\r\n", 1000),
        ] {
            let input = one.repeat(count);
            let mut out = Vec::new();
            let before = looked_through();
            let b = process(&core, input.as_bytes(), &mut out, &mut None);
            assert_eq!(b.answered, count as u64);
            let looked = looked_through() - before;
            // At most once, but for a request line where a 4 KiB scan was
            // cut; the rest of a line after the last id taken is skipped.
            let bound = input.len() + input.len() / LOOKAHEAD_SCAN * CUT_LINE;
            assert!(
                looked <= bound && looked >= input.len() / 2,
                "{looked} bytes looked through for {} bytes of {one:?}",
                input.len()
            );
        }
    }

    /// How far a prefetch looks: up to the id it stopped at when it took all
    /// it could, else to the end of what it may look through.
    #[test]
    fn a_prefetch_looks_as_far_as_its_ids_or_a_bounded_part() {
        let core = core_with("p0", b"{}");
        let guard = core.shared.store.guard();
        let one = "GET /post?id=p0 HTTP/1.1\r\nHost: h\r\n\r\n";
        let input = one.repeat(PREFETCH_MAX + 4);
        let end = one.find(" HTTP").unwrap();
        // All it takes: it stops after the last id taken.
        let from = one.len();
        let to = prefetch_ahead(&core, &guard, input.as_bytes(), from);
        assert_eq!(to, from + (PREFETCH_MAX - 1) * one.len() + end);
        // Fewer ids than it takes: it looked through the rest.
        let from = 10 * one.len();
        assert_eq!(
            prefetch_ahead(&core, &guard, input.as_bytes(), from),
            input.len()
        );
        // No ids at all: at most LOOKAHEAD_SCAN bytes, and the next scan
        // starts a request line before where this one was cut.
        let health = "GET /health HTTP/1.1\r\nHost: h\r\n\r\n".repeat(1000);
        assert_eq!(
            prefetch_ahead(&core, &guard, health.as_bytes(), 40),
            40 + LOOKAHEAD_SCAN - CUT_LINE
        );
        assert!(health.len() > 40 + LOOKAHEAD_SCAN);
    }

    #[test]
    fn get_post_path_does_not_allocate() {
        let body = br#"{"id":"p","title":"t"}"#;
        let core = core_with("p", body);
        let etag = String::from_utf8(
            core.shared
                .store
                .get("p", &core.shared.store.guard())
                .unwrap()
                .etag()
                .to_vec(),
        )
        .unwrap();
        let input = format!(
            "GET /post?id=p HTTP/1.1\r\nHost: h\r\n\r\n\
             GET /post?id=%70 HTTP/1.1\r\nHost: h\r\nIf-None-Match: W/{etag}\r\n\r\n\
             HEAD /post?id=p HTTP/1.1\r\nHost: h\r\nX-Request-Id: abc\r\n\r\n\
             GET /post?id=missing HTTP/1.1\r\nHost: h\r\n\r\n\
             GET /post?id=a%zz HTTP/1.1\r\nHost: h\r\n\r\n"
        );
        let mut out = Vec::with_capacity(64 << 10);
        // Warm up: the first guard registers this thread with the map's collector.
        let warm = process(&core, input.as_bytes(), &mut out, &mut None);
        assert_eq!((warm.answered, warm.close), (5, false));
        out.clear();
        let before = allocations();
        let b = process(&core, input.as_bytes(), &mut out, &mut None);
        let after = allocations();
        assert_eq!((b.answered, b.consumed, b.close), (5, input.len(), false));
        assert_eq!(after - before, 0, "the request path allocated");
        // The counter does see this thread's allocations.
        drop(std::hint::black_box(Vec::<u8>::with_capacity(1)));
        assert_eq!(allocations(), after + 1);
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2);
        assert_eq!(text.matches("HTTP/1.1 304 Not Modified").count(), 1);
        assert_eq!(text.matches("HTTP/1.1 404 Not Found").count(), 1);
        assert_eq!(text.matches("HTTP/1.1 400 Bad Request").count(), 1);
    }
}
