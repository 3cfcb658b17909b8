//! The writer's Redis side: the sync library's [`Publisher`] with every
//! outcome counted, errors mapped to HTTP answers, and a background task that
//! keeps the function library loaded while Redis comes and goes.

use std::sync::Arc;
use std::time::Duration;

use heavyread_sync::{Publisher, PutBatch, Written};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::error::ApiError;
use crate::metrics::{Metrics, RedisErrorKind};

/// How often the background task checks Redis and the library.
const CHECK_EVERY: Duration = Duration::from_secs(1);

fn is_timeout(e: &heavyread_sync::Error) -> bool {
    matches!(e, heavyread_sync::Error::Redis(r) if r.is_timeout())
}

/// What `/ready` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Redis answers and the function library is loaded.
    Ready,
    /// Redis answers but the library is missing (being loaded).
    LibraryMissing,
    /// Redis cannot be reached; the message says why.
    Unreachable(String),
}

/// A cheap-to-clone handle on Redis for the handlers.
#[derive(Clone, Debug)]
pub struct Backend {
    publisher: Publisher,
    /// A second connection for `/bulk`, so its large pipelines do not queue
    /// ahead of single writes on the same socket.
    bulk: Publisher,
    metrics: Arc<Metrics>,
}

impl Backend {
    /// Wraps `publisher` (single writes, reads, readiness) and `bulk`
    /// (pipelined seeding; may be a clone of `publisher` to share its
    /// connection), counting into `metrics`.
    pub fn new(publisher: Publisher, bulk: Publisher, metrics: Arc<Metrics>) -> Self {
        Backend {
            publisher,
            bulk,
            metrics,
        }
    }

    fn failed(&self, what: &str, e: heavyread_sync::Error) -> ApiError {
        if is_timeout(&e) {
            // The command may have gone out and may still run (redis-rs
            // also times out a reconnect this way): the answer must not say
            // it was refused (a client that retries a put converges; a
            // delete it retries may find the post gone).
            self.metrics.redis_error(RedisErrorKind::Timeout);
            warn!(error = %e, what, "redis did not answer in time");
            let outcome = if what == "get" {
                ""
            } else {
                "; it may still be applied: read the post to know"
            };
            ApiError::RedisTimeout(format!("redis did not answer the {what} in time{outcome}"))
        } else if e.is_unavailable() {
            self.metrics.redis_error(RedisErrorKind::Unavailable);
            warn!(error = %e, what, "redis unavailable");
            ApiError::Unavailable("redis unavailable".into())
        } else if let heavyread_sync::Error::Record(r) = e {
            // Validation runs first, so this is only reachable through a bug; still a client answer.
            ApiError::Invalid {
                field: None,
                message: r.to_string(),
            }
        } else {
            self.metrics.redis_error(RedisErrorKind::Other);
            warn!(error = %e, what, "redis command failed");
            ApiError::Unavailable(format!("redis refused the {what}"))
        }
    }

    /// Runs `call`, and once more if it failed because the connection was
    /// gone (not on a timeout: a slow command may still be running). The
    /// connection manager notices a dead connection only when a command fails
    /// on it, so without this the first write after a Redis restart would be
    /// refused although Redis is up. Retrying is safe because every call here
    /// converges: a put is an upsert of the same bytes (at worst one extra
    /// version), a delete of a gone post answers 404, a read is a read.
    async fn once_more<T, F, Fut>(&self, what: &str, call: F) -> Result<T, heavyread_sync::Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, heavyread_sync::Error>>,
    {
        match call().await {
            Err(e) if e.is_unavailable() && !is_timeout(&e) => {
                self.metrics.redis_error(RedisErrorKind::Unavailable);
                debug!(error = %e, what, "redis connection lost; retrying once on a new one");
                call().await
            }
            r => r,
        }
    }

    /// Stores and publishes one post; returns once Redis applied it.
    pub async fn put(&self, id: &str, body: &[u8]) -> Result<Written, ApiError> {
        match self.once_more("put", || self.publisher.put(id, body)).await {
            Ok(w) => {
                self.metrics.published_puts(1, body.len() as u64, w.version);
                Ok(w)
            }
            Err(e) => Err(self.failed("put", e)),
        }
    }

    /// Deletes one post; `None` when it did not exist.
    pub async fn delete(&self, id: &str) -> Result<Option<u64>, ApiError> {
        match self.once_more("delete", || self.publisher.delete(id)).await {
            Ok(Some(v)) => {
                self.metrics.published_delete(v);
                Ok(Some(v))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(self.failed("delete", e)),
        }
    }

    /// Puts a batch of valid posts, in order (see [`Publisher::put_batch`]).
    pub async fn put_batch(&self, batch: &PutBatch) -> Result<Vec<Written>, ApiError> {
        match self
            .once_more("bulk put", || self.bulk.put_batch(batch))
            .await
        {
            Ok(written) => {
                let last = written.iter().map(|w| w.version).max().unwrap_or(0);
                self.metrics
                    .published_puts(written.len() as u64, batch.body_bytes(), last);
                Ok(written)
            }
            Err(e) => Err(self.failed("bulk put", e)),
        }
    }

    /// The stored record of `id`.
    pub async fn get(&self, id: &str) -> Result<Option<Vec<u8>>, ApiError> {
        self.once_more("get", || self.publisher.get(id))
            .await
            .map_err(|e| self.failed("get", e))
    }

    /// Asks Redis now.
    pub async fn readiness(&self) -> Readiness {
        match self.publisher.library_loaded().await {
            Ok(true) => Readiness::Ready,
            Ok(false) => Readiness::LibraryMissing,
            Err(e) => Readiness::Unreachable(e.to_string()),
        }
    }

    /// Loads the library at start, then checks every second until `stop`
    /// turns true, loading it again whenever Redis comes back without it.
    /// Also keeps the `redis_up` and `last_version` gauges current.
    pub async fn keep_library_loaded(self, mut stop: watch::Receiver<bool>) {
        let mut was: Option<Readiness> = None;
        loop {
            let mut now = self.readiness().await;
            if now == Readiness::LibraryMissing {
                match self.publisher.load_library().await {
                    Ok(()) => {
                        info!("function library loaded");
                        now = Readiness::Ready;
                    }
                    Err(e) => now = Readiness::Unreachable(e.to_string()),
                }
            }
            self.metrics.set_redis_up(now == Readiness::Ready);
            if now == Readiness::Ready {
                // Redis may have lost its data (versions restart at 1): the
                // gauge the readers' staleness alert compares with follows it.
                let before = self.metrics.last_version();
                if let Ok(v) = self.publisher.version().await {
                    self.metrics.saw_version(before, v);
                }
            }
            let changed = was
                .as_ref()
                .is_none_or(|w| std::mem::discriminant(w) != std::mem::discriminant(&now));
            if changed {
                match &now {
                    Readiness::Ready => info!("redis ready"),
                    Readiness::LibraryMissing => warn!("function library missing"),
                    Readiness::Unreachable(e) => warn!(error = %e, "redis unreachable; retrying"),
                }
                was = Some(now);
            }
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}
