//! Latency summaries (percentiles and a percentile curve for the plots) and
//! the number formatting the tools and the report share.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Percentiles at which curves are sampled, dense towards the tail so the
/// plots show it. The wrk scripts print the same points (`wrk/common.lua`).
pub const CURVE: &[f64] = &[
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 96.0, 97.0,
    98.0, 99.0, 99.25, 99.5, 99.75, 99.9, 99.95, 99.99, 99.999, 100.0,
];

/// One point of a percentile curve.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Point {
    /// Percentile, 0..=100.
    pub pct: f64,
    /// Latency at that percentile, in microseconds.
    pub us: f64,
}

/// A latency distribution: the figures the tables quote and the curve the
/// plots draw. All latencies in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
    /// The distribution at [`CURVE`]'s percentiles.
    pub curve: Vec<Point>,
}

/// A histogram of nanoseconds, from 1 ns to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("static bounds are valid")
}

impl Summary {
    /// The summary of a histogram of nanoseconds.
    pub fn from_nanos(h: &Histogram<u64>) -> Self {
        let at = |pct: f64| h.value_at_quantile(pct / 100.0) as f64 / 1000.0;
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
            p999: at(99.9),
            max: h.max() as f64 / 1000.0,
            curve: CURVE
                .iter()
                .map(|&pct| Point {
                    pct,
                    us: if pct >= 100.0 {
                        h.max() as f64 / 1000.0
                    } else {
                        at(pct)
                    },
                })
                .collect(),
        }
    }

    /// The summary of a curve (from wrk): figures are read off its points,
    /// each the nearest point at or above the percentile asked for.
    pub fn from_curve(count: u64, mut curve: Vec<Point>) -> Self {
        curve.sort_by(|a, b| a.pct.total_cmp(&b.pct));
        let at = |pct: f64| {
            curve
                .iter()
                .find(|p| p.pct >= pct - 1e-9)
                .or(curve.last())
                .map_or(0.0, |p| p.us)
        };
        Summary {
            count,
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
            p999: at(99.9),
            max: at(100.0),
            curve: curve.clone(),
        }
    }

    /// True when the summary holds samples and a non-zero median.
    pub fn has_numbers(&self) -> bool {
        self.count > 0 && self.p50 > 0.0 && self.max >= self.p50
    }
}

/// A latency in microseconds, with a unit that keeps 3 significant digits:
/// `85.3 µs`, `412 µs`, `1.25 ms`, `2.50 s`.
pub fn fmt_us(us: f64) -> String {
    if !us.is_finite() {
        return "–".to_owned();
    }
    if us < 10.0 {
        format!("{us:.2} µs")
    } else if us < 100.0 {
        format!("{us:.1} µs")
    } else if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        let ms = us / 1_000.0;
        if ms < 10.0 {
            format!("{ms:.2} ms")
        } else if ms < 100.0 {
            format!("{ms:.1} ms")
        } else {
            format!("{ms:.0} ms")
        }
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// A count with thousands separators: `1,234,567`.
pub fn fmt_count(n: f64) -> String {
    if !n.is_finite() {
        return "–".to_owned();
    }
    let digits = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < -0.5 {
        out.insert(0, '-');
    }
    out
}

/// Bytes with a binary unit: `512 B`, `1.5 KiB`, `372.1 MiB`, `1.20 GiB`.
pub fn fmt_bytes(b: f64) -> String {
    const K: f64 = 1024.0;
    if b < K {
        format!("{b:.0} B")
    } else if b < K * K {
        format!("{:.1} KiB", b / K)
    } else if b < K * K * K {
        format!("{:.1} MiB", b / (K * K))
    } else {
        format!("{:.2} GiB", b / (K * K * K))
    }
}

/// A ratio such as `3.4×` (`–` when it cannot be computed).
pub fn fmt_ratio(r: f64) -> String {
    if !r.is_finite() || r <= 0.0 {
        "–".to_owned()
    } else if r < 10.0 {
        format!("{r:.2}×")
    } else {
        format!("{r:.1}×")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_keep_three_significant_digits() {
        assert_eq!(fmt_us(3.256), "3.26 µs");
        assert_eq!(fmt_us(85.34), "85.3 µs");
        assert_eq!(fmt_us(412.4), "412 µs");
        assert_eq!(fmt_us(1_254.0), "1.25 ms");
        assert_eq!(fmt_us(25_400.0), "25.4 ms");
        assert_eq!(fmt_us(254_000.0), "254 ms");
        assert_eq!(fmt_us(2_500_000.0), "2.50 s");
        assert_eq!(fmt_us(f64::NAN), "–");
    }

    #[test]
    fn counts_bytes_and_ratios() {
        assert_eq!(fmt_count(0.0), "0");
        assert_eq!(fmt_count(999.0), "999");
        assert_eq!(fmt_count(1_234_567.4), "1,234,567");
        assert_eq!(fmt_count(-1_000.0), "-1,000");
        assert_eq!(fmt_bytes(512.0), "512 B");
        assert_eq!(fmt_bytes(1536.0), "1.5 KiB");
        assert_eq!(fmt_bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
        assert_eq!(fmt_bytes(1.2 * 1024.0 * 1024.0 * 1024.0), "1.20 GiB");
        assert_eq!(fmt_ratio(3.456), "3.46×");
        assert_eq!(fmt_ratio(12.34), "12.3×");
        assert_eq!(fmt_ratio(0.0), "–");
        assert_eq!(fmt_ratio(f64::INFINITY), "–");
    }

    #[test]
    fn histogram_summary_reads_percentiles_in_microseconds() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let s = Summary::from_nanos(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50 - 500.0).abs() < 1.0, "{}", s.p50);
        assert!((s.p99 - 990.0).abs() < 1.0, "{}", s.p99);
        assert!((s.max - 1000.0).abs() < 1.0, "{}", s.max);
        assert_eq!(s.curve.len(), CURVE.len());
        assert!(s.curve.windows(2).all(|w| w[0].us <= w[1].us));
        assert!(s.has_numbers());
        assert!(!Summary::from_nanos(&histogram()).has_numbers());
    }

    #[test]
    fn curve_summary_takes_the_nearest_point_at_or_above() {
        let pts = [(100.0, 900.0), (50.0, 100.0), (99.0, 300.0), (99.9, 500.0)]
            .map(|(pct, us)| Point { pct, us })
            .to_vec();
        let s = Summary::from_curve(10, pts);
        assert_eq!(
            (s.p50, s.p90, s.p99, s.p999, s.max),
            (100.0, 300.0, 300.0, 500.0, 900.0)
        );
        assert_eq!(s.curve[0].pct, 50.0);
    }
}
