//! Retrieval figures of a set of queries (all of them, or one slice: the queries that share a value of
//! `[gate] slice_field`, a language say): each metric's mean on both sides and the paired bootstrap
//! interval of the difference. A model that improves English and breaks Japanese shows in the Japanese
//! slice, where the mean over every query would hide it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::metrics::{self, Interval};
use super::{QueryGate, Thresholds};

/// One metric on a set of queries.
#[derive(Debug, Clone, Serialize)]
pub struct MetricDiff {
    /// `nDCG@10`, `recall@10`, `MRR@10`.
    pub metric: String,
    /// The baseline's mean.
    pub baseline: f64,
    /// The candidate's mean.
    pub candidate: f64,
    /// Candidate − baseline, with its bootstrap interval.
    pub diff: Interval,
    /// The non-inferiority margin this metric is held to (`[gate] max_*_drop`).
    pub margin: f64,
}

/// One slice's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SliceGate {
    /// The slice's value (`de`), or `(none)` for queries without the field.
    pub slice: String,
    /// Its judged queries.
    pub queries: usize,
    /// Whether it has enough queries to be gated (`[gate] min_slice_queries`).
    pub gated: bool,
    /// The least number of queries a slice is gated on.
    pub min_queries: usize,
    /// nDCG@k, recall@k and MRR@k.
    pub metrics: Vec<MetricDiff>,
}

/// Per query: (nDCG, recall, MRR) of the baseline and of the candidate.
pub type PerQuery = [(f64, f64); 3];

/// A query's three metrics on both sides.
pub fn per_query(q: &QueryGate) -> PerQuery {
    [(q.ndcg_baseline, q.ndcg_candidate), (q.recall_baseline, q.recall_candidate), (q.mrr_baseline, q.mrr_candidate)]
}

/// nDCG@k, recall@k and MRR@k of `rows`, each with its interval (seeds `seed`, `seed + 1`, `seed + 2`).
pub fn figures(rows: &[PerQuery], k: usize, t: &Thresholds, seed: u64) -> Vec<MetricDiff> {
    let names = [("nDCG", t.max_ndcg_drop), ("recall", t.max_recall_drop), ("MRR", t.max_mrr_drop)];
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    names
        .iter()
        .enumerate()
        .map(|(m, (name, margin))| {
            let b: Vec<f64> = rows.iter().map(|r| r[m].0).collect();
            let c: Vec<f64> = rows.iter().map(|r| r[m].1).collect();
            MetricDiff {
                metric: format!("{name}@{k}"),
                baseline: mean(&b),
                candidate: mean(&c),
                diff: metrics::paired_bootstrap(&b, &c, t.bootstrap_resamples, t.confidence, seed.wrapping_add(m as u64)),
                margin: *margin,
            }
        })
        .collect()
}

/// The slices of `queries` by their slice values (none when no query has one), in name order.
pub fn slices(queries: &[QueryGate], k: usize, t: &Thresholds) -> Vec<SliceGate> {
    if queries.iter().all(|q| q.slice.is_none()) {
        return Vec::new();
    }
    let mut by: BTreeMap<&str, Vec<PerQuery>> = BTreeMap::new();
    for q in queries {
        by.entry(q.slice.as_deref().unwrap_or("(none)")).or_default().push(per_query(q));
    }
    by.into_iter()
        .enumerate()
        .map(|(i, (name, rows))| SliceGate {
            slice: name.to_string(),
            queries: rows.len(),
            gated: rows.len() >= t.min_slice_queries,
            min_queries: t.min_slice_queries,
            // Each slice its own seeds, away from the overall figures' (seed .. seed + 2).
            metrics: figures(&rows, k, t, t.seed.wrapping_add(16 * (i as u64 + 1))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(slice: Option<&str>, base: f64, cand: f64) -> QueryGate {
        QueryGate {
            id: "q".into(),
            slice: slice.map(str::to_string),
            ndcg_baseline: base,
            ndcg_candidate: cand,
            recall_baseline: base,
            recall_candidate: cand,
            mrr_baseline: base,
            mrr_candidate: cand,
        }
    }

    #[test]
    fn queries_group_by_slice_and_small_slices_are_not_gated() {
        let mut qs: Vec<QueryGate> = (0..12).map(|i| q(Some("en"), 0.5, 0.5 + i as f64 / 100.0)).collect();
        qs.extend((0..3).map(|_| q(Some("ja"), 1.0, 0.0)));
        qs.push(q(None, 1.0, 1.0));
        let s = slices(&qs, 10, &Thresholds::default());
        let names: Vec<(&str, usize, bool)> = s.iter().map(|x| (x.slice.as_str(), x.queries, x.gated)).collect();
        assert_eq!(names, [("(none)", 1, false), ("en", 12, true), ("ja", 3, false)]);
        assert_eq!(s[2].metrics[0].diff.mean, -1.0, "Japanese lost everything");
        assert!(s[1].metrics[0].diff.low >= 0.0, "English only improved");
        assert!(slices(&[q(None, 1.0, 1.0)], 10, &Thresholds::default()).is_empty());
    }
}
