//! `bounded`: the reader with a memory budget (`HEAVYREAD_MAX_MEMORY`,
//! issue 8) under a skewed load, against the same reader holding every post.
//!
//! Each reader runs one executor pinned to the server CPU and loads the
//! seeded posts from Redis; wrk (one thread, pinned to the other CPU) sends
//! `GET /post?id=`. The runs, in order:
//!
//! - `zipf-unbounded`: no budget, Zipf load (`wrk/zipf.lua`). Its
//!   `heavyread_reader_store_bytes` is the data's accounted bytes, *D*.
//! - `zipf-50%`, `zipf-10%`: budgets of 50% and 10% of *D*, the same load:
//!   hit ratio, fills, evictions, resident bytes against the budget, CPU per
//!   request (reader and redis-server apart: misses are served by both).
//! - `hits-unbounded` / `hits-bounded`, alternating rounds, uniform load
//!   (`wrk/random.lua`): a budget of 2·*D* keeps every post resident, so every
//!   lookup is a hit on the bounded code path; the reader's CPU per request
//!   against the unbounded one's is what that path costs (target ≤ 1.05×).
//!
//! The counters come from the reader's `/metrics` after the warm-up and after
//! the measured run, so the deltas cover the measured run only. A reader
//! without the bounded mode lacks those metrics, or ignores the budget: both
//! stop the step with a message saying so.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::client::get_once;
use crate::process::{free_addr, metric_value, ReaderCommand, Server};
use crate::wrk::{self, WrkOptions, WrkResult};

/// The reader refuses budgets below this (`--max-memory`).
pub const MIN_BUDGET: u64 = 1 << 20;
/// Budget of the `hits-bounded` runs, as a multiple of the data's bytes: a
/// bounded store also counts its eviction ring, so 1× would not hold it all.
pub const ALL_RESIDENT: f64 = 2.0;
/// Target: bounded CPU per hit ÷ unbounded CPU per request.
pub const HIT_CPU_TARGET: f64 = 1.05;
/// Target: a bounded run's hit ratio is at most this far below the LRU
/// estimate for the number of posts it kept resident.
pub const HIT_RATIO_TOLERANCE: f64 = 0.05;
/// Resident bytes may pass the budget by the entry being inserted: this is
/// far more than one post of the bench's data.
pub const RESIDENT_SLACK: u64 = 16 << 10;

/// The reader's metrics this step reads, all required.
pub const METRICS: [&str; 8] = [
    "heavyread_reader_cache_hits_total",
    "heavyread_reader_cache_misses_total",
    "heavyread_reader_fills_total",
    "heavyread_reader_fill_errors_total",
    "heavyread_reader_evictions_total",
    "heavyread_reader_store_budget_bytes",
    "heavyread_reader_store_bytes",
    "heavyread_reader_store_entries",
];

/// One scrape of the reader's cache metrics.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheMetrics {
    /// Lookups answered from memory (counted only when bounded).
    pub hits: u64,
    /// Lookups of ids not in memory (counted only when bounded).
    pub misses: u64,
    /// Ids read through from Redis.
    pub fills: u64,
    /// Misses answered 503.
    pub fill_errors: u64,
    /// Posts evicted to stay under the budget.
    pub evictions: u64,
    /// The budget the reader runs with; 0 when unbounded.
    pub budget_bytes: u64,
    /// Accounted bytes resident now.
    pub store_bytes: u64,
    /// Posts resident now.
    pub store_entries: u64,
}

impl CacheMetrics {
    /// Reads the metrics from a `/metrics` page; `Err` lists those missing.
    pub fn parse(page: &str) -> std::result::Result<Self, Vec<&'static str>> {
        let mut v = [0u64; METRICS.len()];
        let mut missing = Vec::new();
        for (slot, name) in v.iter_mut().zip(METRICS) {
            match metric_value(page, name) {
                Some(x) => *slot = x as u64,
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            return Err(missing);
        }
        let [hits, misses, fills, fill_errors, evictions, budget_bytes, store_bytes, store_entries] =
            v;
        Ok(CacheMetrics {
            hits,
            misses,
            fills,
            fill_errors,
            evictions,
            budget_bytes,
            store_bytes,
            store_entries,
        })
    }
}

/// Scrapes `/metrics`; fails, saying why, when the bounded-mode metrics are absent.
pub async fn scrape(addr: SocketAddr) -> Result<CacheMetrics> {
    let r = get_once(addr, "/metrics")
        .await
        .with_context(|| format!("GET /metrics from {addr}"))?;
    if r.status != 200 {
        bail!("GET /metrics from {addr} answered {}", r.status);
    }
    CacheMetrics::parse(&String::from_utf8_lossy(&r.body)).map_err(|missing| {
        anyhow::anyhow!(
            "the reader at {addr} does not export {}: it has no bounded mode \
             (HEAVYREAD_MAX_MEMORY / --max-memory, issue 8). Build a reader that has it, \
             or leave the bounded step out (STEPS in bench/run_benchmark.sh).",
            missing.join(", ")
        )
    })
}

/// The load of a run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Load {
    /// Zipf ids (`wrk/zipf.lua`).
    Zipf,
    /// Uniform ids (`wrk/random.lua`): the CPU-per-hit comparison.
    Uniform,
}

impl Load {
    fn script(self) -> &'static str {
        match self {
            Load::Zipf => "zipf.lua",
            Load::Uniform => "random.lua",
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BoundedRun {
    /// `zipf-unbounded`, `zipf-10%`, `hits-bounded` ...
    pub label: String,
    /// Which load.
    pub load: Load,
    /// Round of the CPU-per-hit comparison (1, 2, ...); 0 for the Zipf runs.
    pub round: u32,
    /// The budget given to the reader; 0 for none.
    pub budget_bytes: u64,
    /// The budget as a share of the data's accounted bytes; 0 for none.
    pub budget_share: f64,
    /// Scrape after the warm-up.
    pub before: CacheMetrics,
    /// Scrape after the measured run.
    pub after: CacheMetrics,
    /// Reader CPU µs per response.
    pub reader_cpu_us_per_req: f64,
    /// redis-server CPU µs per response (fills), when it was measured.
    pub redis_cpu_us_per_req: f64,
    /// Expected hit ratio of an LRU cache holding as many posts as this run
    /// kept resident (Che's approximation); bounded Zipf runs only.
    pub lru_estimate: Option<f64>,
    /// The wrk run.
    pub wrk: WrkResult,
}

impl BoundedRun {
    /// Whether the reader ran with a budget.
    pub fn bounded(&self) -> bool {
        self.budget_bytes > 0
    }

    fn delta(&self, f: impl Fn(&CacheMetrics) -> u64) -> u64 {
        f(&self.after).saturating_sub(f(&self.before))
    }

    /// Hits during the measured run.
    pub fn hits(&self) -> u64 {
        self.delta(|m| m.hits)
    }

    /// Misses during the measured run.
    pub fn misses(&self) -> u64 {
        self.delta(|m| m.misses)
    }

    /// Fills during the measured run.
    pub fn fills(&self) -> u64 {
        self.delta(|m| m.fills)
    }

    /// Fill errors during the measured run.
    pub fn fill_errors(&self) -> u64 {
        self.delta(|m| m.fill_errors)
    }

    /// Evictions during the measured run.
    pub fn evictions(&self) -> u64 {
        self.delta(|m| m.evictions)
    }

    /// hits ÷ (hits + misses); `None` when nothing was counted (unbounded).
    pub fn hit_ratio(&self) -> Option<f64> {
        let (h, m) = (self.hits(), self.misses());
        (h + m > 0).then(|| h as f64 / (h + m) as f64)
    }

    /// The larger of the two resident-bytes readings.
    pub fn resident_bytes(&self) -> u64 {
        self.before.store_bytes.max(self.after.store_bytes)
    }

    /// Resident bytes within the budget (always true when unbounded).
    pub fn within_budget(&self) -> bool {
        !self.bounded() || self.resident_bytes() <= self.budget_bytes + RESIDENT_SLACK
    }

    /// The performance target of a Zipf run, in words, and whether it was met.
    pub fn target(&self) -> (String, bool) {
        match (self.lru_estimate, self.hit_ratio()) {
            (Some(lru), Some(h)) => (
                format!(
                    "hit ratio ≥ LRU estimate − {:.0} points ({:.1}%)",
                    HIT_RATIO_TOLERANCE * 100.0,
                    (lru - HIT_RATIO_TOLERANCE).max(0.0) * 100.0
                ),
                h >= lru - HIT_RATIO_TOLERANCE,
            ),
            (Some(_), None) => ("hit ratio measured".into(), false),
            (None, _) => ("no misses (every post resident)".into(), self.misses() == 0),
        }
    }
}

/// What the step measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BoundedResult {
    /// Posts in the data set (`post-0` ..).
    pub ids: u64,
    /// Zipf skew.
    pub zipf_s: f64,
    /// The data's accounted bytes (`heavyread_reader_store_bytes`, unbounded).
    pub data_bytes: u64,
    /// Posts the unbounded reader held.
    pub data_entries: u64,
    /// Reader flags used.
    pub reader_args: Vec<String>,
    /// Every run, in the order made.
    pub runs: Vec<BoundedRun>,
}

impl BoundedResult {
    /// The Zipf runs (unbounded first, then by falling budget).
    pub fn zipf(&self) -> impl Iterator<Item = &BoundedRun> {
        self.runs.iter().filter(|r| r.load == Load::Zipf)
    }

    /// The CPU-per-hit rounds.
    pub fn hit_rounds(&self) -> impl Iterator<Item = &BoundedRun> {
        self.runs.iter().filter(|r| r.load == Load::Uniform)
    }

    /// The CPU-per-hit rounds that measured both sides, in round order:
    /// (unbounded, bounded) reader CPU µs per request of the same round.
    pub fn hit_pairs(&self) -> Vec<(f64, f64)> {
        let side = |round: u32, bounded: bool| {
            self.hit_rounds()
                .find(|r| r.round == round && r.bounded() == bounded)
                .map(|r| r.reader_cpu_us_per_req)
                .filter(|&c| c > 0.0)
        };
        let mut rounds: Vec<u32> = self.hit_rounds().map(|r| r.round).collect();
        rounds.sort_unstable();
        rounds.dedup();
        rounds
            .into_iter()
            .filter_map(|n| Some((side(n, false)?, side(n, true)?)))
            .collect()
    }

    /// Reader CPU µs per request on hits, (unbounded, bounded): the median
    /// of each side over the paired rounds.
    pub fn hit_cpu(&self) -> Option<(f64, f64)> {
        let pairs = self.hit_pairs();
        let u = median(pairs.iter().map(|p| p.0).collect())?;
        let b = median(pairs.iter().map(|p| p.1).collect())?;
        Some((u, b))
    }

    /// Bounded ÷ unbounded CPU per hit: the median of the rounds' own
    /// ratios. The two runs of a round are back to back (their order
    /// alternates from round to round), so what drifts on a shared machine
    /// over minutes (another tenant, the host's clock speed) weighs on both
    /// sides of a ratio alike, where comparing each side's best round would
    /// set runs minutes apart against each other.
    pub fn hit_cpu_ratio(&self) -> Option<f64> {
        median(self.hit_pairs().iter().map(|(u, b)| b / u).collect())
    }

    /// What is wrong with the numbers (not slow: wrong); empty when none.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.zipf().count() < 2 {
            p.push("bounded: no bounded Zipf run".to_owned());
        }
        if self.hit_cpu().is_none() {
            p.push("bounded: no CPU per hit (bounded and unbounded)".to_owned());
        }
        for r in &self.runs {
            let l = &r.label;
            if r.wrk.req_per_sec <= 0.0 || r.reader_cpu_us_per_req <= 0.0 {
                p.push(format!("bounded {l}: no req/s or CPU per request"));
            }
            if r.wrk.errors.total() > 0 {
                p.push(format!("bounded {l}: {} wrk errors", r.wrk.errors.total()));
            }
            if r.fill_errors() > 0 {
                p.push(format!("bounded {l}: {} fill errors", r.fill_errors()));
            }
            if !r.within_budget() {
                p.push(format!(
                    "bounded {l}: {} bytes resident over a budget of {}",
                    r.resident_bytes(),
                    r.budget_bytes
                ));
            }
            if r.bounded() && r.hits() == 0 {
                p.push(format!("bounded {l}: no hits counted"));
            }
            if !r.bounded() && r.misses() > 0 {
                p.push(format!("bounded {l}: {} misses unbounded", r.misses()));
            }
            if r.load == Load::Uniform && r.bounded() && r.misses() > 0 {
                p.push(format!(
                    "bounded {l}: {} misses with every post resident",
                    r.misses()
                ));
            }
        }
        p
    }
}

/// Settings of the step.
#[derive(Debug, Clone)]
pub struct BoundedOptions {
    /// How to start a reader (its CPUs, flags, log).
    pub reader: ReaderCommand,
    /// redis-server, measured with the reader in the Zipf runs (fills).
    pub redis_pid: Option<u32>,
    /// Folder of the wrk scripts.
    pub wrk_dir: PathBuf,
    /// Posts seeded, `post-0` ..; the prefix must hold exactly these.
    pub ids: u64,
    /// Zipf skew.
    pub zipf_s: f64,
    /// Budgets as shares of the data's accounted bytes.
    pub shares: Vec<f64>,
    /// Rounds of the CPU-per-hit comparison.
    pub hit_rounds: u32,
    /// wrk connections.
    pub connections: u32,
    /// Measured seconds per run.
    pub secs: u32,
    /// Warm-up seconds before each run.
    pub warmup_secs: u32,
    /// CPUs wrk runs on.
    pub client_cpus: Option<String>,
    /// Longest wait for a reader to load the posts.
    pub limit: Duration,
}

/// Expected hit ratio of an LRU cache of `k` items under independent Zipf(`s`)
/// requests over `n` items (Che's approximation: the characteristic time `t`
/// solves Σ (1 − e^(−pᵢt)) = k; the hit ratio is Σ pᵢ (1 − e^(−pᵢt))).
pub fn lru_hit_ratio(n: u64, s: f64, k: u64) -> f64 {
    if k >= n {
        return 1.0;
    }
    if k == 0 {
        return 0.0;
    }
    let mut p: Vec<f64> = (1..=n).map(|i| (i as f64).powf(-s)).collect();
    let sum: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= sum);
    let filled = |t: f64| p.iter().map(|&x| -(-x * t).exp_m1()).sum::<f64>();
    let (mut lo, mut hi) = (0.0, 1.0);
    while filled(hi) < k as f64 {
        lo = hi;
        hi *= 2.0;
    }
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if filled(mid) < k as f64 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let t = (lo + hi) / 2.0;
    p.iter().map(|&x| x * -(-x * t).exp_m1()).sum()
}

/// Starts a reader (with `budget`, if any) and waits until it is ready and,
/// if `entries` is given, holds that many posts.
async fn start(o: &BoundedOptions, budget: Option<u64>, entries: Option<u64>) -> Result<Server> {
    let mut cmd = o.reader.clone();
    if let Some(b) = budget {
        cmd.env
            .push(("HEAVYREAD_MAX_MEMORY".to_owned(), b.to_string()));
    }
    let t = Instant::now();
    let mut server = cmd.spawn(free_addr())?;
    server
        .wait_ok("/ready", t, o.limit)
        .await
        .with_context(|| {
            format!(
                "reader with {} did not become ready (see its log)",
                budget.map_or("no budget".to_owned(), |b| format!(
                    "HEAVYREAD_MAX_MEMORY={b}"
                ))
            )
        })?;
    let m = scrape(server.addr).await?;
    if budget.is_none() && m.budget_bytes != 0 {
        bail!(
            "the reader started without a budget reports heavyread_reader_store_budget_bytes {}: \
             is HEAVYREAD_MAX_MEMORY set in this environment?",
            m.budget_bytes
        );
    }
    if m.budget_bytes != budget.unwrap_or(0) {
        bail!(
            "the reader reports heavyread_reader_store_budget_bytes {} after being started with {}: \
             it ignores HEAVYREAD_MAX_MEMORY (no bounded mode, issue 8?)",
            m.budget_bytes,
            budget.map_or("no budget".to_owned(), |b| format!("HEAVYREAD_MAX_MEMORY={b}"))
        );
    }
    if let Some(want) = entries {
        loop {
            let n = scrape(server.addr).await?.store_entries;
            if n == want {
                break;
            }
            if n > want {
                bail!(
                    "the reader holds {n} posts, more than the {want} seeded: the step needs a \
                     prefix holding exactly post-0 .. post-{} (run it before other steps write)",
                    want - 1
                );
            }
            server.check_alive()?;
            if t.elapsed() > o.limit {
                bail!(
                    "reader holds {n} posts, expected {want}, after {:?}",
                    o.limit
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(server)
}

/// Settings of one run.
struct Run<'a> {
    label: String,
    load: Load,
    round: u32,
    budget_bytes: u64,
    budget_share: f64,
    server: &'a mut Server,
}

/// Warms up, scrapes, runs wrk with the CPU meter, scrapes again.
async fn measure(o: &BoundedOptions, run: Run<'_>) -> Result<BoundedRun> {
    let reader_pid = run.server.pid();
    let mut pids = vec![reader_pid];
    if run.load == Load::Zipf {
        pids.extend(o.redis_pid);
    }
    let what = if run.budget_bytes > 0 {
        format!("budget {} bytes", run.budget_bytes)
    } else {
        "no budget".to_owned()
    };
    let wo = WrkOptions {
        label: format!("bounded-{}", run.label),
        server: format!("heavyread-reader, 1 executor, {what}"),
        addr: run.server.addr,
        script: o.wrk_dir.join(run.load.script()),
        connections: o.connections,
        threads: 1,
        secs: o.secs,
        warmup_secs: o.warmup_secs,
        cpus: o.client_cpus.clone(),
        pids,
        env: vec![
            ("HR_IDS".to_owned(), o.ids.to_string()),
            ("HR_ZIPF_S".to_owned(), o.zipf_s.to_string()),
        ],
        pipeline: 1,
    };
    let warm = wo.clone();
    tokio::task::spawn_blocking(move || wrk::warm_up(&warm)).await??;
    run.server.check_alive()?;
    let before = scrape(run.server.addr).await?;
    let w = tokio::task::spawn_blocking(move || wrk::measure(&wo)).await??;
    run.server.check_alive()?;
    let after = scrape(run.server.addr).await?;
    let per_req = |secs: f64| secs * 1e6 / w.requests.max(1) as f64;
    // (A fold from +0.0: an empty f64 `sum()` is −0.0.)
    let cpu_of = |reader: bool| {
        w.server_cpu
            .iter()
            .filter(|c| (c.pid == reader_pid) == reader)
            .fold(0.0, |a, c| a + c.cpu_secs)
    };
    let (reader_cpu, other_cpu) = (cpu_of(true), cpu_of(false));
    let lru_estimate = (run.load == Load::Zipf && run.budget_bytes > 0)
        .then(|| lru_hit_ratio(o.ids, o.zipf_s, after.store_entries));
    Ok(BoundedRun {
        label: run.label,
        load: run.load,
        round: run.round,
        budget_bytes: run.budget_bytes,
        budget_share: run.budget_share,
        before,
        after,
        reader_cpu_us_per_req: per_req(reader_cpu),
        redis_cpu_us_per_req: per_req(other_cpu),
        lru_estimate,
        wrk: w,
    })
}

/// Runs the step; `each` sees every run as it ends (for progress output).
pub async fn bounded(
    o: &BoundedOptions,
    mut each: impl FnMut(&BoundedRun),
) -> Result<BoundedResult> {
    if o.ids == 0 {
        bail!("--ids: 0 posts");
    }
    if !(o.zipf_s >= 0.0 && o.zipf_s.is_finite()) {
        bail!("--zipf-s: {} is not a skew >= 0", o.zipf_s);
    }
    if let Some(s) = o.shares.iter().find(|s| !(**s > 0.0 && **s < 1.0)) {
        bail!("--share: {s} is outside (0, 1)");
    }
    let mut unbounded = start(o, None, Some(o.ids))
        .await
        .context("unbounded reader")?;
    let data = scrape(unbounded.addr).await?;
    let mut out = BoundedResult {
        ids: o.ids,
        zipf_s: o.zipf_s,
        data_bytes: data.store_bytes,
        data_entries: data.store_entries,
        reader_args: o.reader.args.clone(),
        runs: Vec::new(),
    };
    let budgets: Vec<(f64, u64)> = o
        .shares
        .iter()
        .map(|&s| (s, (data.store_bytes as f64 * s) as u64))
        .collect();
    if let Some((s, b)) = budgets.iter().find(|(_, b)| *b < MIN_BUDGET) {
        bail!(
            "a budget of {:.0}% of the data's {} accounted bytes is {b} bytes, below the \
             reader's minimum of {MIN_BUDGET}: seed more posts (BOUNDED_N)",
            s * 100.0,
            data.store_bytes
        );
    }

    let r = measure(
        o,
        Run {
            label: "zipf-unbounded".into(),
            load: Load::Zipf,
            round: 0,
            budget_bytes: 0,
            budget_share: 0.0,
            server: &mut unbounded,
        },
    )
    .await?;
    each(&r);
    out.runs.push(r);

    for (share, budget) in budgets {
        let label = format!("zipf-{}%", (share * 1000.0).round() / 10.0);
        let mut server = start(o, Some(budget), None)
            .await
            .with_context(|| format!("{label} reader"))?;
        let r = measure(
            o,
            Run {
                label,
                load: Load::Zipf,
                round: 0,
                budget_bytes: budget,
                budget_share: share,
                server: &mut server,
            },
        )
        .await?;
        server.stop(Duration::from_secs(10));
        each(&r);
        out.runs.push(r);
    }

    let all = (data.store_bytes as f64 * ALL_RESIDENT) as u64;
    let mut resident = start(o, Some(all.max(MIN_BUDGET)), Some(data.store_entries))
        .await
        .context("all-resident bounded reader")?;
    for round in 1..=o.hit_rounds.max(1) {
        // ABBA: the side that runs first alternates, so a steady drift of
        // the machine does not always favour the same side.
        let order = if round % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        };
        for bounded in order {
            let (label, server, budget) = if bounded {
                ("hits-bounded", &mut resident, all.max(MIN_BUDGET))
            } else {
                ("hits-unbounded", &mut unbounded, 0)
            };
            let r = measure(
                o,
                Run {
                    label: label.into(),
                    load: Load::Uniform,
                    round,
                    budget_bytes: budget,
                    budget_share: if bounded { ALL_RESIDENT } else { 0.0 },
                    server,
                },
            )
            .await?;
            each(&r);
            out.runs.push(r);
        }
    }
    resident.stop(Duration::from_secs(10));
    unbounded.stop(Duration::from_secs(10));
    Ok(out)
}

/// The median of `v` (the mean of the middle two for an even count);
/// `None` when empty.
pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_and_missing_ones_named() {
        let page = "heavyread_reader_cache_hits_total 90\nheavyread_reader_cache_misses_total 10\n\
                    heavyread_reader_fills_total 9\nheavyread_reader_fill_errors_total 0\n\
                    heavyread_reader_evictions_total 5\nheavyread_reader_store_budget_bytes 2097152\n\
                    heavyread_reader_store_bytes 2000000\nheavyread_reader_store_entries 4000\n";
        let m = CacheMetrics::parse(page).unwrap();
        assert_eq!((m.hits, m.misses, m.evictions), (90, 10, 5));
        assert_eq!((m.budget_bytes, m.store_entries), (2_097_152, 4000));
        let old = "heavyread_reader_store_bytes 2000000\nheavyread_reader_store_entries 4000\n";
        let missing = CacheMetrics::parse(old).unwrap_err();
        assert_eq!(missing.len(), 6);
        assert_eq!(missing[0], "heavyread_reader_cache_hits_total");
    }

    #[test]
    fn lru_estimate_is_bounded_and_grows_with_the_cache() {
        assert_eq!(lru_hit_ratio(1000, 0.99, 1000), 1.0);
        assert_eq!(lru_hit_ratio(1000, 0.99, 0), 0.0);
        let small = lru_hit_ratio(10_000, 0.99, 1_000);
        let big = lru_hit_ratio(10_000, 0.99, 5_000);
        assert!(0.5 < small && small < big && big < 1.0, "{small} {big}");
        // Uniform: a cache of k of n items hits k/n of the time.
        let u = lru_hit_ratio(1000, 0.0, 250);
        assert!((u - 0.25).abs() < 1e-6, "{u}");
    }

    fn run(load: Load, budget: u64, before: CacheMetrics, after: CacheMetrics) -> BoundedRun {
        BoundedRun {
            label: "x".into(),
            load,
            round: 0,
            budget_bytes: budget,
            budget_share: 0.1,
            before,
            after,
            reader_cpu_us_per_req: 2.0,
            redis_cpu_us_per_req: 0.0,
            lru_estimate: (budget > 0 && load == Load::Zipf).then_some(0.8),
            wrk: WrkResult {
                req_per_sec: 1000.0,
                ..WrkResult::default()
            },
        }
    }

    #[test]
    fn deltas_ratio_and_targets() {
        let before = CacheMetrics {
            hits: 100,
            misses: 50,
            store_bytes: 1 << 20,
            ..CacheMetrics::default()
        };
        let after = CacheMetrics {
            hits: 880,
            misses: 270,
            store_bytes: (1 << 20) + 1000,
            ..CacheMetrics::default()
        };
        let r = run(Load::Zipf, 1 << 20, before, after);
        assert_eq!((r.hits(), r.misses()), (780, 220));
        assert_eq!(r.hit_ratio(), Some(0.78));
        assert!(r.target().1, "0.78 is within 5 points of 0.8");
        assert!(r.within_budget());
        let over = CacheMetrics {
            store_bytes: (1 << 20) + RESIDENT_SLACK + 1,
            ..after
        };
        assert!(!run(Load::Zipf, 1 << 20, before, over).within_budget());
        let unbounded = run(
            Load::Zipf,
            0,
            CacheMetrics::default(),
            CacheMetrics::default(),
        );
        assert_eq!(unbounded.hit_ratio(), None);
        assert!(unbounded.target().1);
    }

    /// Uniform runs of the CPU-per-hit comparison, `(round, budget, cpu)`.
    fn hit_result(runs: &[(u32, u64, f64)]) -> BoundedResult {
        let hit = CacheMetrics {
            hits: 10,
            ..CacheMetrics::default()
        };
        let runs = runs
            .iter()
            .map(|&(round, budget, cpu)| {
                let mut r = run(Load::Uniform, budget, CacheMetrics::default(), hit);
                r.round = round;
                r.reader_cpu_us_per_req = cpu;
                r
            })
            .collect();
        BoundedResult {
            runs,
            ..BoundedResult::default()
        }
    }

    #[test]
    fn cpu_per_hit_is_the_median_of_each_rounds_own_ratio() {
        const B: u64 = 1 << 21;
        // The machine slows down between the two runs of round 1 and stays
        // slow; within a round the bounded side costs 2% more. Each side's
        // best run would set round 1's unbounded 2.0 against a bounded run
        // made after the slowdown (2.5 / 2.0 = 1.25); the rounds' own ratios
        // say 1.02 in every round but the first.
        let res = hit_result(&[
            (1, 0, 2.0),
            (1, B, 2.5),
            (2, B, 2.55),
            (2, 0, 2.5),
            (3, 0, 2.5),
            (3, B, 2.55),
            (4, B, 2.55),
            (4, 0, 2.5),
        ]);
        let best = |bounded: bool| {
            res.hit_rounds()
                .filter(|r| r.bounded() == bounded)
                .map(|r| r.reader_cpu_us_per_req)
                .fold(f64::INFINITY, f64::min)
        };
        assert!((best(true) / best(false) - 1.25).abs() < 1e-9);
        assert_eq!(res.hit_pairs().len(), 4);
        let ratio = res.hit_cpu_ratio().unwrap();
        assert!((ratio - 1.02).abs() < 1e-9, "{ratio}");
        let (u, b) = res.hit_cpu().unwrap();
        assert!((u - 2.5).abs() < 1e-9 && (b - 2.55).abs() < 1e-9, "{u} {b}");
        // Missing the bounded Zipf runs is a problem; the hit rounds are fine.
        assert_eq!(res.problems(), vec!["bounded: no bounded Zipf run"]);

        // An odd count takes the middle ratio: one disturbed round (3) moves
        // nothing.
        let res = hit_result(&[
            (1, 0, 2.0),
            (1, B, 2.1),
            (2, B, 2.2),
            (2, 0, 2.0),
            (3, 0, 2.0),
            (3, B, 4.0),
        ]);
        assert!((res.hit_cpu_ratio().unwrap() - 1.1).abs() < 1e-9);
    }

    #[test]
    fn a_round_with_one_side_missing_is_not_paired() {
        const B: u64 = 1 << 21;
        let res = hit_result(&[(1, 0, 2.0), (1, B, 2.2), (2, 0, 1.0)]);
        assert_eq!(res.hit_pairs(), vec![(2.0, 2.2)]);
        assert!((res.hit_cpu_ratio().unwrap() - 1.1).abs() < 1e-9);
        // A side that measured no CPU pairs with nothing.
        let res = hit_result(&[(1, 0, 0.0), (1, B, 2.2)]);
        assert!(res.hit_pairs().is_empty());
        assert_eq!(res.hit_cpu(), None);
        assert_eq!(res.hit_cpu_ratio(), None);
        assert!(res
            .problems()
            .contains(&"bounded: no CPU per hit (bounded and unbounded)".to_owned()));
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
