//! Per-text metrics between an actual and an expected value, computed in f64.

use crate::pipeline::Vector;

/// How one text's actual value compares with the expected one.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Cosine similarity (ColBERT: the lowest per-row cosine; sparse: over the union of ids).
    pub cosine: f64,
    /// ‖actual − expected‖₂ (ColBERT: over all rows).
    pub l2: f64,
    /// `l2 / ‖expected‖₂`.
    pub rel_l2: f64,
    /// Largest |actual − expected| over components (sparse: over weights, a missing id counting 0).
    pub max_abs_diff: f64,
    /// Where the largest difference is (component index; sparse: the token id; ColBERT: row·dim + col).
    pub max_abs_index: usize,
    /// ‖actual‖₂.
    pub norm_actual: f64,
    /// ‖expected‖₂.
    pub norm_expected: f64,
    /// Whether every component on both sides is finite.
    pub finite: bool,
    /// Sparse: |ids ∩| / |ids ∪| (1 when both are empty).
    pub jaccard: Option<f64>,
    /// ColBERT: (actual rows, expected rows).
    pub rows: Option<(usize, usize)>,
    /// Whether the shapes agree (dense width; ColBERT rows and width).
    pub same_shape: bool,
    /// How many components were compared (dense width; sparse: ids in the union; ColBERT: rows × width).
    pub components: usize,
    /// The largest |expected| component: f32 noise in a component grows with its size, so the `max_abs` check
    /// allows `max_rel_l2` of it on top (numpy's `atol + rtol·|e|`, with the largest |e|).
    pub max_abs_expected: f64,
}

impl Metrics {
    /// No value to compare (the system under test rejected the text): every figure NaN.
    pub fn missing() -> Self {
        Metrics {
            cosine: f64::NAN,
            l2: f64::NAN,
            rel_l2: f64::NAN,
            max_abs_diff: f64::NAN,
            max_abs_index: 0,
            norm_actual: f64::NAN,
            norm_expected: f64::NAN,
            finite: true,
            jaccard: None,
            rows: None,
            same_shape: false,
            components: 0,
            max_abs_expected: f64::NAN,
        }
    }
}

/// ‖v‖₂ in f64.
pub fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt()
}

/// Cosine of two vectors in f64; 0 when either is zero (both zero included: a direction that does not exist
/// is not agreement, so all-zero vectors on both sides fail the cosine check instead of passing vacuously).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    cosine_with_norms(a, b, norm(a), norm(b))
}

/// [`cosine`] with the norms already computed (`na = norm(a)`, `nb = norm(b)`): the same value, bit for bit.
pub fn cosine_with_norms(a: &[f32], b: &[f32], na: f64, nb: f64) -> f64 {
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    dot / (na * nb)
}

/// Metrics of two dense vectors.
pub fn dense(a: &[f32], e: &[f32]) -> Metrics {
    let same_shape = a.len() == e.len();
    if !same_shape {
        // Vectors of different widths do not compare: no figure over the shared prefix.
        let mut m = dense(&[], &[]);
        (m.cosine, m.l2, m.rel_l2, m.max_abs_diff) = (0.0, f64::INFINITY, f64::INFINITY, f64::INFINITY);
        (m.norm_actual, m.norm_expected) = (norm(a), norm(e));
        m.finite = a.iter().chain(e).all(|x| x.is_finite());
        m.same_shape = false;
        m.components = a.len().max(e.len());
        return m;
    }
    let mut l2 = 0f64;
    let (mut max_abs, mut at) = (0f64, 0usize);
    for (i, (&x, &y)) in a.iter().zip(e).enumerate() {
        let d = (x as f64 - y as f64).abs();
        l2 += d * d;
        // NaN compares false: make it the maximum so it is reported where it is.
        if d > max_abs || d.is_nan() && !max_abs.is_nan() {
            max_abs = d;
            at = i;
        }
    }
    let l2 = l2.sqrt();
    let ne = norm(e);
    Metrics {
        cosine: cosine(a, e),
        l2,
        rel_l2: rel(l2, ne),
        max_abs_diff: max_abs,
        max_abs_index: at,
        norm_actual: norm(a),
        norm_expected: ne,
        finite: a.iter().chain(e).all(|x| x.is_finite()),
        jaccard: None,
        rows: None,
        same_shape,
        components: a.len().max(e.len()),
        max_abs_expected: e.iter().map(|x| f64::from(x.abs())).fold(0.0, f64::max),
    }
}

fn rel(l2: f64, ne: f64) -> f64 {
    if ne > 0.0 {
        l2 / ne
    } else if l2 == 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Metrics of two sparse weight maps (sorted by id); a missing id counts as weight 0.
pub fn sparse(a: &[(u32, f32)], e: &[(u32, f32)]) -> Metrics {
    let ids: std::collections::BTreeSet<u32> = a.iter().chain(e).map(|(i, _)| *i).collect();
    let get = |v: &[(u32, f32)], id: u32| v.binary_search_by_key(&id, |(i, _)| *i).map(|k| v[k].1).unwrap_or(0.0);
    let av: Vec<f32> = ids.iter().map(|&i| get(a, i)).collect();
    let ev: Vec<f32> = ids.iter().map(|&i| get(e, i)).collect();
    let mut m = dense(&av, &ev);
    if ids.is_empty() {
        // Both maps empty: FlagEmbedding's output for a text whose every weight is <= 0, identical here.
        m.cosine = 1.0;
    }
    m.max_abs_index = ids.iter().nth(m.max_abs_index).copied().unwrap_or(0) as usize;
    let common = a.iter().filter(|(i, _)| e.binary_search_by_key(i, |(j, _)| *j).is_ok()).count();
    m.jaccard = Some(if ids.is_empty() { 1.0 } else { common as f64 / ids.len() as f64 });
    m
}

/// Metrics of two ColBERT multi-vectors: compared row by row when the row counts agree.
pub fn multi(a: &[Vec<f32>], e: &[Vec<f32>]) -> Metrics {
    let dim = e.first().or(a.first()).map_or(0, |r| r.len());
    let same_shape = a.len() == e.len() && a.iter().chain(e).all(|r| r.len() == dim);
    let flat = |v: &[Vec<f32>]| v.iter().flatten().copied().collect::<Vec<f32>>();
    let (fa, fe) = (flat(a), flat(e));
    let mut m = if same_shape { dense(&fa, &fe) } else { dense(&[], &[]) };
    if same_shape {
        // No rows at all on either side compares nothing: not a pass.
        let start = if e.is_empty() { 0.0 } else { 1.0 };
        m.cosine = a.iter().zip(e).map(|(x, y)| cosine(x, y)).fold(start, f64::min);
    } else {
        m.cosine = 0.0;
        m.rel_l2 = f64::INFINITY;
        m.l2 = f64::INFINITY;
        m.max_abs_diff = f64::INFINITY;
    }
    m.norm_actual = norm(&fa);
    m.norm_expected = norm(&fe);
    m.finite = fa.iter().chain(&fe).all(|x| x.is_finite());
    m.rows = Some((a.len(), e.len()));
    m.same_shape = same_shape;
    m
}

/// Like [`compare`], but a sparse id present on one side only with a weight at or below `floor` (f32 noise
/// around zero: relu keeps it on one side and drops it on the other) does not count as a different id.
pub fn compare_with_floor(a: &Vector, e: &Vector, floor: f64) -> Metrics {
    match (a, e) {
        (Vector::Sparse(x), Vector::Sparse(y)) if floor > 0.0 => {
            let keep = |v: &[(u32, f32)], other: &[(u32, f32)]| -> Vec<(u32, f32)> {
                v.iter()
                    .copied()
                    .filter(|(id, w)| f64::from(w.abs()) > floor || other.binary_search_by_key(id, |(j, _)| *j).is_ok())
                    .collect()
            };
            sparse(&keep(x, y), &keep(y, x))
        }
        _ => compare(a, e),
    }
}

/// Metrics of any two values of the same kind; values of different kinds do not compare.
pub fn compare(a: &Vector, e: &Vector) -> Metrics {
    match (a, e) {
        (Vector::Dense(x), Vector::Dense(y)) => dense(x, y),
        (Vector::Sparse(x), Vector::Sparse(y)) => sparse(x, y),
        (Vector::Multi(x), Vector::Multi(y)) => multi(x, y),
        _ => multi(&[], &[vec![f32::NAN]]),
    }
}

/// Σ|x| over a value's components.
pub fn l1(v: &Vector) -> f64 {
    match v {
        Vector::Dense(d) => d.iter().map(|x| f64::from(x.abs())).sum(),
        Vector::Sparse(s) => s.iter().map(|(_, w)| f64::from(w.abs())).sum(),
        Vector::Multi(m) => m.iter().flatten().map(|x| f64::from(x.abs())).sum(),
    }
}

/// FlagEmbedding's lexical matching score: Σ over shared ids of w_q · w_p.
pub fn lexical_score(q: &[(u32, f32)], p: &[(u32, f32)]) -> f64 {
    q.iter()
        .filter_map(|(id, w)| p.binary_search_by_key(id, |(j, _)| *j).ok().map(|k| *w as f64 * p[k].1 as f64))
        .sum()
}

/// FlagEmbedding's ColBERT score: for each query vector the max dot product over passage vectors, averaged.
pub fn colbert_score(q: &[Vec<f32>], p: &[Vec<f32>]) -> f64 {
    if q.is_empty() || p.is_empty() {
        return 0.0;
    }
    let total: f64 = q
        .iter()
        .map(|qv| p.iter().map(|pv| qv.iter().zip(pv).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>()).fold(f64::MIN, f64::max))
        .sum();
    total / q.len() as f64
}

/// The retrieval score of two values of a kind that has one (sparse, ColBERT); cosine for dense.
pub fn score(q: &Vector, p: &Vector) -> f64 {
    match (q, p) {
        (Vector::Sparse(a), Vector::Sparse(b)) => lexical_score(a, b),
        (Vector::Multi(a), Vector::Multi(b)) => colbert_score(a, b),
        (Vector::Dense(a), Vector::Dense(b)) => cosine(a, b),
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_is_reported_not_hidden() {
        let m = dense(&[1.0, f32::NAN], &[1.0, 2.0]);
        assert!(!m.finite);
        assert!(m.max_abs_diff.is_nan());
        assert_eq!(m.max_abs_index, 1);
    }

    #[test]
    fn sparse_counts_missing_ids_as_zero() {
        let m = sparse(&[(1, 0.5), (7, 0.25)], &[(1, 0.5), (9, 0.125)]);
        assert_eq!(m.jaccard, Some(1.0 / 3.0));
        assert_eq!(m.max_abs_diff, 0.25);
        assert_eq!(m.max_abs_index, 7);
    }

    #[test]
    fn all_zero_and_empty_values_do_not_pass_vacuously() {
        let m = dense(&[0.0; 4], &[0.0; 4]);
        assert_eq!((m.cosine, m.rel_l2), (0.0, 0.0));
        assert_eq!(multi(&[vec![0.0, 0.0]], &[vec![0.0, 0.0]]).cosine, 0.0);
        assert_eq!(multi(&[], &[]).cosine, 0.0);
        // Two empty sparse maps are what FlagEmbedding gives when every weight is <= 0: equal.
        assert_eq!(sparse(&[], &[]).cosine, 1.0);
        assert_eq!(sparse(&[], &[(3, 0.5)]).cosine, 0.0);
    }

    #[test]
    fn colbert_score_is_mean_of_max_dots() {
        let q = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let p = vec![vec![1.0, 0.0], vec![0.6, 0.8]];
        approx::assert_relative_eq!(colbert_score(&q, &p), (1.0 + 0.8) / 2.0, epsilon = 1e-7);
    }
}
