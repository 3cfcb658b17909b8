//! What `/proc` tells about a process (CPU time, resident memory, children)
//! and about the machine (CPU model, kernel, memory), for the report.

use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::sys::clock_ticks_per_sec;

/// The command name and `utime + stime` (in clock ticks) from the text of
/// `/proc/<pid>/stat`. The name sits in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    // After ") " come field 3 (state) onwards; utime and stime are fields 14 and 15.
    let mut fields = stat.get(close + 1..)?.split_ascii_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

/// CPU time, in clock ticks, of a process's children that ended and were
/// waited for (cutime + cstime, fields 16 and 17 of `/proc/<pid>/stat`).
pub fn parse_reaped(stat: &str) -> Option<u64> {
    let close = stat.rfind(')')?;
    let mut fields = stat.get(close + 1..)?.split_ascii_whitespace();
    let cutime: u64 = fields.nth(13)?.parse().ok()?;
    let cstime: u64 = fields.next()?.parse().ok()?;
    Some(cutime + cstime)
}

/// Steal time by CPU (`cpu0`, `cpu1`, ...) in clock ticks, from the text of
/// `/proc/stat`: time the hypervisor ran something else while this vCPU
/// had work. On a VM whose vCPUs are throttled it shows each stall.
pub fn parse_steal(stat: &str) -> Vec<(String, u64)> {
    stat.lines()
        .filter_map(|l| {
            let mut f = l.split_ascii_whitespace();
            let name = f.next()?;
            let n = name.strip_prefix("cpu")?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // user nice system idle iowait irq softirq steal
            let steal: u64 = f.nth(7)?.parse().ok()?;
            Some((name.to_owned(), steal))
        })
        .collect()
}

/// Steal ticks so far, summed over the CPUs of `/proc/stat`.
pub fn steal_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("/proc/stat")?;
    Ok(parse_steal(&stat).iter().map(|(_, t)| t).sum())
}

/// Clock ticks in milliseconds.
pub fn ticks_ms(ticks: u64) -> f64 {
    ticks as f64 * 1e3 / clock_ticks_per_sec() as f64
}

/// Steal time across an interval, in milliseconds summed over CPUs.
#[derive(Debug)]
pub struct StealMeter {
    start: u64,
}

impl StealMeter {
    /// Reads the steal counter now.
    pub fn start() -> Result<Self> {
        Ok(StealMeter {
            start: steal_ticks()?,
        })
    }

    /// Milliseconds of steal since [`StealMeter::start`], over all CPUs.
    pub fn stop(&self) -> Result<f64> {
        Ok(ticks_ms(steal_ticks()?.saturating_sub(self.start)))
    }
}

/// CPU time (user + system) of the calling thread, in seconds.
pub fn thread_cpu_secs() -> Result<f64> {
    let text =
        std::fs::read_to_string("/proc/thread-self/stat").context("/proc/thread-self/stat")?;
    let (_, ticks) = parse_stat(&text).context("unreadable /proc/thread-self/stat")?;
    Ok(ticks as f64 / clock_ticks_per_sec() as f64)
}

/// The value of a `Key:   123 kB` line of `/proc/<pid>/status` or
/// `/proc/meminfo`, in bytes.
pub fn parse_kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let mut parts = rest.split_ascii_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(n * 1024),
            Some(_) => None,
        }
    })
}

/// CPU time (user + system, all threads) of a process, in seconds.
pub fn cpu_secs(pid: u32) -> Result<(String, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    let (comm, ticks) =
        parse_stat(&stat).with_context(|| format!("cannot parse /proc/{pid}/stat"))?;
    Ok((comm, ticks as f64 / clock_ticks_per_sec() as f64))
}

/// CPU time a process's threads have run, in nanoseconds: the sum of the
/// first field of each `/proc/<pid>/task/<tid>/schedstat` (the scheduler's
/// own count, where `stat` counts clock ticks of 10 ms). Threads that ended
/// are not in it, so measure across an interval in which none do.
pub fn process_run_ns(pid: u32) -> Result<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("process {pid} is gone"))?;
    let mut total = 0;
    for t in tasks.flatten() {
        // A thread may end between the listing and the read.
        let Ok(text) = std::fs::read_to_string(t.path().join("schedstat")) else {
            continue;
        };
        total += text
            .split_ascii_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("unreadable schedstat of {pid}: {text:?}"))?;
    }
    Ok(total)
}

/// CPU seconds of a process's children that ended and were waited for.
pub fn reaped_cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    let ticks = parse_reaped(&stat).with_context(|| format!("cannot parse /proc/{pid}/stat"))?;
    Ok(ticks as f64 / clock_ticks_per_sec() as f64)
}

/// Resident set size of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    parse_kib_field(&status, "VmRSS").with_context(|| format!("no VmRSS for {pid}"))
}

/// Direct children of a process (nginx workers under their master).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_ascii_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// CPU used by one process during a measurement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessCpu {
    /// Process id.
    pub pid: u32,
    /// Command name, as in `/proc/<pid>/stat`.
    pub name: String,
    /// User + system CPU seconds used during the measurement.
    pub cpu_secs: f64,
}

/// Measures the CPU time of a set of processes and of their children
/// across an interval: the children running at the start by their own
/// counts, and those that end during it (Redis's AOF rewrite, forked and
/// waited for) through their parent's count of ended children.
#[derive(Debug)]
pub struct CpuMeter {
    /// (pid, name, CPU seconds at the start, parent for a child).
    start: Vec<(u32, String, f64, Option<u32>)>,
    /// The processes asked for and their ended children's CPU seconds at
    /// the start; their children may vanish, these may not.
    required: Vec<(u32, f64)>,
    at: Instant,
}

impl CpuMeter {
    /// Reads the CPU time of `pids` and of their direct children now.
    pub fn start(pids: &[u32]) -> Result<Self> {
        let mut required: Vec<u32> = Vec::new();
        for &p in pids {
            if !required.contains(&p) {
                required.push(p);
            }
        }
        let (start, reaped) = stable(&required, || {
            let mut start = Vec::new();
            for &p in &required {
                let (name, secs) = cpu_secs(p)?;
                start.push((p, name, secs, None));
            }
            // Children come and go (Redis forks for AOF rewrites): one that
            // is gone by the time it is read is skipped, not an error.
            for &p in &required {
                for c in children(p) {
                    if start.iter().any(|(q, ..)| *q == c) {
                        continue;
                    }
                    if let Ok((name, secs)) = cpu_secs(c) {
                        start.push((c, name, secs, Some(p)));
                    }
                }
            }
            Ok(start)
        })?;
        Ok(CpuMeter {
            start,
            required: required.into_iter().zip(reaped).collect(),
            at: Instant::now(),
        })
    }

    /// CPU seconds each process used since [`CpuMeter::start`], and the wall
    /// seconds elapsed. A process asked for includes its children that
    /// ended meanwhile (a child it had at the start only for what it used
    /// since); a child still running, born before the start or after it, is
    /// listed on its own.
    pub fn stop(&self) -> Result<(Vec<ProcessCpu>, f64)> {
        let wall = self.at.elapsed().as_secs_f64();
        let parents: Vec<u32> = self.required.iter().map(|(p, _)| *p).collect();
        let ((mut out, ended_before), reaped) = stable(&parents, || {
            let mut out = Vec::new();
            // CPU of children listed at the start that ended, before the start.
            let mut ended_before: Vec<(u32, f64)> = Vec::new();
            for (pid, name, before, parent) in &self.start {
                let now = match (cpu_secs(*pid), parent) {
                    (Ok((_, now)), _) => now,
                    (Err(_), Some(parent)) => {
                        ended_before.push((*parent, *before));
                        continue;
                    }
                    (Err(e), None) => return Err(e),
                };
                out.push(ProcessCpu {
                    pid: *pid,
                    name: name.clone(),
                    cpu_secs: (now - before).max(0.0),
                });
            }
            // Children born after the start and still running: all their
            // CPU is the interval's.
            for (parent, _) in &self.required {
                for c in children(*parent) {
                    if self.start.iter().any(|(q, ..)| *q == c) {
                        continue;
                    }
                    if let Ok((name, secs)) = cpu_secs(c) {
                        out.push(ProcessCpu {
                            pid: c,
                            name,
                            cpu_secs: secs,
                        });
                    }
                }
            }
            Ok((out, ended_before))
        })?;
        for ((pid, reaped_before), reaped_now) in self.required.iter().zip(reaped) {
            let before_start: f64 = ended_before
                .iter()
                .filter(|(p, _)| p == pid)
                .map(|(_, s)| s)
                .sum();
            let reaped = (reaped_now - reaped_before - before_start).max(0.0);
            if let Some(p) = out.iter_mut().find(|p| p.pid == *pid) {
                p.cpu_secs += reaped;
            }
        }
        Ok((out, wall))
    }
}

/// `read()` together with the CPU of `parents`' ended children, taken so
/// that no child was reaped during the read: a child read alive and then
/// reaped before its parent's count was read would count twice (on its own
/// and in the parent's), one reaped before its own read would be missed at
/// the start. Reads again while the parents' counts move across it (a read
/// takes microseconds; a child reaped in each of 100 reads in a row is an
/// error, not a figure).
fn stable<T>(parents: &[u32], mut read: impl FnMut() -> Result<T>) -> Result<(T, Vec<f64>)> {
    let reaped = || -> Result<Vec<f64>> { parents.iter().map(|&p| reaped_cpu_secs(p)).collect() };
    for _ in 0..100 {
        let before = reaped()?;
        let value = read()?;
        let after = reaped()?;
        if before == after {
            return Ok((value, after));
        }
    }
    anyhow::bail!("the children of {parents:?} kept ending while their CPU was read")
}

/// Facts about the machine a run was made on.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    /// `model name` of the first CPU in `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Online logical CPUs.
    pub cpus: usize,
    /// Kernel release.
    pub kernel: String,
    /// `PRETTY_NAME` of `/etc/os-release`.
    pub os: String,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// How idle CPUs wait: cpuidle driver and governor, and the guest halt
    /// polling limit on a VM (`haltpoll`), e.g. `haltpoll / haltpoll,
    /// guest_halt_poll_ns 0`. Empty when unknown.
    #[serde(default)]
    pub cpu_idle: String,
    /// The kernel's CPU latency limit (PM QoS, `/dev/cpu_dma_latency`) in
    /// µs when the run began; `None` when it could not be read.
    #[serde(default)]
    pub cpu_latency_us: Option<i64>,
}

/// The CPU latency limit that no request constrains (the kernel's default,
/// 2000 s): idle CPUs may then enter any state.
pub const CPU_LATENCY_UNCONSTRAINED_US: i64 = 2_000_000_000;

/// The CPU latency limit now in force (µs), the lowest any process holds
/// through `/dev/cpu_dma_latency`. Reading it adds no request. `None`
/// without the device or the right to open it (root).
pub fn cpu_latency_limit_us() -> Option<i64> {
    use std::io::Read;
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/cpu_dma_latency")
        .and_then(|mut f| f.read_exact(&mut b))
        .ok()?;
    Some(i64::from(i32::from_ne_bytes(b)))
}

/// A CPU latency limit in words: `0 µs (a request held)`, `unconstrained
/// (no request held)` or `unknown`.
pub fn fmt_cpu_latency(us: Option<i64>) -> String {
    match us {
        None => "unknown".to_owned(),
        Some(CPU_LATENCY_UNCONSTRAINED_US) => "unconstrained (no request held)".to_owned(),
        Some(v) => format!("{v} µs (a request held)"),
    }
}

/// The cpuidle facts of [`Machine::cpu_idle`], from sysfs under `root`.
fn cpu_idle_under(root: &std::path::Path) -> String {
    let read = |p: &str| {
        std::fs::read_to_string(root.join(p))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let driver = read("devices/system/cpu/cpuidle/current_driver");
    if driver.is_empty() {
        return String::new();
    }
    let mut governor = read("devices/system/cpu/cpuidle/current_governor");
    if governor.is_empty() {
        governor = read("devices/system/cpu/cpuidle/current_governor_ro");
    }
    let mut out = format!("{driver} / {governor}");
    let poll = read("module/haltpoll/parameters/guest_halt_poll_ns");
    if !poll.is_empty() {
        out.push_str(&format!(", guest_halt_poll_ns {poll}"));
    }
    out
}

impl Machine {
    /// Reads the facts from `/proc` and `/etc`; unknown ones stay empty.
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_owned())
            })
            .unwrap_or_default();
        let cpus = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
            .count();
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        Machine {
            cpu_model,
            cpus,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            os,
            memory_bytes: parse_kib_field(&read("/proc/meminfo"), "MemTotal").unwrap_or(0),
            cpu_idle: cpu_idle_under(std::path::Path::new("/sys")),
            cpu_latency_us: cpu_latency_limit_us(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_idle_names_driver_governor_and_the_guest_halt_poll() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(cpu_idle_under(root.path()), "");
        let idle = root.path().join("devices/system/cpu/cpuidle");
        std::fs::create_dir_all(&idle).unwrap();
        std::fs::write(idle.join("current_driver"), "intel_idle\n").unwrap();
        std::fs::write(idle.join("current_governor_ro"), "menu\n").unwrap();
        assert_eq!(cpu_idle_under(root.path()), "intel_idle / menu");
        std::fs::write(idle.join("current_governor"), "teo\n").unwrap();
        let poll = root.path().join("module/haltpoll/parameters");
        std::fs::create_dir_all(&poll).unwrap();
        std::fs::write(poll.join("guest_halt_poll_ns"), "200000\n").unwrap();
        assert_eq!(
            cpu_idle_under(root.path()),
            "intel_idle / teo, guest_halt_poll_ns 200000"
        );
    }

    #[test]
    fn cpu_latency_is_worded_by_whether_a_request_is_held() {
        assert_eq!(fmt_cpu_latency(None), "unknown");
        assert_eq!(
            fmt_cpu_latency(Some(CPU_LATENCY_UNCONSTRAINED_US)),
            "unconstrained (no request held)"
        );
        assert_eq!(fmt_cpu_latency(Some(0)), "0 µs (a request held)");
    }

    #[test]
    fn stat_parser_sums_utime_and_stime() {
        let stat = "1234 (heavyread-read) S 1 1234 1234 0 -1 4194560 2000 0 0 0 \
                    750 250 0 0 20 0 3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(("heavyread-read".to_owned(), 1000)));
    }

    #[test]
    fn reaped_children_are_read_from_cutime_and_cstime() {
        let stat = "1234 (redis-server) S 1 1234 1234 0 -1 4194560 2000 0 0 0 \
                    750 250 30 12 20 0 3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_reaped(stat), Some(42));
        assert_eq!(parse_reaped("7 (x) R 1 7 7 0 -1 0 0 0 0 0 3 4"), None);
    }

    /// Runs a shell that waits for a `go` file, then forks a subshell that
    /// spins and then runs `subshell_then`, then itself runs `shell_then`;
    /// one of the two touches `DONE` (the done file). Meters the shell from
    /// before `go` to after the done file appears; returns the CPU read and
    /// the shell's pid.
    fn meter_a_spinning_child(subshell_then: &str, shell_then: &str) -> (Vec<ProcessCpu>, u32) {
        let dir = tempfile::tempdir().unwrap();
        let (go, done) = (dir.path().join("go"), dir.path().join("done"));
        let script = format!(
            "while [ ! -e {} ]; do sleep 0.01; done; \
             (i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done{subshell_then}){shell_then}",
            go.display(),
        )
        .replace("DONE", &done.display().to_string());
        let mut sh = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let meter = CpuMeter::start(&[sh.id()]).unwrap();
        std::fs::write(&go, b"").unwrap();
        let limit = Instant::now() + std::time::Duration::from_secs(60);
        while !done.exists() {
            assert!(Instant::now() < limit, "the subshell did not finish");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let (cpu, _) = meter.stop().unwrap();
        let pid = sh.id();
        let _ = sh.kill();
        let _ = sh.wait();
        (cpu, pid)
    }

    #[test]
    fn a_child_that_ends_during_the_interval_counts_for_its_parent() {
        // The subshell is born after the start and gone by the stop, like
        // Redis's AOF rewrite child: the shell waits for it, then says so
        // and sleeps. It says so with a redirection, not `touch`: a `touch`
        // that made the file and had not yet ended was listed as a second
        // child.
        let (cpu, _) = meter_a_spinning_child("", "; : > DONE; exec sleep 30");
        assert_eq!(cpu.len(), 1, "{cpu:?}");
        assert!(
            cpu[0].cpu_secs >= 0.05,
            "the ended child's CPU is not counted: {cpu:?}"
        );
    }

    #[test]
    fn a_child_born_during_the_interval_and_still_running_is_listed() {
        // The subshell says so itself and stays (a rewrite child still
        // running at the stop).
        let (cpu, sh) = meter_a_spinning_child("; : > DONE; exec sleep 5", " & wait");
        assert!(
            cpu.iter().any(|p| p.pid != sh && p.cpu_secs >= 0.05),
            "the running child's CPU is not counted: {cpu:?}"
        );
    }

    #[test]
    fn stat_parser_survives_spaces_and_parens_in_the_name() {
        let stat = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 1 1 1";
        assert_eq!(parse_stat(stat), Some(("a (b) c".to_owned(), 7)));
    }

    #[test]
    fn stat_parser_rejects_truncated_lines() {
        assert_eq!(parse_stat("7 (x) R 1 2 3"), None);
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("7 (x) R 1 7 7 0 -1 0 0 0 0 0 u s"), None);
    }

    #[test]
    fn steal_is_read_per_cpu_and_the_total_line_is_skipped() {
        let stat = "cpu  3907057 172879 512448 5037598 148664 0 128715 33297 0 0\n\
                    cpu0 1 2 3 4 5 6 7 120 0 0\n\
                    cpu1 1 2 3 4 5 6 7 33177 0 0\n\
                    cpu2 1 2 3\n\
                    intr 12 3 4\n\
                    cpufreq 1 2 3 4 5 6 7 8\n";
        assert_eq!(
            parse_steal(stat),
            [("cpu0".to_owned(), 120), ("cpu1".to_owned(), 33177)]
        );
        let m = StealMeter::start().unwrap();
        assert!(m.stop().unwrap() >= 0.0);
    }

    #[test]
    fn kib_fields_become_bytes() {
        let status = "Name:\treader\nVmPeak:\t  200 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_kib_field(status, "VmRSS"), Some(12345 * 1024));
        assert_eq!(parse_kib_field(status, "VmHWM"), None);
        assert_eq!(
            parse_kib_field("MemTotal:   1024 kB", "MemTotal"),
            Some(1 << 20)
        );
        assert_eq!(parse_kib_field("VmRSSX: 5 kB", "VmRSS"), None);
    }

    #[test]
    fn own_process_is_measurable() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        let (_, secs) = cpu_secs(me).unwrap();
        assert!(secs >= 0.0);
        let m = CpuMeter::start(&[me]).unwrap();
        let (cpu, wall) = m.stop().unwrap();
        assert_eq!(cpu[0].pid, me);
        assert!(wall >= 0.0);
    }
}
