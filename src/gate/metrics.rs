//! The gate's metrics, all in f64: drift per text, neighbour agreement among a suite's texts (Jaccard@k,
//! Spearman of the pairwise similarities), retrieval quality (recall@k, nDCG@k) and a paired bootstrap
//! interval for a difference of per-query figures.

use crate::compare::metrics::{compare, score};
use crate::pipeline::Vector;

/// The pairwise similarity matrix of a list of values, by the pipeline's own retrieval score (cosine for
/// dense, the lexical score for sparse, the ColBERT score for multi-vectors). The diagonal is unused.
pub fn similarity_matrix(values: &[Vector]) -> Vec<Vec<f64>> {
    values.iter().map(|a| values.iter().map(|b| score(a, b)).collect()).collect()
}

/// The indices of the `k` highest scores of `row`, the entry `skip` excluded; ties go to the lower index
/// and NaN ranks last, so the result is deterministic.
pub fn top_k(row: &[f64], k: usize, skip: Option<usize>) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).filter(|&j| Some(j) != skip).collect();
    let key = |x: f64| if x.is_nan() { f64::NEG_INFINITY } else { x };
    idx.sort_by(|&a, &b| key(row[b]).total_cmp(&key(row[a])).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// |A ∩ B| / |A ∪ B| of two index sets (1 when both are empty).
pub fn jaccard(a: &[usize], b: &[usize]) -> f64 {
    let inter = a.iter().filter(|x| b.contains(x)).count();
    let union = a.len() + b.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// One text's neighbours in both spaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbours {
    /// Jaccard@k of the two neighbour sets.
    pub jaccard: f64,
    /// Indices among the baseline's top k that the candidate's top k lacks.
    pub lost: Vec<usize>,
    /// Indices among the candidate's top k that the baseline's top k lacks.
    pub gained: Vec<usize>,
}

impl Neighbours {
    /// The overlap of one text's baseline neighbours `b` and candidate neighbours `c`.
    pub fn of(b: &[usize], c: &[usize]) -> Self {
        Neighbours {
            jaccard: jaccard(b, c),
            lost: b.iter().copied().filter(|x| !c.contains(x)).collect(),
            gained: c.iter().copied().filter(|x| !b.contains(x)).collect(),
        }
    }
}

/// Jaccard@k of every text's neighbours (the text itself excluded), from the two similarity matrices.
pub fn neighbour_overlap(base: &[Vec<f64>], cand: &[Vec<f64>], k: usize) -> Vec<Neighbours> {
    (0..base.len()).map(|i| Neighbours::of(&top_k(&base[i], k, Some(i)), &top_k(&cand[i], k, Some(i)))).collect()
}

/// Average ranks (1-based), ties sharing their mean rank. NaN ranks lowest.
fn ranks(v: &[f64]) -> Vec<f64> {
    let key = |x: f64| if x.is_nan() { f64::NEG_INFINITY } else { x };
    let mut idx: Vec<usize> = (0..v.len()).collect();
    // Unstable is enough: equal values share one mean rank whatever their order.
    idx.sort_unstable_by(|&a, &b| key(v[a]).total_cmp(&key(v[b])));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && key(v[idx[j + 1]]) == key(v[idx[i]]) {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &t in &idx[i..=j] {
            r[t] = mean;
        }
        i = j + 1;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 && sbb == 0.0 {
        // Both constant: the same (lack of) order.
        return 1.0;
    }
    sab / (saa * sbb).sqrt()
}

/// Spearman's rank correlation of two equally long lists (NaN when fewer than two values, or when one side
/// holds a NaN: a NaN is never agreement).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.len() < 2 || a.iter().chain(b).any(|x| x.is_nan()) {
        return f64::NAN;
    }
    pearson(&ranks(a), &ranks(b))
}

/// Spearman's correlation of the pairwise similarities of `n` texts on both sides, with how it was
/// computed.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RankCorrelation {
    /// The correlation (over every pair, or over the sample).
    pub value: f64,
    /// Lower bound of its confidence interval (the value itself when exact).
    pub low: f64,
    /// Upper bound (the value itself when exact).
    pub high: f64,
    /// Pairs the value was computed on.
    pub pairs: usize,
    /// Pairs there are: n(n − 1)/2.
    pub of_pairs: usize,
    /// Whether the pairs were a seeded sample (with replacement) rather than all of them.
    pub sampled: bool,
}

/// The scores of a batch of pairs (i, j), i < j, in order: symmetrized as (s(i,j) + s(j,i))/2 where the score
/// is not symmetric (ColBERT's), as [`upper_triangle`] does.
pub type PairScores<'a> = &'a (dyn Fn(&[(usize, usize)]) -> Vec<f64> + Sync);

/// Spearman of the pairwise similarities of `n` texts: over every pair i < j when there are at most
/// `limit` of them, else on `limit` pairs drawn with `seed`, with a `level` interval by Fisher's z and the
/// Bonett–Wright standard error √((1 + r²/2)/(m − 3)). `base` and `cand` score batches of pairs.
pub fn pairwise_spearman(n: usize, base: PairScores, cand: PairScores, limit: usize, level: f64, seed: u64) -> RankCorrelation {
    use rayon::prelude::*;
    let of_pairs = n * n.saturating_sub(1) / 2;
    let pairs: Vec<(usize, usize)> = if of_pairs <= limit {
        (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).collect()
    } else {
        let mut rng = SplitMix64(seed);
        (0..limit)
            .map(|_| {
                let i = rng.below(n);
                let j = rng.below(n - 1);
                let j = if j >= i { j + 1 } else { j };
                (i.min(j), i.max(j))
            })
            .collect()
    };
    let batches = |f: PairScores| -> Vec<f64> { pairs.par_chunks(4096).flat_map_iter(f).collect() };
    let (b, c) = (batches(base), batches(cand));
    let value = spearman(&b, &c);
    let sampled = of_pairs > limit;
    let (low, high) = if sampled && pairs.len() > 3 && value.is_finite() {
        let se = ((1.0 + value * value / 2.0) / (pairs.len() as f64 - 3.0)).sqrt();
        let z = value.clamp(-1.0 + 1e-15, 1.0 - 1e-15).atanh();
        let q = normal_quantile(0.5 + level / 2.0);
        ((z - q * se).tanh(), (z + q * se).tanh())
    } else if sampled {
        (f64::NAN, f64::NAN)
    } else {
        (value, value)
    };
    RankCorrelation { value, low, high, pairs: pairs.len(), of_pairs, sampled }
}

/// The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9): one function
/// is not worth a statistics crate; tested against known quantiles.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
    const B: [f64; 5] = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    let tail = |q: f64| (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0);
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The upper triangle (i < j) of a similarity matrix, symmetrized (ColBERT's score is not symmetric).
pub fn upper_triangle(m: &[Vec<f64>]) -> Vec<f64> {
    let n = m.len();
    let mut out = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for (i, row) in m.iter().enumerate() {
        for (j, &x) in row.iter().enumerate().skip(i + 1) {
            out.push((x + m[j][i]) / 2.0);
        }
    }
    out
}

/// Drift of one text between baseline and candidate, when the spaces are comparable.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Drift {
    /// Cosine of candidate and baseline.
    pub cosine: f64,
    /// ‖candidate − baseline‖ / ‖baseline‖.
    pub rel_l2: f64,
}

/// Drift of a candidate value from its baseline (embcheck's per-text metrics).
pub fn drift(cand: &Vector, base: &Vector) -> Drift {
    let m = compare(cand, base);
    Drift { cosine: m.cosine, rel_l2: m.rel_l2 }
}

/// Why two spaces cannot be compared value by value, or `None` when they can: dense widths, ColBERT
/// widths and kinds must agree.
pub fn incomparable(cand: &[Vector], base: &[Vector]) -> Option<String> {
    let widths = Vector::widths;
    let kind = Vector::kind;
    if cand.iter().zip(base).any(|(a, b)| kind(a) != kind(b)) {
        return Some("the candidate returns values of another kind than the baseline".into());
    }
    let (wc, wb) = (widths(cand), widths(base));
    if wc != wb {
        return Some(format!("the candidate's vectors have width {wc:?}, the baseline's {wb:?}"));
    }
    None
}

/// recall@k: the share of a query's relevant documents found among the top k (NaN without any).
pub fn recall_at_k(ranking: &[usize], relevant: &[(usize, f64)], k: usize) -> f64 {
    let rel: Vec<usize> = relevant.iter().filter(|(_, g)| *g > 0.0).map(|(d, _)| *d).collect();
    if rel.is_empty() {
        return f64::NAN;
    }
    ranking.iter().take(k).filter(|d| rel.contains(d)).count() as f64 / rel.len() as f64
}

/// MRR@k: 1 / the rank of the first relevant document within the top k, 0 when none is (as BEIR's
/// `mrr_at_k` computes it). NaN when the query has no relevant document.
pub fn mrr_at_k(ranking: &[usize], relevant: &[(usize, f64)], k: usize) -> f64 {
    if !relevant.iter().any(|(_, g)| *g > 0.0) {
        return f64::NAN;
    }
    let relevant_at = |d: &usize| relevant.iter().any(|(x, g)| x == d && *g > 0.0);
    ranking.iter().take(k).position(relevant_at).map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// nDCG@k with graded relevance, gain 2^g − 1 and discount log2(rank + 1) (as trec_eval and BEIR compute
/// it). NaN when the query has no relevant document.
pub fn ndcg_at_k(ranking: &[usize], relevant: &[(usize, f64)], k: usize) -> f64 {
    let gain = |g: f64| 2f64.powf(g) - 1.0;
    let grade = |d: usize| relevant.iter().find(|(x, _)| *x == d).map_or(0.0, |(_, g)| *g);
    let dcg: f64 = ranking.iter().take(k).enumerate().map(|(i, &d)| gain(grade(d)) / ((i + 2) as f64).log2()).sum();
    let mut ideal: Vec<f64> = relevant.iter().map(|(_, g)| *g).filter(|g| *g > 0.0).collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, &g)| gain(g) / ((i + 2) as f64).log2()).sum();
    if idcg == 0.0 {
        f64::NAN
    } else {
        dcg / idcg
    }
}

/// A confidence interval of a mean difference.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interval {
    /// The mean of the per-item differences.
    pub mean: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// SplitMix64: a small, well-mixed generator, so a seed gives the same intervals on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (n > 0); the modulo bias is below 2⁻⁵⁰ for the sizes used here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The paired bootstrap percentile interval of mean(cand − base) over items: the items (queries) are
/// resampled with replacement `resamples` times with a seeded generator, so the interval is reproducible.
/// `level` is the coverage (0.95). NaN items are an error of the caller; the interval is then NaN.
pub fn paired_bootstrap(base: &[f64], cand: &[f64], resamples: usize, level: f64, seed: u64) -> Interval {
    let diffs: Vec<f64> = cand.iter().zip(base).map(|(c, b)| c - b).collect();
    let n = diffs.len();
    if n == 0 || diffs.iter().any(|d| d.is_nan()) {
        return Interval { mean: f64::NAN, low: f64::NAN, high: f64::NAN };
    }
    let mean = diffs.iter().sum::<f64>() / n as f64;
    let mut rng = SplitMix64(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| (0..n).map(|_| diffs[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    Interval { mean, low: at(tail), high: at(1.0 - tail) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_skips_self_breaks_ties_by_index_and_ranks_nan_last() {
        assert_eq!(top_k(&[0.9, 0.5, 0.5, f64::NAN, 0.7], 3, Some(0)), vec![4, 1, 2]);
        assert_eq!(top_k(&[f64::NAN, 0.1], 2, None), vec![1, 0]);
    }

    #[test]
    fn mrr_is_the_reciprocal_rank_of_the_first_relevant_within_k() {
        let rel = [(7, 1.0), (9, 2.0), (3, 0.0)];
        assert_eq!(mrr_at_k(&[3, 9, 7], &rel, 10), 0.5, "grade 0 is not relevant");
        assert_eq!(mrr_at_k(&[7, 9], &rel, 10), 1.0);
        assert_eq!(mrr_at_k(&[1, 2, 9], &rel, 2), 0.0, "beyond k counts nothing");
        assert!(mrr_at_k(&[1], &[(1, 0.0)], 10).is_nan());
    }

    #[test]
    fn jaccard_of_sets() {
        assert_eq!(jaccard(&[1, 2, 3], &[2, 3, 4]), 0.5);
        assert_eq!(jaccard(&[], &[]), 1.0);
    }

    #[test]
    fn spearman_known_values() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        // Ties: ranks (1.5, 1.5, 3) vs (1, 2, 3) -> Pearson of those ranks.
        let r = spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]);
        approx::assert_relative_eq!(r, 0.8660254037844387, epsilon = 1e-12);
        assert!(spearman(&[1.0, f64::NAN], &[1.0, 2.0]).is_nan());
    }

    #[test]
    fn ndcg_and_recall_known_values() {
        // Relevant: doc 2 (grade 1) ranked second of three.
        let rel = [(2usize, 1.0)];
        approx::assert_relative_eq!(ndcg_at_k(&[0, 2, 1], &rel, 10), 1.0 / 3f64.log2(), epsilon = 1e-12);
        assert_eq!(ndcg_at_k(&[2, 0, 1], &rel, 10), 1.0);
        assert_eq!(recall_at_k(&[0, 2, 1], &rel, 1), 0.0);
        assert_eq!(recall_at_k(&[0, 2, 1], &rel, 2), 1.0);
        assert!(ndcg_at_k(&[0], &[], 10).is_nan());
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_mean() {
        let base: Vec<f64> = (0..50).map(|i| (i % 7) as f64 / 7.0).collect();
        let cand: Vec<f64> = base.iter().enumerate().map(|(i, b)| b - if i % 3 == 0 { 0.01 } else { 0.0 }).collect();
        let a = paired_bootstrap(&base, &cand, 1000, 0.95, 7);
        let b = paired_bootstrap(&base, &cand, 1000, 0.95, 7);
        assert_eq!(a, b);
        assert!(a.low <= a.mean && a.mean <= a.high, "{a:?}");
        assert!(a.high <= 0.0, "every difference is <= 0: {a:?}");
        let same = paired_bootstrap(&base, &base, 100, 0.95, 1);
        assert_eq!((same.mean, same.low, same.high), (0.0, 0.0, 0.0));
    }

    #[test]
    fn normal_quantiles_and_the_pairwise_spearman_paths() {
        approx::assert_relative_eq!(normal_quantile(0.975), 1.959963984540054, epsilon = 1e-8);
        approx::assert_relative_eq!(normal_quantile(0.5), 0.0, epsilon = 1e-12);
        approx::assert_relative_eq!(normal_quantile(0.001), -3.090232306167813, epsilon = 1e-8);
        // Exact below the limit: the same value as the upper triangles of the full matrices.
        let x: Vec<f64> = (0..40).map(|i| ((i * 37) % 41) as f64).collect();
        let base = |i: usize, j: usize| -(x[i] - x[j]).abs();
        let cand = |i: usize, j: usize| -(x[i] - x[j]).abs() + if (i * j) % 7 == 0 { 5.0 } else { 0.0 };
        let full = |f: &dyn Fn(usize, usize) -> f64| (0..40).map(|i| (0..40).map(|j| f(i, j)).collect::<Vec<f64>>()).collect::<Vec<_>>();
        let want = spearman(&upper_triangle(&full(&base)), &upper_triangle(&full(&cand)));
        let base = |p: &[(usize, usize)]| p.iter().map(|&(i, j)| base(i, j)).collect();
        let cand = |p: &[(usize, usize)]| p.iter().map(|&(i, j)| cand(i, j)).collect();
        let exact = pairwise_spearman(40, &base, &cand, 780, 0.95, 1);
        assert_eq!((exact.value, exact.low, exact.high, exact.pairs, exact.sampled), (want, want, want, 780, false));
        // Above it: a sample whose interval holds the exact value.
        let s = pairwise_spearman(40, &base, &cand, 779, 0.95, 1);
        assert!(s.sampled && s.pairs == 779 && s.of_pairs == 780);
        assert!(s.low < want && want < s.high, "{s:?} vs {want}");
    }

    #[test]
    fn neighbour_overlap_names_lost_and_gained() {
        let base = vec![vec![0.0, 0.9, 0.8, 0.1], vec![0.9, 0.0, 0.2, 0.3], vec![0.8, 0.2, 0.0, 0.4], vec![0.1, 0.3, 0.4, 0.0]];
        let mut cand = base.clone();
        cand[0] = vec![0.0, 0.9, 0.1, 0.8];
        let n = neighbour_overlap(&base, &cand, 2);
        assert_eq!(n[0].lost, vec![2]);
        assert_eq!(n[0].gained, vec![3]);
        approx::assert_relative_eq!(n[0].jaccard, 1.0 / 3.0);
        assert_eq!(n[1].jaccard, 1.0);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn scores() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(-1.0f64..1.0, 2..40)
    }

    proptest! {
        #[test]
        fn spearman_is_within_bounds_one_with_itself_and_rank_invariant(a in scores()) {
            let r = spearman(&a, &a);
            prop_assert!((r - 1.0).abs() < 1e-12, "{r}");
            // A strictly increasing transform keeps every rank.
            let b: Vec<f64> = a.iter().map(|x| x.exp() * 3.0 + 1.0).collect();
            prop_assert!((spearman(&a, &b) - 1.0).abs() < 1e-12);
            let c: Vec<f64> = a.iter().rev().copied().collect();
            let s = spearman(&a, &c);
            prop_assert!((-1.0 - 1e-12..=1.0 + 1e-12).contains(&s), "{s}");
        }

        #[test]
        fn jaccard_at_k_is_one_for_the_same_matrix_and_within_bounds(rows in prop::collection::vec(scores(), 3..12), k in 1usize..6) {
            let n = rows.len();
            let m: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| rows[i][j % rows[i].len()]).collect()).collect();
            let k = k.min(n - 1);
            for o in neighbour_overlap(&m, &m, k) {
                prop_assert_eq!(o.jaccard, 1.0);
                prop_assert!(o.lost.is_empty() && o.gained.is_empty());
            }
            let flipped: Vec<Vec<f64>> = m.iter().map(|r| r.iter().map(|x| -x).collect()).collect();
            for o in neighbour_overlap(&m, &flipped, k) {
                prop_assert!((0.0..=1.0).contains(&o.jaccard));
                prop_assert_eq!(o.lost.len(), o.gained.len());
            }
        }

        #[test]
        fn ndcg_and_recall_are_within_unit_interval(perm in Just((0usize..20).collect::<Vec<_>>()).prop_shuffle(), rel in prop::collection::vec((0usize..20, 1.0f64..3.0), 1..5), k in 1usize..25) {
            let mut rel = rel;
            rel.sort_by_key(|r| r.0);
            rel.dedup_by_key(|r| r.0);
            let n = ndcg_at_k(&perm, &rel, k);
            let r = recall_at_k(&perm, &rel, k);
            prop_assert!((0.0..=1.0 + 1e-12).contains(&n), "{n}");
            prop_assert!((0.0..=1.0).contains(&r), "{r}");
            // The ideal ranking scores 1.
            let mut ideal = rel.clone();
            ideal.sort_by(|a, b| b.1.total_cmp(&a.1));
            let best: Vec<usize> = ideal.iter().map(|r| r.0).collect();
            prop_assert!((ndcg_at_k(&best, &rel, k) - 1.0).abs() < 1e-12);
        }

        #[test]
        fn bootstrap_interval_brackets_the_mean(base in prop::collection::vec(0.0f64..1.0, 1..60), shift in -0.2f64..0.2, seed in any::<u64>()) {
            let cand: Vec<f64> = base.iter().enumerate().map(|(i, b)| b + if i % 2 == 0 { shift } else { 0.0 }).collect();
            let iv = paired_bootstrap(&base, &cand, 200, 0.95, seed);
            prop_assert!(iv.low <= iv.mean + 1e-12 && iv.mean <= iv.high + 1e-12, "{iv:?}");
            prop_assert_eq!(iv, paired_bootstrap(&base, &cand, 200, 0.95, seed));
        }
    }
}
