//! The sync library's error type.

/// Errors a caller of this crate can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid; the message names it.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Redis could not be reached, or a command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered with something this schema does not expect.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// An id or body that cannot be stored.
    #[error("invalid record: {0}")]
    Record(#[from] crate::record::EncodeError),
    /// The sync thread could not be started.
    #[error("cannot start the sync thread: {0}")]
    Spawn(#[from] std::io::Error),
}

impl Error {
    /// True when the failure is Redis being unreachable or dropping the
    /// connection (worth a retry later), rather than a bad request.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
            }
            _ => false,
        }
    }
}
