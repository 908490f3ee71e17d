//! Bisecting a port: its per-layer hidden states against the Python model's, stage by stage and token by
//! token, to the first stage where they part — separating f32 accumulation (an error that grows smoothly from
//! stage to stage) from a fault (a jump).
//!
//! The rule, per text: a stage's error is the largest relative L2 distance of any token's state,
//! `‖port − reference‖ / ‖reference‖`. Stage `s` is where the port goes wrong when its error exceeds both
//! [`NOISE`] (f32 arithmetic of one stage stays far below it) and [`JUMP`] times the error of the stage before
//! (accumulated f32 error grows by a small factor per stage, not by an order of magnitude). The tokens named
//! are those whose own error passes the same bar. An error that ends above [`NOISE`] without any jump is
//! reported as accumulation, not located.
//!
//! ```
//! use embcheck::Suite;
//!
//! // A faithful "port": embcheck's own encoder, stage by stage.
//! let suite = Suite::load("fixtures/suites/tiny-bert-mean")?;
//! let model = embcheck::Model::load(suite.model_location(), candle_core::DType::F32)?;
//! let bisection = suite.bisect_with(&mut |ids: &[u32]| embcheck::bisect::own_stages(&model, ids))?;
//! assert!(bisection.first.is_none(), "{}", embcheck::report::bisect::terminal(&bisection));
//! # Ok::<(), embcheck::Error>(())
//! ```

mod command;
mod own;
mod states;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::suite::Suite;
pub use command::command_states;
pub use own::{own_stages, own_states};
pub use states::{describe_stage, LayerStates, TextStates, FORMAT};

/// One text's hidden states per stage, each `tokens × H` values, named as in a layers file.
pub type StageStates = Vec<(String, Vec<f32>)>;

/// Relative error one stage of f32 arithmetic stays well below: a stage must exceed it to be a fault.
pub const NOISE: f64 = 1e-5;
/// How many times the previous stage's error a stage's error must be to count as a jump, not accumulation.
pub const JUMP: f64 = 10.0;

/// One stage's comparison over all texts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageSummary {
    /// The stage (`layers.2.attention`).
    pub stage: String,
    /// The largest relative L2 error of any token of any text.
    pub max_rel_l2: f64,
    /// The median over texts of each text's largest token error.
    pub median_rel_l2: f64,
    /// Where the largest error is: (line in texts.jsonl, token position).
    pub worst: (usize, usize),
}

/// Where one text's states part from the reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Located {
    /// The first stage that jumps.
    pub stage: String,
    /// Its place in the model, in words (`layer 0 attention`).
    pub place: String,
    /// The error there, and the stage before's (0 before the first stage).
    pub rel_l2: f64,
    /// The previous stage's error.
    pub before: f64,
    /// The token positions that jump there.
    pub tokens: Vec<usize>,
    /// Tokens of the text (so `tokens.len() == of` means all of them).
    pub of: usize,
}

/// One text's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextResult {
    /// Its line in texts.jsonl.
    pub index: usize,
    /// Its largest token error per stage, in stage order.
    pub per_stage: Vec<f64>,
    /// Every token's error per stage (`[stage][token]`), for the CSV.
    #[serde(skip, default)]
    pub per_token: Vec<Vec<f64>>,
    /// Where it goes wrong, if it does.
    pub located: Option<Located>,
    /// Why the text could not be compared (its tokens differ), if so.
    pub error: Option<String>,
}

/// The bisection of a port over a suite's recorded texts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bisection {
    /// The suite.
    pub suite: String,
    /// What the port's states came from.
    pub source: String,
    /// The stages compared, in order.
    pub stages: Vec<String>,
    /// Stages of the reference the port did not give.
    pub missing_stages: Vec<String>,
    /// Per stage, over all texts.
    pub summary: Vec<StageSummary>,
    /// Per text.
    pub texts: Vec<TextResult>,
    /// The earliest stage any text goes wrong at, with the texts and tokens that do there; `None` when no
    /// stage jumps.
    pub first: Option<FirstFault>,
    /// When nothing jumps but the last stage ends above [`NOISE`]: the accumulation, in words.
    pub accumulation: Option<String>,
}

/// The earliest located stage across texts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FirstFault {
    /// The stage.
    pub stage: String,
    /// Its place in the model, in words.
    pub place: String,
    /// The texts located there, each with its token positions (empty list: none named) and token count.
    pub texts: Vec<(usize, Vec<usize>, usize)>,
}

impl Bisection {
    /// Whether the port matches the reference at every stage (no fault located, no text that could not be
    /// compared).
    pub fn passed(&self) -> bool {
        self.first.is_none() && self.texts.iter().all(|t| t.error.is_none())
    }
}

/// Compares `port`'s states with `reference`'s, text by text (matched by line in texts.jsonl) and stage by
/// stage (the reference's stages, in order; those the port lacks are listed as missing).
pub fn compare(suite: &str, source: &str, reference: &LayerStates, port: &LayerStates) -> Result<Bisection> {
    if reference.hidden != port.hidden {
        return Err(Error::Usage(format!("the port's states have {} values per token, the reference's {}", port.hidden, reference.hidden)));
    }
    let shared: Vec<(usize, usize)> = reference
        .stages
        .iter()
        .enumerate()
        .filter_map(|(r, s)| port.stages.iter().position(|p| p == s).map(|p| (r, p)))
        .collect();
    if shared.is_empty() {
        return Err(Error::Usage(format!(
            "the port gives none of the reference's stages ({}); it gives {}",
            reference.stages.join(", "),
            port.stages.join(", ")
        )));
    }
    let stages: Vec<String> = shared.iter().map(|&(r, _)| reference.stages[r].clone()).collect();
    let missing_stages = reference.stages.iter().filter(|s| !stages.contains(s)).cloned().collect();
    let h = reference.hidden;
    let mut texts = Vec::new();
    for r in &reference.texts {
        let Some(p) = port.texts.iter().find(|p| p.index == r.index) else {
            texts.push(TextResult { index: r.index, per_stage: vec![], per_token: vec![], located: None, error: Some("the port gave no states for it".into()) });
            continue;
        };
        if p.ids != r.ids {
            let k = p.ids.iter().zip(&r.ids).position(|(a, b)| a != b).unwrap_or(p.ids.len().min(r.ids.len()));
            let error = format!(
                "tokens differ from position {k} ({} tokens, reference {}): compare tokenization first (embcheck inspect)",
                p.ids.len(),
                r.ids.len()
            );
            texts.push(TextResult { index: r.index, per_stage: vec![], per_token: vec![], located: None, error: Some(error) });
            continue;
        }
        let per_token: Vec<Vec<f64>> = shared.iter().map(|&(ri, pi)| token_errors(&r.states[ri], &p.states[pi], h)).collect();
        let per_stage: Vec<f64> = per_token.iter().map(|e| e.iter().copied().fold(0.0, f64::max)).collect();
        let located = locate(&stages, &per_stage, &per_token);
        texts.push(TextResult { index: r.index, per_stage, per_token, located, error: None });
    }
    let summary = stages
        .iter()
        .enumerate()
        .map(|(s, stage)| {
            let mut worst = (0.0, (0, 0));
            let mut maxima = Vec::new();
            for t in texts.iter().filter(|t| t.error.is_none()) {
                maxima.push(t.per_stage[s]);
                for (k, &e) in t.per_token[s].iter().enumerate() {
                    if e > worst.0 || e.is_nan() {
                        worst = (e, (t.index, k));
                    }
                }
            }
            maxima.sort_by(f64::total_cmp);
            let median = if maxima.is_empty() { 0.0 } else { maxima[maxima.len() / 2] };
            StageSummary { stage: stage.clone(), max_rel_l2: worst.0, median_rel_l2: median, worst: worst.1 }
        })
        .collect::<Vec<_>>();
    let first = texts
        .iter()
        .filter_map(|t| t.located.as_ref())
        .map(|l| stages.iter().position(|s| *s == l.stage).unwrap_or(usize::MAX))
        .min()
        .map(|s| FirstFault {
            stage: stages[s].clone(),
            place: describe_stage(&stages[s]),
            texts: texts
                .iter()
                .filter_map(|t| t.located.as_ref().filter(|l| l.stage == stages[s]).map(|l| (t.index, l.tokens.clone(), l.of)))
                .collect(),
        });
    let accumulation = match (&first, summary.last()) {
        (None, Some(last)) if last.max_rel_l2 > NOISE => Some(format!(
            "no stage jumps, but the error grows to {:.2e} at {} (from {:.2e} at {}): accumulated rounding, e.g. lower precision",
            last.max_rel_l2,
            describe_stage(&last.stage),
            summary[0].max_rel_l2,
            describe_stage(&summary[0].stage)
        )),
        _ => None,
    };
    Ok(Bisection { suite: suite.to_string(), source: source.to_string(), stages, missing_stages, summary, texts, first, accumulation })
}

/// Each token's relative L2 error (`‖a − r‖ / ‖r‖`, NaN-aware: a non-finite state is an infinite error).
fn token_errors(reference: &[f32], port: &[f32], h: usize) -> Vec<f64> {
    reference
        .chunks(h)
        .zip(port.chunks(h))
        .map(|(r, p)| {
            let (mut diff, mut norm) = (0.0f64, 0.0f64);
            for (&x, &y) in r.iter().zip(p) {
                let d = f64::from(y) - f64::from(x);
                diff += d * d;
                norm += f64::from(x) * f64::from(x);
            }
            if !diff.is_finite() {
                f64::INFINITY
            } else {
                diff.sqrt() / norm.sqrt().max(f64::MIN_POSITIVE)
            }
        })
        .collect()
}

/// The first stage whose error jumps (see the module documentation), with the tokens that jump.
fn locate(stages: &[String], per_stage: &[f64], per_token: &[Vec<f64>]) -> Option<Located> {
    let mut before = 0.0;
    for (s, &e) in per_stage.iter().enumerate() {
        let bar = NOISE.max(JUMP * before);
        if e > bar || e.is_nan() {
            let tokens: Vec<usize> = per_token[s].iter().enumerate().filter(|(_, &x)| x > bar || x.is_nan()).map(|(k, _)| k).collect();
            return Some(Located {
                stage: stages[s].clone(),
                place: describe_stage(&stages[s]),
                rel_l2: e,
                before,
                of: per_token[s].len(),
                tokens,
            });
        }
        before = e;
    }
    None
}

impl Suite {
    /// The suite's recorded per-layer states (`layers.safetensors`, written by `scripts/generate_layers.py`).
    pub fn layer_reference(&self) -> Result<LayerStates> {
        let path = self.spec.dir.join("layers.safetensors");
        if !path.is_file() {
            return Err(Error::input(
                &path,
                "no per-layer reference: record one with scripts/generate_layers.py --suite <dir> [--full] (or generate_fixtures.py --layers)",
            ));
        }
        LayerStates::read(&path)
    }

    /// Bisects a port in your `cargo test`: `port` gets each recorded text's token ids and returns its
    /// hidden states per stage, named as in a layers file (`embeddings`, `layers.{i}.attention`,
    /// `layers.{i}.mlp`), each `ids.len()` rows of H values. Stages it leaves out are not compared.
    pub fn bisect_with(&self, port: &mut dyn FnMut(&[u32]) -> Result<StageStates>) -> Result<Bisection> {
        let reference = self.layer_reference()?;
        let given = reference.texts.iter().map(|r| port(&r.ids));
        let port = LayerStates::of_port(&reference, given, "the port")?;
        compare(self.name(), "a Rust closure (Suite::bisect_with)", &reference, &port)
    }
}

impl LayerStates {
    /// A port's states for the reference's texts, one [`StageStates`] per text in the reference's order: the
    /// stages of the first text, every text holding each of them with one row of H values per token.
    /// `what` names the port in errors.
    pub fn of_port(reference: &LayerStates, given: impl Iterator<Item = Result<StageStates>>, what: &str) -> Result<LayerStates> {
        let h = reference.hidden;
        let mut stages: Vec<String> = Vec::new();
        let mut texts = Vec::with_capacity(reference.texts.len());
        for (r, given) in reference.texts.iter().zip(given) {
            let given = given?;
            if stages.is_empty() {
                stages = given.iter().map(|(s, _)| s.clone()).collect();
            }
            let mut states = Vec::with_capacity(stages.len());
            for s in &stages {
                let (_, v) = given
                    .iter()
                    .find(|(g, _)| g == s)
                    .ok_or_else(|| Error::Usage(format!("{what}: text {} has no stage {s:?} while the first text has it", r.index)))?;
                if v.len() != r.ids.len() * h {
                    return Err(Error::Usage(format!(
                        "{what}: text {} stage {s:?}: {} values, expected {} tokens × {h}",
                        r.index,
                        v.len(),
                        r.ids.len()
                    )));
                }
                states.push(v.clone());
            }
            texts.push(TextStates { index: r.index, ids: r.ids.clone(), states });
        }
        Ok(LayerStates { stages, hidden: h, texts, metadata: Default::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    #[test]
    fn smooth_growth_is_accumulation_a_jump_is_located() {
        let smooth = [1e-7, 3e-7, 1e-6, 4e-6, 2e-5];
        let tokens: Vec<Vec<f64>> = smooth.iter().map(|&e| vec![e, e / 2.0]).collect();
        assert!(locate(&names(5), &smooth, &tokens).is_none());
        let jump = [1e-7, 3e-7, 5e-3, 6e-3, 7e-3];
        let tokens: Vec<Vec<f64>> = jump.iter().map(|&e| vec![e / 1000.0, e, e / 10000.0]).collect();
        let l = locate(&names(5), &jump, &tokens).unwrap();
        assert_eq!(l.stage, "s2");
        assert_eq!(l.tokens, vec![1], "only the token that jumps");
        // A fault at the first stage has nothing before it.
        let first = [1e-3, 1e-3];
        assert_eq!(locate(&names(2), &first, &[vec![1e-3], vec![1e-3]]).unwrap().stage, "s0");
    }

    #[test]
    fn token_errors_are_relative_and_nan_aware() {
        let e = token_errors(&[3.0, 4.0, 1.0, 0.0], &[3.0, 4.5, f32::NAN, 0.0], 2);
        assert!((e[0] - 0.1).abs() < 1e-12);
        assert!(e[1].is_infinite());
    }
}
