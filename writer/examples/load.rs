//! Write load for a running writer: creates/s through `/create` with N
//! concurrent keep-alive clients, and posts/s through one `/bulk`.
//!
//! ```text
//! cargo run --release -p heavyread-writer --example load -- \
//!     --writer 127.0.0.1:8080 --clients 64 --seconds 5 --bulk 200000 \
//!     --pid writer=$(pgrep -n heavyread-writer) --pid redis=$(pgrep -n redis-server)
//! ```
//!
//! Without `--writer`, it starts its own redis-server (on a free port, in a
//! temp dir) and a writer in this process on its own runtime, which is handy
//! but shares the CPUs with the load; for figures, run the release binary
//! pinned to one core (`taskset -c 0`) and this tool on the other
//! (`taskset -c 1`), and pass `--pid` so CPU time per request is reported.
//! Every post gets a fresh id; bodies are about `--content-bytes` long.

#![allow(clippy::print_stdout)] // A command-line tool: the report is its output.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
struct Args {
    /// Writer address (host:port). Without it, a redis-server and a writer are started here.
    #[arg(long)]
    writer: Option<SocketAddr>,
    /// Concurrent clients of `/create`, one keep-alive connection each.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Duration of the `/create` run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Posts in the `/bulk` run (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    bulk: usize,
    /// Approximate content length of each post.
    #[arg(long, default_value_t = 200)]
    content_bytes: usize,
    /// `name=PID` of a process whose CPU time to report per request (repeatable).
    #[arg(long)]
    pid: Vec<String>,
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU seconds used by each watched process between two readings (100 ticks/s on Linux).
struct CpuWatch(Vec<(String, u32, u64)>);

impl CpuWatch {
    fn start(pids: &[String]) -> Result<Self> {
        let mut v = Vec::new();
        for p in pids {
            let (name, pid) = p.split_once('=').context("--pid takes name=PID")?;
            let pid: u32 = pid.parse().context("--pid: bad PID")?;
            let t = cpu_ticks(pid).with_context(|| format!("cannot read /proc/{pid}/stat"))?;
            v.push((name.to_owned(), pid, t));
        }
        Ok(CpuWatch(v))
    }

    fn report(&self, ops: u64) -> String {
        self.0
            .iter()
            .filter_map(|(name, pid, t0)| {
                let secs = (cpu_ticks(*pid)? - t0) as f64 / 100.0;
                Some(format!(
                    "{name} {:.1} µs CPU/op",
                    secs * 1e6 / ops.max(1) as f64
                ))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn post_json(id: &str, content_bytes: usize) -> String {
    let content: String = "lorem ipsum dolor sit amet "
        .chars()
        .cycle()
        .take(content_bytes)
        .collect();
    format!(r#"{{"id":"{id}","title":"Title of {id}","content":"{content}","author":"load"}}"#)
}

/// One keep-alive HTTP/1.1 connection that sends a request and reads one answer.
struct Conn {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    line: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        Ok(Conn {
            r: BufReader::new(r),
            w,
            line: String::new(),
        })
    }

    /// Sends `req` and returns the status, discarding the body.
    async fn exchange(&mut self, req: &[u8]) -> Result<u16> {
        self.w.write_all(req).await?;
        self.line.clear();
        self.r.read_line(&mut self.line).await?;
        let status: u16 = self
            .line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("bad status line")?;
        let mut len = 0usize;
        loop {
            self.line.clear();
            if self.r.read_line(&mut self.line).await? == 0 {
                bail!("connection closed");
            }
            let l = self.line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse()?;
                }
            }
        }
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).await?;
        Ok(status)
    }
}

async fn create_run(addr: SocketAddr, args: &Args) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let stop = stop.clone();
        let errors = errors.clone();
        let content_bytes = args.content_bytes;
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut conn = Conn::open(addr).await?;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = post_json(&format!("load-{c}-{i}"), content_bytes);
                let req = format!(
                    "POST /create HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let t = Instant::now();
                let status = conn.exchange(req.as_bytes()).await?;
                h.record(t.elapsed().as_micros().max(1) as u64)?;
                if status != 201 {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
            anyhow::Ok(h)
        }));
    }
    let cpu = CpuWatch::start(&args.pid)?;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for task in tasks {
        all.add(task.await??)?;
    }
    let secs = t.elapsed().as_secs_f64();
    let n = all.len();
    println!(
        "/create  clients {}  {} creates in {:.1}s = {:.0}/s  p50 {} µs  p99 {} µs  p99.9 {} µs  max {} µs  non-201 {}  {}",
        args.clients,
        n,
        secs,
        n as f64 / secs,
        all.value_at_quantile(0.5),
        all.value_at_quantile(0.99),
        all.value_at_quantile(0.999),
        all.max(),
        errors.load(Ordering::Relaxed),
        cpu.report(n),
    );
    Ok(())
}

async fn bulk_run(addr: SocketAddr, args: &Args) -> Result<()> {
    let mut body = Vec::with_capacity(args.bulk * (args.content_bytes + 80));
    for i in 0..args.bulk {
        body.extend_from_slice(post_json(&format!("bulk-{i}"), args.content_bytes).as_bytes());
        body.push(b'\n');
    }
    let mut conn = Conn::open(addr).await?;
    let mut req = format!(
        "POST /bulk HTTP/1.1\r\nHost: w\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let cpu = CpuWatch::start(&args.pid)?;
    let t = Instant::now();
    let status = conn.exchange(&req).await?;
    let secs = t.elapsed().as_secs_f64();
    if status != 200 {
        bail!("/bulk answered {status}");
    }
    println!(
        "/bulk    {} posts ({:.1} MB) in {:.2}s = {:.0} posts/s  {}",
        args.bulk,
        body.len() as f64 / 1e6,
        secs,
        args.bulk as f64 / secs,
        cpu.report(args.bulk as u64),
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Kept alive until the end: the local redis-server and writer, if started here.
    let mut local = None;
    let addr = match args.writer {
        Some(a) => a,
        None => {
            let redis = heavyread_sync::testing::RedisServer::start();
            let config = heavyread_writer::Config::new(redis.url());
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let writer = rt.block_on(heavyread_writer::start(config))?;
            let addr = writer.addr();
            println!(
                "started redis-server at {} and a writer at {addr} in this process",
                redis.url()
            );
            local = Some((writer, rt, redis));
            addr
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        create_run(addr, &args).await?;
        if args.bulk > 0 {
            bulk_run(addr, &args).await?;
        }
        anyhow::Ok(())
    })?;
    drop(local);
    Ok(())
}
