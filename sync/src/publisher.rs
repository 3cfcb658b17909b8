//! The writer's side: store and publish a change in one atomic Redis call.
//!
//! [`Publisher::put`] builds the record once (the body the readers will
//! serve, its MD5 etag, the writer timestamp), then calls the
//! `heavyread_put` function, which sets the version, stores, logs and
//! publishes it. The call returns only after Redis applied all of it, so an
//! acknowledged write is a stored write. If Redis lost its function library
//! (a restart without persistence), the library is loaded again and the call
//! retried once.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::record::{delete_template, now_ns, put_template};
use crate::schema::{Keys, LIBRARY, LIBRARY_NAME};
use crate::Error;

/// The result of an applied put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The global version Redis gave the change.
    pub version: u64,
    /// MD5 of the body.
    pub etag: [u8; 16],
}

/// A cheap-to-clone handle that writes through the function library.
#[derive(Clone)]
pub struct Publisher {
    con: ConnectionManager,
    keys: Arc<Keys>,
    log_max_len: u64,
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
        if log_max_len == 0 {
            return Err(Error::Config("log max length: must be at least 1".into()));
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

    /// True when Redis answers and has the library loaded.
    pub async fn library_loaded(&self) -> Result<bool, Error> {
        let mut con = self.con.clone();
        match redis::cmd("FCALL_RO")
            .arg("heavyread_version")
            .arg(0)
            .query_async::<i64>(&mut con)
            .await
        {
            Ok(v) => Ok(v == i64::from(crate::schema::LIBRARY_VERSION)),
            Err(e) if function_missing(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn fcall(&self, function: &str, id: &str, record: &[u8]) -> redis::Cmd {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(function).arg(4);
        for k in self.keys.function_keys() {
            cmd.arg(k);
        }
        cmd.arg(&self.keys.channel)
            .arg(self.log_max_len)
            .arg(id)
            .arg(record);
        cmd
    }

    async fn call(&self, cmd: &redis::Cmd) -> Result<u64, Error> {
        let mut con = self.con.clone();
        match cmd.query_async::<u64>(&mut con).await {
            Ok(v) => Ok(v),
            Err(e) if function_missing(&e) => {
                self.load_library().await?;
                Ok(cmd.query_async::<u64>(&mut con).await?)
            }
            Err(e) => Err(e.into()),
        }
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

    /// Puts many posts in one pipelined round trip (not one transaction:
    /// each put is atomic on its own). Every item must be valid; the result
    /// is in input order.
    pub async fn put_many(&self, items: &[(&str, &[u8])]) -> Result<Vec<Written>, Error> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ns();
        let mut pipe = redis::pipe();
        let mut etags = Vec::with_capacity(items.len());
        for (id, body) in items {
            let (record, etag) = put_template(id, body, now)?;
            pipe.add_command(self.fcall("heavyread_put", id, &record));
            etags.push(etag);
        }
        let mut con = self.con.clone();
        let versions: Vec<u64> = match pipe.query_async(&mut con).await {
            Ok(v) => v,
            Err(e) if function_missing(&e) => {
                self.load_library().await?;
                pipe.query_async(&mut con).await?
            }
            Err(e) => return Err(e.into()),
        };
        if versions.len() != items.len() {
            return Err(Error::Protocol(
                "pipeline answered a different number of replies".into(),
            ));
        }
        Ok(versions
            .into_iter()
            .zip(etags)
            .map(|(version, etag)| Written { version, etag })
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
