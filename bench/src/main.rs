//! `heavyread-bench`: the benchmark tools, one subcommand each. Each
//! measuring subcommand prints a short summary and, with `--json PATH`,
//! writes its result for `report`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use heavyread_bench::process::{free_addr, sibling_binary, ReaderCommand};
use heavyread_bench::procfs;
use heavyread_bench::report::{fmt_rewrites, fmt_steal, render, Results, RunInfo, STEPS};
use heavyread_bench::results::write_opt;
use heavyread_bench::seed::SeedOptions;
use heavyread_bench::stats::{fmt_bytes, fmt_count, fmt_us};
use heavyread_bench::{
    bandwidth, baseline, bounded, coldstart, export, floor, memory, openloop, pingpong,
    propagation, seed, writes, wrk,
};

#[derive(Parser, Debug)]
#[command(name = "heavyread-bench", about = "heavyread benchmark tools")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// How to reach and start readers (memory, coldstart).
#[derive(clap::Args, Debug, Clone)]
struct ReaderArgs {
    /// The reader binary (default: `heavyread-reader` next to this one).
    #[arg(long)]
    reader_bin: Option<PathBuf>,
    /// Redis URL the reader syncs from.
    #[arg(long, env = "HEAVYREAD_REDIS_URL")]
    redis_url: String,
    /// Key prefix.
    #[arg(long, default_value = "hr")]
    prefix: String,
    /// Extra reader flag (repeatable), e.g. `--reader-arg=--cores --reader-arg=1`.
    #[arg(long = "reader-arg", allow_hyphen_values = true)]
    reader_args: Vec<String>,
    /// File the reader's log goes to.
    #[arg(long)]
    reader_log: Option<PathBuf>,
}

impl ReaderArgs {
    fn command(&self) -> ReaderCommand {
        ReaderCommand {
            bin: self
                .reader_bin
                .clone()
                .unwrap_or_else(|| sibling_binary("heavyread-reader")),
            redis_url: self.redis_url.clone(),
            prefix: self.prefix.clone(),
            args: self.reader_args.clone(),
            log: self.reader_log.clone(),
            cpus: None,
            env: Vec::new(),
        }
    }
}

/// What to seed (seed, memory).
#[derive(clap::Args, Debug, Clone)]
struct SeedArgs {
    /// The writer (host:port).
    #[arg(long)]
    writer: SocketAddr,
    /// Posts to write.
    #[arg(long, default_value_t = 100_000)]
    posts: u64,
    /// Number of the first post.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Mean JSON body size in bytes.
    #[arg(long, default_value_t = 350)]
    body_len: usize,
    /// Posts per `/bulk` request.
    #[arg(long, default_value_t = 10_000)]
    batch: u64,
    /// Concurrent `/bulk` requests.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Id prefix (`post-` gives post-0, post-1, ...).
    #[arg(long, default_value = "post-")]
    id_prefix: String,
    /// The writer's bearer token, if it has one.
    #[arg(long, env = "HEAVYREAD_WRITE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

impl SeedArgs {
    fn options(&self) -> SeedOptions {
        SeedOptions {
            writer: self.writer,
            posts: self.posts,
            start: self.start,
            body_len: self.body_len,
            batch: self.batch,
            connections: self.connections,
            id_prefix: self.id_prefix.clone(),
            token: self.token.clone(),
            progress: !self.no_progress,
        }
    }
}

/// `KEY=VALUE`.
fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Publish-to-applied latency of the sync library at fixed write rates.
    SyncLatency {
        /// Writes per second; repeat for several runs.
        #[arg(long = "rate", default_values_t = [1_000u64, 10_000])]
        rates: Vec<u64>,
        /// Seconds per rate.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Distinct ids written.
        #[arg(long, default_value_t = 10_000)]
        ids: u64,
    },
    /// Cold bootstrap time of a subscriber over a large hash.
    SyncBootstrap {
        /// Entries seeded into Redis.
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Mean JSON body size in bytes.
        #[arg(long, default_value_t = 350)]
        body_len: usize,
    },
    /// Loads N deterministic posts through the writer's /bulk, with a progress bar.
    Seed {
        #[command(flatten)]
        seed: SeedArgs,
        /// Result file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Writes the posts Redis holds as static files (DIR/posts/<id>.json) and DIR/etags.txt.
    Export {
        /// Redis URL.
        #[arg(long, env = "HEAVYREAD_REDIS_URL")]
        redis_url: String,
        /// Key prefix.
        #[arg(long, default_value = "hr")]
        prefix: String,
        /// Output folder.
        #[arg(long)]
        dir: PathBuf,
        /// Result file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// One wrk run (after a warm-up), with the server's CPU per request from /proc.
    Wrk {
        /// Name of the run in the results.
        #[arg(long)]
        label: String,
        /// What serves, in words, for the report.
        #[arg(long, default_value = "")]
        server: String,
        /// Server address (host:port).
        #[arg(long)]
        addr: SocketAddr,
        /// wrk Lua script.
        #[arg(long, default_value = "bench/wrk/random.lua")]
        script: PathBuf,
        /// Connections.
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// wrk threads.
        #[arg(long, default_value_t = 1)]
        threads: u32,
        /// Measured seconds.
        #[arg(long, default_value_t = 10)]
        secs: u32,
        /// Unmeasured warm-up seconds before.
        #[arg(long, default_value_t = 2)]
        warmup: u32,
        /// Pin wrk to these CPUs (`taskset -c`).
        #[arg(long)]
        cpus: Option<String>,
        /// Server process whose CPU time is measured, with its children (repeatable).
        #[arg(long = "pid")]
        pids: Vec<u32>,
        /// Script environment, KEY=VALUE (repeatable).
        #[arg(long = "env", value_parser = key_value)]
        env: Vec<(String, String)>,
        /// Requests per write, for the report.
        #[arg(long, default_value_t = 1)]
        pipeline: u32,
        /// Result file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Time from the writer's 201 to each reader serving the new ETag, at a fixed write rate.
    Propagation {
        /// The writer (host:port).
        #[arg(long)]
        writer: SocketAddr,
        /// A reader (host:port); repeat for each.
        #[arg(long = "reader", required = true)]
        readers: Vec<SocketAddr>,
        /// Writes per second.
        #[arg(long, default_value_t = 1_000)]
        rate: u64,
        /// Seconds of writing.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Distinct ids written in turn.
        #[arg(long, default_value_t = 20_000)]
        ids: u64,
        /// Mean body size.
        #[arg(long, default_value_t = 350)]
        body_len: usize,
        /// Seconds after which a write not yet served counts as a timeout.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
        /// Id prefix.
        #[arg(long, default_value = "prop-")]
        id_prefix: String,
        /// Connections opened to each server before the run.
        #[arg(long, default_value_t = 32)]
        prewarm: usize,
        /// Track every k-th write to the readers (1: every write).
        #[arg(long, default_value_t = 1)]
        track_every: u64,
        /// Writes in flight at most: past it, a due write waits for one to
        /// finish (and the achieved rate falls short of the rate).
        #[arg(long, default_value_t = 256)]
        max_in_flight: usize,
        /// Redis (`redis://host:port`): rewrite its AOF before the run and
        /// count the rewrites that overlap it.
        #[arg(long)]
        redis_url: Option<String>,
        /// The writer's bearer token.
        #[arg(long, env = "HEAVYREAD_WRITE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Result file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Reader RSS before and after N posts reach it, against the body bytes.
    Memory {
        #[command(flatten)]
        reader: ReaderArgs,
        #[command(flatten)]
        seed: SeedArgs,
        /// Seconds to wait before each RSS reading.
        #[arg(long, default_value_t = 1.0)]
        settle: f64,
        /// Result file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Time from starting a reader to /ready with the posts already in Redis.
    Coldstart {
        #[command(flatten)]
        reader: ReaderArgs,
        /// Posts the reader must hold when ready.
        #[arg(long, default_value_t = 0)]
        expect: u64,
        /// Starts to time.
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// Seconds before giving up on one start.
        #[arg(long, default_value_t = 600.0)]
        timeout: f64,
        /// Result file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The reader with a memory budget (issue 8): Zipf load unbounded and at
    /// budgets of 50% and 10% of the data, then CPU per request on hits.
    Bounded {
        #[command(flatten)]
        reader: ReaderArgs,
        /// Pin the readers to these CPUs (`taskset -c`).
        #[arg(long)]
        server_cpus: Option<String>,
        /// Pin wrk to these CPUs (`taskset -c`).
        #[arg(long)]
        cpus: Option<String>,
        /// redis-server's pid: its CPU (fills) is measured in the Zipf runs.
        #[arg(long)]
        redis_pid: Option<u32>,
        /// Folder of the wrk scripts (`zipf.lua`, `random.lua`).
        #[arg(long, default_value = "bench/wrk")]
        wrk_dir: PathBuf,
        /// Posts seeded (post-0 .. post-(ids-1)); the prefix must hold exactly these.
        #[arg(long, default_value_t = 100_000)]
        ids: u64,
        /// Zipf skew.
        #[arg(long, default_value_t = 0.99)]
        zipf_s: f64,
        /// Budget as a share of the data's accounted bytes (repeatable).
        #[arg(long = "share", default_values_t = [0.5, 0.1])]
        shares: Vec<f64>,
        /// Rounds of the CPU-per-hit comparison: each runs either reader back
        /// to back, the side going first alternating; the ratio reported is
        /// the median of the rounds' own ratios.
        #[arg(long, default_value_t = 5)]
        hit_rounds: u32,
        /// wrk connections.
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// Measured seconds per run.
        #[arg(long, default_value_t = 10)]
        secs: u32,
        /// Unmeasured warm-up seconds before each run.
        #[arg(long, default_value_t = 2)]
        warmup: u32,
        /// Seconds a reader may take to load the posts.
        #[arg(long, default_value_t = 600.0)]
        timeout: f64,
        /// Result file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Bytes on the wire for N requests with a share of revalidations.
    Bandwidth {
        /// Server (host:port).
        #[arg(long)]
        addr: SocketAddr,
        /// Requests in all.
        #[arg(long, default_value_t = 100_000)]
        requests: u64,
        /// Share of requests carrying the current ETag, 0..=1.
        #[arg(long, default_value_t = 0.8)]
        revalidate: f64,
        /// Ids post-0 .. post-(ids-1).
        #[arg(long, default_value_t = 100_000)]
        ids: u64,
        /// `id "etag"` lines (from `export`).
        #[arg(long)]
        etags: PathBuf,
        /// Concurrent connections.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Result file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Writer throughput: /create with N clients, then one /bulk.
    Writes {
        /// The writer (host:port).
        #[arg(long)]
        writer: SocketAddr,
        /// Concurrent /create clients.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds of /create.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Posts in the /bulk run (0 skips it).
        #[arg(long, default_value_t = 100_000)]
        bulk: u64,
        /// Mean body size.
        #[arg(long, default_value_t = 350)]
        body_len: usize,
        /// Process whose CPU per write is reported (repeatable).
        #[arg(long = "pid")]
        pids: Vec<u32>,
        /// The writer's bearer token.
        #[arg(long, env = "HEAVYREAD_WRITE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Redis (`redis://host:port`): rewrite its AOF before each part
        /// and count the rewrites that overlap it.
        #[arg(long)]
        redis_url: Option<String>,
        /// Result file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The baseline: an axum service reading Redis on every request (HGET + decode).
    BaselineAxum {
        /// Address to serve on.
        #[arg(
            long,
            env = "HEAVYREAD_BASELINE_LISTEN",
            default_value = "127.0.0.1:8090"
        )]
        listen: SocketAddr,
        /// Redis URL.
        #[arg(long, env = "HEAVYREAD_REDIS_URL")]
        redis_url: String,
        /// Key prefix.
        #[arg(long, env = "HEAVYREAD_PREFIX", default_value = "hr")]
        prefix: String,
        /// tokio worker threads.
        #[arg(long, env = "HEAVYREAD_BASELINE_WORKERS", default_value_t = 1)]
        workers: usize,
    },
    /// The syscall floor: answers every request head with one fixed 200,
    /// one recv and one send per read on level-triggered epoll, no parsing
    /// and no lookups. Runs until killed.
    Floor {
        /// Address to serve on.
        #[arg(long, env = "HEAVYREAD_FLOOR_LISTEN")]
        listen: SocketAddr,
        /// Body bytes of the answer.
        #[arg(long, env = "HEAVYREAD_FLOOR_BODY_LEN", default_value_t = floor::DEFAULT_BODY_LEN)]
        body_len: usize,
    },
    /// Records the machine, tool versions and commit of a run.
    Machine {
        /// Result file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Writes the markdown report and its SVG plots from a results folder.
    Report {
        /// Folder of result files.
        #[arg(long)]
        results: PathBuf,
        /// The report file.
        #[arg(long, default_value = "bench/benchmark-report.md")]
        out: PathBuf,
        /// Folder for the plots (default: `plots/` next to the report).
        #[arg(long)]
        plots: Option<PathBuf>,
        /// Fail unless every step produced numbers.
        #[arg(long)]
        check: bool,
        /// Steps that ran, space- or comma-separated (default: all); `--check`
        /// judges only these (and the setup).
        #[arg(long)]
        steps: Option<String>,
    },
    /// Prints a free TCP port on 127.0.0.1.
    FreePort,
    /// One request at a time on one keep-alive connection, with a pause
    /// between them: each request wakes the server. Its CPU per request and
    /// the round trip.
    Pingpong {
        /// Server address (host:port).
        #[arg(long)]
        addr: SocketAddr,
        /// Target of every GET; it must answer 200.
        #[arg(long, default_value = "/post?id=post-0")]
        path: String,
        /// Measured requests.
        #[arg(long, default_value_t = 500)]
        requests: usize,
        /// Milliseconds between an answer and the next request.
        #[arg(long, default_value_t = 0.0)]
        gap_ms: f64,
        /// Server process whose CPU time is measured (repeatable).
        #[arg(long = "pid")]
        pids: Vec<u32>,
        /// Result file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Open-loop reads at a fixed rate: latency from when each request was
    /// due (no coordinated omission), e.g. at 80% of the maximum rate.
    Openloop {
        /// Name of the run in the results.
        #[arg(long)]
        label: String,
        /// What serves, in words, for the report.
        #[arg(long, default_value = "")]
        server: String,
        /// Server address (host:port).
        #[arg(long)]
        addr: SocketAddr,
        /// Requests per second offered (default: `--share` of the rate in `--max-from`).
        #[arg(long)]
        rate: Option<f64>,
        /// A `wrk` result file whose req/s is the maximum rate.
        #[arg(long)]
        max_from: Option<PathBuf>,
        /// Share of the maximum rate to offer, with `--max-from`.
        #[arg(long, default_value_t = 0.8)]
        share: f64,
        /// Keep-alive connections (the most requests in flight).
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Unmeasured seconds at the same rate before.
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Posts seeded (`post-0` ..).
        #[arg(long)]
        ids: u64,
        /// Server process whose CPU time is measured (repeatable).
        #[arg(long = "pid")]
        pids: Vec<u32>,
        /// The dispatcher's tick in microseconds: it does not spin, and when
        /// it sleeps until the next request falls due it wakes on the first
        /// tick at or after that time (a request goes out up to a tick late).
        #[arg(long, default_value_t = 50)]
        tick_us: u64,
        /// Result file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n.max(1));
    }
    Ok(b.enable_all().build()?)
}

#[allow(clippy::print_stdout)] // A command-line tool: its results go to stdout.
fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cmd = Cli::parse().cmd;
    if let Cmd::BaselineAxum {
        listen,
        redis_url,
        prefix,
        workers,
    } = &cmd
    {
        return runtime(Some(*workers))?.block_on(baseline::serve(*listen, redis_url, prefix));
    }
    if let Cmd::Floor { listen, body_len } = cmd {
        // One thread, no runtime: the floor is its own epoll loop.
        let f = floor::Floor::bind(listen, body_len)?;
        #[allow(clippy::print_stderr)] // A tool's one line: ready, and where.
        {
            eprintln!("floor: listening on {}", f.local_addr()?);
        }
        return Ok(f.run()?);
    }
    if let Cmd::Pingpong {
        addr,
        path,
        requests,
        gap_ms,
        pids,
        json,
    } = cmd
    {
        if !(gap_ms.is_finite() && gap_ms >= 0.0) {
            bail!("--gap-ms must be a number of milliseconds, 0 or more");
        }
        // Blocking, one thread: the client's own wake-ups stay simple.
        let r = pingpong::run(&pingpong::PingpongOptions {
            addr,
            path,
            requests,
            gap: Duration::from_secs_f64(gap_ms / 1000.0),
            pids,
        })?;
        println!(
            "pingpong: {} requests, {} ms apart: server CPU {} per request, round trip p50 {}, p99 {}",
            r.requests,
            r.gap_ms,
            r.cpu_us_per_req
                .map_or("unmeasured (no --pid)".to_owned(), |c| format!("{c:.1} µs")),
            fmt_us(r.rtt.p50),
            fmt_us(r.rtt.p99)
        );
        return write_opt(json.as_deref(), &r);
    }
    if let Cmd::Openloop { .. } = &cmd {
        // One thread: the load runs on it and blocks it (see `openloop::run`).
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(cmd));
    }
    runtime(None)?.block_on(run(cmd))
}

#[allow(clippy::print_stdout)] // A command-line tool: its results go to stdout.
async fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::SyncLatency { rates, secs, ids } => {
            println!("| writes/s | samples | p50 µs | p99 µs | p99.9 µs | max µs |");
            println!("|---:|---:|---:|---:|---:|---:|");
            for rate in rates {
                let l = heavyread_bench::sync::latency(rate, secs, ids).await?;
                println!(
                    "| {} | {} | {} | {} | {} | {} |",
                    l.rate, l.samples, l.p50, l.p99, l.p999, l.max
                );
            }
        }
        Cmd::SyncBootstrap { entries, body_len } => {
            let b = heavyread_bench::sync::bootstrap(entries, body_len).await?;
            println!(
                "entries {} | body bytes {} (mean {}) | seeded in {:.2?} ({:.0}/s) | bootstrap {:.2?} | store accounts {} bytes",
                b.entries,
                b.body_bytes,
                b.body_bytes / b.entries.max(1),
                b.seed,
                b.entries as f64 / b.seed.as_secs_f64(),
                b.bootstrap,
                b.store_bytes
            );
        }
        Cmd::Seed { seed: s, json } => {
            let r = seed::seed(&s.options()).await?;
            println!(
                "seed: {} posts, {} of bodies, in {:.2} s ({} posts/s), last version {}",
                fmt_count(r.posts as f64),
                fmt_bytes(r.body_bytes as f64),
                r.secs,
                fmt_count(r.posts_per_sec),
                r.last_version
            );
            write_opt(json.as_deref(), &r)?;
        }
        Cmd::Export {
            redis_url,
            prefix,
            dir,
            json,
        } => {
            let r = tokio::task::spawn_blocking(move || export::export(&redis_url, &prefix, &dir))
                .await??;
            println!(
                "export: {} posts, {} of bodies",
                fmt_count(r.posts as f64),
                fmt_bytes(r.body_bytes as f64)
            );
            write_opt(json.as_deref(), &r)?;
        }
        Cmd::Wrk {
            label,
            server,
            addr,
            script,
            connections,
            threads,
            secs,
            warmup,
            cpus,
            pids,
            env,
            pipeline,
            json,
        } => {
            let o = wrk::WrkOptions {
                label,
                server,
                addr,
                script,
                connections,
                threads,
                secs,
                warmup_secs: warmup,
                cpus,
                pids,
                env,
                pipeline,
            };
            let r = tokio::task::spawn_blocking(move || wrk::run(&o)).await??;
            if r.pipeline > 1 {
                // wrk's percentiles are not usable with pipelining.
                println!(
                    "{}: {} req/s (pipelined, depth {})  server CPU {:.2} µs/req  errors {}",
                    r.label,
                    fmt_count(r.req_per_sec),
                    r.pipeline,
                    r.cpu_us_per_req,
                    r.errors.total()
                );
                write_opt(json.as_deref(), &r)?;
                return Ok(());
            }
            println!(
                "{}: {} req/s  p50 {}  p99 {}  p99.9 {}  max {}  server CPU {:.2} µs/req  errors {}",
                r.label,
                fmt_count(r.req_per_sec),
                fmt_us(r.latency.p50),
                fmt_us(r.latency.p99),
                fmt_us(r.latency.p999),
                fmt_us(r.latency.max),
                r.cpu_us_per_req,
                r.errors.total()
            );
            write_opt(json.as_deref(), &r)?;
        }
        Cmd::Openloop {
            label,
            server,
            addr,
            rate,
            max_from,
            share,
            connections,
            secs,
            warmup,
            ids,
            pids,
            tick_us,
            json,
        } => {
            let max_rate = match &max_from {
                Some(path) => {
                    heavyread_bench::results::read::<wrk::WrkResult>(path)?
                        .with_context(|| format!("{} does not exist", path.display()))?
                        .req_per_sec
                }
                None => 0.0,
            };
            let rate = match rate {
                Some(r) => r,
                None if max_rate > 0.0 && share > 0.0 => max_rate * share,
                None => bail!("openloop needs --rate, or --max-from with a positive req/s"),
            };
            let o = openloop::OpenloopOptions {
                label,
                server,
                addr,
                rate,
                max_rate,
                connections,
                secs,
                warmup_secs: warmup,
                ids,
                pids,
                tick: std::time::Duration::from_micros(tick_us),
            };
            // It blocks this runtime's only thread, which has nothing else to run.
            let r = openloop::run(&o)?;
            println!(
                "{}: offered {} req/s, answered {} req/s  p50 {}  p99 {}  p99.9 {}  max {}  \
                 (service p99 {})  queued {}  server CPU {:.2} µs/req  VM steal {}  errors {}{}",
                r.label,
                fmt_count(r.target_rate),
                fmt_count(r.achieved_rate),
                fmt_us(r.latency.p50),
                fmt_us(r.latency.p99),
                fmt_us(r.latency.p999),
                fmt_us(r.latency.max),
                fmt_us(r.service.p99),
                r.queued,
                r.cpu_us_per_req,
                fmt_steal(r.steal_ms),
                r.errors,
                match (r.reconnects, r.failed_connects) {
                    (0, 0) => String::new(),
                    (n, 0) => format!("  reconnects {n}"),
                    (n, f) => format!("  reconnects {n} ({f} connects failed)"),
                }
            );
            write_opt(json.as_deref(), &r)?;
        }
        Cmd::Propagation {
            writer,
            readers,
            rate,
            secs,
            ids,
            body_len,
            timeout,
            id_prefix,
            prewarm,
            track_every,
            max_in_flight,
            token,
            redis_url,
            json,
        } => {
            let o = propagation::PropagationOptions {
                writer,
                readers,
                rate,
                secs,
                ids,
                body_len,
                timeout: Duration::from_secs_f64(timeout),
                id_prefix,
                token,
                prewarm,
                track_every,
                redis_url,
                max_in_flight,
            };
            let r = propagation::propagation(&o).await?;
            println!(
                "propagation {} writes/s: {} writes, every {} tracked ({} failed, {}{:.0}/s achieved), poll RTT p50 {}{}, VM steal {}{}; CPU latency limit {}",
                r.rate,
                r.writes,
                r.track_every,
                r.failed,
                propagation::fmt_waited(&r)
                    .into_iter()
                    .chain(propagation::fmt_poll_errors(&r))
                    .chain(propagation::fmt_replaced(&r))
                    .map(|w| format!("{w}, "))
                    .collect::<String>(),
                r.achieved_rate,
                fmt_us(r.poll_rtt.p50),
                propagation::fmt_first_polls(&r).map_or(String::new(), |f| format!(", {f}")),
                fmt_steal(r.steal_ms),
                fmt_rewrites(r.aof_rewrites),
                procfs::fmt_cpu_latency(r.cpu_latency_us)
            );
            for x in r.readers.iter().chain(std::iter::once(&r.all)) {
                let l = &x.latency;
                println!(
                    "  {:<12} n {:>7}  timeouts {:>3}  p50 {:>9}  p90 {:>9}  p99 {:>9}  p99.9 {:>9}  max {:>9}",
                    x.label,
                    l.count,
                    x.timeouts,
                    fmt_us(l.p50),
                    fmt_us(l.p90),
                    fmt_us(l.p99),
                    fmt_us(l.p999),
                    fmt_us(l.max)
                );
            }
            write_opt(json.as_deref(), &r)?;
        }
        Cmd::Memory {
            reader,
            seed: s,
            settle,
            json,
        } => {
            let r = memory::memory(
                &reader.command(),
                &s.options(),
                Duration::from_secs_f64(settle),
                Duration::from_secs(1800),
            )
            .await?;
            println!(
                "memory: {} posts, {} of bodies; RSS {} → {}; RSS/body {:.2}, growth/body {:.2}",
                fmt_count(r.posts as f64),
                fmt_bytes(r.body_bytes as f64),
                fmt_bytes(r.rss_before as f64),
                fmt_bytes(r.rss_after as f64),
                r.rss_ratio(),
                r.growth_ratio()
            );
            write_opt(json.as_deref(), &r)?;
        }
        Cmd::Coldstart {
            reader,
            expect,
            runs,
            timeout,
            json,
        } => {
            let r = coldstart::coldstart(
                &reader.command(),
                expect,
                runs,
                Duration::from_secs_f64(timeout),
            )
            .await?;
            println!(
                "coldstart: {} posts, ready in {:.3} s median ({:.3}–{:.3}), RSS {}",
                fmt_count(r.posts as f64),
                r.median_secs,
                r.min_secs,
                r.max_secs,
                fmt_bytes(r.rss_bytes as f64)
            );
            write_opt(json.as_deref(), &r)?;
        }
        Cmd::Bounded {
            reader,
            server_cpus,
            cpus,
            redis_pid,
            wrk_dir,
            ids,
            zipf_s,
            shares,
            hit_rounds,
            connections,
            secs,
            warmup,
            timeout,
            json,
        } => {
            let o = bounded::BoundedOptions {
                reader: ReaderCommand {
                    cpus: server_cpus,
                    ..reader.command()
                },
                redis_pid,
                wrk_dir,
                ids,
                zipf_s,
                shares,
                hit_rounds,
                connections,
                secs,
                warmup_secs: warmup,
                client_cpus: cpus,
                limit: Duration::from_secs_f64(timeout),
            };
            let r = bounded::bounded(&o, |x| {
                let budget = if x.bounded() {
                    format!(
                        "budget {} ({:.0}%), resident {}",
                        fmt_bytes(x.budget_bytes as f64),
                        x.budget_share * 100.0,
                        fmt_bytes(x.resident_bytes() as f64)
                    )
                } else {
                    format!("no budget, resident {}", fmt_bytes(x.resident_bytes() as f64))
                };
                let hits = match (x.hit_ratio(), x.lru_estimate) {
                    (Some(h), Some(l)) => format!("hit ratio {:.1}% (LRU est. {:.1}%)", h * 100.0, l * 100.0),
                    (Some(h), None) => format!("hit ratio {:.1}%", h * 100.0),
                    (None, _) => "no hits counted".to_owned(),
                };
                println!(
                    "{}: {} req/s  p99 {}  {hits}  fills {}  evictions {}  fill errors {}  {budget}  CPU µs/req reader {:.2} redis {:.2}  errors {}",
                    x.label,
                    fmt_count(x.wrk.req_per_sec),
                    fmt_us(x.wrk.latency.p99),
                    fmt_count(x.fills() as f64),
                    fmt_count(x.evictions() as f64),
                    x.fill_errors(),
                    x.reader_cpu_us_per_req,
                    x.redis_cpu_us_per_req,
                    x.wrk.errors.total()
                );
            })
            .await?;
            if let (Some((u, b)), Some(ratio)) = (r.hit_cpu(), r.hit_cpu_ratio()) {
                println!(
                    "CPU per hit (medians of {} rounds): unbounded {u:.2} µs, bounded {b:.2} µs, ratio {ratio:.3} (target ≤ {})",
                    r.hit_pairs().len(),
                    bounded::HIT_CPU_TARGET
                );
            }
            write_opt(json.as_deref(), &r)?;
            // Judged with the other steps by `report --check`.
            for p in r.problems() {
                println!("problem: {p}");
            }
        }
        Cmd::Bandwidth {
            addr,
            requests,
            revalidate,
            ids,
            etags,
            connections,
            json,
        } => {
            if !(0.0..=1.0).contains(&revalidate) {
                bail!("--revalidate: {revalidate} is outside 0..=1");
            }
            let tags = bandwidth::read_etags(&etags)?;
            let o = bandwidth::BandwidthOptions {
                addr,
                requests,
                share: revalidate,
                ids,
                connections,
            };
            let r = bandwidth::bandwidth(&o, &tags).await?;
            println!(
                "bandwidth {:.0}% revalidations: {} requests, {} received ({:.0} B/request), {} sent; 304 is {} B, 200 is {} B",
                revalidate * 100.0,
                fmt_count(r.requests as f64),
                fmt_bytes(r.bytes_received as f64),
                r.bytes_received as f64 / r.requests.max(1) as f64,
                fmt_bytes(r.bytes_sent as f64),
                r.not_modified_bytes,
                r.ok_bytes
            );
            write_opt(json.as_deref(), &r)?;
        }
        Cmd::Writes {
            writer,
            clients,
            secs,
            bulk,
            body_len,
            pids,
            token,
            redis_url,
            json,
        } => {
            let o = writes::WritesOptions {
                writer,
                clients,
                secs,
                bulk,
                body_len,
                pids,
                token,
                redis_url,
            };
            let r = writes::writes(&o).await?;
            println!(
                "writes: /create {} /s (p99 {}, {:.1} µs CPU/write, {} errors); /bulk {} posts/s ({:.1} µs CPU/write){}",
                fmt_count(r.create.per_sec),
                fmt_us(r.create.latency.p99),
                r.create.cpu_us_per_write,
                r.create.errors,
                fmt_count(r.bulk.per_sec),
                r.bulk.cpu_us_per_write,
                fmt_rewrites(r.bulk.aof_rewrites)
            );
            write_opt(json.as_deref(), &r)?;
        }
        Cmd::BaselineAxum { .. } | Cmd::Floor { .. } | Cmd::Pingpong { .. } => {
            unreachable!("handled in main")
        }
        Cmd::Machine { json } => {
            let r = RunInfo::capture();
            println!(
                "{} × {} | kernel {} | commit {}{}",
                r.machine.cpus,
                r.machine.cpu_model,
                r.machine.kernel,
                r.commit,
                if r.dirty { " (dirty)" } else { "" }
            );
            write_opt(json.as_deref(), &r)?;
        }
        Cmd::Report {
            results: dir,
            out,
            plots,
            check,
            steps,
        } => {
            let steps: Vec<&str> = match &steps {
                Some(s) => s
                    .split(|c: char| c == ',' || c.is_ascii_whitespace())
                    .filter(|s| !s.is_empty())
                    .collect(),
                None => STEPS.to_vec(),
            };
            if let Some(s) = steps.iter().find(|s| !STEPS.contains(s)) {
                bail!("--steps: unknown step {s:?} (steps: {})", STEPS.join(" "));
            }
            let r = Results::load(&dir)?;
            let out_dir = out
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default();
            let plots = plots.unwrap_or_else(|| out_dir.join("plots"));
            let rel = relative(&out_dir, &plots);
            let md = render(&r, &plots, &rel)?;
            std::fs::write(&out, md).with_context(|| format!("write {}", out.display()))?;
            println!("report: {} (plots in {})", out.display(), plots.display());
            let problems = r.problems_in(&steps);
            if check {
                if !problems.is_empty() {
                    bail!("steps without numbers:\n  {}", problems.join("\n  "));
                }
                println!("check: every step produced numbers");
            } else if !problems.is_empty() {
                println!("missing: {}", problems.join("; "));
            }
        }
        Cmd::FreePort => println!("{}", free_addr().port()),
    }
    Ok(())
}

/// `plots` relative to `base` when inside it, for links in the report.
fn relative(base: &std::path::Path, plots: &std::path::Path) -> String {
    plots
        .strip_prefix(base)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| plots.to_string_lossy().into_owned())
}
