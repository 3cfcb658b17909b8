//! The write timeout of client connections.
//!
//! Hyper's timer covers the wait for a request head; nothing bounds the
//! wait for a client to take its answers. A client that sends requests and
//! never reads (its receive window stays shut) would hold its connection,
//! and one of the `--max-connections` slots, for as long as it likes.
//! [`WriteDeadline`] wraps the socket: a write (or flush) that can make no
//! progress for `--write-timeout` fails with `TimedOut`, which ends the
//! connection. The clock starts when a write first finds the socket full
//! and stops at the next byte written, so a slow client that keeps taking
//! bytes is never cut; writes that go straight through cost one branch.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A socket whose writes fail after `timeout` without progress.
#[derive(Debug)]
pub(crate) struct WriteDeadline<T> {
    io: T,
    timeout: Duration,
    /// The timer of the current stall; kept between stalls so a connection
    /// allocates it at most once.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether a write is waiting on a full socket (`timer` is running).
    stalled: bool,
}

impl<T> WriteDeadline<T> {
    pub(crate) fn new(io: T, timeout: Duration) -> Self {
        WriteDeadline {
            io,
            timeout,
            timer: None,
            stalled: false,
        }
    }

    /// Passes on what the socket said, starting the stall clock when it
    /// could not take anything and failing once the clock has run out.
    fn watch<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if r.is_ready() {
            self.stalled = false;
            return r;
        }
        let deadline = Instant::now() + self.timeout;
        let timer = match &mut self.timer {
            Some(t) => {
                if !self.stalled {
                    t.as_mut().reset(deadline);
                }
                t
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.stalled = true;
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = false;
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, WriteTimedOut)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The error of a write that made no progress within the write timeout,
/// told apart from a `TimedOut` of the socket itself (a kernel's
/// retransmission or keep-alive timeout, on a read as well).
#[derive(Debug)]
pub(crate) struct WriteTimedOut;

impl std::fmt::Display for WriteTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client took no answer bytes within the write timeout")
    }
}

impl std::error::Error for WriteTimedOut {}

/// Whether `e` is [`WriteDeadline`]'s timeout.
pub(crate) fn is_write_deadline(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<WriteTimedOut>())
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A pipe of `cap` bytes: writes beyond it wait until the other end reads.
    fn pipe(
        cap: usize,
        timeout: Duration,
    ) -> (
        WriteDeadline<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
    ) {
        let (a, b) = tokio::io::duplex(cap);
        (WriteDeadline::new(a, timeout), b)
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_deadline_s_own_timeout_counts_as_one() {
        let (mut w, _reader) = pipe(8, Duration::from_secs(5));
        let e = w.write_all(&[0u8; 64]).await.unwrap_err();
        assert!(is_write_deadline(&e), "{e:?}");
        // The socket's own timeouts (and any other error) are not.
        assert!(!is_write_deadline(&io::Error::from(
            io::ErrorKind::TimedOut
        )));
        assert!(!is_write_deadline(&io::Error::new(
            io::ErrorKind::TimedOut,
            "connection timed out"
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_finds_no_room_fails_after_the_timeout() {
        let (mut w, _reader) = pipe(8, Duration::from_secs(5));
        w.write_all(b"12345678").await.unwrap();
        let t = Instant::now();
        let e = w.write_all(b"9").await.expect_err("the pipe is full");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(t.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_taking_bytes_is_never_cut() {
        let (mut w, mut r) = pipe(8, Duration::from_secs(5));
        // The reader takes a byte every 4 s: each stall is shorter than the
        // timeout, while the whole write takes far longer than it.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut b = [0u8; 1];
            while r.read(&mut b).await.unwrap() == 1 {
                got.push(b[0]);
                tokio::time::sleep(Duration::from_secs(4)).await;
            }
            got
        });
        let t = Instant::now();
        let data: Vec<u8> = (0..40).collect();
        w.write_all(&data)
            .await
            .expect("every stall is under the timeout");
        assert!(t.elapsed() > Duration::from_secs(100), "{:?}", t.elapsed());
        drop(w);
        assert_eq!(reader.await.unwrap(), data);
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_restarts_at_each_stall() {
        let (mut w, mut r) = pipe(4, Duration::from_secs(5));
        w.write_all(b"abcd").await.unwrap();
        // A stall of 4 s, then the reader frees the pipe.
        let first = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            let mut b = [0u8; 4];
            r.read_exact(&mut b).await.unwrap();
            r
        });
        w.write_all(b"efgh").await.expect("a stall of 4 s");
        let _r = first.await.unwrap();
        // A second stall is timed from its own start, not the first one's.
        let t = Instant::now();
        let e = w.write_all(b"i").await.expect_err("nobody reads now");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(t.elapsed(), Duration::from_secs(5));
    }
}
