//! `pingpong`: one keep-alive connection, one request at a time, the next
//! sent only when the answer has arrived, with an optional pause between
//! them. Each request then finds the server with nothing to do: it went to
//! sleep after the last answer and has to be woken, as for a poll of the
//! propagation runs or on a lightly loaded server. The server's CPU time
//! per request (from `/proc/<pid>/task/*/schedstat`, in ns) is what that wake-up costs on top of the
//! request's own work, which `wrk`'s 64 connections hide.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::client::{get, parse_head};
use crate::procfs::process_run_ns;
use crate::stats::{histogram, Summary};

/// What to run.
#[derive(Debug, Clone)]
pub struct PingpongOptions {
    /// Server address.
    pub addr: SocketAddr,
    /// Target of every `GET`; it must answer 200.
    pub path: String,
    /// Measured requests (after one unmeasured).
    pub requests: usize,
    /// Pause after each answer before the next request.
    pub gap: Duration,
    /// Server processes whose CPU time is measured.
    pub pids: Vec<u32>,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PingpongResult {
    /// Requests measured.
    pub requests: usize,
    /// Pause between requests, in milliseconds.
    pub gap_ms: f64,
    /// The servers' CPU time per request, µs (`None` without `pids`).
    pub cpu_us_per_req: Option<f64>,
    /// Round trip of each request, from its write to its whole answer.
    pub rtt: Summary,
}

/// Runs the requests; fails on any answer but a whole 200.
pub fn run(o: &PingpongOptions) -> Result<PingpongResult> {
    if o.requests == 0 {
        bail!("--requests must be at least 1");
    }
    let mut s = TcpStream::connect(o.addr).with_context(|| format!("connect {}", o.addr))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let req = get(&o.path, &[]);
    let mut buf = Vec::with_capacity(64 << 10);
    exchange(&mut s, &req, &mut buf)?;
    let run_ns = || -> Result<u64> { o.pids.iter().map(|&p| process_run_ns(p)).sum() };
    let before = run_ns()?;
    let mut h = histogram();
    for _ in 0..o.requests {
        if !o.gap.is_zero() {
            std::thread::sleep(o.gap);
        }
        let t = Instant::now();
        exchange(&mut s, &req, &mut buf)?;
        h.record((t.elapsed().as_nanos() as u64).max(1))?;
    }
    let used = run_ns()?.saturating_sub(before);
    let cpu_us_per_req = (!o.pids.is_empty()).then(|| used as f64 / 1000.0 / o.requests as f64);
    Ok(PingpongResult {
        requests: o.requests,
        gap_ms: o.gap.as_secs_f64() * 1000.0,
        cpu_us_per_req,
        rtt: Summary::from_nanos(&h),
    })
}

/// Sends `req` and reads its whole answer into `buf`.
fn exchange(s: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> Result<()> {
    s.write_all(req)?;
    buf.clear();
    let mut chunk = [0u8; 16 << 10];
    loop {
        let n = s.read(&mut chunk).context("reading the answer")?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(h) = parse_head(buf)? {
            let whole = h.head_len + h.body_len;
            if buf.len() > whole {
                bail!("more bytes than one answer: the server answered something not asked");
            }
            if buf.len() == whole {
                if h.status != 200 {
                    bail!("the server answered {}, not 200", h.status);
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server that answers every read with `answer`, on a thread.
    fn answering(answer: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut b = [0u8; 4096];
            while c.read(&mut b).is_ok_and(|n| n > 0) {
                if c.write_all(answer).is_err() {
                    return;
                }
            }
        });
        addr
    }

    fn opts(addr: SocketAddr) -> PingpongOptions {
        PingpongOptions {
            addr,
            path: "/post?id=a".into(),
            requests: 20,
            gap: Duration::from_millis(1),
            pids: vec![std::process::id()],
        }
    }

    #[test]
    fn counts_every_request_and_the_servers_cpu() {
        let r = run(&opts(answering(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        )))
        .unwrap();
        assert_eq!(r.requests, 20);
        assert_eq!(r.rtt.count, 20);
        assert_eq!(r.gap_ms, 1.0);
        assert!(r.rtt.p50 > 0.0);
        assert!(r.cpu_us_per_req.is_some_and(|c| c > 0.0), "{r:?}");
    }

    #[test]
    fn an_answer_that_is_not_a_whole_200_is_an_error() {
        let e = run(&opts(answering(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        )))
        .unwrap_err();
        assert!(e.to_string().contains("answered 404"), "{e:#}");
        let e = run(&opts(answering(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n",
        )))
        .unwrap_err();
        assert!(e.to_string().contains("more bytes"), "{e:#}");
        let mut o = opts(answering(b""));
        o.requests = 0;
        assert!(run(&o).is_err());
    }
}
