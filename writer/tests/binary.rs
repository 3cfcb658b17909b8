//! The real `heavyread-writer` binary: configured by environment variables,
//! drains in-flight requests on SIGTERM and exits 0, refuses bad config.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use heavyread_sync::testing::{KillOnDrop, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_heavyread-writer");

/// Starts the binary with JSON logs on 127.0.0.1:0; returns it and the address it logged.
fn spawn(
    redis: &RedisServer,
    extra_env: &[(&str, &str)],
) -> (KillOnDrop, SocketAddr, mpsc::Receiver<String>) {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("HEAVYREAD_WRITER_LISTEN", "127.0.0.1:0")
        .env("HEAVYREAD_REDIS_URL", redis.url())
        .env("HEAVYREAD_LOG_FORMAT", "json")
        .env("HEAVYREAD_DRAIN_TIMEOUT", "5s")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = KillOnDrop(cmd.spawn().expect("spawn the writer binary"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the writer logs its address");
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        if v["fields"]["message"] == "listening" {
            break v["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    (child, addr, rx)
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the writer did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            if out.starts_with(b"HTTP/1.1 200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() {
    let redis = RedisServer::start();
    let (mut child, addr, logs) = spawn(&redis, &[]);
    wait_ready(addr);

    // A create whose body is only half sent when SIGTERM arrives.
    let body = common::post("drained", "t", "sent across a SIGTERM", "a");
    let (first, second) = body.as_bytes().split_at(body.len() / 2);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "POST /create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
    s.write_all(first).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&child);
    // Wait until the writer says it is draining, then finish the request.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let line = logs
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("shutdown logged");
        if line.contains("draining") {
            break;
        }
    }
    // New connections are refused while draining.
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after SIGTERM"
    );
    s.write_all(second).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let resp = common::parse_response(&out, false).unwrap();
    assert_eq!(resp.status, 201, "{}", resp.text());

    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status:?}");
    let mut c = redis.connection();
    let stored: Option<Vec<u8>> = redis::cmd("HGET")
        .arg("{hr}:posts")
        .arg("drained")
        .query(&mut c)
        .unwrap();
    assert!(stored.is_some(), "the drained request was applied");
}

#[test]
fn sigterm_on_an_idle_writer_exits_zero_promptly() {
    let redis = RedisServer::start();
    let (mut child, addr, _logs) = spawn(&redis, &[("HEAVYREAD_WRITE_TOKEN", "tok")]);
    wait_ready(addr);
    // An idle keep-alive connection must not hold the shutdown up.
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let _ = idle.read(&mut buf).unwrap();
    let t = Instant::now();
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn bad_configuration_exits_nonzero_naming_the_flag() {
    for (var, value, flag) in [
        ("HEAVYREAD_PREFIX", "a b", "--prefix"),
        ("HEAVYREAD_REDIS_URL", "http://nope", "--redis-url"),
        ("HEAVYREAD_MAX_BODY_BYTES", "1", "--max-body-bytes"),
    ] {
        let out = Command::new(BIN)
            .env_clear()
            .env("HEAVYREAD_WRITER_LISTEN", "127.0.0.1:0")
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{var}={value}: {err}");
    }
    // A value clap cannot parse is refused by clap, naming the variable's flag too.
    let out = Command::new(BIN)
        .env_clear()
        .env("HEAVYREAD_REDIS_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--redis-timeout"));
}
