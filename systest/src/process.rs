//! One spawned binary (writer or reader): the address it logged, the tail
//! of its logs for failure messages, and the signals the scenarios send.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Log lines kept per process.
const LOG_TAIL: usize = 400;

/// Which of the child's outputs carries its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// The writer logs to stdout.
    Stdout,
    /// The reader logs to stderr.
    Stderr,
}

/// A running binary, killed (SIGKILL) on drop.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    addr: SocketAddr,
    logs: Arc<Mutex<VecDeque<String>>>,
}

/// `cmd` with every inherited `HEAVYREAD_*` variable removed, JSON logs at
/// info, and `vars` set: the environment of the CI runner cannot leak in.
pub fn command(program: &std::path::Path, vars: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(program);
    prepare(&mut cmd, vars);
    cmd
}

/// Applies [`command`]'s environment to an existing command.
pub fn prepare(cmd: &mut Command, vars: &[(&str, String)]) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HEAVYREAD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HEAVYREAD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    for (k, v) in vars {
        cmd.env(k, v);
    }
}

impl Proc {
    /// Spawns `cmd`, reads its JSON logs from `stream`, and waits until it
    /// logs `message` with an `addr` field (its listening address).
    pub fn spawn(name: &str, mut cmd: Command, stream: LogStream, message: &str) -> Proc {
        cmd.stdin(Stdio::null());
        match stream {
            LogStream::Stdout => cmd.stdout(Stdio::piped()).stderr(Stdio::null()),
            LogStream::Stderr => cmd.stdout(Stdio::null()).stderr(Stdio::piped()),
        };
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name} ({cmd:?}): {e}"));
        let out: Box<dyn Read + Send> = match stream {
            LogStream::Stdout => Box::new(child.stdout.take().expect("piped stdout")),
            LogStream::Stderr => Box::new(child.stderr.take().expect("piped stderr")),
        };
        let logs = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
        let (tx, rx) = mpsc::channel();
        {
            let logs = Arc::clone(&logs);
            let message = message.to_owned();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                // Keeps draining until the child exits, so it never blocks on a full pipe.
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(t) = &tx {
                        if let Some(addr) = listening_addr(&line, &message) {
                            let _ = t.send(addr);
                            tx = None;
                        }
                    }
                    let mut l = logs.lock().unwrap_or_else(|e| e.into_inner());
                    if l.len() == LOG_TAIL {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(a) => break a,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(50));
                    panic!(
                        "{name} exited before listening:\n{}",
                        tail_of(&logs, LOG_TAIL)
                    );
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "{name} exited ({status}) before listening:\n{}",
                    tail_of(&logs, LOG_TAIL)
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{name} did not log {message:?} within 30 s:\n{}",
                    tail_of(&logs, LOG_TAIL)
                );
            }
        };
        Proc {
            name: name.to_owned(),
            child: Some(child),
            addr,
            logs,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `n` log lines.
    pub fn log_tail(&self, n: usize) -> String {
        tail_of(&self.logs, n)
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process keeps its sockets but runs no code.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`Proc::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Whether it exited on its own (a crash): its exit status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            // Only ever the child this struct started, by its id.
            let ok = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid.to_string())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill -{sig} {pid} ({}) failed", self.name);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail_of(logs: &Mutex<VecDeque<String>>, n: usize) -> String {
    let l = logs.lock().unwrap_or_else(|e| e.into_inner());
    let skip = l.len().saturating_sub(n);
    l.iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
}

/// The `addr` field of a JSON log line whose message is `message`.
fn listening_addr(line: &str, message: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["fields"]["message"] != message {
        return None;
    }
    v["fields"]["addr"].as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_address_is_read_from_the_json_log() {
        let line = r#"{"timestamp":"t","level":"INFO","fields":{"message":"reader listening","addr":"127.0.0.1:4000"},"target":"x"}"#;
        assert_eq!(
            listening_addr(line, "reader listening"),
            Some("127.0.0.1:4000".parse().unwrap())
        );
        assert_eq!(listening_addr(line, "listening"), None);
        assert_eq!(listening_addr("not json", "listening"), None);
    }
}
