//! The upgrade question: is another model at least as good on the judgments (non-inferiority), and what
//! does switching cost (re-index impact)?
//!
//! Non-inferiority, per metric and per set of queries (all, and each slice large enough): with the paired
//! bootstrap interval [lo, hi] of the drop (baseline − candidate) and the margin M,
//! - **pass** when hi ≤ M: the drop is within the margin (an improvement has hi < 0);
//! - **inconclusive** when hi > M and lo ≤ 0: the interval holds both no drop and a drop of M, so these
//!   queries cannot tell them apart. The interval's width w shrinks as 1/√n, so about n·(w / M)² queries
//!   give an interval narrower than M, which cannot hold both;
//! - **fail** otherwise (hi > M and lo > 0): the candidate is worse, and the drop may exceed the margin.
//!
//! A slice is judged by the same interval but gates only a clear drop: it fails when its interval lies above
//! 0 and reaches past M, passes when hi ≤ M, and is otherwise **not resolved** — reported with the queries
//! that would decide it, not gated. Slices are there to catch a regression the mean over all queries hides (a
//! broken language); demanding that each small slice also prove non-inferiority would make every upgrade on a
//! multilingual set inconclusive (13 queries give intervals ~0.15 wide against a margin of 0.05). The power
//! rule holds for the verdict: all queries' interval must resolve the margin.

use serde::Serialize;

use super::metrics::{self, Interval};
use super::slices::{figures, MetricDiff, PerQuery};
use super::{Check, RetrievalGate, RetrievalSet, Scores, Side, Thresholds};
use crate::pipeline::Vector;

/// Queries that would bring an interval of width `width` from `n` queries under `margin`: n·(w / M)²,
/// rounded up (at least n + 1: more than there are).
pub fn queries_needed(n: usize, width: f64, margin: f64) -> usize {
    let k = (n as f64 * (width / margin).powi(2)).ceil();
    if k.is_finite() {
        (k as usize).max(n + 1)
    } else {
        usize::MAX
    }
}

/// The non-inferiority check of one metric on `n` queries (`scope`: `all queries` or `lang=de`).
pub fn non_inferior(scope: &str, m: &MetricDiff, n: usize, confidence: f64) -> Check {
    judged(scope, m, n, confidence, true)
}

/// [`non_inferior`] for a slice: an undecided interval is not resolved, not inconclusive (see the module
/// documentation).
pub fn slice_check(scope: &str, m: &MetricDiff, n: usize, confidence: f64) -> Check {
    judged(scope, m, n, confidence, false)
}

fn judged(scope: &str, m: &MetricDiff, n: usize, confidence: f64, gating: bool) -> Check {
    let (lo, hi) = (-m.diff.high + 0.0, -m.diff.low + 0.0);
    let name = format!("{scope}: {} drop, upper bound of the {:.0}% interval", m.metric, confidence * 100.0);
    let passed = hi <= m.margin;
    let inconclusive = !passed && lo <= 0.0;
    let note = inconclusive.then(|| {
        let w = hi - lo;
        format!(
            "{}: {n} queries cannot resolve a drop of {} in {} (the drop's interval [{lo:.4}, {hi:.4}] holds both no drop and a drop of {}); about {} queries would (width {w:.4} shrinks as 1/√n){}",
            if gating { "inconclusive" } else { "not resolved" },
            m.margin,
            m.metric,
            m.margin,
            queries_needed(n, w, m.margin),
            if gating { "" } else { "; reported, not gated: a slice fails only on a clear drop" }
        )
    });
    // An undecided slice does not gate; a clear drop in a slice does.
    let gating = gating || !inconclusive;
    Check { name, value: hi, op: "<=", limit: m.margin, passed, inconclusive, gating, note }
}

/// The upgrade's checks on a retrieval gate: every metric on all queries, then on every gated slice.
pub fn checks(r: &RetrievalGate, confidence: f64) -> Vec<Check> {
    let mut out: Vec<Check> = r.overall.iter().map(|m| non_inferior("all queries", m, r.queries.len(), confidence)).collect();
    for s in r.slices.iter().filter(|s| s.gated) {
        out.extend(s.metrics.iter().map(|m| slice_check(&format!("{}={}", r.slice_field, s.slice), m, s.queries, confidence)));
    }
    out
}

/// Whether old and new vectors can share one index.
#[derive(Debug, Clone, Serialize)]
pub struct SharedIndex {
    /// `Some(true)` when new queries against old passages keep every metric within its margin;
    /// `None` when it was not measured.
    pub possible: Option<bool>,
    /// Why, in a sentence.
    pub why: String,
    /// New queries (the candidate's vectors) against old passages (the baseline's), against the
    /// baseline on both sides.
    pub mixed: Vec<MetricDiff>,
}

/// What switching to the candidate changes for an existing index.
#[derive(Debug, Clone, Serialize)]
pub struct ReindexImpact {
    /// Passages in the retrieval set.
    pub passages: usize,
    /// Neighbours per passage, among the passages.
    pub k: usize,
    /// Passages whose top-k neighbours among the passages change.
    pub passages_changed: usize,
    /// Mean Jaccard@k of the passages' neighbours.
    pub passage_jaccard_mean: f64,
    /// Whether old and new vectors can share an index.
    pub shared_index: SharedIndex,
    /// Wall seconds the candidate took per 1,000 texts, when embcheck ran it (a model, a server, a
    /// command; not a file).
    pub seconds_per_1000_texts: Option<f64>,
}

/// The re-index impact of replacing `base` by `cand` (`not_comparable`: why the spaces do not compare).
pub(super) fn reindex(r: &RetrievalSet, g: &RetrievalGate, base: &[Vector], cand: &[Vector], scores: &Scores, not_comparable: Option<&str>, t: &Thresholds) -> ReindexImpact {
    let k = t.k.min(r.corpus.len().saturating_sub(1)).max(1);
    let (tb, tc) = (scores.top_k(Side::Base, &r.corpus, &r.corpus, k, true), scores.top_k(Side::Candidate, &r.corpus, &r.corpus, k, true));
    let jaccards: Vec<f64> = tb.iter().zip(&tc).map(|(b, c)| metrics::jaccard(b, c)).collect();
    let changed = jaccards.iter().filter(|j| **j < 1.0 || j.is_nan()).count();
    let shared_index = match not_comparable {
        Some(why) => SharedIndex { possible: Some(false), why: format!("no: the spaces do not compare ({why}); every passage must be re-embedded"), mixed: Vec::new() },
        None if !base.iter().all(|v| matches!(v, Vector::Dense(_))) => {
            SharedIndex { possible: None, why: "not measured: only dense vectors are mixed in one index".into(), mixed: Vec::new() }
        }
        None => mixed_index(r, g, base, cand, t),
    };
    ReindexImpact {
        passages: r.corpus.len(),
        k,
        passages_changed: changed,
        passage_jaccard_mean: jaccards.iter().sum::<f64>() / jaccards.len().max(1) as f64,
        shared_index,
        seconds_per_1000_texts: None,
    }
}

/// New queries against old passages, measured on the judgments.
fn mixed_index(r: &RetrievalSet, g: &RetrievalGate, base: &[Vector], cand: &[Vector], t: &Thresholds) -> SharedIndex {
    let mut mixed = base.to_vec();
    for (q, _) in &r.queries {
        mixed[*q] = cand[*q].clone();
    }
    let scores = Scores::new(&mixed, &mixed);
    let rows: Vec<usize> = r.queries.iter().map(|(q, _)| *q).collect();
    let top = scores.top_k(Side::Base, &rows, &r.corpus, g.k, false);
    let per: Vec<PerQuery> = r
        .queries
        .iter()
        .zip(&top)
        .zip(&g.queries)
        .map(|(((_, judged), ranking), q)| {
            [
                (q.ndcg_baseline, metrics::ndcg_at_k(ranking, judged, g.k)),
                (q.recall_baseline, metrics::recall_at_k(ranking, judged, g.k)),
                (q.mrr_baseline, metrics::mrr_at_k(ranking, judged, g.k)),
            ]
        })
        .collect();
    let m = figures(&per, g.k, t, t.seed.wrapping_add(7));
    let within = m.iter().all(|x| -x.diff.low <= x.margin);
    let ndcg = &m[0];
    let why = format!(
        "{}: new queries against old passages give {} {:.4} (the old index {:.4}){}",
        if within { "yes" } else { "no" },
        ndcg.metric,
        ndcg.candidate,
        ndcg.baseline,
        if within { ", every metric within its margin" } else { ": re-embed the passages with the candidate" }
    );
    SharedIndex { possible: Some(within), why, mixed: m }
}

/// Interval helper for tests and reports: the drop (baseline − candidate) of a difference interval.
pub fn drop_of(d: &Interval) -> (f64, f64, f64) {
    (-d.mean + 0.0, -d.high + 0.0, -d.low + 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::Verdict;

    fn m(low: f64, high: f64) -> MetricDiff {
        MetricDiff { metric: "nDCG@10".into(), baseline: 0.9, candidate: 0.9, diff: Interval { mean: (low + high) / 2.0, low, high }, margin: 0.05 }
    }

    #[test]
    fn a_slice_fails_on_a_clear_drop_and_is_otherwise_not_resolved_never_inconclusive() {
        // Undecided: not resolved, not gating, the verdict unaffected.
        let c = slice_check("lang=ja", &m(-0.06, 0.09), 13, 0.95);
        assert_eq!(c.verdict(), Verdict::Unresolved);
        assert!(c.note.as_deref().unwrap().starts_with("not resolved: 13 queries"));
        assert_eq!(Verdict::worst([Verdict::Pass, c.verdict()]), Verdict::Pass);
        // A clear drop past the margin fails; a drop within it passes, as for all queries.
        assert_eq!(slice_check("lang=ja", &m(-0.9, -0.5), 13, 0.95).verdict(), Verdict::Fail);
        assert_eq!(slice_check("lang=ja", &m(-0.04, 0.02), 13, 0.95).verdict(), Verdict::Pass);
        // For all queries the same interval is inconclusive.
        assert_eq!(non_inferior("all queries", &m(-0.06, 0.09), 130, 0.95).verdict(), Verdict::Inconclusive);
    }

    #[test]
    fn pass_fail_and_inconclusive_follow_the_drop_interval() {
        // An improvement: drop interval [-0.05, -0.01].
        let c = non_inferior("all queries", &m(0.01, 0.05), 40, 0.95);
        assert!(c.passed && !c.inconclusive && c.value == -0.01);
        // A small drop, well measured: [0.00, 0.04] is within the margin.
        assert!(non_inferior("all queries", &m(-0.04, 0.0), 40, 0.95).passed);
        // Surely worse and possibly by more than the margin: [0.02, 0.08].
        let c = non_inferior("all queries", &m(-0.08, -0.02), 40, 0.95);
        assert!(!c.passed && !c.inconclusive && c.note.is_none());
        // Too wide to tell: [-0.05, 0.15] holds 0 and 0.05; width 0.2 on 40 queries -> 40 * 16 = 640.
        let c = non_inferior("lang=de", &m(-0.15, 0.05), 40, 0.95);
        assert!(!c.passed && c.inconclusive);
        let note = c.note.unwrap();
        assert!(note.starts_with("inconclusive: 40 queries cannot resolve a drop of 0.05") && note.contains("about 640 queries"), "{note}");
        // NaN never passes and is not called inconclusive.
        let c = non_inferior("all queries", &m(f64::NAN, f64::NAN), 40, 0.95);
        assert!(!c.passed && !c.inconclusive);
    }

    proptest::proptest! {
        /// Every interval gets exactly one verdict; an improvement always passes; an interval that holds
        /// both 0 and the margin is inconclusive and asks for more queries than it had; a sure drop beyond
        /// the margin always fails.
        #[test]
        fn verdicts_partition_the_intervals(a in -1.0f64..1.0, b in -1.0f64..1.0, margin in 0.001f64..0.5, n in 2usize..5000) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            let c = non_inferior("all queries", &MetricDiff { margin, ..m(low, high) }, n, 0.95);
            let (drop_lo, drop_hi) = (-high, -low);
            proptest::prop_assert!(!(c.passed && c.inconclusive));
            proptest::prop_assert_eq!(c.passed, drop_hi <= margin);
            if drop_hi <= 0.0 {
                proptest::prop_assert!(c.passed);
            }
            if drop_lo <= 0.0 && drop_hi > margin {
                proptest::prop_assert!(c.inconclusive);
                let note = c.note.clone().unwrap();
                let needed: usize = note.split("about ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
                proptest::prop_assert!(needed > n, "{}", note);
            }
            if drop_lo > margin {
                proptest::prop_assert!(!c.passed && !c.inconclusive);
            }
        }
    }

    #[test]
    fn queries_needed_scales_with_the_squared_width() {
        assert_eq!(queries_needed(42, 0.10, 0.05), 168);
        assert_eq!(queries_needed(42, 0.051, 0.05), 44);
        assert_eq!(queries_needed(10, 0.02, 0.05), 11, "never fewer than there are");
    }
}
