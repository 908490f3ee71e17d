//! `f32 noise`, proven like every diagnosis: a text that fails by little (within [`NOISE_BAND`] times the
//! tolerance, on the numbers alone) is recomputed by embcheck in f64 — weights and accumulation — and passes
//! when the reference and the vector under test are each no farther from that value than f32 arithmetic
//! explains. Otherwise it fails as before, with the two distances in its diagnosis.
//!
//! How far f32 arithmetic may take a value from the f64 one (the bound `B`): the larger of
//! - [`SLACK`] times the f32 noise measured on this model: the Python reference's own distance to torch in
//!   float64, as the generator records it for a sample of the suite's texts (the longest; scaled by
//!   √(L / L_sample) for a longer text), embcheck's own f32 value of this text alone against its f64
//!   value, and the reference's distance to it — each side held to the measurements other than its own
//!   (see [`evidence`]);
//! - an a-priori floor that grows with length, width and depth ([`growth_floor`]): unit roundoff times
//!   √(layers · (tokens + hidden + FFN)), the random-walk growth of the rounding errors of the dot products
//!   of the layers (attention sums over the tokens, projections over the width, the FFN over its size).
//!
//! Why measured and not only a-priori: the noise depends mostly on the size of the activations (how peaked
//! the attention is, how large the pre-LayerNorm sums are), which no formula in the shape alone gives:
//! measured on random XLM-R of 2 layers, torch f32 vs f64 is 1.7e-7 at width 384 with weights of std 0.02
//! and 1.6e-5 with std 0.2, at every length from 512 to 8192 (README, "f32 noise").

use super::{metrics, RowResult, TokenMatch, Tolerance};
use crate::pipeline::Vector;

/// A failing text is examined for f32 noise when its relative L2 is at most this many times the tolerance's.
/// Worst measured: embcheck's f32 vs the Python reference 9.7e-5 (dense default 1e-5), on an XLM-R of
/// bge-m3's width at 8192 tokens with weights of std 0.2; the band leaves 3x room above it.
pub const NOISE_BAND: f64 = 30.0;

/// How much farther from the f64 value than the measured f32 noise a side may be: two correct f32
/// implementations of the same model differ in summation order, blocking and kernels (measured: embcheck's
/// f32 sits 1.1x–1.9x as far from f64 as torch's on the same texts).
pub const SLACK: f64 = 3.0;

/// f32 unit roundoff, 2⁻²⁴.
const UNIT_ROUNDOFF: f64 = 5.960_464_477_539_063e-8;

/// The a-priori part of the bound: u · √(layers · (tokens + hidden + ffn)). The same for the decoders and
/// Gemma 3 (from their config's hidden, intermediate and layer counts): a sliding window sums over fewer keys
/// than `tokens`, so there the term is an upper bound. On the tiny decoders at 512 tokens it is 2.1e-6–2.5e-6,
/// above their measured f32 noise (the Python reference 7e-7–1.2e-6 from float64, embcheck's f32 2.9e-7–1.9e-6).
pub fn growth_floor(tokens: usize, hidden: usize, ffn: usize, layers: usize) -> f64 {
    UNIT_ROUNDOFF * ((layers.max(1) * (tokens + hidden + ffn)) as f64).sqrt()
}

/// The Python reference's own f32-vs-f64 distances, as the generator recorded them (metadata `f64_noise`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct RecordedNoise {
    /// Per sampled text: its token count and the distance of the reference vector to torch's float64 one.
    pub sample: Vec<RecordedText>,
}

/// One sampled text of [`RecordedNoise`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct RecordedText {
    /// The text's id.
    pub id: String,
    /// Its token count (special tokens included).
    pub tokens: usize,
    /// Relative L2 of the reference's f32 value to torch's float64 value.
    pub rel_l2: f64,
    /// Torch's float64 value of the text (the pipeline's output), when recorded.
    #[serde(default)]
    pub f64: Option<Vec<f64>>,
}

/// embcheck's f64 value and the Python library's float64 value of the same text may differ by this much
/// (relative L2): embcheck's encoder returns its f64 hidden states rounded to f32 (≤ 6e-8 per component),
/// and two f64 computations of the same model differ by ~1e-13. A weight changed by 1e-4 moves it by far more.
pub const F64_AGREEMENT: f64 = 1e-6;

impl RecordedNoise {
    /// The Python library's float64 value of text `id`, when the generator recorded it.
    pub fn exact_of(&self, id: &str) -> Option<Vector> {
        let t = self.sample.iter().find(|t| t.id == id)?;
        Some(Vector::Dense(t.f64.as_ref()?.iter().map(|&x| x as f32).collect()))
    }

    /// The reference's f32 noise for a text of `tokens` tokens: the largest sampled distance, scaled by
    /// √(tokens / sampled tokens) where the text is longer than the sampled one; `None` with no sample.
    pub fn scale_for(&self, tokens: usize) -> Option<f64> {
        self.sample
            .iter()
            .filter(|t| t.rel_l2.is_finite())
            .map(|t| t.rel_l2 * (tokens as f64 / t.tokens.max(1) as f64).sqrt().max(1.0))
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
    }
}

/// What the f64 recomputation of a text showed.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Relative L2 of the reference to embcheck's f64 value.
    pub reference: f64,
    /// Relative L2 of the vector under test (embcheck's f32 pipeline or the system) to it.
    pub actual: f64,
    /// What f32 arithmetic explains for the reference.
    pub bound: f64,
    /// How that bound was made, in words.
    pub basis: String,
    /// What f32 arithmetic explains for the side under test (see [`evidence`]: no side vouches for itself).
    pub bound_actual: f64,
    /// How that bound was made, in words.
    pub basis_actual: String,
    /// Relative L2 of embcheck's f64 value to the Python library's float64 value, when the reference records it.
    pub python_f64: Option<f64>,
}

impl Evidence {
    /// Whether both sides are within the bound.
    pub fn is_noise(&self) -> bool {
        self.reference <= self.bound && self.actual <= self.bound_actual && self.python_f64.is_none_or(|d| d <= F64_AGREEMENT)
    }

    /// The evidence in a sentence; `who`: the side under test.
    pub fn words(&self, who: &str) -> String {
        let python = match self.python_f64 {
            Some(d) if d > F64_AGREEMENT => format!("; but embcheck's f64 value is {d:.3e} from the Python library's float64 value of this text (recorded by the generator; f64 computations agree within {F64_AGREEMENT:e}): the two sides do not compute the same function"),
            Some(d) => format!("; embcheck's f64 value agrees with the Python library's float64 value of this text ({d:.1e}, recorded by the generator)"),
            None => String::new(),
        };
        format!(
            "recomputed in f64, the reference is {:.3e} from it and {who} {:.3e} (relative L2); f32 arithmetic explains up to {:.3e} for the reference ({}) and up to {:.3e} for {who} ({}){python}",
            self.reference, self.actual, self.bound, self.basis, self.bound_actual, self.basis_actual
        )
    }
}

/// Whether a failing row is examined for f32 noise: finite values of the same shape, dense or multi-vector,
/// the same token ids (or unknown ones), only the numeric checks failed, and within [`NOISE_BAND`] of the
/// tolerance — or, where the reference records its own f32 noise `recorded` for this text, within
/// 2 · [`SLACK`] · `recorded` (two values each within the bound of the f64 value are at most twice it apart):
/// measured on a 3-layer random XLM-R of bge-m3's width at 8192 tokens, torch's own f32 noise was 2.8e-4.
pub fn candidate(row: &RowResult, expected: &Vector, tol: &Tolerance, recorded: Option<f64>) -> bool {
    let m = &row.metrics;
    let factor = recorded.map_or(NOISE_BAND, |r| NOISE_BAND.max(2.0 * SLACK * r / tol.max_rel_l2));
    !row.pass()
        && m.finite
        && m.same_shape
        && !matches!(expected, Vector::Sparse(_))
        && !matches!(row.tokens, TokenMatch::Differ { .. })
        && row.failed.iter().all(|c| matches!(*c, "cosine" | "rel_l2" | "max_abs"))
        && m.rel_l2 <= factor * tol.max_rel_l2
        && m.max_abs_diff <= factor * (tol.max_abs + tol.max_rel_l2 * m.max_abs_expected)
}

/// The distances of both sides to the f64 value `exact` and the bounds they are held to. `own_f32`: embcheck's
/// f32 value of the text alone (its measured noise); `recorded`: the reference's recorded noise scaled to the
/// text; `floor`: [`growth_floor`] for the text.
///
/// No side vouches for itself: a side's bound is made from the other measurements only — the reference's from
/// the recorded noise and embcheck's own f32 noise; the side under test's from the recorded noise, the
/// reference's distance to the f64 value, and embcheck's own f32 noise unless that is the side under test
/// (then an error of embcheck's f32 code alone, absent from its f64 path, would set its own allowance).
pub fn evidence(actual: &Vector, expected: &Vector, exact: &Vector, own_f32: Option<&Vector>, recorded: Option<f64>, python_f64: Option<&Vector>, floor: f64) -> Evidence {
    let rel = |v: &Vector| metrics::compare(v, exact).rel_l2;
    let (reference, actual_d) = (rel(expected), rel(actual));
    let own = own_f32.map(rel);
    let own_is_actual = own_f32.is_some_and(|o| o == actual);
    let recorded_words = recorded.map(|r| format!("the Python reference's own f32 noise {r:.3e}, recorded by the generator"));
    let own_words = own.map(|o| format!("embcheck's own f32 noise on this text {o:.3e}"));
    let scale = |parts: Vec<(Option<f64>, Option<String>)>| -> (f64, String) {
        let used: Vec<(f64, String)> = parts.into_iter().filter_map(|(x, w)| Some((x.filter(|x| x.is_finite())?, w?))).collect();
        let measured = used.iter().map(|(x, _)| *x).fold(0.0, f64::max);
        let words = if used.is_empty() { "none".to_string() } else { used.into_iter().map(|(_, w)| w).collect::<Vec<_>>().join("; ") };
        ((SLACK * measured).max(floor), format!("the larger of {SLACK} x the measured f32 noise ({words}) and the length/width/depth floor {floor:.3e}"))
    };
    let (bound, basis) = scale(vec![(recorded, recorded_words.clone()), (own, own_words.clone())]);
    let mut for_actual = vec![(recorded, recorded_words), (Some(reference), Some(format!("the reference's {reference:.3e}")))];
    if !own_is_actual {
        for_actual.push((own, own_words));
    }
    let (bound_actual, basis_actual) = scale(for_actual);
    Evidence { reference, actual: actual_d, bound, basis, bound_actual, basis_actual, python_f64: python_f64.map(|p| metrics::compare(exact, p).rel_l2) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_grows_with_length_width_and_depth() {
        let base = growth_floor(512, 384, 1536, 2);
        assert!(growth_floor(8192, 384, 1536, 2) > base);
        assert!(growth_floor(512, 1024, 4096, 2) > base);
        assert!(growth_floor(512, 384, 1536, 24) > base);
        // bge-m3's shape at 8192 tokens (24 layers): 3.4e-5.
        let m3 = growth_floor(8192, 1024, 4096, 24);
        assert!((3.3e-5..3.5e-5).contains(&m3), "{m3:e}");
    }

    #[test]
    fn recorded_noise_scales_up_with_length_only() {
        let r = RecordedNoise { sample: vec![RecordedText { id: "a".into(), tokens: 2048, rel_l2: 2e-5, f64: None }, RecordedText { id: "b".into(), tokens: 512, rel_l2: 1e-5, f64: None }] };
        assert_eq!(r.scale_for(2048), Some(2e-5));
        assert_eq!(r.scale_for(100), Some(2e-5));
        assert!((r.scale_for(8192).unwrap() - 4e-5).abs() < 1e-12);
        assert_eq!(RecordedNoise { sample: vec![] }.scale_for(10), None);
    }

    #[test]
    fn both_sides_must_be_within_the_bound() {
        let e = Vector::Dense(vec![1.0, 0.0, 0.0, 0.0]);
        let near = Vector::Dense(vec![1.0, 2e-5, 0.0, 0.0]);
        let near_ref = Vector::Dense(vec![1.0, 0.0, 0.0, 2e-5]);
        let far = Vector::Dense(vec![1.0, 0.0, 3e-4, 0.0]);
        let ev = evidence(&near, &near_ref, &e, Some(&near), None, None, 1e-6);
        assert!(ev.is_noise(), "{ev:?}");
        assert!((ev.bound - 6e-5).abs() < 1e-9 && (ev.bound_actual - 6e-5).abs() < 1e-9, "{ev:?}");
        // The reference is 3e-4 from the f64 value while embcheck's own noise is 2e-5: not noise.
        let ev = evidence(&near, &far, &e, Some(&near), None, None, 1e-6);
        assert!(!ev.is_noise(), "{ev:?}");
        // A recorded reference noise widens the bound.
        let ev = evidence(&near, &far, &e, Some(&near), Some(1.5e-4), None, 1e-6);
        assert!(ev.is_noise() && ev.basis.contains("recorded"), "{ev:?}");
        // The same, but embcheck's f64 value is not the Python library's: another function, not noise.
        let ev = evidence(&near, &far, &e, Some(&near), Some(1.5e-4), Some(&far), 1e-6);
        assert!(!ev.is_noise() && ev.words("x").contains("do not compute the same function"), "{ev:?}");
        let ev = evidence(&near, &far, &e, Some(&near), Some(1.5e-4), Some(&e), 1e-6);
        assert!(ev.is_noise() && ev.words("x").contains("agrees with the Python library's float64 value"), "{ev:?}");
    }

    /// embcheck's f32 value 3e-4 from its f64 value (an error of f32-only code) with the reference 2e-5 from
    /// it: its own distance does not widen its own bound, so it is not noise; a system under test at 3e-4
    /// is held to the reference's and embcheck's noise alike.
    #[test]
    fn no_side_vouches_for_itself() {
        let e = Vector::Dense(vec![1.0, 0.0, 0.0, 0.0]);
        let near_ref = Vector::Dense(vec![1.0, 0.0, 0.0, 2e-5]);
        let far = Vector::Dense(vec![1.0, 0.0, 3e-4, 0.0]);
        let ev = evidence(&far, &near_ref, &e, Some(&far), None, None, 1e-6);
        assert!(!ev.is_noise() && (ev.bound_actual - 6e-5).abs() < 1e-9, "{ev:?}");
        assert!(!ev.basis_actual.contains("embcheck's own"), "{ev:?}");
        let near = Vector::Dense(vec![1.0, 2e-5, 0.0, 0.0]);
        let ev = evidence(&far, &near_ref, &e, Some(&near), None, None, 1e-6);
        assert!(!ev.is_noise() && ev.basis_actual.contains("embcheck's own"), "{ev:?}");
        // Within 3x of the other measurements, it is.
        let mid = Vector::Dense(vec![1.0, 0.0, 5e-5, 0.0]);
        let ev = evidence(&mid, &near_ref, &e, Some(&mid), None, None, 1e-6);
        assert!(ev.is_noise(), "{ev:?}");
    }
}
