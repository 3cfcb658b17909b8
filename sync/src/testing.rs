//! A real `redis-server` for tests: started on a free loopback port in its
//! own temporary directory, so a test can kill it, pause it and restart it
//! (with its AOF, or wiped).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One redis-server process owned by a test; killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    appendonly: bool,
    extra: Vec<String>,
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// Starts redis-server with AOF on (`appendfsync everysec`).
    pub fn start() -> Self {
        Self::start_with(true, &[])
    }

    /// Starts redis-server with AOF on or off and extra `--name value` arguments.
    pub fn start_with(appendonly: bool, extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("heavyread-redis-")
            .tempdir()
            .expect("create a temp dir for redis");
        let mut s = RedisServer {
            port: free_port(),
            dir,
            child: None,
            appendonly,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        // A parallel test may take the port between `free_port` and the
        // bind: then try a fresh port, a few times.
        let mut attempts = 0;
        while let Err(e) = s.spawn() {
            attempts += 1;
            assert!(attempts < 5, "{e}");
            s.port = free_port();
        }
        s
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(redis_server_binary());
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg(if self.appendonly { "yes" } else { "no" })
            .arg("--appendfsync")
            .arg("everysec")
            .arg("--daemonize")
            .arg("no")
            .arg("--loglevel")
            .arg("warning")
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .expect("start redis-server (install it: apt-get install redis-server)");
        self.child = Some(child);
        let ready = self.wait_ready();
        if ready.is_err() {
            self.kill();
        }
        ready
    }

    /// Waits until *our* process answers: if another server took the port,
    /// our child exits, and the one answering has another directory.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let want_dir = self
            .dir
            .path()
            .canonicalize()
            .unwrap_or_else(|_| self.dir.path().to_owned());
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "redis-server on port {} exited at start ({status})",
                        self.port
                    ));
                }
            }
            if let Ok(mut c) = self.try_connection() {
                // While loading the AOF redis answers LOADING; wait for a real PONG.
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    let dir: Vec<String> = redis::cmd("CONFIG")
                        .arg("GET")
                        .arg("dir")
                        .query(&mut c)
                        .unwrap_or_default();
                    return match dir.get(1) {
                        Some(d) if Path::new(d) == want_dir => Ok(()),
                        _ => Err(format!(
                            "port {} is answered by another redis-server ({dir:?})",
                            self.port
                        )),
                    };
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server on port {} did not come up",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(1))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new synchronous connection.
    pub fn connection(&self) -> redis::Connection {
        self.try_connection().expect("connect to test redis")
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // The harness only signals the child it started.
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid.to_string())
                .status();
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the server stops answering but keeps its sockets.
    pub fn pause(&self) {
        self.signal(19);
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) {
        self.signal(18);
    }

    /// Flushes the AOF (`BGREWRITEAOF` is not needed: everysec plus this wait).
    pub fn fsync_aof(&self) {
        std::thread::sleep(Duration::from_millis(1_200));
    }

    /// Kill -9, then start again on the same port and directory (the AOF is replayed).
    pub fn restart(&mut self) {
        self.kill();
        self.respawn();
    }

    fn respawn(&mut self) {
        if let Err(e) = self.spawn() {
            panic!("restarting redis-server: {e}");
        }
    }

    /// Kill -9, delete the data, and start again on the same port without it.
    pub fn restart_empty(&mut self) {
        self.kill();
        for entry in std::fs::read_dir(self.dir.path())
            .expect("read redis dir")
            .flatten()
        {
            let p = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
        self.respawn();
    }

    /// Kill -9 and start again only after `down` has passed.
    pub fn restart_after(&mut self, down: Duration) {
        self.kill();
        std::thread::sleep(down);
        self.respawn();
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts a stopped server again (after [`Self::kill`]).
    pub fn start_again(&mut self) {
        if self.child.is_none() {
            self.respawn();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// `REDIS_SERVER` if set, else `redis-server` from `PATH`.
pub fn redis_server_binary() -> PathBuf {
    std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// A child process owned by a test (a reader or writer binary), killed and
/// reaped when dropped, so a test that fails half way leaves no server
/// running behind it. Derefs to the [`Child`].
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
