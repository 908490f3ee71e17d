//! The compare engine: actual vs expected values, per text and per pipeline. It knows nothing of where the
//! vectors came from; [`diagnosis`] asks an [`diagnosis::Alternatives`] provider to compute alternatives.

pub mod diagnosis;
pub mod metrics;
pub mod noise;
pub mod tolerance;

use serde::{Deserialize, Serialize};

pub use diagnosis::{Alternatives, Diagnosis, NoAlternatives, Stage, Subject};
pub use metrics::Metrics;
pub use tolerance::{Tolerance, ToleranceOverride};

use crate::pipeline::{PipelineKind, Vector};

/// Whether the token ids of a text agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum TokenMatch {
    /// Identical ids.
    Same,
    /// The first position where they differ (`None`: that side has ended).
    Differ {
        /// Position of the first difference.
        position: usize,
        /// Our id there.
        actual: Option<u32>,
        /// The reference's id there.
        expected: Option<u32>,
        /// Our token count.
        actual_len: usize,
        /// The reference's token count.
        expected_len: usize,
    },
    /// One side has no token ids.
    Unknown,
}

impl TokenMatch {
    /// Compares two id sequences. An empty sequence means "not known for this text" (a system that gave
    /// ids for some texts only): every real encoding has at least its special tokens.
    pub fn of(actual: Option<&[u32]>, expected: Option<&[u32]>) -> Self {
        let (Some(a), Some(e)) = (actual.filter(|a| !a.is_empty()), expected.filter(|e| !e.is_empty())) else { return TokenMatch::Unknown };
        if a == e {
            return TokenMatch::Same;
        }
        let position = a.iter().zip(e).take_while(|(x, y)| x == y).count();
        TokenMatch::Differ {
            position,
            actual: a.get(position).copied(),
            expected: e.get(position).copied(),
            actual_len: a.len(),
            expected_len: e.len(),
        }
    }

    /// `true`, `false` or empty (unknown), for reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenMatch::Same => "true",
            TokenMatch::Differ { .. } => "false",
            TokenMatch::Unknown => "",
        }
    }
}

/// One text of one pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowResult {
    /// Position in the suite's texts.
    pub index: usize,
    /// The text's id.
    pub id: String,
    /// The numbers.
    pub metrics: Metrics,
    /// Sparse/ColBERT: the largest difference of this text's retrieval scores against the suite's first
    /// texts whose own values pass, beyond the noise floor, relative to the largest expected score.
    pub score_diff: Option<f64>,
    /// Token-id agreement.
    pub tokens: TokenMatch,
    /// The checks that failed (empty: pass): rejected, non-finite, zero-norm, shape, cosine, rel_l2,
    /// max_abs, jaccard, score, tokens.
    #[serde(deserialize_with = "checks::deserialize")]
    pub failed: Vec<&'static str>,
    /// Why it failed, when it did.
    pub diagnosis: Option<Diagnosis>,
}

impl RowResult {
    /// Whether every check held.
    pub fn pass(&self) -> bool {
        self.failed.is_empty()
    }

    /// Whether the system under test rejected this text (no value to compare).
    pub fn is_rejected(&self) -> bool {
        self.failed.first() == Some(&"rejected")
    }

    /// A failing text in one line, as the terminal and the failure message show it:
    /// `id: cosine …, rel L2 …, max abs …, failed [checks]; keyword: evidence`.
    pub fn failure_line(&self) -> String {
        let id: String = self.id.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let diagnosis = self.diagnosis.as_ref().map_or_else(|| "unknown: not diagnosed".to_string(), ToString::to_string);
        let m = &self.metrics;
        // Values of another shape have no meaningful metrics over a common prefix: only the checks.
        if self.is_rejected() || !m.same_shape && m.rows.is_none() {
            return format!("{id}: failed [{}]; {diagnosis}", self.failed.join(", "));
        }
        format!("{id}: cosine {:.9}, rel L2 {:.3e}, max abs {:.3e}, failed [{}]; {diagnosis}", m.cosine, m.rel_l2, m.max_abs_diff, self.failed.join(", "))
    }
}

/// The line that closes a cut list: `… and 32 more failing texts`, or `None` when nothing was left out.
pub fn more_line(shown: usize, total: usize, what: &str) -> Option<String> {
    (total > shown).then(|| format!("… and {} more {what}", total - shown))
}

/// The names of the checks, as `RowResult::failed` holds them.
pub mod checks {
    /// Every check, in the order they are made.
    pub const ALL: [&str; 10] = ["rejected", "non-finite", "zero-norm", "shape", "cosine", "rel_l2", "max_abs", "jaccard", "score", "tokens"];

    /// Reads check names back (from a shard file) as the static names.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<&'static str>, D::Error> {
        let names: Vec<String> = serde::Deserialize::deserialize(d)?;
        names
            .iter()
            .map(|n| ALL.iter().find(|c| **c == n.as_str()).copied().ok_or_else(|| serde::de::Error::custom(format!("unknown check {n:?}"))))
            .collect()
    }
}

/// Which checks a text fails. Written as `!(x <= limit)` so that NaN fails every comparison.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub fn failed_checks(m: &Metrics, tokens: &TokenMatch, score_diff: Option<f64>, tol: &Tolerance) -> Vec<&'static str> {
    let mut f = Vec::new();
    if !m.finite {
        f.push("non-finite");
    }
    if m.norm_actual == 0.0 && m.norm_expected != 0.0 {
        f.push("zero-norm");
    }
    if !m.same_shape {
        f.push("shape");
        // Dense vectors of different widths do not compare at all: no figure is a check.
        if m.rows.is_none() {
            return f;
        }
    }
    if !(m.cosine >= tol.min_cosine) {
        f.push("cosine");
    }
    // f32 noise of an output that is a small sum of large terms is bounded by the terms, not the output:
    // the noise floor (per component) lets it through however small the output is.
    if !(m.rel_l2 <= tol.max_rel_l2 || m.l2 <= tol.noise_floor * (m.components as f64).sqrt()) {
        f.push("rel_l2");
    }
    if !(m.max_abs_diff <= tol.max_abs + tol.max_rel_l2 * m.max_abs_expected + tol.noise_floor) {
        f.push("max_abs");
    }
    if let Some(j) = m.jaccard {
        if !(j >= tol.min_jaccard) {
            f.push("jaccard");
        }
    }
    if let Some(s) = score_diff {
        if !(s <= tol.max_rel_l2) {
            f.push("score");
        }
    }
    if matches!(tokens, TokenMatch::Differ { .. }) {
        f.push("tokens");
    }
    f
}

/// Per-pipeline figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Texts compared.
    pub rows: usize,
    /// Texts out of tolerance.
    pub failed: usize,
    /// Lowest cosine.
    pub min_cosine: f64,
    /// Highest relative L2.
    pub max_rel_l2: f64,
    /// Median relative L2.
    pub p50_rel_l2: f64,
    /// 99th percentile of relative L2.
    pub p99_rel_l2: f64,
    /// Highest |a − e|.
    pub max_abs_diff: f64,
    /// Texts whose token ids differ.
    pub token_mismatches: usize,
    /// Texts the system under test rejected (their metrics are left out of the figures above).
    pub rejected: usize,
}

/// Percentile by nearest rank of sorted values (q = 0 the smallest, 1 the largest); NaN when there are
/// none. Every report's percentiles (check's p50/p99, the gate's drift median and p95) use it.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Summary {
    /// Summarizes rows. NaN metrics make the extremes NaN, never hide.
    pub fn of(all: &[RowResult]) -> Self {
        let rows: Vec<RowResult> = all.iter().filter(|r| !r.is_rejected()).cloned().collect();
        let rows = rows.as_slice();
        let mut rel: Vec<f64> = rows.iter().map(|r| r.metrics.rel_l2).collect();
        rel.sort_by(|a, b| a.total_cmp(b));
        let worst = |f: fn(&RowResult) -> f64, min: bool| {
            rows.iter().map(f).fold(if min { f64::INFINITY } else { f64::NEG_INFINITY }, |acc, x| {
                if x.is_nan() || acc.is_nan() {
                    f64::NAN
                } else if min {
                    acc.min(x)
                } else {
                    acc.max(x)
                }
            })
        };
        Summary {
            rows: all.len(),
            failed: all.iter().filter(|r| !r.pass()).count(),
            min_cosine: worst(|r| r.metrics.cosine, true),
            max_rel_l2: worst(|r| r.metrics.rel_l2, false),
            p50_rel_l2: percentile(&rel, 0.5),
            p99_rel_l2: percentile(&rel, 0.99),
            max_abs_diff: worst(|r| r.metrics.max_abs_diff, false),
            token_mismatches: rows.iter().filter(|r| matches!(r.tokens, TokenMatch::Differ { .. })).count(),
            rejected: all.len() - rows.len(),
        }
    }
}

/// One pipeline's comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineResult {
    /// Which pipeline.
    pub pipeline: PipelineKind,
    /// The tolerance applied.
    pub tolerance: Tolerance,
    /// One row per text.
    pub rows: Vec<RowResult>,
    /// Figures over the rows.
    pub summary: Summary,
}

impl PipelineResult {
    /// Whether every row passed.
    pub fn passed(&self) -> bool {
        self.summary.failed == 0
    }
}

/// How many texts serve as the fixed probe set for retrieval-score agreement.
const SCORE_PROBES: usize = 16;

/// One side of a comparison: a value per text, and the token ids when known.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    /// One value per text.
    pub vectors: &'a [Vector],
    /// The token ids each text was encoded as.
    pub tokens: Option<&'a [Vec<u32>]>,
    /// Per text, the message of a system under test that rejected it (its value is then a placeholder).
    pub rejected: Option<&'a [Option<String>]>,
}

impl<'a> Side<'a> {
    /// Values and, when known, token ids; nothing rejected.
    pub fn new(vectors: &'a [Vector], tokens: Option<&'a [Vec<u32>]>) -> Self {
        Side { vectors, tokens, rejected: None }
    }
}

/// Compares every text of one pipeline and diagnoses the failures.
pub fn compare_pipeline(
    pipeline: PipelineKind,
    ids: &[String],
    actual: Side<'_>,
    expected: Side<'_>,
    tol: Tolerance,
    alternatives: &mut dyn Alternatives,
) -> crate::Result<PipelineResult> {
    let (actual_tokens, expected_tokens, rejected) = (actual.tokens, expected.tokens, actual.rejected);
    let (actual, expected) = (actual.vectors, expected.vectors);
    if actual.len() != expected.len() || ids.len() != actual.len() {
        return Err(crate::Error::Usage(format!(
            "{pipeline}: {} texts, {} actual and {} expected values",
            ids.len(),
            actual.len(),
            expected.len()
        )));
    }
    let mut rows = Vec::with_capacity(actual.len());
    for i in 0..actual.len() {
        if let Some(msg) = rejected.and_then(|r| r.get(i)).and_then(Option::as_ref) {
            rows.push(RowResult {
                index: i,
                id: ids[i].clone(),
                metrics: Metrics::missing(),
                score_diff: None,
                tokens: TokenMatch::Unknown,
                failed: vec!["rejected"],
                diagnosis: Some(Diagnosis::new(Stage::Rejected, msg.clone())),
            });
            continue;
        }
        let metrics = metrics::compare_with_floor(&actual[i], &expected[i], tol.noise_floor);
        let tokens = TokenMatch::of(actual_tokens.map(|t| t[i].as_slice()), expected_tokens.map(|t| t[i].as_slice()));
        let failed = failed_checks(&metrics, &tokens, None, &tol);
        rows.push(RowResult { index: i, id: ids[i].clone(), metrics, score_diff: None, tokens, failed, diagnosis: None });
    }
    // Retrieval scores against the first texts whose own values pass: a text is not failed for a broken probe.
    let probes: Vec<usize> = rows.iter().filter(|r| r.pass()).map(|r| r.index).take(SCORE_PROBES).collect();
    for row in rows.iter_mut().filter(|r| !r.is_rejected()) {
        let i = row.index;
        if !matches!(expected[i], Vector::Dense(_)) {
            let (mut worst, mut scale, mut noise) = (0f64, 0f64, 0f64);
            for &j in &probes {
                let (sa, se) = (metrics::score(&actual[i], &actual[j]), metrics::score(&expected[i], &expected[j]));
                let d = (sa - se).abs();
                worst = if d.is_nan() || worst.is_nan() { f64::NAN } else { worst.max(d) };
                scale = scale.max(se.abs());
                // |Δ(Σ wq·wp)| ≤ floor · (Σ|wq| + Σ|wp|): the f32 noise the floor allows in a score.
                noise = noise.max(tol.noise_floor * (metrics::l1(&expected[i]) + metrics::l1(&expected[j])));
            }
            // Beyond the noise floor, relative to the largest expected score.
            let beyond = if worst.is_nan() { f64::NAN } else { (worst - noise).max(0.0) };
            let s = if scale > 0.0 { beyond / scale } else { beyond };
            row.score_diff = Some(s);
            row.failed = failed_checks(&row.metrics, &row.tokens, Some(s), &tol);
        }
    }
    // f32 noise first, for every text it may explain (each proof has its own allowance, see
    // `Alternatives::f64_value`), then the diagnoses of what is left.
    let mut not_noise: Vec<(usize, String)> = Vec::new();
    let who = if alternatives.subject() == Subject::SystemUnderTest { "the system under test" } else { "embcheck's f32 value" };
    for row in rows.iter_mut().filter(|r| !r.pass()) {
        let i = row.index;
        // The reference's recorded f32 noise widens the band examined (tokenizing the text costs little).
        let recorded = alternatives.noise_scales(i).ok().and_then(|(r, _)| r);
        if !noise::candidate(row, &expected[i], &tol, recorded) {
            continue;
        }
        match noise_evidence(i, &row.id, &actual[i], &expected[i], alternatives) {
            Ok(Some(ev)) if ev.is_noise() => {
                row.failed.clear();
                row.diagnosis = Some(Diagnosis::new(Stage::F32Noise, ev.words(who)));
            }
            Ok(Some(ev)) => not_noise.push((i, format!("not f32 noise: {}", ev.words(who)))),
            Ok(None) => {}
            Err(e) => not_noise.push((i, format!("f32 noise not examined: {}", e.one_line()))),
        }
    }
    for row in rows.iter_mut().filter(|r| !r.pass() && r.diagnosis.is_none()) {
        let i = row.index;
        // A diagnosis that cannot be made (its budget spent, a recomputation that failed) leaves the verdict
        // as it is, with the reason.
        let subject_ids = if alternatives.subject() == Subject::SystemUnderTest { actual_tokens } else { expected_tokens };
        let mut d = match diagnosis::diagnose(row, &actual[i], &expected[i], subject_ids.map(|t| t[i].as_slice()), &tol, alternatives) {
            Ok(d) => d,
            Err(e) => Diagnosis::new(Stage::Unknown, format!("not diagnosed: {}", e.one_line())),
        };
        if let Some((_, note)) = not_noise.iter().find(|(k, _)| *k == i) {
            d.detail = format!("{}; {note}", d.detail);
        }
        row.diagnosis = Some(d);
    }
    consistent_truncation(&mut rows, expected_tokens);
    let summary = Summary::of(&rows);
    Ok(PipelineResult { pipeline, tolerance: tol, rows, summary })
}

/// The f64 recomputation of text `i` and how far each side is from it, when the alternatives can make it.
fn noise_evidence(i: usize, id: &str, actual: &Vector, expected: &Vector, alt: &mut dyn Alternatives) -> crate::Result<Option<noise::Evidence>> {
    let Some(exact) = alt.f64_value(i)? else { return Ok(None) };
    // embcheck's own f32 noise on this text: its pipeline's value when that is the side under test (an
    // 8192-token text is encoded alone, as here), else the text recomputed alone in f32.
    let own = if alt.subject() == Subject::Reference { Some(actual.clone()) } else { alt.ours(i)? };
    let (recorded, floor) = alt.noise_scales(i)?;
    Ok(Some(noise::evidence(actual, expected, &exact, own.as_ref(), recorded, alt.python_f64(id).as_ref(), floor)))
}

/// The max length a truncation diagnosis names (every one says "max length N").
fn truncation_length(d: &Diagnosis) -> Option<usize> {
    if d.stage != Stage::Truncation {
        return None;
    }
    let rest = &d.detail[d.detail.find("max length ")? + "max length ".len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// A system cuts every text at one max length: a length named for one text is withdrawn (made `unknown`,
/// with the reason) when another text of the run contradicts it — a text longer than that in the reference
/// whose value agrees, which the system cannot have cut there.
fn consistent_truncation(rows: &mut [RowResult], expected_tokens: Option<&[Vec<u32>]>) {
    let Some(tokens) = expected_tokens else { return };
    let longest_passing = |n: usize, rows: &[RowResult]| {
        rows.iter().filter(|r| r.pass()).filter_map(|r| Some((r, tokens.get(r.index)?.len()))).filter(|(_, len)| *len > n).max_by_key(|(_, len)| *len).map(|(r, len)| (r.id.clone(), len))
    };
    let named: Vec<(usize, usize)> = rows.iter().filter_map(|r| Some((r.index, truncation_length(r.diagnosis.as_ref()?)?))).collect();
    for (i, n) in named {
        if let Some((id, len)) = longest_passing(n, rows) {
            let row = &mut rows[i];
            let detail = row.diagnosis.as_ref().map_or(String::new(), |d| d.detail.clone());
            row.diagnosis = Some(Diagnosis::new(
                Stage::Unknown,
                format!("{detail}; but text {id} has {len} tokens in the reference and agrees, so the texts were not all cut at {n}: no single max length explains the run"),
            ));
        }
    }
}

#[cfg(test)]
mod truncation_tests {
    use super::*;

    fn row(index: usize, failed: Vec<&'static str>, diagnosis: Option<Diagnosis>) -> RowResult {
        RowResult { index, id: format!("t{index}"), metrics: Metrics::missing(), score_diff: None, tokens: TokenMatch::Unknown, failed, diagnosis }
    }

    #[test]
    fn a_max_length_contradicted_by_another_text_is_withdrawn() {
        let cut = || Some(Diagnosis::new(Stage::Truncation, "the system under test matches this text recomputed with max length 8"));
        // Text 1 is 12 tokens long in the reference and passes: the system did not cut it at 8.
        let tokens: Vec<Vec<u32>> = vec![vec![1; 20], vec![1; 12], vec![1; 5]];
        let mut rows = vec![row(0, vec!["cosine"], cut()), row(1, vec![], None), row(2, vec![], None)];
        consistent_truncation(&mut rows, Some(&tokens));
        let d = rows[0].diagnosis.as_ref().unwrap();
        assert_eq!(d.stage, Stage::Unknown, "{d:?}");
        assert!(d.detail.contains("text t1 has 12 tokens") && d.detail.contains("not all cut at 8"), "{d:?}");
        // Only shorter texts pass: consistent, kept.
        let tokens: Vec<Vec<u32>> = vec![vec![1; 20], vec![1; 8], vec![1; 5]];
        let mut rows = vec![row(0, vec!["cosine"], cut()), row(1, vec![], None), row(2, vec![], None)];
        consistent_truncation(&mut rows, Some(&tokens));
        assert_eq!(rows[0].diagnosis.as_ref().unwrap().stage, Stage::Truncation);
        assert_eq!(truncation_length(&Diagnosis::new(Stage::Truncation, "a cut at max length 128 (x)")), Some(128));
    }
}
