//! Convergence times: printed by each scenario and collected, one row per
//! scenario from its latest run, in `target/systest-convergence.md`.
//! Scenarios run in parallel processes, so each writes its own row file and
//! rebuilds the table under an exclusive `flock`.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bins;
use crate::stack::Verdict;

/// One scenario's measurements.
#[derive(Debug, Clone)]
pub struct Row {
    /// The scenario (the test's name).
    pub scenario: &'static str,
    /// From the heal until every reader served the write made at the heal.
    pub converge: Duration,
    /// The same for the reader the fault hit, when one was singled out.
    pub faulted: Option<Duration>,
    /// Anything worth quoting (how long the fault lasted, what it took).
    pub note: String,
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// Prints the row and adds it to the report.
pub fn record(row: &Row, v: &Verdict) {
    let counters: Vec<String> = v
        .sync_counters
        .iter()
        .map(|c| format!("{}/{}/{}/{}/{}", c[0], c[1], c[2], c[3], c[4]))
        .collect();
    let reads: u64 = v.traffic.reads_ok.iter().sum();
    let read_errors: u64 = v.traffic.read_errors.iter().sum();
    let line = format!(
        "| {} | {} | {} | {} | {} / {} | {} ({}) | {} | {} | {} |",
        row.scenario,
        ms(row.converge),
        row.faulted.map(ms).unwrap_or_else(|| "–".into()),
        ms(v.settle),
        v.acked,
        v.unknown,
        reads,
        read_errors,
        counters.join(", "),
        row.note,
        utc_now(),
    );
    #[allow(clippy::print_stderr)] // The test's result, for the person running it.
    {
        eprintln!(
            "[systest] {}: converged {} after the heal (faulted reader {}), settled {} after the writes stopped; {} writes acknowledged, {} unknown; {reads} reads ({read_errors} unanswered); {}",
            row.scenario,
            ms(row.converge),
            row.faulted.map(ms).unwrap_or_else(|| "–".into()),
            ms(v.settle),
            v.acked,
            v.unknown,
            row.note
        );
    }
    if let Err(e) = write_table(row.scenario, &line) {
        #[allow(clippy::print_stderr)] // A report that cannot be written must not fail the test.
        {
            eprintln!("[systest] could not write the convergence report: {e}");
        }
    }
}

/// Where the report goes.
pub fn report_path() -> PathBuf {
    bins::target_dir().join("systest-convergence.md")
}

fn write_table(scenario: &str, line: &str) -> std::io::Result<()> {
    let dir = bins::target_dir().join("systest");
    std::fs::create_dir_all(&dir)?;
    let lock = File::create(dir.join(".lock"))?;
    // SAFETY: flock(2) on a descriptor this function owns and keeps open
    // until it returns; the lock is released when `lock` is closed.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    std::fs::write(dir.join(format!("{scenario}.row")), format!("{line}\n"))?;
    let mut rows: Vec<(String, String)> = std::fs::read_dir(&dir)?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "row"))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Some((name, std::fs::read_to_string(e.path()).ok()?))
        })
        .collect();
    rows.sort();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let tmp = dir.join("report.tmp");
    let mut f = File::create(&tmp)?;
    writeln!(f, "# heavyread fault scenarios: time to converge\n")?;
    writeln!(
        f,
        "Written by `cargo nextest run -p heavyread-systest` (`systest/tests/faults.rs`), one row per \
         scenario from its latest run, on {cpus} CPUs, Linux {}, debug builds, scenarios running in \
         parallel. Each stack is a redis-server, the writer and three readers as processes, with \
         writes (~200/s) and reads (~1k/s per reader) running through the fault.\n",
        kernel.trim()
    )?;
    writeln!(
        f,
        "- **converge**: from the moment the fault healed until every reader served a write made \
         at that moment (so it was live again and had applied everything before it), while the \
         writes went on.\n- **faulted reader**: the same for the reader the fault hit.\n- **settle**: from \
         the end of the writes until every reader equalled Redis exactly (every id, ETag and body, \
         applied version, entry count).\n- **sync counters** per reader: reconnects / gaps / \
         catch-ups / full resyncs (bootstrap included) / PING timeouts.\n"
    )?;
    writeln!(
        f,
        "| scenario | converge | faulted reader | settle | writes acked / unknown | reads (unanswered) | sync counters | note | run at (UTC) |"
    )?;
    writeln!(f, "|---|---:|---:|---:|---:|---:|---|---|---|")?;
    for (_, r) in rows {
        f.write_all(r.as_bytes())?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, report_path())?;
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` of now, in UTC.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
