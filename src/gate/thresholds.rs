//! The gate's limits: a `[gate]` table in `suite.toml` overrides the defaults below.
//!
//! ```toml
//! [gate]
//! k = 10                   # neighbours per text for Jaccard@k (capped at n − 1)
//! min_jaccard_at_k = 0.8   # mean over texts
//! min_spearman = 0.95      # pairwise similarities, upper triangle
//! retrieval_k = 10         # recall@k and nDCG@k
//! max_ndcg_drop = 0.05     # the drop's bootstrap upper bound (95 %) must stay at or below this
//! max_recall_drop = 0.05
//! max_mrr_drop = 0.05      # MRR@k (upgrade mode: the non-inferiority margins of nDCG, recall and MRR)
//! slice_field = "lang"     # the queries.jsonl field that puts a query in a slice
//! min_slice_queries = 10   # slices with fewer judged queries are reported, not gated
//! min_drift_cosine = 0.99  # optional; only where the spaces are comparable
//! max_drift_rel_l2 = 0.1   # optional
//! spearman_pairs = 2000000 # exact over all pairs up to this many (2,000 texts), a seeded sample of it above
//! neighbour_texts = 10000  # optional: Jaccard@k on a seeded sample of this many texts (default: every text)
//! ```
//!
//! The defaults were calibrated on all-MiniLM-L6-v2 (see the README, "Gate a model upgrade"): the same
//! weights and every weight rounded to f16 pass with a wide margin; weights with Gaussian noise of half
//! their own standard deviation fail every agreement limit.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The gate's limits for one suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Neighbours per text for Jaccard@k (capped at the number of texts − 1).
    pub k: usize,
    /// Lowest mean Jaccard@k over the texts.
    pub min_jaccard_at_k: f64,
    /// Lowest Spearman correlation of the two pairwise-similarity matrices (upper triangles).
    pub min_spearman: f64,
    /// The rank cut-off of recall@k and nDCG@k.
    pub retrieval_k: usize,
    /// Largest nDCG@k drop allowed, judged by the upper bound of the bootstrap interval of the drop: the
    /// gate passes only when it is confident the drop is no larger.
    pub max_ndcg_drop: f64,
    /// Largest recall@k drop allowed, judged the same way.
    pub max_recall_drop: f64,
    /// Largest MRR@k drop allowed (judged in upgrade mode, reported in parity mode).
    pub max_mrr_drop: f64,
    /// The field of a query's line in `queries.jsonl` that names its slice (`lang`: each language).
    pub slice_field: String,
    /// A slice with fewer judged queries is reported but not gated: a bootstrap over a handful of queries
    /// does not give an interval worth trusting.
    pub min_slice_queries: usize,
    /// Lowest per-text cosine between candidate and baseline, when set (only where the spaces compare:
    /// an upgrade to another model moves every vector and is judged by agreement and quality alone).
    pub min_drift_cosine: Option<f64>,
    /// Largest per-text relative L2 between candidate and baseline, when set.
    pub max_drift_rel_l2: Option<f64>,
    /// Bootstrap resamples of the queries.
    pub bootstrap_resamples: usize,
    /// Coverage of the bootstrap interval.
    pub confidence: f64,
    /// The bootstrap's seed: the same inputs give the same interval.
    pub seed: u64,
    /// Spearman is computed over every pair of texts when there are at most this many pairs, else on a
    /// sample of this many pairs (seeded by `seed`) with its confidence interval.
    pub spearman_pairs: usize,
    /// When set and the suite has more texts, Jaccard@k is computed for a seeded sample of this many texts
    /// (each against all texts) and its mean gets an interval: neighbours of every text cost texts².
    pub neighbour_texts: Option<usize>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            k: 10,
            min_jaccard_at_k: 0.8,
            min_spearman: 0.95,
            retrieval_k: 10,
            max_ndcg_drop: 0.05,
            max_recall_drop: 0.05,
            max_mrr_drop: 0.05,
            slice_field: "lang".into(),
            min_slice_queries: 10,
            min_drift_cosine: None,
            max_drift_rel_l2: None,
            bootstrap_resamples: 2000,
            confidence: 0.95,
            seed: 0x00E6_BC8E,
            spearman_pairs: 2_000_000,
            neighbour_texts: None,
        }
    }
}

impl Thresholds {
    /// The `[gate]` table of `suite.toml` (at `path`, for messages) over the defaults.
    pub fn from_toml(table: Option<&toml::Value>, path: &Path) -> Result<Self> {
        let t: Thresholds = match table {
            None => Thresholds::default(),
            Some(v) => v.clone().try_into().map_err(|e| Error::input(path, format!("[gate]: {e}")))?,
        };
        let bad = |what: String| Err(Error::input(path, format!("[gate]: {what}")));
        if t.k == 0 || t.retrieval_k == 0 {
            return bad("k and retrieval_k must be at least 1".into());
        }
        if t.neighbour_texts.is_some_and(|m| m < 2) {
            return bad("neighbour_texts must be at least 2".into());
        }
        if t.min_slice_queries < 2 {
            return bad("min_slice_queries must be at least 2".into());
        }
        if t.spearman_pairs < 10 {
            return bad("spearman_pairs must be at least 10".into());
        }
        if t.bootstrap_resamples == 0 || !(t.confidence > 0.0 && t.confidence < 1.0) {
            return bad("bootstrap_resamples must be at least 1 and confidence within (0, 1)".into());
        }
        let finite = [t.min_jaccard_at_k, t.min_spearman, t.max_ndcg_drop, t.max_recall_drop, t.max_mrr_drop]
            .into_iter()
            .chain(t.min_drift_cosine)
            .chain(t.max_drift_rel_l2)
            .all(f64::is_finite);
        if !finite {
            return bad("limits must be finite numbers".into());
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_overrides_defaults_and_rejects_unknown_keys() {
        let v: toml::Value = toml::from_str("min_spearman = 0.5\nk = 3").unwrap();
        let t = Thresholds::from_toml(Some(&v), Path::new("suite.toml")).unwrap();
        assert_eq!((t.k, t.min_spearman, t.min_jaccard_at_k), (3, 0.5, Thresholds::default().min_jaccard_at_k));
        let v: toml::Value = toml::from_str("min_spearmann = 0.5").unwrap();
        let e = Thresholds::from_toml(Some(&v), Path::new("suite.toml")).unwrap_err().to_string();
        assert!(e.contains("min_spearmann"), "{e}");
        let v: toml::Value = toml::from_str("k = 0").unwrap();
        assert!(Thresholds::from_toml(Some(&v), Path::new("suite.toml")).is_err());
    }
}
