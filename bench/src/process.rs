//! A server process started by a bench tool (a reader): spawned with its
//! flags, probed over HTTP, stopped with SIGTERM, killed if it lingers or
//! if the tool exits early.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::client::get_once;

/// How to start a reader.
#[derive(Debug, Clone)]
pub struct ReaderCommand {
    /// The `heavyread-reader` binary.
    pub bin: PathBuf,
    /// Redis URL.
    pub redis_url: String,
    /// Key prefix.
    pub prefix: String,
    /// More flags (e.g. `--cores 1`).
    pub args: Vec<String>,
    /// File for its log output (stderr); discarded if unset.
    pub log: Option<PathBuf>,
    /// CPUs to pin it to (`taskset -c`, which execs it: the pid stays its own).
    pub cpus: Option<String>,
    /// More environment (e.g. `HEAVYREAD_MAX_MEMORY`).
    pub env: Vec<(String, String)>,
}

/// A running server; killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ReaderCommand {
    /// Starts a reader on `addr`.
    pub fn spawn(&self, addr: SocketAddr) -> Result<Server> {
        let mut cmd = match &self.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--redis-url")
            .arg(&self.redis_url)
            .arg("--prefix")
            .arg(&self.prefix)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        match &self.log {
            Some(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("open {}", p.display()))?;
                cmd.stderr(f);
            }
            None => {
                cmd.stderr(Stdio::null());
            }
        }
        crate::sys::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        Ok(Server {
            child: Some(child),
            addr,
        })
    }
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], heavyread_sync::testing::free_port()))
}

impl Server {
    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(c) = &mut self.child {
            if let Some(status) = c.try_wait()? {
                bail!("server {} exited: {status}", self.addr);
            }
        }
        Ok(())
    }

    /// Polls `GET path` every millisecond until it answers 200; returns the
    /// time it took from `since`.
    pub async fn wait_ok(
        &mut self,
        path: &str,
        since: Instant,
        limit: Duration,
    ) -> Result<Duration> {
        loop {
            if let Ok(r) = get_once(self.addr, path).await {
                if r.status == 200 {
                    return Ok(since.elapsed());
                }
            }
            self.check_alive()?;
            if since.elapsed() > limit {
                bail!(
                    "{} did not answer 200 on {path} within {limit:?}",
                    self.addr
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The value of an unlabelled metric on `/metrics`.
    pub async fn metric(&self, name: &str) -> Result<f64> {
        let r = get_once(self.addr, "/metrics").await?;
        let text = String::from_utf8_lossy(&r.body);
        metric_value(&text, name).with_context(|| format!("no {name} on /metrics"))
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(mut self, grace: Duration) {
        self.stop_inner(grace);
    }

    fn stop_inner(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if crate::sys::terminate(child.id()) {
            let t = Instant::now();
            while t.elapsed() < grace {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_inner(Duration::ZERO);
    }
}

/// The value of the sample named exactly `name` (no labels) in a
/// Prometheus text page.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let v = rest.strip_prefix(' ')?;
        v.split_ascii_whitespace().next()?.parse().ok()
    })
}

/// Path of a sibling binary in the same target folder as this one
/// (`target/release/heavyread-reader` next to `heavyread-bench`).
pub fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| Path::new(name).to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_match_the_exact_name() {
        let page = "# HELP x\n# TYPE heavyread_reader_store_entries gauge\n\
                    heavyread_reader_store_entries_total 9\n\
                    heavyread_reader_store_entries 1000\n\
                    heavyread_reader_store_bytes 4.5e6\n";
        assert_eq!(
            metric_value(page, "heavyread_reader_store_entries"),
            Some(1000.0)
        );
        assert_eq!(
            metric_value(page, "heavyread_reader_store_bytes"),
            Some(4.5e6)
        );
        assert_eq!(metric_value(page, "heavyread_reader_ready"), None);
    }
}
