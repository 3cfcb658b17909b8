//! The writer's side: store and publish a change in one atomic Redis call.
//!
//! [`Publisher::put`] builds the record once (the body the readers will
//! serve, its MD5 etag, the writer timestamp), then calls the
//! `heavyread_put` function, which sets the version, stores, logs and
//! publishes it. The call returns only after Redis applied all of it, so an
//! acknowledged write is a stored write. If Redis lost its function library
//! (a restart without persistence), the library is loaded again and the call
//! retried once.
//!
//! [`Publisher::put_batch`] (and [`Publisher::put_many`] on top of it) is
//! the seeding path: the posts of a [`PutBatch`] go in calls of the
//! `heavyread_put_packed` function (one call stores many posts, each with
//! its own consecutive version, and logs and publishes them as one entry and
//! one message; the call's templates go back to back in one argument), at most
//! [`MAX_BATCH_POSTS`] posts or about [`MAX_BATCH_BYTES`] of records per
//! call so that no call holds Redis for long, pipelined in one round trip.
//! Each template goes out with the version it will most likely get (one past
//! the last version a reply reported, counting on): the function keeps a
//! right guess as is and rebuilds a wrong one, which spares Redis building
//! every record's bytes again in Lua while the writer is the only one writing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::record::{delete_template, now_ns, put_template, VERSION_OFFSET};
use crate::schema::{Keys, LIBRARY, LIBRARY_NAME};
use crate::Error;

/// Most posts in one `heavyread_put_packed` call. Redis runs one call at a
/// time, so this bounds how long a batch holds up every other client: about
/// 256 × a few µs, a few milliseconds at most for posts of a few hundred bytes.
pub const MAX_BATCH_POSTS: usize = 256;
/// Most record bytes in one `heavyread_put_packed` call (a single larger post
/// still goes alone): large posts cost Redis per byte (copies into the hash,
/// the AOF and every subscriber's buffer), so they get smaller batches.
pub const MAX_BATCH_BYTES: usize = 256 << 10;

/// The result of an applied put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The global version Redis gave the change.
    pub version: u64,
    /// MD5 of the body.
    pub etag: [u8; 16],
}

/// Puts prepared for [`Publisher::put_batch`]: each post's record template
/// (the body's MD5, the encoding) is built when it is pushed, so that this
/// work can run while an earlier batch is in Redis.
#[derive(Debug, Clone, Default)]
pub struct PutBatch {
    templates: Vec<Vec<u8>>,
    etags: Vec<[u8; 16]>,
    body_bytes: u64,
}

impl PutBatch {
    /// An empty batch with room for `n` posts.
    pub fn with_capacity(n: usize) -> Self {
        PutBatch {
            templates: Vec::with_capacity(n),
            etags: Vec::with_capacity(n),
            body_bytes: 0,
        }
    }

    /// Adds a put of `body` under `id`, stamped with the current time; an
    /// invalid id or an oversized body is refused and leaves the batch as it was.
    pub fn push(&mut self, id: &str, body: &[u8]) -> Result<(), Error> {
        let (template, etag) = put_template(id, body, now_ns())?;
        self.templates.push(template);
        self.etags.push(etag);
        self.body_bytes += body.len() as u64;
        Ok(())
    }

    /// Number of posts.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// True when there is no post.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Sum of the bodies' lengths.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }
}

/// The put templates of one `heavyread_put_packed` call, back to back in
/// one argument, each with the version it will most likely get written in
/// (`first`, `first + 1`, ...; see [`LIBRARY`]).
struct Packed<'a> {
    templates: &'a [Vec<u8>],
    first: u64,
}

impl redis::ToRedisArgs for Packed<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let at = VERSION_OFFSET;
        let mut w = out.writer_for_next_arg();
        for (template, version) in self.templates.iter().zip(self.first..) {
            // Writes into the command's buffer: they cannot fail.
            let _ = w.write_all(&template[..at]);
            let _ = w.write_all(&version.to_be_bytes());
            let _ = w.write_all(&template[at + 8..]);
        }
    }
}

/// A cheap-to-clone handle that writes through the function library.
#[derive(Clone)]
pub struct Publisher {
    con: ConnectionManager,
    keys: Arc<Keys>,
    log_max_len: u64,
    /// The version of the last change a reply reported (shared by clones):
    /// where [`Self::put_batch`] expects the next versions to start. Only a
    /// guess; Redis corrects a wrong one.
    last_version: Arc<AtomicU64>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("keys", &self.keys)
            .field("log_max_len", &self.log_max_len)
            .finish()
    }
}

fn function_missing(e: &redis::RedisError) -> bool {
    let s = e.to_string();
    s.contains("Function not found") || s.contains("NOSCRIPT")
}

impl Publisher {
    /// A publisher for `redis_url` under `prefix`, keeping about
    /// `log_max_len` log entries. Connects lazily and reconnects by itself;
    /// each command gives up after `timeout`. Call [`Self::load_library`] at start.
    pub fn new(
        redis_url: &str,
        prefix: &str,
        log_max_len: u64,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let keys = Keys::new(prefix).map_err(|e| Error::Config(format!("prefix: {e}")))?;
        if log_max_len == 0 || log_max_len > i64::MAX as u64 {
            // Redis reads the trim length as a signed 64-bit integer: above
            // it every put would be refused.
            return Err(Error::Config(format!(
                "log max length: must be in 1..={}",
                i64::MAX
            )));
        }
        let client =
            redis::Client::open(redis_url).map_err(|e| Error::Config(format!("redis url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let con = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Publisher {
            con,
            keys: Arc::new(keys),
            log_max_len,
            last_version: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The key names in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// `FUNCTION LOAD REPLACE` of the library.
    pub async fn load_library(&self) -> Result<(), Error> {
        let mut con = self.con.clone();
        let name: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(LIBRARY)
            .query_async(&mut con)
            .await?;
        if name != LIBRARY_NAME {
            return Err(Error::Protocol(format!("FUNCTION LOAD answered {name:?}")));
        }
        Ok(())
    }

    /// The version of the library Redis has loaded, `None` when it has none.
    pub async fn library_version(&self) -> Result<Option<i64>, Error> {
        let mut con = self.con.clone();
        match redis::cmd("FCALL_RO")
            .arg("heavyread_version")
            .arg(0)
            .query_async::<i64>(&mut con)
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if function_missing(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// True when Redis answers and has this library or a newer one loaded.
    /// A newer version keeps every older function's contract (see
    /// [`crate::schema::LIBRARY_VERSION`]), so during a rolling upgrade the
    /// writers not yet upgraded leave it in place instead of loading theirs
    /// over it every second.
    pub async fn library_loaded(&self) -> Result<bool, Error> {
        Ok(self
            .library_version()
            .await?
            .is_some_and(|v| v >= i64::from(crate::schema::LIBRARY_VERSION)))
    }

    /// `FCALL function 4 <keys> channel log-max-len`, arguments to follow.
    fn fcall_head(&self, function: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(function).arg(4);
        for k in self.keys.function_keys() {
            cmd.arg(k);
        }
        cmd.arg(&self.keys.channel).arg(self.log_max_len);
        cmd
    }

    fn fcall(&self, function: &str, id: &str, record: &[u8]) -> redis::Cmd {
        let mut cmd = self.fcall_head(function);
        cmd.arg(id).arg(record);
        cmd
    }

    /// Runs one change's `FCALL` behind a `PING` in the same write.
    ///
    /// Redis answers the clients of one event-loop turn in the reverse order
    /// in which they got something to answer (each is linked at the head of
    /// its pending-write list), and the subscribers get their message during
    /// the `FCALL`, before its reply. Alone, the `FCALL` would make this
    /// connection the last to become pending and so the first answered: the
    /// writer could be woken, and even answer its client, before Redis has
    /// handed the change to any reader. The `PING` makes this connection
    /// pending first, so Redis writes the change to every subscriber's
    /// socket before it answers here, and a writer's client usually gets its
    /// `201` after that. Not when another client's command earlier in the
    /// same turn already made the subscribers pending (they then stay behind
    /// this connection), or a subscriber's socket is full: an ordering for
    /// latency, not a guarantee. The `PING` costs Redis about a microsecond.
    async fn call(&self, cmd: &redis::Cmd) -> Result<u64, Error> {
        let mut con = self.con.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("PING").ignore().add_command(cmd.clone());
        let v = match pipe.query_async::<(u64,)>(&mut con).await {
            Ok((v,)) => v,
            Err(e) if function_missing(&e) => {
                self.load_library().await?;
                pipe.query_async::<(u64,)>(&mut con).await?.0
            }
            Err(e) => return Err(e.into()),
        };
        if v != 0 {
            self.last_version.store(v, Ordering::Relaxed);
        }
        Ok(v)
    }

    /// Creates or replaces `id` with `body`; returns once Redis applied it.
    pub async fn put(&self, id: &str, body: &[u8]) -> Result<Written, Error> {
        let (record, etag) = put_template(id, body, now_ns())?;
        let version = self.call(&self.fcall("heavyread_put", id, &record)).await?;
        Ok(Written { version, etag })
    }

    /// Deletes `id`; `None` when it did not exist (nothing was written).
    pub async fn delete(&self, id: &str) -> Result<Option<u64>, Error> {
        let record = delete_template(id, now_ns())?;
        let version = self
            .call(&self.fcall("heavyread_delete", id, &record))
            .await?;
        Ok((version != 0).then_some(version))
    }

    /// Puts many posts: a [`PutBatch`] of them, sent with [`Self::put_batch`].
    /// Every item must be valid (nothing is sent otherwise).
    pub async fn put_many(&self, items: &[(&str, &[u8])]) -> Result<Vec<Written>, Error> {
        let mut batch = PutBatch::with_capacity(items.len());
        for (id, body) in items {
            batch.push(id, body)?;
        }
        self.put_batch(&batch).await
    }

    /// Puts the posts of `batch` in one round trip: calls of
    /// `heavyread_put_packed` (see [`MAX_BATCH_POSTS`], [`MAX_BATCH_BYTES`]),
    /// pipelined. Each call is atomic and gives its posts consecutive
    /// versions in batch order, as that many single puts would; the calls
    /// are applied in order, but another client's write may land between
    /// two of them. The result is in batch order. On an error the outcome of
    /// each call is unknown; sending the batch again is safe (every put is an
    /// upsert).
    pub async fn put_batch(&self, batch: &PutBatch) -> Result<Vec<Written>, Error> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // The version Redis will most likely give the first post; the
        // others follow it in order.
        let first = self.last_version.load(Ordering::Relaxed).wrapping_add(1);
        let call = |templates: &[Vec<u8>], start: usize| {
            let mut cmd = self.fcall_head("heavyread_put_packed");
            cmd.arg(Packed {
                templates,
                first: first.wrapping_add(start as u64),
            });
            cmd
        };
        let mut pipe = redis::pipe();
        // Posts in each call, in pipeline order.
        let mut calls: Vec<u64> = Vec::with_capacity(batch.len() / MAX_BATCH_POSTS + 1);
        let (mut start, mut bytes) = (0usize, 0usize);
        for (i, template) in batch.templates.iter().enumerate() {
            let posts = i - start;
            if posts > 0 && (posts == MAX_BATCH_POSTS || bytes + template.len() > MAX_BATCH_BYTES) {
                pipe.add_command(call(&batch.templates[start..i], start));
                calls.push(posts as u64);
                (start, bytes) = (i, 0);
            }
            bytes += template.len();
        }
        pipe.add_command(call(&batch.templates[start..], start));
        calls.push((batch.len() - start) as u64);
        let mut con = self.con.clone();
        let lasts: Vec<u64> = match pipe.query_async(&mut con).await {
            Ok(v) => v,
            Err(e) if function_missing(&e) => {
                self.load_library().await?;
                pipe.query_async(&mut con).await?
            }
            Err(e) => return Err(e.into()),
        };
        if lasts.len() != calls.len() {
            return Err(Error::Protocol(
                "pipeline answered a different number of replies".into(),
            ));
        }
        if let Some(&last) = lasts.last() {
            self.last_version.store(last, Ordering::Relaxed);
        }
        let mut versions = Vec::with_capacity(batch.len());
        for (last, n) in lasts.into_iter().zip(calls) {
            // The call's posts have the n versions ending at its reply.
            let first = last.checked_sub(n - 1).filter(|&f| f > 0).ok_or_else(|| {
                Error::Protocol(format!("put_batch answered version {last} for {n} posts"))
            })?;
            versions.extend(first..=last);
        }
        Ok(versions
            .into_iter()
            .zip(&batch.etags)
            .map(|(version, &etag)| Written { version, etag })
            .collect())
    }

    /// The stored record of `id` (see [`crate::record`]), for read-your-write checks.
    pub async fn get(&self, id: &str) -> Result<Option<Vec<u8>>, Error> {
        let mut con = self.con.clone();
        Ok(redis::cmd("HGET")
            .arg(&self.keys.posts)
            .arg(id)
            .query_async(&mut con)
            .await?)
    }

    /// The current global version (0 before the first write).
    pub async fn version(&self) -> Result<u64, Error> {
        let mut con = self.con.clone();
        let v: Option<u64> = redis::cmd("GET")
            .arg(&self.keys.version)
            .query_async(&mut con)
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// PING.
    pub async fn ping(&self) -> Result<(), Error> {
        let mut con = self.con.clone();
        redis::cmd("PING").query_async::<String>(&mut con).await?;
        Ok(())
    }
}
