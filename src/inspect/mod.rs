//! `embcheck inspect`: one text through each pipeline, stage by stage — the text as the pipeline hands it to
//! the tokenizer, its tokens, the settings that drive the pipeline and the file each came from, where the other
//! Python stack would tokenize differently, and the resulting vectors side by side.
//!
//! Gathering ([`inspect`]) is separate from showing ([`render`]): the same [`Inspection`] prints for a person
//! or serializes to JSON for a tool.
//!
//! ```
//! use embcheck::inspect::{render, InspectRequest, Inspector};
//!
//! // A suite: its model, pipelines and settings, and the stack its reference was made with.
//! let request = InspectRequest::for_target("fixtures/suites/tiny-xlmr-m3", None, None, &[], Default::default())?;
//! let found = Inspector::new(&request)?.inspect("  Hello world  ")?;
//! let st = found.pipelines.iter().find(|p| p.pipeline.name() == "sentence-transformers").unwrap();
//! assert_eq!(st.prepared, "Hello world"); // sentence-transformers 5.1 strips the text; FlagEmbedding does not
//! print!("{}", render::text(&found));
//! # Ok::<(), embcheck::Error>(())
//! ```

pub mod render;
mod request;
mod settings;

use candle_core::DType;
use serde::Serialize;

use crate::embed::{embed_many, BatchOptions};
use crate::error::Result;
use crate::model::{dtype_name, Model, ModelFiles, Stack, TokenInfo};
use crate::pipeline::{Lowercase, Pipeline, PipelineKind, PipelineOptions, Vector};
pub use request::{suite_text, SEED_PIPELINES};
pub use settings::Setting;

/// What to inspect.
#[derive(Debug, Clone)]
pub struct InspectRequest {
    /// The model's files.
    pub files: ModelFiles,
    /// The Python stack to mirror.
    pub stack: Stack,
    /// Why that stack (`the suite's reference was made with it`, `--stack`, `the default`).
    pub stack_origin: String,
    /// The dtype to compute in, and where it was set.
    pub dtype: (DType, String),
    /// The pipelines to show, in order.
    pub pipelines: Vec<PipelineKind>,
    /// Options from the suite (`suite.toml`), if any.
    pub suite_options: PipelineOptions,
    /// Options given on the command line; each wins over the suite's.
    pub cli_options: PipelineOptions,
}

/// Everything `inspect` found, ready to render or serialize.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The model.
    pub model: ModelView,
    /// The text as given.
    pub text: String,
    /// The stack mirrored.
    pub stack: Setting,
    /// The dtype computed in.
    pub dtype: Setting,
    /// One entry per pipeline that could be built.
    pub pipelines: Vec<PipelineView>,
    /// Pipelines that cannot run for this model and stack, with why.
    pub not_run: Vec<NotRun>,
    /// How the other stack would prepare and tokenize the text, per pipeline.
    pub other_stack: Vec<StackDifference>,
    /// Cosine similarity between each pair of dense outputs of the same width.
    pub cosines: Vec<Cosine>,
}

/// The model, briefly.
#[derive(Debug, Clone, Serialize)]
pub struct ModelView {
    /// As named by the user or the suite.
    pub name: String,
    /// `config.json`'s `model_type`.
    pub model_type: String,
    /// Layers, hidden width, attention heads.
    pub layers: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// The most tokens its position table allows.
    pub max_tokens: usize,
}

/// One pipeline's view of the text.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineView {
    /// The pipeline.
    pub pipeline: PipelineKind,
    /// The text as the library hands it to the tokenizer (prefix, strip and `str.lower()` applied; a
    /// normalizer's lowercasing shows in the tokens).
    pub prepared: String,
    /// Max length in tokens, special tokens included.
    pub max_length: usize,
    /// The settings in force, each with where it came from.
    pub settings: Vec<Setting>,
    /// The tokens, special tokens included, after truncation.
    pub tokens: Vec<TokenInfo>,
    /// Whether the text was cut at the max length.
    pub truncated: bool,
    /// The output.
    pub output: OutputView,
}

/// A pipeline's output, summarized.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OutputView {
    /// One vector.
    Dense {
        /// Components.
        width: usize,
        /// L2 norm.
        norm: f64,
        /// The first components.
        first: Vec<f32>,
    },
    /// Token weights (BGE-M3 lexical weights).
    Sparse {
        /// Tokens with a weight.
        count: usize,
        /// The heaviest, as (id, piece, weight).
        top: Vec<(u32, String, f32)>,
    },
    /// One vector per token.
    Multi {
        /// Rows.
        rows: usize,
        /// Components per row.
        width: usize,
        /// The first row's first components.
        first: Vec<f32>,
    },
}

/// A pipeline that does not run for this model and stack.
#[derive(Debug, Clone, Serialize)]
pub struct NotRun {
    /// The pipeline.
    pub pipeline: PipelineKind,
    /// Why.
    pub reason: String,
}

/// How the other stack prepares and tokenizes the text for one pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct StackDifference {
    /// The other stack.
    pub stack: String,
    /// The pipeline.
    pub pipeline: PipelineKind,
    /// `same`, or what differs (the text seen, the first differing token), or why it does not run there.
    pub verdict: String,
    /// Whether anything differs (false for `same` and for pipelines that do not run there).
    pub differs: bool,
}

/// The cosine similarity of two pipelines' dense outputs.
#[derive(Debug, Clone, Serialize)]
pub struct Cosine {
    /// One pipeline.
    pub a: PipelineKind,
    /// The other.
    pub b: PipelineKind,
    /// Their cosine similarity.
    pub cosine: f64,
}

/// Components shown per vector.
const FIRST: usize = 6;

/// A model loaded for inspecting texts, under the request's stack and the other one.
pub struct Inspector {
    request: InspectRequest,
    model: Model,
    /// The request's pipelines that build for the model, and those that do not with why.
    built: Vec<Pipeline>,
    not_run: Vec<NotRun>,
    /// The other stack (transformers 4 ↔ 5): the model and, per pipeline, its build there or why not; or why the
    /// model does not load there.
    other: std::result::Result<(Model, Vec<std::result::Result<Pipeline, String>>), String>,
}

impl Inspector {
    /// Loads the request's model under its stack and under the other one.
    pub fn new(request: &InspectRequest) -> Result<Self> {
        let model = Model::from_files_for(request.files.clone(), request.dtype.0, request.stack)?;
        let options = merged(&request.suite_options, &request.cli_options);
        let (mut built, mut not_run) = (Vec::new(), Vec::new());
        for &kind in &request.pipelines {
            match Pipeline::build(kind, &model, &options) {
                Ok(p) => built.push(p),
                Err(e) => not_run.push(NotRun { pipeline: kind, reason: e.to_string() }),
            }
        }
        let other = Model::from_files_for(request.files.clone(), DType::F32, other_stack(request.stack))
            .map(|m| {
                let there = built.iter().map(|p| Pipeline::build(p.kind, &m, &options).map_err(|e| e.to_string())).collect();
                (m, there)
            })
            .map_err(|e| e.to_string());
        Ok(Inspector { request: request.clone(), model, built, not_run, other })
    }

    /// Runs `text` through each pipeline and gathers what [`Inspection`] holds.
    pub fn inspect(&self, text: &str) -> Result<Inspection> {
        let (model, request) = (&self.model, &self.request);
        let texts = [text.to_string()];
        let outputs = if self.built.is_empty() { Vec::new() } else { embed_many(model, &self.built, &texts, BatchOptions::default())? };
        let mut pipelines = Vec::new();
        for (p, out) in self.built.iter().zip(&outputs) {
            let prepared = p.prep.apply(text);
            let lowercased = p.prep.lowercase == Lowercase::Normalizer;
            let tokens = model.tokenizer.encode_detailed(&prepared, p.max_length, lowercased)?;
            // Cut when the whole text has more tokens than the max length allows.
            let whole = model.tokenizer.encode_detailed(&prepared, usize::MAX / 2, lowercased)?;
            pipelines.push(PipelineView {
                pipeline: p.kind,
                max_length: p.max_length,
                settings: settings::of(p, model, &request.suite_options, &request.cli_options)?,
                truncated: whole.len() > tokens.len(),
                output: output_view(&out.vectors[0], &tokens),
                prepared,
                tokens,
            });
        }
        let other_stack = self.other_stack(text, &pipelines)?;
        let dense: Vec<(PipelineKind, &Vec<f32>)> = outputs
            .iter()
            .filter_map(|o| match &o.vectors[0] {
                Vector::Dense(v) => Some((o.pipeline, v)),
                _ => None,
            })
            .collect();
        let mut cosines = Vec::new();
        for (i, (a, va)) in dense.iter().enumerate() {
            for (b, vb) in &dense[i + 1..] {
                if va.len() == vb.len() {
                    cosines.push(Cosine { a: *a, b: *b, cosine: crate::compare::metrics::cosine(va, vb) });
                }
            }
        }
        let c = &model.config;
        let (dtype, dtype_origin) = &request.dtype;
        Ok(Inspection {
            model: ModelView {
                name: model.files.name.clone(),
                model_type: settings::model_type(model)?,
                layers: c.num_hidden_layers,
                hidden: c.hidden_size,
                heads: c.num_attention_heads,
                max_tokens: c.max_tokens(),
            },
            text: text.to_string(),
            stack: Setting::new("stack", request.stack.to_string(), &request.stack_origin),
            dtype: Setting::new("dtype", dtype_name(*dtype), dtype_origin),
            pipelines,
            not_run: self.not_run.clone(),
            other_stack,
            cosines,
        })
    }

    /// For each pipeline shown, what the other stack (transformers 4 ↔ 5) would hand its model.
    fn other_stack(&self, text: &str, shown: &[PipelineView]) -> Result<Vec<StackDifference>> {
        let other = other_stack(self.request.stack);
        let mut out = Vec::new();
        // `shown` holds the built pipelines in order, as the other stack's builds do.
        for (i, view) in shown.iter().enumerate() {
            let entry = |verdict: String, differs: bool| StackDifference { stack: other.to_string(), pipeline: view.pipeline, verdict, differs };
            let (model, p) = match &self.other {
                Ok((m, there)) => match &there[i] {
                    Ok(p) => (m, p),
                    Err(e) => {
                        out.push(entry(format!("does not run: {e}"), false));
                        continue;
                    }
                },
                Err(e) => {
                    out.push(entry(format!("not loadable: {e}"), false));
                    continue;
                }
            };
            let prepared = p.prep.apply(text);
            let tokens = model.tokenizer.encode_detailed(&prepared, p.max_length, p.prep.lowercase == Lowercase::Normalizer)?;
            let mut what = Vec::new();
            let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
            let mine: Vec<u32> = view.tokens.iter().map(|t| t.id).collect();
            if ids != mine {
                let k = ids.iter().zip(&mine).position(|(a, b)| a != b).unwrap_or(ids.len().min(mine.len()));
                let at = |t: &[TokenInfo]| t.get(k).map_or("(end)".to_string(), |t| format!("{} {:?}", t.id, t.piece));
                what.push(format!(
                    "{} tokens instead of {}, first difference at token {k}: {} instead of {}",
                    ids.len(),
                    mine.len(),
                    at(&tokens),
                    at(&view.tokens)
                ));
            }
            if p.max_length != view.max_length {
                what.push(format!("max length {}", p.max_length));
            }
            // A text prepared otherwise that tokenizes alike changes nothing the model sees.
            let seen = if prepared == view.prepared { String::new() } else { format!(" (text seen {prepared:?})") };
            if what.is_empty() {
                out.push(entry(format!("same tokens{seen}"), false));
            } else {
                out.push(entry(format!("{}{seen}", what.join("; ")), true));
            }
        }
        Ok(out)
    }
}

/// The command line's options over the suite's.
fn merged(suite: &PipelineOptions, cli: &PipelineOptions) -> PipelineOptions {
    PipelineOptions {
        max_length: cli.max_length.or(suite.max_length),
        instruction: cli.instruction.clone().or_else(|| suite.instruction.clone()),
        prompt_name: cli.prompt_name.clone().or_else(|| suite.prompt_name.clone()),
        prompt: cli.prompt.clone().or_else(|| suite.prompt.clone()),
        st_strip: cli.st_strip.or(suite.st_strip),
    }
}

fn output_view(v: &Vector, tokens: &[TokenInfo]) -> OutputView {
    let norm = |x: &[f32]| x.iter().map(|&c| f64::from(c) * f64::from(c)).sum::<f64>().sqrt();
    match v {
        Vector::Dense(d) => OutputView::Dense { width: d.len(), norm: norm(d), first: d.iter().take(FIRST).copied().collect() },
        Vector::Sparse(s) => {
            let mut by_weight = s.clone();
            by_weight.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let piece = |id: u32| tokens.iter().find(|t| t.id == id).map(|t| t.piece.clone()).unwrap_or_default();
            OutputView::Sparse { count: s.len(), top: by_weight.iter().take(FIRST).map(|&(id, w)| (id, piece(id), w)).collect() }
        }
        Vector::Multi(m) => OutputView::Multi {
            rows: m.len(),
            width: m.first().map_or(0, Vec::len),
            first: m.first().map(|r| r.iter().take(FIRST).copied().collect()).unwrap_or_default(),
        },
    }
}

/// The stack inspected beside `stack`: transformers 4 ↔ 5.
fn other_stack(stack: Stack) -> Stack {
    if stack.rebuilds_tokenizers() {
        Stack::TRANSFORMERS4
    } else {
        Stack::TRANSFORMERS5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_wins_over_the_suite() {
        let suite = PipelineOptions { max_length: Some(128), prompt: Some("query: ".into()), ..Default::default() };
        let cli = PipelineOptions { max_length: Some(16), ..Default::default() };
        let m = merged(&suite, &cli);
        assert_eq!(m.max_length, Some(16));
        assert_eq!(m.prompt.as_deref(), Some("query: "));
    }
}
