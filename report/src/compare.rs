//! Comparing two runs per (service, phase): the change of p50/p90/p99 and a
//! Mann-Whitney U test on the two samples, turned into a verdict.
//!
//! Why Mann-Whitney: restart times are skewed, multi-modal (a SIGKILL after
//! the stop timeout is a second mode) and samples are small; the U test
//! assumes no distribution and only asks whether one side tends to be larger.
//! A significant p-value alone is not a regression: the p50 must also have
//! moved by more than the threshold (relative) and the floor (absolute), so
//! a 3 ms shift on a 20 ms phase does not fail anybody's CI.

use bounce_wire::hist::{new_histogram, samples_by_key};
use bounce_wire::{Phase, TimelineRecord};
use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct CompareOptions {
    /// Significance level of the two-sided U test.
    pub alpha: f64,
    /// A p50 change smaller than this fraction of the baseline's p50 is no change.
    pub threshold: f64,
    /// ... and so is one smaller than this many seconds.
    pub min_change_seconds: f64,
    /// Fewer samples on either side: no verdict.
    pub min_samples: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            alpha: 0.01,
            threshold: 0.10,
            min_change_seconds: 0.05,
            min_samples: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Slower,
    Faster,
    NoSignificantChange,
    /// Too few samples on one side to say anything.
    InsufficientData,
    /// Measured in the run, not in the baseline.
    OnlyInRun,
    /// Measured in the baseline, not in the run.
    OnlyInBaseline,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Slower => "slower",
            Verdict::Faster => "faster",
            Verdict::NoSignificantChange => "no significant change",
            Verdict::InsufficientData => "too few samples",
            Verdict::OnlyInRun => "only in this run",
            Verdict::OnlyInBaseline => "only in the baseline",
        }
    }
}

/// Quantiles of one side, seconds (HDR histogram, 3 significant digits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SideStats {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl SideStats {
    /// `scratch` is reset and reused: one dense histogram for all pairs.
    pub fn of(samples: &[f64], scratch: &mut hdrhistogram::Histogram<u64>) -> SideStats {
        let h = scratch;
        h.reset();
        for s in samples {
            h.saturating_record(bounce_wire::hist::to_micros(*s));
        }
        let q = |q: f64| h.value_at_quantile(q) as f64 / 1e6;
        SideStats {
            n: samples.len(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub service: String,
    pub phase: Phase,
    pub baseline: SideStats,
    pub run: SideStats,
    /// Two-sided p-value of the Mann-Whitney U test (normal approximation with tie correction).
    pub p_value: Option<f64>,
    /// The p-value after Holm's correction over every pair with a verdict
    /// (what the verdict compares with alpha).
    pub p_adjusted: Option<f64>,
    pub verdict: Verdict,
}

impl Change {
    /// Relative change of a quantile, e.g. +0.25 for 25 % slower.
    pub fn relative(base: f64, run: f64) -> Option<f64> {
        (base > 0.0).then(|| (run - base) / base)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub options: CompareOptions,
    pub changes: Vec<Change>,
}

impl Comparison {
    pub fn count(&self, v: Verdict) -> usize {
        self.changes.iter().filter(|c| c.verdict == v).count()
    }
    pub fn regressed(&self) -> bool {
        self.count(Verdict::Slower) > 0
    }
}

/// One (service, phase) with its run and baseline samples.
type Sides<'a> = (&'a (String, Phase), &'a Vec<f64>, &'a Vec<f64>);

pub fn compare(
    run: &[TimelineRecord],
    baseline: &[TimelineRecord],
    options: CompareOptions,
) -> Comparison {
    let run = samples_by_key(run);
    let base = samples_by_key(baseline);
    let mut keys: Vec<&(String, Phase)> = run.keys().chain(base.keys()).collect();
    keys.sort();
    keys.dedup();
    let empty = Vec::new();
    let sides: Vec<Sides<'_>> = keys
        .into_iter()
        .map(|k| {
            (
                k,
                run.get(k).unwrap_or(&empty),
                base.get(k).unwrap_or(&empty),
            )
        })
        .collect();
    let p_values: Vec<Option<f64>> = sides
        .iter()
        .map(|(_, r, b)| (!r.is_empty() && !b.is_empty()).then(|| mann_whitney(r, b).1))
        .collect();
    // Holm over the pairs that get a verdict: many services × phases tested
    // at once must not make a chance "slower" likely.
    let tested: Vec<usize> = (0..sides.len())
        .filter(|i| {
            let (_, r, b) = sides[*i];
            r.len() >= options.min_samples && b.len() >= options.min_samples
        })
        .collect();
    let adjusted = holm(
        &tested
            .iter()
            .map(|i| p_values[*i].unwrap_or(1.0))
            .collect::<Vec<_>>(),
    );
    let mut p_adjusted: Vec<Option<f64>> = vec![None; sides.len()];
    for (i, adj) in tested.iter().zip(adjusted) {
        p_adjusted[*i] = Some(adj);
    }
    let mut scratch = new_histogram();
    let changes = sides
        .into_iter()
        .enumerate()
        .map(|(i, (key, r, b))| {
            let (rs, bs) = (
                SideStats::of(r, &mut scratch),
                SideStats::of(b, &mut scratch),
            );
            let verdict = if b.is_empty() {
                Verdict::OnlyInRun
            } else if r.is_empty() {
                Verdict::OnlyInBaseline
            } else if let Some(p) = p_adjusted[i] {
                let delta = rs.p50 - bs.p50;
                let big =
                    delta.abs() >= (options.threshold * bs.p50).max(options.min_change_seconds);
                match (p < options.alpha && big, delta > 0.0) {
                    (true, true) => Verdict::Slower,
                    (true, false) => Verdict::Faster,
                    (false, _) => Verdict::NoSignificantChange,
                }
            } else {
                Verdict::InsufficientData
            };
            Change {
                service: key.0.clone(),
                phase: key.1,
                baseline: bs,
                run: rs,
                p_value: p_values[i],
                p_adjusted: p_adjusted[i],
                verdict,
            }
        })
        .collect();
    Comparison { options, changes }
}

/// Holm-Bonferroni adjusted p-values, in the input's order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|a, b| p[*a].total_cmp(&p[*b]));
    let mut out = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (rank, i) in order.into_iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Mann-Whitney U of `a` against `b` and its two-sided p-value, from the
/// normal approximation with continuity and tie corrections (good from ~5
/// samples a side; below that the verdict is "too few samples" anyway).
pub fn mann_whitney(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|v| (*v, true))
        .chain(b.iter().map(|v| (*v, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Average ranks over ties; the tie term corrects the variance.
    let n = all.len();
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        rank_sum_a += all[i..=j].iter().filter(|x| x.1).count() as f64 * avg_rank;
        i = j + 1;
    }
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let nn = n1 + n2;
    let var = n1 * n2 / 12.0 * ((nn + 1.0) - tie_term / (nn * (nn - 1.0)));
    if var <= 0.0 {
        return (u, 1.0);
    }
    let z = ((u - mean).abs() - 0.5).max(0.0) / var.sqrt();
    (u, (2.0 * normal_sf(z)).min(1.0))
}

/// P(Z > z) for a standard normal Z (erfc after Numerical Recipes' `erfcc`,
/// relative error below 1.2e-7).
fn normal_sf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = t
        * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let erfc = if x >= 0.0 { y } else { 2.0 - y };
    erfc / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_tail_matches_tables() {
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-6);
        assert!((normal_sf(1.959_964) - 0.025).abs() < 1e-6);
        assert!((normal_sf(3.0) - 0.001_349_9).abs() < 1e-6);
        assert!((normal_sf(-1.0) - 0.841_344_7).abs() < 1e-6);
    }

    #[test]
    fn u_test_on_a_textbook_example() {
        // Two samples with no overlap: U = 0 and, for 10 vs 10, p ~ 0.00018
        // (normal approximation with continuity correction).
        let a: Vec<f64> = (1..=10).map(f64::from).collect();
        let b: Vec<f64> = (11..=20).map(f64::from).collect();
        let (u, p) = mann_whitney(&a, &b);
        assert_eq!(u, 0.0);
        assert!((p - 0.000_182_7).abs() < 2e-5, "{p}");
        // The same sample twice: nothing to see.
        let (_, p) = mann_whitney(&a, &a);
        assert!(p > 0.9, "{p}");
        // All values tied: variance zero, p = 1, no panic.
        assert_eq!(mann_whitney(&[1.0; 5], &[1.0; 5]).1, 1.0);
    }

    #[test]
    fn holm_adjusts_in_rank_order_and_stays_monotone() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.005]);
        // Ranks: 0.005×4, 0.01×3, 0.03×2, 0.04×1, each at least the one before.
        assert_eq!(adj, vec![0.03, 0.06, 0.06, 0.02]);
        assert!(holm(&[]).is_empty());
        assert_eq!(holm(&[0.9, 0.8]), vec![1.0, 1.0]);
    }

    #[test]
    fn verdicts_need_significance_and_size() {
        let rec = |service: &str, stop: f64| {
            let mut t: TimelineRecord = serde_json::from_value(serde_json::json!({
                "run_id": "r", "deployment": "d", "scenario": "s", "node": "n",
                "target": {"kind": "docker", "name": service, "id": "x"},
                "service": service, "iteration": 1, "action": "restart", "outcome": "ok",
                "error": null, "exit_code": null, "signals": [], "oom_killed": false,
                "phases": {}, "timestamps": [], "probes": []
            }))
            .unwrap();
            t.phases.insert(Phase::Stop, stop);
            t
        };
        let base: Vec<_> = (0..10).map(|i| rec("a", 1.0 + i as f64 * 0.01)).collect();
        // 1 s slower: significant and large.
        let slow: Vec<_> = (0..10).map(|i| rec("a", 2.0 + i as f64 * 0.01)).collect();
        let c = compare(&slow, &base, CompareOptions::default());
        assert_eq!(c.changes[0].verdict, Verdict::Slower);
        assert!(c.regressed());
        let c = compare(&base, &slow, CompareOptions::default());
        assert_eq!(c.changes[0].verdict, Verdict::Faster);
        assert!(!c.regressed());
        // 20 ms slower on 1 s: significant, but under 10 % and 50 ms.
        let bit: Vec<_> = (0..10).map(|i| rec("a", 1.2 + i as f64 * 0.01)).collect();
        let c = compare(&bit, &base, CompareOptions::default());
        assert_eq!(
            c.changes[0].verdict,
            Verdict::Slower,
            "200 ms on 1 s is 20 %"
        );
        let tiny: Vec<_> = (0..10).map(|i| rec("a", 1.02 + i as f64 * 0.01)).collect();
        let c = compare(&tiny, &base, CompareOptions::default());
        assert_eq!(c.changes[0].verdict, Verdict::NoSignificantChange);
        // Three samples: no verdict.
        let c = compare(&slow[..3], &base, CompareOptions::default());
        assert_eq!(c.changes[0].verdict, Verdict::InsufficientData);
        // A service only on one side.
        let other: Vec<_> = (0..10).map(|i| rec("b", 1.0 + i as f64 * 0.01)).collect();
        let c = compare(&other, &base, CompareOptions::default());
        let vs: Vec<_> = c.changes.iter().map(|c| c.verdict).collect();
        assert_eq!(vs, [Verdict::OnlyInBaseline, Verdict::OnlyInRun]);
    }
}
