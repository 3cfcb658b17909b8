//! The HTTP/1.1 server under the router: the accept loop, the connection
//! limit, hyper's timers, and the drain on shutdown.
//!
//! `axum::serve` gives hyper no timer, so a client could hold a connection
//! forever by sending its head a byte at a time. Here each connection is
//! served by hyper's `http1` builder with a [`TokioTimer`]:
//!
//! - `--header-timeout` bounds the time to receive a whole request head. Hyper
//!   starts it whenever it waits for a head, so it also closes connections
//!   that never send anything and idle keep-alive connections.
//! - `--body-timeout` bounds each silence inside a request body; the handlers
//!   enforce it (see [`crate::http::next_chunk`]) and answer 408.
//! - `--write-timeout` bounds each wait for a client to take answer bytes
//!   (see [`crate::deadline`]): a client that stops reading is disconnected.
//!   Both timeouts are counted (`heavyread_writer_connection_timeouts_total`).
//! - `--max-connections` bounds open connections: at the cap the loop stops
//!   accepting, and new connections wait in the kernel's listen backlog.
//!
//! On shutdown the listener is closed at once, every connection is asked to
//! finish the request it is on and close, and whatever is still open after
//! `--drain-timeout` is dropped.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};
use tracing::{debug, error, info, warn};

use crate::deadline::{is_write_deadline, WriteDeadline};
use crate::metrics::Metrics;
use crate::Config;

/// Pause after an accept error that is not about one connection (such as
/// running out of file descriptors), as hyper 0.14 and `axum::serve` do.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Least time between two "connection limit reached" warnings.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(10);

type Connection = http1::Connection<TokioIo<WriteDeadline<TcpStream>>, TowerToHyperService<Router>>;

/// Serves `router` on `listener` until `shutdown` completes, then drains
/// (see the module docs). Never fails: accept errors are logged and retried.
pub(crate) async fn serve(
    config: &Config,
    listener: TcpListener,
    router: Router,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    let mut acceptor = Acceptor {
        listener,
        slots: Arc::new(Semaphore::new(config.max_connections)),
        max: config.max_connections,
        warned_full: None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, slot) = tokio::select! {
            () = &mut shutdown => break,
            accepted = acceptor.accept() => accepted,
        };
        // Collect the connections that ended, so the set stays as small as the limit.
        while let Some(ended) = conns.try_join_next() {
            report(ended);
        }
        let io = TokioIo::new(WriteDeadline::new(tcp, config.write_timeout));
        let conn = http.serve_connection(io, TowerToHyperService::new(router.clone()));
        conns.spawn(connection(
            conn,
            slot,
            stop_rx.clone(),
            Arc::clone(&metrics),
        ));
    }
    drop(acceptor);
    info!(
        connections = conns.len(),
        "shutting down: no new connections, draining in-flight requests"
    );
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(config.drain_timeout, async {
        while let Some(ended) = conns.join_next().await {
            report(ended);
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            timeout = ?config.drain_timeout,
            connections = conns.len(),
            "drain timed out; dropping the remaining connections"
        );
        conns.shutdown().await;
    }
}

/// Serves one connection until it ends, or until shutdown asks it to finish
/// its current request; holds its slot of `--max-connections` until then.
async fn connection(
    conn: Connection,
    _slot: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    let mut conn = pin!(conn);
    let stopping = async move {
        // An error means the server is gone: stop as well.
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    // Timeouts, resets and malformed requests end here; hyper has answered
    // what could be answered.
    if let Err(error) = ended {
        if error.is_timeout() {
            metrics.connection_timeout(false);
        } else if is_write_timeout(&error) {
            metrics.connection_timeout(true);
        }
        debug!(%error, "connection ended with an error");
    }
}

/// Whether hyper gave up on the connection because a write timed out
/// (the [`WriteDeadline`] error, somewhere in the error's sources).
fn is_write_timeout(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if e.downcast_ref::<io::Error>().is_some_and(is_write_deadline) {
            return true;
        }
        source = e.source();
    }
    false
}

fn report(ended: Result<(), JoinError>) {
    if let Err(e) = ended {
        if e.is_panic() {
            error!(error = %e, "a connection task panicked");
        }
    }
}

/// The listener with the connection limit.
struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    max: usize,
    warned_full: Option<Instant>,
}

impl Acceptor {
    /// Waits for a free slot, then for a connection. Cancel-safe: a slot
    /// taken by a cancelled call goes back, and `TcpListener::accept` loses nothing.
    async fn accept(&mut self) -> (TcpStream, OwnedSemaphorePermit) {
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if self
                    .warned_full
                    .is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY)
                {
                    self.warned_full = Some(Instant::now());
                    warn!(
                        max_connections = self.max,
                        "connection limit reached; new connections wait until one closes"
                    );
                }
                match Arc::clone(&self.slots).acquire_owned().await {
                    Ok(slot) => slot,
                    // The semaphore is never closed.
                    Err(_) => return std::future::pending().await,
                }
            }
        };
        loop {
            match self.listener.accept().await {
                Ok((tcp, _peer)) => {
                    // Answers are small and written whole; don't let Nagle hold them.
                    let _ = tcp.set_nodelay(true);
                    return (tcp, slot);
                }
                // About that one connection (gone before we took it): next.
                Err(e) if is_connection_error(&e) => {}
                Err(error) => {
                    error!(%error, pause = ?ACCEPT_ERROR_PAUSE, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
