//! Why a text failed, by stage. A keyword is given only when it was proven: by the numbers themselves
//! (non-finite values, token ids, a norm), or by an alternative computed with the suite's model that
//! matches within tolerance. Otherwise the keyword is `unknown` and the detail says what was tried.
//!
//! Keywords (stable, in the `diagnosis` column): `rejected`, `non-finite`, `tokenization`, `truncation`,
//! `preprocessing`, `normalization`, `pooling`, `padding`, `attention-mask`, `precision`, `unknown`.
//!
//! Which side an alternative explains depends on the [`Subject`]: when embcheck's own pipeline is checked,
//! the reference is the odd one out (it was made some other way); when a system under test is checked, its
//! vectors are.

use serde::{Deserialize, Serialize};

use super::{failed_checks, metrics, RowResult, TokenMatch, Tolerance};
use crate::error::Result;
use crate::pipeline::{normalize, PoolingChoice, Vector};

/// The stage a mismatch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// The system under test rejected the text (an HTTP error, a malformed line): its message is the detail.
    Rejected,
    /// NaN or Inf on either side.
    NonFinite,
    /// The value has another shape than the reference's (dense width, ColBERT width): nothing compares.
    Shape,
    /// Token ids differ.
    Tokenization,
    /// The text was cut at another max length (recomputed at that length, it matches).
    Truncation,
    /// The text was prepared otherwise: stripped or not, lowercased, with or without a prompt or instruction.
    Preprocessing,
    /// Same direction, different norm.
    Normalization,
    /// Another pooling of the same hidden states.
    Pooling,
    /// The text alone matches while the text in its padded batch does not.
    Padding,
    /// The model computed with the other attention mask (causal where config.json says bidirectional, or the
    /// reverse) matches.
    AttentionMask,
    /// Drift of the size that f16/bf16 computation gives on this text.
    Precision,
    /// Not a failure: both sides are as close to embcheck's f64 value as f32 arithmetic explains
    /// ([`super::noise`]). The row passes with this verdict.
    #[serde(rename = "f32 noise")]
    F32Noise,
    /// Nothing above was proven.
    Unknown,
}

impl Stage {
    /// The stable keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Stage::Rejected => "rejected",
            Stage::NonFinite => "non-finite",
            Stage::Shape => "shape",
            Stage::Tokenization => "tokenization",
            Stage::Truncation => "truncation",
            Stage::Preprocessing => "preprocessing",
            Stage::Normalization => "normalization",
            Stage::Pooling => "pooling",
            Stage::Padding => "padding",
            Stage::AttentionMask => "attention-mask",
            Stage::Precision => "precision",
            Stage::F32Noise => "f32 noise",
            Stage::Unknown => "unknown",
        }
    }
}

/// A stage and the evidence for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The stage.
    pub stage: Stage,
    /// The evidence, in a sentence.
    pub detail: String,
}

impl std::fmt::Display for Diagnosis {
    /// `keyword: evidence`, as every report words it (terminal, failure message, Markdown, HTML).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.stage.keyword(), self.detail)
    }
}

impl Diagnosis {
    /// A stage with its evidence.
    pub fn new(stage: Stage, detail: impl Into<String>) -> Self {
        Diagnosis { stage, detail: detail.into() }
    }
}

/// Which side of a comparison the alternatives are held against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// embcheck's own pipeline is the actual side: alternatives explain how the reference was made.
    Reference,
    /// A system under test is the actual side: alternatives explain what the system computes.
    SystemUnderTest,
}

/// Computes alternatives of a text with the suite's model, to prove a diagnosis. Every method may decline
/// (`None` / empty), e.g. when comparing two files with no model at hand.
pub trait Alternatives {
    /// Which side the alternatives explain.
    fn subject(&self) -> Subject {
        Subject::Reference
    }
    /// Whether text `index` can be recomputed at all; `Err(reason)` when not (no model, over budget).
    fn begin(&mut self, _index: usize) -> std::result::Result<(), String> {
        Err("nothing could be recomputed: no model at hand, so only model-free diagnoses were possible".into())
    }
    /// embcheck's pipeline on text `index` alone (a batch of one), at the suite's settings.
    fn ours(&mut self, _index: usize) -> Result<Option<Vector>> {
        Ok(None)
    }
    /// The same, truncated to `max_length` tokens.
    fn with_max_length(&mut self, _index: usize, _max_length: usize) -> Result<Option<Vector>> {
        Ok(None)
    }
    /// Max lengths shorter than the text's token count worth trying (the reference's own, usual limits).
    fn truncation_lengths(&mut self, _index: usize) -> Result<Vec<usize>> {
        Ok(Vec::new())
    }
    /// How many tokens text `index` has untruncated (up to what the model allows), special tokens included.
    fn token_count(&mut self, _index: usize) -> Result<Option<usize>> {
        Ok(None)
    }
    /// A max length proven for one text: later texts try it first (a system cuts every text at one length).
    fn confirm_truncation(&mut self, _max_length: usize) {}
    /// The most tokens the model's position table encodes: a max length at or above a text's token count
    /// keeps it whole.
    fn position_limit(&self) -> Option<usize> {
        None
    }
    /// The max length the suite's pipeline cuts at (the reference's, as the suite describes it).
    fn pipeline_max_length(&self) -> Option<usize> {
        None
    }
    /// Other poolings of the same hidden states, each with how it pools.
    fn poolings(&mut self, _index: usize) -> Result<Vec<(PoolingChoice, Vector)>> {
        Ok(Vec::new())
    }
    /// How the suite's pipeline pools, to name every difference a matching pooling has from it.
    fn own_pooling(&self) -> Option<PoolingChoice> {
        None
    }
    /// The text prepared otherwise (stripped or not, lowercased or not, with or without a prompt), named.
    fn preprocessings(&mut self, _index: usize) -> Result<Vec<(String, Vector)>> {
        Ok(Vec::new())
    }
    /// The token ids of the text prepared each way [`Alternatives::preprocessings`] prepares it, named the same
    /// (only the tokenizer runs): a preparation proven by the ids alone, where the vectors cannot tell.
    fn prepared_ids(&mut self, _index: usize) -> Result<Vec<(String, Vec<u32>)>> {
        Ok(Vec::new())
    }
    /// embcheck's pipeline on the text with the model's attention mask changed (causal for bidirectional, or the
    /// reverse), each named; empty for models whose config has no such choice.
    fn other_masks(&mut self, _index: usize) -> Result<Vec<(String, Vector)>> {
        Ok(Vec::new())
    }
    /// embcheck's pipeline on the text as a right-padded batch holds it when last-token pooling reads the
    /// batch's last position, a padded one: the text right-padded to each length a batch of the suite's texts
    /// could have, with each pad id the model names, each named; empty where the pipeline does not pool the
    /// last token, or the family's padded positions are not computed.
    fn padded_reads(&mut self, _index: usize) -> Result<Vec<(String, Vector)>> {
        Ok(Vec::new())
    }
    /// embcheck's pipeline on the text in the other precisions, per dtype name.
    fn other_precisions(&mut self, _index: usize) -> Result<Vec<(String, Vector)>> {
        Ok(Vec::new())
    }
    /// embcheck's pipeline on text `index` alone with weights and accumulation in f64 (the value f32 noise
    /// is measured against, see [`super::noise`]); computed once per text.
    fn f64_value(&mut self, _index: usize) -> Result<Option<Vector>> {
        Ok(None)
    }
    /// The f64 value of text `index` if [`Alternatives::f64_value`] computed it already (nothing is computed).
    fn f64_known(&self, _index: usize) -> Option<Vector> {
        None
    }
    /// The scales of f32 noise for text `index`: the reference's recorded own noise scaled to the text (if the
    /// reference records one) and [`super::noise::growth_floor`] for the text and model.
    fn noise_scales(&mut self, _index: usize) -> Result<(Option<f64>, f64)> {
        Ok((None, 0.0))
    }
    /// The Python library's float64 value of text `id`, when the reference records it.
    fn python_f64(&self, _id: &str) -> Option<Vector> {
        None
    }
}

/// No model at hand: only what the two values themselves prove.
pub struct NoAlternatives;
impl Alternatives for NoAlternatives {}

fn passes(a: &Vector, e: &Vector, tol: &Tolerance) -> bool {
    failed_checks(&metrics::compare_with_floor(a, e, tol.noise_floor), &TokenMatch::Unknown, None, tol).is_empty()
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

/// Rounds an f32 through a storage precision and back.
type Round = fn(f32) -> f32;

/// `v` with every component rounded through `round` (a storage precision); `None` for sparse values.
fn rounded(v: &Vector, round: Round) -> Option<Vector> {
    let r = |x: &f32| round(*x);
    match v {
        Vector::Dense(d) => Some(Vector::Dense(d.iter().map(r).collect())),
        Vector::Multi(m) => Some(Vector::Multi(m.iter().map(|row| row.iter().map(r).collect()).collect())),
        Vector::Sparse(_) => None,
    }
}

/// The widths, when they differ: a dense vector of another width, or ColBERT rows of another width (another
/// row count is a token count, which the stages below explain).
fn shape_difference(actual: &Vector, expected: &Vector, who: &str) -> Option<String> {
    let (a, e) = match (actual, expected) {
        (Vector::Dense(a), Vector::Dense(e)) => (a.len(), e.len()),
        (Vector::Multi(a), Vector::Multi(e)) => (a.first()?.len(), e.first()?.len()),
        _ => return None,
    };
    let side = if who == "the reference" { ("embcheck's value", "the reference's") } else { ("the system under test answered", "the reference has") };
    (a != e).then(|| format!("{} {a} values per vector, {} {e}: another model or output layer (Dense, Matryoshka truncation), nothing is compared", side.0, side.1))
}


/// How far apart the drift of another precision and the observed drift may be for `precision`: the observed
/// relative L2 must lie within [d / 3, 3 d], d the drift that precision gives on this very text.
const PRECISION_BAND: (f64, f64) = (1.0 / 3.0, 3.0);

/// How much closer to the subject than an independent perturbation of the same size a lower-precision value
/// must be (see `diagnose`). Measured: FlagEmbedding fp16 references sit at 0.69–0.76 of that distance from
/// embcheck's f16-weights value on a 32-wide model; unrelated weight noise at about 1.0.
const TOWARDS: f64 = 0.85;

/// Diagnoses a failing row: stages in order (tokens → normalization → pooling → attention mask →
/// padded read → truncation → preprocessing → padding → precision), each proven by the numbers or by a matching alternative.
///
/// `subject_ids`: the token ids of the side the alternatives explain (the system under test's, or the
/// reference's), where known.
pub fn diagnose(row: &RowResult, actual: &Vector, expected: &Vector, subject_ids: Option<&[u32]>, tol: &Tolerance, alt: &mut dyn Alternatives) -> Result<Diagnosis> {
    let m = &row.metrics;
    if !m.finite {
        let (side, at) = match actual.first_non_finite() {
            Some(k) => ("actual", k),
            None => ("expected", expected.first_non_finite().unwrap_or(0)),
        };
        return Ok(Diagnosis::new(Stage::NonFinite, format!("NaN or Inf in the {side} value at component {at}")));
    }
    let external = alt.subject() == Subject::SystemUnderTest;
    let (who, whose) = if external { ("the system under test", "the system's") } else { ("the reference", "the reference's") };
    // The side the alternatives are not held against, as the truncation wording names it.
    let other = if external { "the reference" } else { "embcheck's pipeline" };
    if let Some(detail) = shape_difference(actual, expected, who) {
        return Ok(Diagnosis::new(Stage::Shape, detail));
    }
    // What the alternatives must match.
    let subject = if external { actual } else { expected };

    // Normalization is proven by the two values alone: normalizing both makes them pass.
    if let (Some(na), Some(ne)) = (normalized(actual), normalized(expected)) {
        let norm_gap = (m.norm_actual - m.norm_expected).abs() / m.norm_expected.max(f64::MIN_POSITIVE);
        if norm_gap > tol.max_rel_l2 && passes(&na, &ne, tol) {
            let unit = |n: f64| (n - 1.0).abs() < 1e-3;
            let which = match (unit(m.norm_actual), unit(m.norm_expected)) {
                (false, true) => format!("; the reference is L2-normalized, {} is not", if external { "the system's vector" } else { "this pipeline's" }),
                (true, false) => format!("; {} is L2-normalized, the reference is not", if external { "the system's vector" } else { "this pipeline's" }),
                _ => String::new(),
            };
            return Ok(Diagnosis::new(
                Stage::Normalization,
                format!(
                    "same direction (cosine {:.7}, and within tolerance once both are normalized) but norms differ: {:.6} {} vs {:.6} in the reference{which}",
                    m.cosine,
                    m.norm_actual,
                    if external { "from the system" } else { "here" },
                    m.norm_expected
                ),
            ));
        }
    }

    if let Err(why) = alt.begin(row.index) {
        return Ok(match &row.tokens {
            TokenMatch::Differ { .. } => {
                let d = cut_in_ids(&row.tokens, external).unwrap_or_else(|| Diagnosis::new(Stage::Tokenization, token_fact(&row.tokens)));
                Diagnosis::new(d.stage, format!("{}; {why}", d.detail))
            }
            _ => Diagnosis::new(Stage::Unknown, format!("cosine {:.7}, relative L2 {:.3e}; {why}", m.cosine, m.rel_l2)),
        });
    }
    let mut tried: Vec<String> = Vec::new();

    // Only the ids differ, the vectors agree (a prompt out of a sliding window's reach, say): no vector tells
    // the preparations apart, the ids do.
    if let (["tokens"], TokenMatch::Differ { .. }, Some(ids)) = (row.failed.as_slice(), &row.tokens, subject_ids) {
        let agree = "the vectors agree within tolerance: the difference does not reach the output";
        if let Some(d) = cut_in_ids(&row.tokens, external) {
            return Ok(Diagnosis::new(d.stage, format!("{}; {agree}", d.detail)));
        }
        let prepared = alt.prepared_ids(row.index)?;
        if let Some((name, _)) = prepared.iter().find(|(_, p)| p.as_slice() == ids) {
            return Ok(Diagnosis::new(Stage::Preprocessing, format!("{}; {whose} token ids are those of {name} ({agree})", token_fact(&row.tokens))));
        }
        let names: Vec<String> = prepared.into_iter().map(|(n, _)| format!("{n} (other ids)")).collect();
        return Ok(Diagnosis::new(Stage::Tokenization, format!("{}; {agree}{}", token_fact(&row.tokens), tried_note(&names))));
    }

    // In external mode: a system that agrees with embcheck's pipeline while the reference does not is not
    // explained by any alternative of that pipeline.
    let ours = alt.ours(row.index)?;
    if external {
        if let Some(o) = &ours {
            if passes(o, actual, tol) {
                return Ok(Diagnosis::new(
                    Stage::Unknown,
                    "the system under test agrees with embcheck's own pipeline on this text, and both differ from the reference: the suite's settings (max length, prompt, pipeline) may not describe how the reference was made",
                ));
            }
        }
    }

    if let TokenMatch::Differ { position, actual_len, expected_len, .. } = row.tokens {
        let shorter = actual_len.min(expected_len);
        // Truncation keeps a prefix and then adds the closing special token: the ids agree up to it.
        // A cut at 2 tokens keeps no text: no setting cuts there, so such ids are not read as a truncation.
        // Either side may be the longer one: the length to recompute at is read straight from the subject's ids.
        if actual_len != expected_len && position + 1 >= shorter && shorter >= 3 {
            let n = if external { actual_len } else { expected_len };
            match alt.with_max_length(row.index, n)? {
                Some(v) if passes(&v, subject, tol) => {
                    let cut = truncation_words(alt, row.index, who, other, n)?;
                    return Ok(Diagnosis::new(
                        Stage::Truncation,
                        format!("token ids agree up to position {position} ({actual_len} tokens on the actual side, {expected_len} in the reference); {cut}"),
                    ));
                }
                Some(_) => tried.push(format!("max length {n} (recomputed, still differs)")),
                None => tried.push(format!("max length {n} (could not be recomputed)")),
            }
        }
        if let Some(d) = first_matching(alt.preprocessings(row.index)?, subject, tol, &mut tried) {
            return Ok(Diagnosis::new(Stage::Preprocessing, format!("{}; {whose} value matches {d}", token_fact(&row.tokens))));
        }
        return Ok(Diagnosis::new(Stage::Tokenization, format!("{}{}", token_fact(&row.tokens), tried_note(&tried))));
    }

    let poolings = alt.poolings(row.index)?;
    if let Some(k) = first_matching_index(poolings.iter().map(|(c, v)| (c.to_string(), v)), subject, tol, &mut tried) {
        return Ok(pooling_diagnosis(&poolings[k].0, alt.own_pooling(), who, other));
    }
    // One recomputation, before the truncation search's many: the model's other attention mask.
    if let Some(name) = first_matching(alt.other_masks(row.index)?, subject, tol, &mut tried) {
        return Ok(Diagnosis::new(Stage::AttentionMask, format!("{who} matches this text recomputed with {name}")));
    }
    // One recomputation too (every padded position in one pass): the batch's last position read on the right.
    let reads = alt.padded_reads(row.index)?;
    if !reads.is_empty() {
        let mut missed = Vec::new();
        if let Some(name) = first_matching(reads, subject, tol, &mut missed) {
            return Ok(Diagnosis::new(
                Stage::Padding,
                format!("{who} matches {name}: last-token pooling that takes the batch's last position, which holds the text's last token only with left padding"),
            ));
        }
        tried.push(format!("the last position of a right-padded batch ({} lengths and pad ids)", missed.len()));
    }
    // Another cut or another preparation of the text feeds the model other token ids: when both sides' ids are
    // known and the same, neither can explain the difference, and none is recomputed (on an 8192-token text
    // the cut-off search alone is hundreds of encoder passes).
    if row.tokens == TokenMatch::Same {
        tried.push("no other max length or text preparation (both sides encoded the same token ids)".into());
    } else {
        // Lengths recomputed without a match, and how far each was from the subject: the cut-off search below
        // starts from them instead of recomputing them.
        let mut cut: Vec<(usize, f64)> = Vec::new();
        for n in alt.truncation_lengths(row.index)? {
            if let Some(v) = alt.with_max_length(row.index, n)? {
                if passes(&v, subject, tol) {
                    alt.confirm_truncation(n);
                    return Ok(Diagnosis::new(Stage::Truncation, truncation_words(alt, row.index, who, other, n)?));
                }
                tried.push(format!("max length {n}"));
                cut.push((n, metrics::compare(&v, subject).rel_l2));
            }
        }
        if let Some(name) = first_matching(alt.preprocessings(row.index)?, subject, tol, &mut tried) {
            return Ok(Diagnosis::new(Stage::Preprocessing, format!("{who} matches {name}")));
        }
        // The text's own cut-offs: a service may truncate at any length, not only the usual ones.
        if let Some(n) = search_cutoff(row.index, subject, tol, &cut, alt)? {
            alt.confirm_truncation(n);
            let cut = truncation_words(alt, row.index, who, other, n)?;
            return Ok(Diagnosis::new(Stage::Truncation, format!("{cut} (found among the text's own cut-offs)")));
        }
    }
    if !external {
        if let Some(alone) = &ours {
            if !passes(alone, actual, tol) && passes(alone, expected, tol) {
                let d = metrics::compare(alone, actual);
                return Ok(Diagnosis::new(
                    Stage::Padding,
                    format!("this text alone matches the reference, while in its padded batch it differs from itself alone by relative L2 {:.3e}", d.rel_l2),
                ));
            }
            tried.push("the text alone".into());
        }
    }
    // Precision: a lower precision (computing in it, weights stored in it, the value stored in it) gives a
    // drift d on this very text of the size observed, and moves embcheck's value towards the subject. Size
    // alone would name any fault of that size: a perturbation independent of the candidate lies about
    // √(observed² + d²) from it, so the candidate must be closer than TOWARDS of that. A system under test
    // must also have embcheck's own value match the reference, so that precision is all that is left.
    let mut ours_matches = ours.as_ref().is_some_and(|o| passes(o, expected, tol) || !external);
    // embcheck's own f32 value may be off the reference by f32 noise alone (long, wide inputs): proven in f64
    // as for any row (see `super::noise`), it matches as far as precision is concerned.
    if let (false, Some(o)) = (ours_matches, ours.as_ref()) {
        if let Some(exact) = alt.f64_value(row.index)? {
            let (recorded, floor) = alt.noise_scales(row.index)?;
            let python = alt.python_f64(&row.id);
            ours_matches = super::noise::evidence(o, expected, &exact, Some(o), recorded, python.as_ref(), floor).is_noise();
            if !ours_matches {
                tried.push("precision (embcheck's own f32 value is not within f32 noise of the reference)".into());
            }
        }
    }
    if let Some(base) = ours.as_ref().filter(|_| ours_matches) {
        let storage: [(&str, Round); 2] = [("f16", |x| half::f16::from_f32(x).to_f32()), ("bf16", |x| half::bf16::from_f32(x).to_f32())];
        let mut candidates = alt.other_precisions(row.index)?;
        candidates.extend(storage.into_iter().filter_map(|(name, round)| rounded(base, round).map(|v| (format!("storing the value in {name}"), v))));
        let (lo, hi) = PRECISION_BAND;
        let mut best: Option<(String, f64, f64)> = None;
        // The f64 value, when the text was recomputed in it, is the sharper anchor: the drift of a lower
        // precision from the exact value, without embcheck's own f32 noise in it.
        let exact = alt.f64_known(row.index);
        let anchor = exact.as_ref().unwrap_or(base);
        for (name, v) in candidates {
            let d = metrics::compare(&v, anchor).rel_l2;
            let ratio = metrics::compare(&v, subject).rel_l2 / m.rel_l2;
            let independent = (1.0 + (d / m.rel_l2).powi(2)).sqrt();
            let fits = d.is_finite() && d > 0.0 && m.rel_l2 >= lo * d && m.rel_l2 <= hi * d && ratio < TOWARDS * independent;
            tried.push(format!("{name} (drift {d:.3e}, {ratio:.3} of the difference away)"));
            if fits && best.as_ref().is_none_or(|(_, _, r)| ratio < *r) {
                best = Some((name, d, ratio));
            }
        }
        if let Some((name, d, ratio)) = best {
            return Ok(Diagnosis::new(
                Stage::Precision,
                format!(
                    "relative L2 {:.3e} is of the size that {name} gives on this text ({d:.3e}{}), and {name} moves embcheck's value towards {who} ({ratio:.3} of the difference away)",
                    m.rel_l2,
                    if exact.is_some() { " from embcheck's f64 value" } else { "" }
                ),
            ));
        }
    }
    Ok(Diagnosis::new(Stage::Unknown, format!("cosine {:.7}, relative L2 {:.3e}; no alternative matched{}", m.cosine, m.rel_l2, tried_note(&tried))))
}

/// A clean cut, read from the ids alone: they agree up to the last token of the shorter side, which ends
/// there (its closing special token where the other side goes on).
fn cut_in_ids(tokens: &TokenMatch, external: bool) -> Option<Diagnosis> {
    let TokenMatch::Differ { position, actual_len, expected_len, .. } = *tokens else { return None };
    let shorter = actual_len.min(expected_len);
    if actual_len == expected_len || position + 1 != shorter || shorter < 3 {
        return None;
    }
    // The shorter side is the one that was cut.
    let (n, cut) = if actual_len < expected_len { (actual_len, if external { "the system under test" } else { "embcheck's pipeline" }) } else { (expected_len, "the reference") };
    Some(Diagnosis::new(
        Stage::Truncation,
        format!("token ids agree up to position {position}, where {cut} ends: a cut at max length {n} ({actual_len} tokens on the actual side, {expected_len} in the reference), read from the ids"),
    ))
}

/// A proven truncation in words: `who` matches text `index` recomputed with max length `m`, and what that
/// means for this text (cut there, or kept whole, which any longer limit or none gives too) beside what
/// `other` does with it.
fn truncation_words(alt: &mut dyn Alternatives, index: usize, who: &str, other: &str, m: usize) -> Result<String> {
    let count = alt.token_count(index)?;
    let limit = alt.position_limit();
    let what = match (count, limit) {
        // token_count stops at the position limit: a text that reaches it may be longer still.
        (Some(c), Some(l)) if c >= l && m >= l => ", the model's position limit".to_string(),
        (Some(c), Some(l)) if m >= c => {
            format!(", which keeps all of its {c} tokens (so would any max length from {c} up, the model's position limit of {l} among them, or no cut)")
        }
        (Some(c), None) if m >= c => format!(", which keeps all of its {c} tokens (so would any max length from {c} up)"),
        _ => String::new(),
    };
    let theirs = match (alt.pipeline_max_length(), count) {
        (Some(own), Some(c)) if own >= c => format!(", while {other} keeps all {c}"),
        (Some(own), _) => format!(", while {other} cuts it at {own}"),
        (None, _) => String::new(),
    };
    Ok(format!("{who} matches this text recomputed with max length {m}{what}{theirs}"))
}

/// Texts up to this many tokens have every cut-off tried; longer ones a grid, then around its closest point.
const CUTOFF_SCAN: usize = 64;

/// The max length below the text's own token count at which embcheck's pipeline matches `subject`, if any:
/// every cut-off for short texts; for long ones about 32 evenly spaced cut-offs, then every cut-off around the
/// one closest to the subject (the representation changes gradually as tokens are added). `known`: lengths
/// already recomputed without a match, with their distance to the subject; they are not recomputed.
fn search_cutoff(index: usize, subject: &Vector, tol: &Tolerance, known: &[(usize, f64)], alt: &mut dyn Alternatives) -> Result<Option<usize>> {
    let Some(n) = alt.token_count(index)? else { return Ok(None) };
    let mut seen: Vec<(usize, f64)> = known.to_vec();
    // Recomputes cut-off `m` unless seen; `Some(m)` when it matches.
    let try_at = |alt: &mut dyn Alternatives, seen: &mut Vec<(usize, f64)>, m: usize| -> Result<Option<usize>> {
        if seen.iter().any(|(s, _)| *s == m) {
            return Ok(None);
        }
        let Some(v) = alt.with_max_length(index, m)? else { return Ok(None) };
        if passes(&v, subject, tol) {
            return Ok(Some(m));
        }
        seen.push((m, metrics::compare(&v, subject).rel_l2));
        Ok(None)
    };
    let step = if n <= CUTOFF_SCAN { 1 } else { n.div_ceil(32) };
    for m in (3..n).step_by(step) {
        if let Some(found) = try_at(alt, &mut seen, m)? {
            return Ok(Some(found));
        }
    }
    if step > 1 {
        let closest = seen.iter().filter(|(m, _)| *m < n).min_by(|a, b| a.1.total_cmp(&b.1)).map(|(m, _)| *m);
        if let Some(center) = closest {
            for m in center.saturating_sub(step).max(3)..(center + step).min(n) {
                if let Some(found) = try_at(alt, &mut seen, m)? {
                    return Ok(Some(found));
                }
            }
        }
    }
    Ok(None)
}

/// The name of the first alternative that passes against `subject`; the others are recorded as tried.
fn first_matching(alternatives: Vec<(String, Vector)>, subject: &Vector, tol: &Tolerance, tried: &mut Vec<String>) -> Option<String> {
    let k = first_matching_index(alternatives.iter().map(|(n, v)| (n.clone(), v)), subject, tol, tried)?;
    Some(alternatives[k].0.clone())
}

/// The position of the first alternative that passes against `subject`; the others are recorded as tried.
fn first_matching_index<'v>(alternatives: impl Iterator<Item = (String, &'v Vector)>, subject: &Vector, tol: &Tolerance, tried: &mut Vec<String>) -> Option<usize> {
    for (k, (name, v)) in alternatives.enumerate() {
        if passes(v, subject, tol) {
            return Some(k);
        }
        tried.push(name);
    }
    None
}

/// A matching pooling, with every difference it has from the suite's pipeline named: the modes, and the
/// normalization when that differs too (a raw CLS vector against a mean + Normalize reference differs in both).
fn pooling_diagnosis(found: &PoolingChoice, own: Option<PoolingChoice>, who: &str, other: &str) -> Diagnosis {
    let plain = Diagnosis::new(Stage::Pooling, format!("{who} matches {found} of the same hidden states"));
    let Some(own) = own.filter(|o| o != found) else { return plain };
    let norm = |c: &PoolingChoice| if c.normalized { "L2-normalized" } else { "not normalized" };
    let mut differences = Vec::new();
    if found.modes != own.modes {
        differences.push(format!("pooling ({} instead of {})", found.modes, own.modes));
    }
    if found.normalized != own.normalized {
        differences.push(format!("normalization ({} instead of {})", norm(found), norm(&own)));
    }
    let stage = if found.modes == own.modes { Stage::Normalization } else { Stage::Pooling };
    Diagnosis::new(stage, format!("{who} matches {found} of the same hidden states, where {other} computes {own}: it differs in {}", differences.join(" and in ")))
}

fn tried_note(tried: &[String]) -> String {
    if tried.is_empty() {
        String::new()
    } else {
        format!(" (tried: {})", tried.join("; "))
    }
}

fn token_fact(t: &TokenMatch) -> String {
    match t {
        TokenMatch::Differ { position, actual, expected, actual_len, expected_len } => {
            let show = |x: &Option<u32>| x.map_or("end".to_string(), |v| v.to_string());
            format!(
                "token ids differ at position {position}: {} on the actual side vs {} in the reference ({actual_len} vs {expected_len} tokens)",
                show(actual),
                show(expected)
            )
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{compare_pipeline, Side};
    use crate::pipeline::{OutputKind, PipelineKind};

    /// Alternatives given as fixed values.
    #[derive(Default)]
    struct Fixed {
        subject: Option<Subject>,
        ours: Option<Vector>,
        at_length: Option<(usize, Vector)>,
        lengths: Vec<usize>,
        poolings: Vec<(PoolingChoice, Vector)>,
        own_pooling: Option<PoolingChoice>,
        preps: Vec<(String, Vector)>,
        precisions: Vec<(String, Vector)>,
        prepared: Vec<(String, Vec<u32>)>,
        model: bool,
    }

    impl Alternatives for Fixed {
        fn subject(&self) -> Subject {
            self.subject.unwrap_or(Subject::Reference)
        }
        fn begin(&mut self, _: usize) -> std::result::Result<(), String> {
            if self.model {
                Ok(())
            } else {
                Err("no model".into())
            }
        }
        fn ours(&mut self, _: usize) -> Result<Option<Vector>> {
            Ok(self.ours.clone())
        }
        fn with_max_length(&mut self, _: usize, n: usize) -> Result<Option<Vector>> {
            Ok(self.at_length.as_ref().filter(|(m, _)| *m == n).map(|(_, v)| v.clone()))
        }
        fn truncation_lengths(&mut self, _: usize) -> Result<Vec<usize>> {
            Ok(self.lengths.clone())
        }
        fn poolings(&mut self, _: usize) -> Result<Vec<(PoolingChoice, Vector)>> {
            Ok(self.poolings.clone())
        }
        fn own_pooling(&self) -> Option<PoolingChoice> {
            self.own_pooling.clone()
        }
        fn preprocessings(&mut self, _: usize) -> Result<Vec<(String, Vector)>> {
            Ok(self.preps.clone())
        }
        fn prepared_ids(&mut self, _: usize) -> Result<Vec<(String, Vec<u32>)>> {
            Ok(self.prepared.clone())
        }
        fn other_precisions(&mut self, _: usize) -> Result<Vec<(String, Vector)>> {
            Ok(self.precisions.clone())
        }
    }

    fn pool(modes: &str, normalized: bool) -> PoolingChoice {
        PoolingChoice { modes: modes.into(), normalized }
    }

    fn d(v: &[f32]) -> Vector {
        Vector::Dense(v.to_vec())
    }

    /// A deterministic unit-ish vector and a copy moved by relative L2 `rel` along another direction.
    fn pair(rel: f32) -> (Vec<f32>, Vec<f32>) {
        let e: Vec<f32> = (0..16).map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0).collect();
        let n = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        let a = e.iter().enumerate().map(|(i, x)| x + if i % 2 == 0 { rel * n / 4.0 } else { -rel * n / 4.0 }).collect();
        (a, e)
    }

    fn diagnose_one(actual: Vector, expected: Vector, tokens: (Option<Vec<u32>>, Option<Vec<u32>>), alt: &mut Fixed) -> Diagnosis {
        let tol = Tolerance::default_for(candle_core::DType::F32, OutputKind::Dense);
        let (ta, te) = (tokens.0.map(|t| vec![t]), tokens.1.map(|t| vec![t]));
        let r = compare_pipeline(
            PipelineKind::NormalizedCls,
            &["t".to_string()],
            Side::new(&[actual], ta.as_deref()),
            Side::new(&[expected], te.as_deref()),
            tol,
            alt,
        )
        .unwrap();
        r.rows[0].diagnosis.clone().expect("a failing row")
    }

    /// Equal vectors, other ids: the preparation whose ids are the subject's is named (`preprocessing`); ids no
    /// preparation gives are `tokenization`; a vector alternative (all equal here) is never what proves it.
    #[test]
    fn a_preparation_is_proven_by_the_ids_when_the_vectors_agree() {
        let (e, _) = pair(0.0);
        let system = vec![1, 7, 8, 2];
        let reference = vec![1, 5, 6, 7, 8, 2];
        let mut alt = Fixed {
            subject: Some(Subject::SystemUnderTest),
            model: true,
            ours: Some(d(&e)),
            preps: vec![("the text lowercased".into(), d(&e))],
            prepared: vec![("the text lowercased".into(), vec![1, 9, 2]), ("the text without the prefix \"q: \"".into(), system.clone())],
            ..Default::default()
        };
        let got = diagnose_one(d(&e), d(&e), (Some(system.clone()), Some(reference.clone())), &mut alt);
        assert_eq!(got.stage, Stage::Preprocessing, "{got:?}");
        assert!(got.detail.contains("without the prefix") && got.detail.contains("vectors agree"), "{got:?}");
        alt.prepared.truncate(1);
        let got = diagnose_one(d(&e), d(&e), (Some(system), Some(reference)), &mut alt);
        assert_eq!(got.stage, Stage::Tokenization, "{got:?}");
    }

    #[test]
    fn normalization_needs_no_model_and_names_the_normalized_side() {
        let (_, e) = pair(0.0);
        let n = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        let unit: Vec<f32> = e.iter().map(|x| x / n).collect();
        let raw: Vec<f32> = unit.iter().map(|x| x * 7.0).collect();
        let got = diagnose_one(d(&raw), d(&unit), (None, None), &mut Fixed { subject: Some(Subject::SystemUnderTest), ..Default::default() });
        assert_eq!(got.stage, Stage::Normalization, "{got:?}");
        assert!(got.detail.contains("the reference is L2-normalized"), "{got:?}");
    }

    #[test]
    fn truncation_only_when_the_recomputation_matches() {
        let (a, e) = pair(0.3);
        let ids = (Some(vec![0, 5, 6, 2]), Some(vec![0, 5, 6, 7, 8, 2]));
        // Recomputed at the reference's 6 tokens, it matches the reference: truncation.
        let mut alt = Fixed { model: true, at_length: Some((6, d(&e))), ..Default::default() };
        assert_eq!(diagnose_one(d(&a), d(&e), ids.clone(), &mut alt).stage, Stage::Truncation);
        // It still differs: the ids differ, and that is all that is proven.
        let mut alt = Fixed { model: true, at_length: Some((6, d(&a))), ..Default::default() };
        let got = diagnose_one(d(&a), d(&e), ids.clone(), &mut alt);
        assert_eq!(got.stage, Stage::Tokenization, "{got:?}");
        assert!(got.detail.contains("still differs"), "{got:?}");
        // Nothing recomputable, but a clean cut (the ids agree up to the shorter side's closing token): read
        // from the ids.
        let got = diagnose_one(d(&a), d(&e), ids, &mut Fixed::default());
        assert_eq!(got.stage, Stage::Truncation, "{got:?}");
        assert!(got.detail.contains("max length 4") && got.detail.contains("read from the ids") && got.detail.contains("no model"), "{got:?}");
        // Nothing recomputable and the ids differ inside the text: only the ids are known.
        let got = diagnose_one(d(&a), d(&e), (Some(vec![0, 5, 9, 2]), Some(vec![0, 5, 6, 7, 8, 2])), &mut Fixed::default());
        assert_eq!(got.stage, Stage::Tokenization, "{got:?}");
        assert!(got.detail.contains("no model"), "{got:?}");
    }

    #[test]
    fn precision_has_a_lower_bound() {
        let (a, e) = pair(2e-5);
        let (far, _) = pair(9e-3);
        // Observed 2e-5 against an f16 drift of 9e-3: 450 times smaller is not "of the size".
        let mut alt = Fixed { model: true, ours: Some(d(&a)), precisions: vec![("computing in f16".into(), d(&far))], ..Default::default() };
        let got = diagnose_one(d(&a), d(&e), (None, None), &mut alt);
        assert_eq!(got.stage, Stage::Unknown, "{got:?}");
        // Of the size of the f16 drift but independent of it: not proven.
        let (a, e) = pair(5e-3);
        let n = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        let v: Vec<f32> = a.iter().enumerate().map(|(i, x)| x + if i % 4 < 2 { 4e-3 * n / 4.0 } else { -4e-3 * n / 4.0 }).collect();
        let mut alt = Fixed { model: true, ours: Some(d(&a)), precisions: vec![("computing in f16".into(), d(&v))], ..Default::default() };
        let got = diagnose_one(d(&a), d(&e), (None, None), &mut alt);
        assert_eq!(got.stage, Stage::Unknown, "{got:?}");
        // Of that size and moving our value towards the reference: precision.
        let towards: Vec<f32> = a.iter().zip(&e).zip(&v).map(|((x, y), z)| x + 0.7 * (y - x) + 0.1 * (z - x)).collect();
        let mut alt = Fixed { model: true, ours: Some(d(&a)), precisions: vec![("computing in f16".into(), d(&towards))], ..Default::default() };
        let got = diagnose_one(d(&a), d(&e), (None, None), &mut alt);
        assert_eq!(got.stage, Stage::Precision, "{got:?}");
    }

    #[test]
    fn padding_only_when_the_text_alone_matches_the_reference() {
        let (a, e) = pair(1e-2);
        let (other, _) = pair(3e-2);
        let mut alt = Fixed { model: true, ours: Some(d(&e)), ..Default::default() };
        assert_eq!(diagnose_one(d(&a), d(&e), (None, None), &mut alt).stage, Stage::Padding);
        let mut alt = Fixed { model: true, ours: Some(d(&other)), ..Default::default() };
        assert_eq!(diagnose_one(d(&a), d(&e), (None, None), &mut alt).stage, Stage::Unknown);
    }

    #[test]
    fn alternatives_explain_the_system_under_test_not_the_reference() {
        let (a, e) = pair(0.3);
        let (ours, _) = pair(0.6);
        // The system's value equals "mean pooling": pooling.
        let mut alt = Fixed {
            subject: Some(Subject::SystemUnderTest),
            model: true,
            ours: Some(d(&ours)),
            poolings: vec![(pool("cls", false), d(&e)), (pool("mean", false), d(&a))],
            ..Default::default()
        };
        let got = diagnose_one(d(&a), d(&e), (None, None), &mut alt);
        assert_eq!(got.stage, Stage::Pooling, "{got:?}");
        assert!(got.detail.contains("mean pooling"), "{got:?}");
        // Against a reference that pools cls and normalizes, both differences are named.
        let mut alt = Fixed {
            subject: Some(Subject::SystemUnderTest),
            model: true,
            ours: Some(d(&ours)),
            poolings: vec![(pool("cls", false), d(&e)), (pool("mean", false), d(&a))],
            own_pooling: Some(pool("cls", true)),
            ..Default::default()
        };
        let got = diagnose_one(d(&a), d(&e), (None, None), &mut alt);
        assert_eq!(got.stage, Stage::Pooling, "{got:?}");
        assert!(got.detail.ends_with("it differs in pooling (mean instead of cls) and in normalization (not normalized instead of L2-normalized)"), "{got:?}");
        // A stripped text: preprocessing; a shorter max length: truncation.
        let mut alt = Fixed {
            subject: Some(Subject::SystemUnderTest),
            model: true,
            ours: Some(d(&ours)),
            lengths: vec![128],
            at_length: Some((128, d(&a))),
            ..Default::default()
        };
        assert_eq!(diagnose_one(d(&a), d(&e), (None, None), &mut alt).stage, Stage::Truncation);
        let mut alt = Fixed {
            subject: Some(Subject::SystemUnderTest),
            model: true,
            ours: Some(d(&ours)),
            preps: vec![("the text stripped".into(), d(&a))],
            ..Default::default()
        };
        assert_eq!(diagnose_one(d(&a), d(&e), (None, None), &mut alt).stage, Stage::Preprocessing);
        // The system agrees with embcheck's pipeline, which differs from the reference: not explained.
        let mut alt = Fixed {
            subject: Some(Subject::SystemUnderTest),
            model: true,
            ours: Some(d(&a)),
            poolings: vec![(pool("mean", false), d(&a))],
            ..Default::default()
        };
        let got = diagnose_one(d(&a), d(&e), (None, None), &mut alt);
        assert_eq!(got.stage, Stage::Unknown, "{got:?}");
    }

    #[test]
    fn non_finite_comes_first() {
        let (_, e) = pair(0.0);
        let mut a = e.clone();
        a[3] = f32::NAN;
        let got = diagnose_one(d(&a), d(&e), (None, None), &mut Fixed::default());
        assert_eq!(got.stage, Stage::NonFinite);
        assert!(got.detail.contains("component 3"));
    }
}
