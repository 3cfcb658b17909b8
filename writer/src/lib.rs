//! heavyread-writer is the tokio + axum service that owns all writes.
//!
//! A client sends a post; the writer validates it, serializes it once to the
//! exact bytes every reader will serve, and hands it to the sync library's
//! [`heavyread_sync::Publisher`], whose Redis function stores,
//! versions, logs and publishes it atomically. The writer answers only after
//! Redis applied the change, so an acknowledged write is a stored write.
//!
//! ```text
//! client ─HTTP─► server.rs (hyper: header and write timeouts, connection cap, drain)
//!                   │
//!                   ▼
//!               axum router ─► http.rs handlers ─► post.rs (validate, serialize)
//!                   │                │                  │
//!                   │ metrics.rs     │ bulk.rs (NDJSON)  ▼
//!                   ▼                └────────────► backend.rs ─FCALL─► Redis ─PUBLISH─► readers
//!               /metrics                               ▲
//!                                      keep_library_loaded (background, every second)
//! ```
//!
//! # Layout
//!
//! - [`config`]: flags and environment variables, validated once.
//! - `server`: the accept loop on hyper: header and idle timeouts, the
//!   connection cap, the drain on shutdown; `deadline`: the write timeout.
//! - [`post`]: the post, its validation, and its one serialization.
//! - [`http`]: the routes, the write-route checks (token, Content-Type, body limit).
//! - [`bulk`]: `POST /bulk`, streamed NDJSON in pipelined chunks.
//! - [`backend`]: the publisher with metrics, error mapping and the library keeper.
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`error`]: the crate [`Error`] and the JSON error answers ([`ApiError`]).
//!
//! # Running it
//!
//! - [`run`]: what the binary does: bind `--listen`, serve until SIGTERM or
//!   SIGINT, drain, return.
//! - [`start`]: bind `config.listen` (use port 0 in tests) and serve in the
//!   background; the [`WriterHandle`] gives the bound address and a shutdown.
//! - [`serve`]: serve on a listener you bound, until a future completes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), heavyread_writer::Error> {
//! let writer = heavyread_writer::start(heavyread_writer::Config::new("redis://127.0.0.1:6379")).await?;
//! println!("writer on http://{}", writer.addr());
//! writer.shutdown().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod backend;
pub mod bulk;
pub mod config;
mod deadline;
pub mod error;
pub mod http;
pub mod metrics;
pub mod post;
mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use heavyread_sync::config::redacted;
use heavyread_sync::Publisher;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

pub use config::{Config, LogFormat};
pub use error::{ApiError, Error};

/// Serves `config` on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight requests finish for up to
/// `config.drain_timeout` (dropping the connections still open then), and
/// returns.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    config.validate()?;
    let publisher = || {
        Publisher::new(
            &config.redis_url,
            &config.prefix,
            config.log_max_len,
            config.redis_timeout,
        )
    };
    let metrics = Arc::new(metrics::Metrics::new());
    let backend = backend::Backend::new(publisher()?, publisher()?, metrics.clone());
    let state = http::AppState::new(&config, backend.clone(), Arc::clone(&metrics));

    let (stop_tx, stop_rx) = watch::channel(false);
    let keeper = tokio::spawn(backend.keep_library_loaded(stop_rx));

    let addr = listener.local_addr()?;
    info!(
        %addr,
        redis = %redacted(&config.redis_url),
        prefix = %config.prefix,
        auth = config.write_token.is_some(),
        header_timeout = ?config.header_timeout,
        body_timeout = ?config.body_timeout,
        write_timeout = ?config.write_timeout,
        max_connections = config.max_connections,
        "listening"
    );
    server::serve(
        &config,
        listener,
        http::router(state),
        metrics,
        async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        },
    )
    .await;
    keeper.abort();
    info!("stopped");
    Ok(())
}

/// Binds `config.listen` and serves until SIGTERM or SIGINT, then drains
/// (see [`serve`]). This is the binary's whole job.
pub async fn run(config: Config) -> Result<(), Error> {
    config.validate()?;
    let listener = bind(config.listen).await?;
    let signal = shutdown_signal()?;
    serve(config, listener, signal).await
}

/// Listen backlog: room for bursts of new connections while the accept
/// loop is busy (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 4096;

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    let bind = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    bind().map_err(|source| Error::Bind { addr, source })
}

/// Completes on the first SIGTERM or SIGINT. The handlers are installed
/// before this returns, so a signal sent right after start is not lost.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    })
}

/// A writer serving in the background (see [`start`]).
#[derive(Debug)]
pub struct WriterHandle {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<Result<(), Error>>,
}

impl WriterHandle {
    /// The address the writer listens on (with the real port when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, drains, and waits until the server returned.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(Error::Io(std::io::Error::other(e))),
        }
    }
}

impl Drop for WriterHandle {
    /// Dropping the handle shuts the writer down (without waiting for it).
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds `config.listen` and serves in a background task until
/// [`WriterHandle::shutdown`] (or the handle is dropped).
pub async fn start(config: Config) -> Result<WriterHandle, Error> {
    config.validate()?;
    let listener = bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(config, listener, async move {
        let _ = stopped.await;
    }));
    Ok(WriterHandle {
        addr,
        stop: Some(stop),
        task,
    })
}
