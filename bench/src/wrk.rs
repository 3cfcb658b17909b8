//! `wrk`: one wrk run against a server, with the server's CPU time measured
//! from `/proc` across it, parsed into a [`WrkResult`].
//!
//! The scripts in `bench/wrk/` load `common.lua`, whose `done()` prints
//! exact figures (`HR_SUMMARY`, and `HR_LATENCY <percentile> <µs>` lines for
//! the curve); wrk's own text (`--latency`) is parsed as a fallback and kept
//! in the result for auditing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::procfs::{CpuMeter, ProcessCpu, StealMeter};
use crate::stats::{Point, Summary};

/// Socket and status errors wrk counted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WrkErrors {
    /// Failed connects.
    pub connect: u64,
    /// Read errors.
    pub read: u64,
    /// Write errors.
    pub write: u64,
    /// Requests over wrk's timeout.
    pub timeout: u64,
    /// Responses outside 2xx and 3xx.
    pub status: u64,
}

impl WrkErrors {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.status
    }
}

/// What wrk printed, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrkOutput {
    /// Responses completed.
    pub requests: u64,
    /// Measured duration in seconds.
    pub secs: f64,
    /// Response bytes read.
    pub bytes: u64,
    /// Errors.
    pub errors: WrkErrors,
    /// Latency curve (percentile, µs).
    pub curve: Vec<Point>,
}

/// A latency such as `450.19us`, `1.20ms`, `2.00s`, `1.5m`, in microseconds.
pub fn parse_latency_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        "h" => n * 3600e6,
        _ => return None,
    })
}

/// A size such as `600.00MB` as wrk prints it (powers of 1024), in bytes.
pub fn parse_size_bytes(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let k = 1024f64;
    Some(match unit {
        "" | "B" => n,
        "KB" => n * k,
        "MB" => n * k * k,
        "GB" => n * k * k * k,
        "TB" => n * k * k * k * k,
        _ => return None,
    })
}

fn kv(line: &str) -> impl Iterator<Item = (&str, u64)> {
    line.split_ascii_whitespace()
        .filter_map(|f| f.split_once('='))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
}

/// Parses wrk's output; the `HR_*` lines of `common.lua` win over wrk's
/// rounded text.
pub fn parse(out: &str) -> Result<WrkOutput> {
    let mut o = WrkOutput::default();
    let mut exact = false;
    let mut text_curve = Vec::new();
    let mut exact_curve = Vec::new();
    let mut in_distribution = false;
    for line in out.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("HR_SUMMARY ") {
            exact = true;
            for (k, v) in kv(rest) {
                match k {
                    "requests" => o.requests = v,
                    "duration_us" => o.secs = v as f64 / 1e6,
                    "bytes" => o.bytes = v,
                    "connect" => o.errors.connect = v,
                    "read" => o.errors.read = v,
                    "write" => o.errors.write = v,
                    "status" => o.errors.status = v,
                    "timeout" => o.errors.timeout = v,
                    _ => {}
                }
            }
        } else if let Some(rest) = t.strip_prefix("HR_LATENCY ") {
            let mut f = rest.split_ascii_whitespace();
            if let (Some(p), Some(us)) = (f.next(), f.next()) {
                if let (Ok(pct), Ok(us)) = (p.parse::<f64>(), us.parse::<f64>()) {
                    // wrk answers 0 where its coordinated-omission correction
                    // moved samples below its minimum (pipelined runs).
                    if us > 0.0 || pct <= 0.0 {
                        exact_curve.push(Point { pct, us });
                    }
                }
            }
        } else if t == "Latency Distribution" {
            in_distribution = true;
        } else if in_distribution && t.contains('%') {
            let mut f = t.split_ascii_whitespace();
            let pct = f.next().and_then(|p| p.trim_end_matches('%').parse().ok());
            let us = f.next().and_then(parse_latency_us);
            if let (Some(pct), Some(us)) = (pct, us) {
                text_curve.push(Point { pct, us });
            }
        } else if let Some((n, rest)) = t.split_once(" requests in ") {
            in_distribution = false;
            if exact {
                continue;
            }
            o.requests = n.trim().parse().context("request count")?;
            let (dur, read) = rest.split_once(", ").context("summary line")?;
            o.secs = parse_latency_us(dur).context("duration")? / 1e6;
            o.bytes =
                parse_size_bytes(read.trim_end_matches(" read")).context("bytes read")? as u64;
        } else if let Some(rest) = t.strip_prefix("Socket errors:") {
            if !exact {
                for part in rest.split(',') {
                    let mut f = part.split_ascii_whitespace();
                    let (Some(k), Some(v)) = (f.next(), f.next().and_then(|v| v.parse().ok()))
                    else {
                        continue;
                    };
                    match k {
                        "connect" => o.errors.connect = v,
                        "read" => o.errors.read = v,
                        "write" => o.errors.write = v,
                        "timeout" => o.errors.timeout = v,
                        _ => {}
                    }
                }
            }
        } else if let Some(rest) = t.strip_prefix("Non-2xx or 3xx responses:") {
            if !exact {
                o.errors.status = rest.trim().parse().unwrap_or(0);
            }
        } else {
            in_distribution = in_distribution && !t.is_empty();
        }
    }
    if o.requests == 0 || o.secs <= 0.0 {
        bail!("no request count in wrk's output:\n{out}");
    }
    o.curve = if exact_curve.is_empty() {
        text_curve
    } else {
        exact_curve
    };
    Ok(o)
}

/// Settings of one wrk run.
#[derive(Debug, Clone)]
pub struct WrkOptions {
    /// Name of the run in the results (e.g. `reader-1core`).
    pub label: String,
    /// What serves, in words, for the report.
    pub server: String,
    /// Server to load.
    pub addr: SocketAddr,
    /// Lua script.
    pub script: PathBuf,
    /// Connections.
    pub connections: u32,
    /// wrk threads.
    pub threads: u32,
    /// Measured seconds.
    pub secs: u32,
    /// Unmeasured seconds before, so caches (nginx's open_file_cache) are warm.
    pub warmup_secs: u32,
    /// CPUs wrk runs on (`taskset -c`), if pinned.
    pub cpus: Option<String>,
    /// Server processes whose CPU time is measured (their children too).
    pub pids: Vec<u32>,
    /// `KEY=VALUE` environment for the script.
    pub env: Vec<(String, String)>,
    /// Requests per write (pipelining depth), for the report.
    pub pipeline: u32,
}

/// One wrk run, as saved for the report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WrkResult {
    /// Name of the run.
    pub label: String,
    /// What served.
    pub server: String,
    /// Connections.
    pub connections: u32,
    /// wrk threads.
    pub threads: u32,
    /// CPUs wrk was pinned to, if any.
    pub client_cpus: Option<String>,
    /// Script file name.
    pub script: String,
    /// Script environment.
    pub env: Vec<String>,
    /// Pipelining depth.
    pub pipeline: u32,
    /// Responses.
    pub requests: u64,
    /// Measured seconds.
    pub secs: f64,
    /// Responses per second.
    pub req_per_sec: f64,
    /// Response bytes read.
    pub bytes_read: u64,
    /// Errors.
    pub errors: WrkErrors,
    /// Latency (per request; per batch when pipelined, as wrk measures it).
    pub latency: Summary,
    /// CPU time of each server process during the run.
    pub server_cpu: Vec<ProcessCpu>,
    /// Server CPU microseconds per response (all measured processes).
    pub cpu_us_per_req: f64,
    /// wrk's output.
    pub raw: String,
    /// Milliseconds the hypervisor took the vCPUs away during the run
    /// (steal time summed over CPUs): each ~100 ms stall of this VM shows in
    /// the tail latency, not in the CPU per request.
    #[serde(default)]
    pub steal_ms: Option<f64>,
}

fn wrk_command(o: &WrkOptions, secs: u32) -> Command {
    let mut cmd = match &o.cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus, "wrk"]);
            c
        }
        None => Command::new("wrk"),
    };
    cmd.arg(format!("-t{}", o.threads))
        .arg(format!("-c{}", o.connections))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg("-s")
        .arg(&o.script)
        .arg(format!("http://{}/", o.addr));
    for (k, v) in &o.env {
        cmd.env(k, v);
    }
    cmd
}

fn run_wrk(o: &WrkOptions, secs: u32) -> Result<String> {
    let out = wrk_command(o, secs)
        .output()
        .context("run wrk (install it with ops/install-deps.sh bench)")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// Warms up, then runs wrk and measures the server's CPU across the run.
pub fn run(o: &WrkOptions) -> Result<WrkResult> {
    warm_up(o)?;
    measure(o)
}

/// The unmeasured warm-up alone (`o.warmup_secs`, if any).
pub fn warm_up(o: &WrkOptions) -> Result<()> {
    if o.warmup_secs > 0 {
        run_wrk(o, o.warmup_secs)?;
    }
    Ok(())
}

/// The measured run alone, with the server's CPU across it (no warm-up).
pub fn measure(o: &WrkOptions) -> Result<WrkResult> {
    let meter = CpuMeter::start(&o.pids)?;
    let steal = StealMeter::start()?;
    let raw = run_wrk(o, o.secs)?;
    let steal_ms = steal.stop()?;
    let (server_cpu, _) = meter.stop()?;
    let p = parse(&raw)?;
    let cpu: f64 = server_cpu.iter().map(|c| c.cpu_secs).sum();
    Ok(WrkResult {
        label: o.label.clone(),
        server: o.server.clone(),
        connections: o.connections,
        threads: o.threads,
        client_cpus: o.cpus.clone(),
        script: o
            .script
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        env: o.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        pipeline: o.pipeline,
        requests: p.requests,
        secs: p.secs,
        req_per_sec: p.requests as f64 / p.secs,
        bytes_read: p.bytes,
        errors: p.errors,
        latency: Summary::from_curve(p.requests, p.curve),
        cpu_us_per_req: if o.pids.is_empty() {
            0.0
        } else {
            cpu * 1e6 / p.requests as f64
        },
        server_cpu,
        raw,
        steal_ms: Some(steal_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "Running 10s test @ http://127.0.0.1:8081/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   450.19us  120.33us   5.12ms   90.00%
    Req/Sec   140.12k     5.01k  150.00k    70.00%
  Latency Distribution
     50%  430.00us
     75%  480.00us
     90%  550.00us
     99%    1.20ms
  1400000 requests in 10.00s, 600.00MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 12
Requests/sec: 140000.00
Transfer/sec:     60.00MB
";

    #[test]
    fn plain_output_is_parsed() {
        let o = parse(PLAIN).unwrap();
        assert_eq!(o.requests, 1_400_000);
        assert_eq!(o.secs, 10.0);
        assert_eq!(o.bytes, 600 * 1024 * 1024);
        assert_eq!(
            o.errors,
            WrkErrors {
                connect: 1,
                read: 2,
                write: 3,
                timeout: 4,
                status: 12
            }
        );
        assert_eq!(o.errors.total(), 22);
        let pcts: Vec<(f64, f64)> = o.curve.iter().map(|p| (p.pct, p.us)).collect();
        assert_eq!(
            pcts,
            [(50.0, 430.0), (75.0, 480.0), (90.0, 550.0), (99.0, 1200.0)]
        );
    }

    #[test]
    fn exact_lines_win_over_rounded_text() {
        let out = format!(
            "{PLAIN}HR_SUMMARY requests=1400123 duration_us=10000500 bytes=629145999 connect=0 read=0 write=0 status=0 timeout=0\n\
             HR_LATENCY 50 431.5\nHR_LATENCY 99 0\nHR_LATENCY 99.9 2100\nHR_LATENCY 100 5120\n"
        );
        let o = parse(&out).unwrap();
        assert_eq!(o.requests, 1_400_123);
        assert_eq!(o.secs, 10.0005);
        assert_eq!(o.bytes, 629_145_999);
        assert_eq!(o.errors.total(), 0);
        assert_eq!(o.curve.len(), 3);
        let s = Summary::from_curve(o.requests, o.curve);
        assert_eq!((s.p50, s.p999, s.max), (431.5, 2100.0, 5120.0));
    }

    #[test]
    fn units_are_converted() {
        assert_eq!(parse_latency_us("450.19us"), Some(450.19));
        assert_eq!(parse_latency_us("1.20ms"), Some(1200.0));
        assert_eq!(parse_latency_us("2.00s"), Some(2e6));
        assert_eq!(parse_latency_us("1.5m"), Some(90e6));
        assert_eq!(parse_latency_us("12"), None);
        assert_eq!(parse_latency_us("3.0xs"), None);
        assert_eq!(parse_size_bytes("1.50KB"), Some(1536.0));
        assert_eq!(parse_size_bytes("2GB"), Some(2.0 * 1024f64.powi(3)));
        assert_eq!(parse_size_bytes("512B"), Some(512.0));
        assert_eq!(parse_size_bytes("7"), Some(7.0));
        assert_eq!(parse_size_bytes("1PB"), None);
    }

    #[test]
    fn output_without_requests_is_an_error() {
        assert!(parse("unable to connect to 127.0.0.1:1 Connection refused\n").is_err());
    }
}
