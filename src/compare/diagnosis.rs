//! Why a text failed, by stage. Each diagnosis is confirmed by computing the alternative where a model is
//! at hand (an [`Alternatives`] provider), not guessed from the numbers alone.
//!
//! Keywords (stable, in the `diagnosis` column): `non-finite`, `tokenization`, `truncation`,
//! `normalization`, `pooling`, `padding`, `precision`, `unknown`.

use serde::Serialize;

use super::{failed_checks, metrics, RowResult, TokenMatch, Tolerance};
use crate::error::Result;
use crate::pipeline::{normalize, Vector};

/// The stage a mismatch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// NaN or Inf on either side.
    NonFinite,
    /// Token ids differ.
    Tokenization,
    /// Token ids agree up to where one side was cut.
    Truncation,
    /// Same direction, different norm.
    Normalization,
    /// The reference is another pooling of the same hidden states.
    Pooling,
    /// The text alone and in a padded batch disagree.
    Padding,
    /// Small drift of the size half-precision arithmetic gives.
    Precision,
    /// None of the above was confirmed.
    Unknown,
}

impl Stage {
    /// The stable keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Stage::NonFinite => "non-finite",
            Stage::Tokenization => "tokenization",
            Stage::Truncation => "truncation",
            Stage::Normalization => "normalization",
            Stage::Pooling => "pooling",
            Stage::Padding => "padding",
            Stage::Precision => "precision",
            Stage::Unknown => "unknown",
        }
    }
}

/// A stage and the evidence for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    /// The stage.
    pub stage: Stage,
    /// The evidence, in a sentence.
    pub detail: String,
}

impl Diagnosis {
    fn new(stage: Stage, detail: impl Into<String>) -> Self {
        Diagnosis { stage, detail: detail.into() }
    }
}

/// Computes alternatives to our own value of a text, to confirm a diagnosis. Every method may decline
/// (`None` / empty), e.g. when comparing two files with no model at hand.
pub trait Alternatives {
    /// Our value of text `index` computed alone, in a batch of one.
    fn alone(&mut self, _index: usize) -> Result<Option<Vector>> {
        Ok(None)
    }
    /// Our value of text `index` truncated to `max_length` tokens.
    fn with_max_length(&mut self, _index: usize, _max_length: usize) -> Result<Option<Vector>> {
        Ok(None)
    }
    /// Max lengths shorter than text `index`'s token count worth trying when the token ids cannot tell
    /// (a reference without ids, or whose ids were kept while its vectors came from elsewhere).
    fn shorter_lengths(&mut self, _index: usize) -> Result<Vec<usize>> {
        Ok(Vec::new())
    }
    /// Other poolings of the same hidden states (each also L2-normalized), named.
    fn poolings(&mut self, _index: usize) -> Result<Vec<(String, Vector)>> {
        Ok(Vec::new())
    }
    /// Our value computed in the other precisions (f32, f16, bf16 but the one in use), per dtype name.
    fn other_precisions(&mut self, _index: usize) -> Result<Vec<(String, Vector)>> {
        Ok(Vec::new())
    }
}

/// No model at hand: only what the two values themselves prove.
pub struct NoAlternatives;
impl Alternatives for NoAlternatives {}

fn passes(a: &Vector, e: &Vector, tol: &Tolerance) -> bool {
    failed_checks(&metrics::compare(a, e), &TokenMatch::Unknown, None, tol).is_empty()
}

fn normalized(v: &Vector) -> Option<Vector> {
    match v {
        Vector::Dense(d) => {
            let mut d = d.clone();
            normalize(&mut d);
            Some(Vector::Dense(d))
        }
        Vector::Multi(rows) => Some(Vector::Multi(
            rows.iter()
                .map(|r| {
                    let mut r = r.clone();
                    normalize(&mut r);
                    r
                })
                .collect(),
        )),
        Vector::Sparse(_) => None,
    }
}

fn first_non_finite(v: &Vector) -> Option<usize> {
    match v {
        Vector::Dense(d) => d.iter().position(|x| !x.is_finite()),
        Vector::Sparse(s) => s.iter().position(|(_, w)| !w.is_finite()),
        Vector::Multi(m) => m.iter().flatten().position(|x| !x.is_finite()),
    }
}

/// Diagnoses a failing row: checks in order of stage (tokens → pooling → normalization → batching →
/// precision), each confirmed by a computed alternative.
pub fn diagnose(row: &RowResult, actual: &Vector, expected: &Vector, tol: &Tolerance, alt: &mut dyn Alternatives) -> Result<Diagnosis> {
    let m = &row.metrics;
    if !m.finite {
        let (side, at) = match first_non_finite(actual) {
            Some(k) => ("actual", k),
            None => ("expected", first_non_finite(expected).unwrap_or(0)),
        };
        return Ok(Diagnosis::new(Stage::NonFinite, format!("NaN or Inf in the {side} value at component {at}")));
    }
    if let TokenMatch::Differ { position, actual: a, expected: e, actual_len, expected_len } = row.tokens {
        let shorter = actual_len.min(expected_len);
        // Truncation keeps a prefix and then adds the closing special token: the ids agree up to it.
        if actual_len != expected_len && position + 1 >= shorter {
            let confirmed = match alt.with_max_length(row.index, expected_len)? {
                Some(v) if passes(&v, expected, tol) => "; recomputed at that length, it matches",
                Some(_) => "; recomputed at that length, it still differs",
                None => "",
            };
            return Ok(Diagnosis::new(
                Stage::Truncation,
                format!("token ids agree up to position {position}, then the reference stops at {expected_len} tokens and this pipeline at {actual_len}{confirmed}"),
            ));
        }
        let show = |x: Option<u32>| x.map_or("end".to_string(), |v| v.to_string());
        return Ok(Diagnosis::new(
            Stage::Tokenization,
            format!(
                "token ids differ at position {position}: {} here vs {} in the reference ({actual_len} vs {expected_len} tokens)",
                show(a),
                show(e)
            ),
        ));
    }
    if let (Some(na), Some(ne)) = (normalized(actual), normalized(expected)) {
        let norm_gap = (m.norm_actual - m.norm_expected).abs() / m.norm_expected.max(f64::MIN_POSITIVE);
        if norm_gap > tol.max_rel_l2 && passes(&na, &ne, tol) {
            return Ok(Diagnosis::new(
                Stage::Normalization,
                format!(
                    "same direction (cosine {:.7}) but norms differ: {:.6} here vs {:.6} in the reference",
                    m.cosine, m.norm_actual, m.norm_expected
                ),
            ));
        }
    }
    for (name, v) in alt.poolings(row.index)? {
        if passes(&v, expected, tol) {
            return Ok(Diagnosis::new(Stage::Pooling, format!("the reference matches {name} of the same hidden states")));
        }
    }
    for n in alt.shorter_lengths(row.index)? {
        if let Some(v) = alt.with_max_length(row.index, n)? {
            if passes(&v, expected, tol) {
                return Ok(Diagnosis::new(
                    Stage::Truncation,
                    format!("the reference matches this text recomputed with max length {n}"),
                ));
            }
        }
    }
    if let Some(v) = alt.alone(row.index)? {
        if !passes(&v, actual, tol) {
            let d = metrics::compare(&v, actual);
            let matches = if passes(&v, expected, tol) { "; alone it matches the reference" } else { "" };
            return Ok(Diagnosis::new(
                Stage::Padding,
                format!("this text alone and in its padded batch differ by relative L2 {:.3e}{matches}", d.rel_l2),
            ));
        }
    }
    // The nearest precision whose drift on this very text is at least a quarter of the observed one.
    let mut nearest: Option<(String, f64)> = None;
    for (name, v) in alt.other_precisions(row.index)? {
        let d = metrics::compare(&v, actual).rel_l2;
        if d.is_finite() && d > 0.0 && m.rel_l2 <= 4.0 * d && nearest.as_ref().is_none_or(|(_, best)| d < *best) {
            nearest = Some((name, d));
        }
    }
    if let Some((name, d)) = nearest {
        if m.cosine >= 0.99 {
            return Ok(Diagnosis::new(
                Stage::Precision,
                format!("relative L2 {:.3e} is of the size that computing in {name} instead gives on this text ({d:.3e})", m.rel_l2),
            ));
        }
    }
    Ok(Diagnosis::new(Stage::Unknown, format!("no alternative matched (cosine {:.7}, relative L2 {:.3e})", m.cosine, m.rel_l2)))
}
