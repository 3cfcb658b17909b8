//! The reader's error type: what can stop it from starting or stopping cleanly.

use std::net::SocketAddr;

/// Errors a caller of [`crate::start`] or [`crate::run`] can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid; the message names the flag and the bad value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The process's limits or the kernel do not let glommio run; the message
    /// says what to raise or enable.
    #[error("cannot run: {0}")]
    Environment(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// An executor could not be created or ended with an error.
    #[error("executor {index} (cpu {cpu}): {message}")]
    Executor {
        /// Its position, 0-based.
        index: usize,
        /// The CPU it was pinned to.
        cpu: usize,
        /// What went wrong.
        message: String,
    },
    /// The sync thread could not be started.
    #[error("sync: {0}")]
    Sync(#[from] heavyread_sync::Error),
    /// Signal handlers could not be installed, or another system call failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
