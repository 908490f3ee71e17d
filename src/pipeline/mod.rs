//! Pipelines: each a faithful copy of how one Python library turns text into a vector.
//!
//! A pipeline is (text preparation, max length) → token ids → the shared encoder → a head on the hidden
//! states. Pipelines with the same text preparation and max length share one encoder pass.

pub mod m3;
pub mod pooling;
pub mod st;

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::model::{Model, TextTokenizer};
pub use m3::M3Heads;
pub use pooling::{normalize, Pool, PoolingChoice, PoolingConfig};
pub use st::{StConfig, StModule};

/// The pipelines embcheck knows, named as on the command line and in reference files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum PipelineKind {
    /// transformers `AutoModel(...)[0][:, 0]`: the raw CLS hidden state.
    #[serde(rename = "raw-cls")]
    RawCls,
    /// FlagEmbedding's dense vector: CLS, L2-normalized, text as given.
    #[serde(rename = "normalized-cls")]
    NormalizedCls,
    /// `SentenceTransformer.encode`: the model's module chain.
    #[serde(rename = "sentence-transformers")]
    SentenceTransformers,
    /// BGE-M3 lexical weights (FlagEmbedding `return_sparse`).
    #[serde(rename = "m3-sparse")]
    M3Sparse,
    /// BGE-M3 ColBERT vectors (FlagEmbedding `return_colbert_vecs`).
    #[serde(rename = "m3-colbert")]
    M3Colbert,
    /// transformers `AutoModel`: the last real token's hidden state, not normalized (decoder embedders).
    #[serde(rename = "raw-last")]
    RawLast,
    /// The decoder model cards' recipe: last-token pooling, L2-normalized, the query instruction prefixed, EOS
    /// appended by hand where the tokenizer does not append it (e5-mistral's card).
    #[serde(rename = "normalized-last")]
    NormalizedLast,
}

/// What kind of value a pipeline produces per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// One vector.
    Dense,
    /// Token id → weight.
    Sparse,
    /// One vector per token.
    Multi,
}

impl PipelineKind {
    /// Every pipeline.
    pub const ALL: [PipelineKind; 7] = [
        PipelineKind::RawCls,
        PipelineKind::NormalizedCls,
        PipelineKind::SentenceTransformers,
        PipelineKind::M3Sparse,
        PipelineKind::M3Colbert,
        PipelineKind::RawLast,
        PipelineKind::NormalizedLast,
    ];

    /// The name used on the command line, in suite.toml and as the reference tensor's name.
    pub fn name(self) -> &'static str {
        match self {
            PipelineKind::RawCls => "raw-cls",
            PipelineKind::NormalizedCls => "normalized-cls",
            PipelineKind::SentenceTransformers => "sentence-transformers",
            PipelineKind::M3Sparse => "m3-sparse",
            PipelineKind::M3Colbert => "m3-colbert",
            PipelineKind::RawLast => "raw-last",
            PipelineKind::NormalizedLast => "normalized-last",
        }
    }

    /// The kind of value it produces.
    pub fn output(self) -> OutputKind {
        match self {
            PipelineKind::M3Sparse => OutputKind::Sparse,
            PipelineKind::M3Colbert => OutputKind::Multi,
            _ => OutputKind::Dense,
        }
    }

    /// Whether FlagEmbedding computes it (and so takes a query instruction).
    pub fn is_flag_embedding(self) -> bool {
        matches!(self, PipelineKind::NormalizedCls | PipelineKind::M3Sparse | PipelineKind::M3Colbert)
    }
}

impl fmt::Display for PipelineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PipelineKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        PipelineKind::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<_> = PipelineKind::ALL.iter().map(|p| p.name()).collect();
            Error::Usage(format!("unknown pipeline {s:?} (expected one of {})", names.join(", ")))
        })
    }
}

/// One text's output.
#[derive(Debug, Clone, PartialEq)]
pub enum Vector {
    /// A single vector.
    Dense(Vec<f32>),
    /// `(token id, weight)` pairs sorted by id.
    Sparse(Vec<(u32, f32)>),
    /// One vector per token.
    Multi(Vec<Vec<f32>>),
}

impl Vector {
    /// Which kind of value it is.
    pub fn kind(&self) -> OutputKind {
        match self {
            Vector::Dense(_) => OutputKind::Dense,
            Vector::Sparse(_) => OutputKind::Sparse,
            Vector::Multi(_) => OutputKind::Multi,
        }
    }

    /// The index of the first NaN or infinite component (of the flattened values), if any.
    pub fn first_non_finite(&self) -> Option<usize> {
        match self {
            Vector::Dense(d) => d.iter().position(|x| !x.is_finite()),
            Vector::Sparse(s) => s.iter().position(|(_, w)| !w.is_finite()),
            Vector::Multi(m) => m.iter().flatten().position(|x| !x.is_finite()),
        }
    }

    /// Whether every component is finite.
    pub fn is_finite(&self) -> bool {
        self.first_non_finite().is_none()
    }

    /// The width of a dense vector or of a per-token vector (its first row); `None` for sparse weights.
    pub fn width(&self) -> Option<usize> {
        match self {
            Vector::Dense(d) => Some(d.len()),
            Vector::Multi(m) => m.first().map(Vec::len),
            Vector::Sparse(_) => None,
        }
    }

    /// The distinct non-zero widths among `values` (dense and per-token), sorted: one entry when they agree.
    pub fn widths(values: &[Vector]) -> Vec<usize> {
        let mut w: Vec<usize> = values.iter().filter_map(Vector::width).filter(|&n| n > 0).collect();
        w.sort_unstable();
        w.dedup();
        w
    }
}

/// Options that change what a pipeline computes.
#[derive(Debug, Clone, Default)]
pub struct PipelineOptions {
    /// Max length in tokens (special tokens included); `None` for the model's default.
    pub max_length: Option<usize>,
    /// FlagEmbedding's `query_instruction_for_retrieval`, prefixed to the text with no separator.
    pub instruction: Option<String>,
    /// A sentence-transformers prompt given by name (from `config_sentence_transformers.json`).
    pub prompt_name: Option<String>,
    /// A sentence-transformers prompt given as text (wins over `prompt_name`).
    pub prompt: Option<String>,
    /// Whether sentence-transformers strips the text: `None` for what the model's [`Stack`](crate::model::Stack) does
    /// (`str.strip()` up to sentence-transformers 5.3).
    pub st_strip: Option<bool>,
}

/// How the text is changed before tokenizing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TextPrep {
    /// Prepended as is (instruction or prompt).
    pub prefix: String,
    /// Python `str.strip()` (sentence-transformers ≤ 5.3).
    pub strip: bool,
    /// `do_lower_case`, as the sentence-transformers version applies it.
    pub lowercase: Lowercase,
    /// An id appended by hand after truncating to one token less (EOS, as e5-mistral's card does).
    pub append: Option<u32>,
}

/// How sentence-transformers lowercases for `do_lower_case`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lowercase {
    /// Not at all.
    No,
    /// Python `str.lower()` on the text (up to 5.3): `Σ` at the end of a word becomes `ς`.
    Python,
    /// A `Lowercase` normalizer in front of the tokenizer's (5.4 and later): character by character (`Σ` is
    /// always `σ`), after special tokens are split off (a literal `[CLS]` stays special). Done by the
    /// tokenizer in [`TextPrep::tokenize`], not by [`TextPrep::apply`].
    Normalizer,
}

impl TextPrep {
    /// Applies the preparation to one text.
    pub fn apply(&self, text: &str) -> String {
        let mut s = format!("{}{}", self.prefix, text);
        if self.strip {
            s = python_strip(&s).to_string();
        }
        match self.lowercase {
            Lowercase::No => {}
            Lowercase::Python => s = s.to_lowercase(),
            Lowercase::Normalizer => {}
        }
        s
    }

    /// The token ids of each text, prepared and tokenized as the library does (special tokens added,
    /// truncated to `max_length`).
    pub fn tokenize(&self, tokenizer: &TextTokenizer, texts: &[String], max_length: usize) -> Result<Vec<Vec<u32>>> {
        let prepared: Vec<String> = texts.iter().map(|t| self.apply(t)).collect();
        let room = if self.append.is_some() { max_length.saturating_sub(1).max(1) } else { max_length };
        let mut ids = match self.lowercase {
            Lowercase::Normalizer => tokenizer.encode_all_lowercased(&prepared, room)?,
            _ => tokenizer.encode_all(&prepared, room)?,
        };
        if let Some(id) = self.append {
            ids.iter_mut().for_each(|seq| seq.push(id));
        }
        Ok(ids)
    }
}

/// Python's `str.strip()`: Unicode whitespace, plus the separators U+001C..U+001F that Python counts as
/// whitespace and Rust's `trim` does not.
pub fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// How many f32 epsilons of the largest term sum count as noise (see [`Pipeline::noise_floor`]).
pub const NOISE_FLOOR_ULPS: f64 = 32.0;

/// What a pipeline does with one text's hidden states.
#[derive(Debug, Clone)]
enum Head {
    Cls { normalize: bool },
    Last { normalize: bool },
    SentenceTransformers { modules: Vec<StModule>, prompt_len: usize },
    Sparse { heads: M3Heads, dropped: Vec<u32> },
    Colbert { heads: M3Heads },
}

/// A pipeline built for one model: ready to turn hidden states into vectors.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Which pipeline.
    pub kind: PipelineKind,
    /// Max length in tokens, special tokens included.
    pub max_length: usize,
    /// Text preparation.
    pub prep: TextPrep,
    head: Head,
}

impl Pipeline {
    /// Builds `kind` for `model`, reading what it needs from the model's files.
    pub fn build(kind: PipelineKind, model: &Model, opts: &PipelineOptions) -> Result<Self> {
        let limit = model.config.max_tokens();
        let max_length = match opts.max_length {
            Some(0) => return Err(Error::Usage("max length must be at least 1".into())),
            Some(n) if n > limit => {
                return Err(Error::Usage(format!(
                    "max length {n} exceeds what {}'s position table allows ({limit} tokens)",
                    model.files.name
                )))
            }
            Some(n) => n,
            None => model.default_max_length()?,
        };
        let takes_instruction = kind.is_flag_embedding() || kind == PipelineKind::NormalizedLast;
        let flag_prep = || TextPrep {
            prefix: if takes_instruction { opts.instruction.clone().unwrap_or_default() } else { String::new() },
            strip: false,
            lowercase: Lowercase::No,
            append: None,
        };
        if kind.is_flag_embedding() && model.stack.rebuilds_tokenizers() {
            // There is no Python to mirror: FlagEmbedding 1.4.2 does not import under transformers 5.
            return Err(Error::Usage(format!(
                "{kind} is FlagEmbedding's, which does not run under transformers {} (FlagEmbedding 1.4.2 needs transformers 4): \
                 use the transformers4 stack",
                model.stack.transformers
            )));
        }
        let hidden = model.config.hidden_size;
        let (prep, head) = match kind {
            PipelineKind::RawCls => (flag_prep(), Head::Cls { normalize: false }),
            PipelineKind::NormalizedCls => (flag_prep(), Head::Cls { normalize: true }),
            PipelineKind::RawLast => (flag_prep(), Head::Last { normalize: false }),
            PipelineKind::NormalizedLast => (TextPrep { append: eos_by_hand(model)?, ..flag_prep() }, Head::Last { normalize: true }),
            PipelineKind::SentenceTransformers => {
                let st = StConfig::load(&model.files)?;
                let prompt = match (&opts.prompt, &opts.prompt_name) {
                    (Some(p), _) => p.clone(),
                    (None, Some(name)) => st.prompts.get(name).cloned().ok_or_else(|| {
                        Error::Usage(format!(
                            "prompt {name:?} is not in config_sentence_transformers.json (it has: {:?})",
                            st.prompts.keys().collect::<Vec<_>>()
                        ))
                    })?,
                    // encode() applies default_prompt_name when no prompt is given.
                    (None, None) => st.default_prompt_name.as_ref().and_then(|n| st.prompts.get(n)).cloned().unwrap_or_default(),
                };
                let stack = model.stack;
                let lowercase = match (st.do_lower_case, stack.st_lowercases_in_normalizer()) {
                    (false, _) => Lowercase::No,
                    (true, false) => Lowercase::Python,
                    // No second Lowercase when the tokenizer's normalizer has one.
                    (true, true) if model.tokenizer.has_lowercase_normalizer() => Lowercase::No,
                    (true, true) => Lowercase::Normalizer,
                };
                let prep = TextPrep { prefix: prompt.clone(), strip: opts.st_strip.unwrap_or(stack.st_strips()), lowercase, append: None };
                let cls_masked = st.modules.iter().any(|m| matches!(m, StModule::Pooling(p) if p.cls && !p.include_prompt));
                if !prompt.is_empty() && cls_masked && stack.st_cls_skips_prompt() {
                    return Err(Error::Usage(format!(
                        "sentence-transformers {} pools CLS at the first token after a masked prompt (include_prompt false); \
                         embcheck mirrors CLS at position 0 only",
                        stack.sentence_transformers
                    )));
                }
                // With include_prompt false the library masks the prompt's tokens: `tokenize([prompt])`'s
                // length, less one when the last id is special (the closing `[SEP]` / `</s>`).
                let prompt_len = if prompt.is_empty() {
                    0
                } else {
                    let bare = TextPrep { prefix: String::new(), ..prep.clone() };
                    let ids = bare.tokenize(&model.tokenizer, std::slice::from_ref(&prompt), max_length)?.remove(0);
                    ids.len() - usize::from(ids.last().is_some_and(|&id| model.tokenizer.is_special(id)))
                };
                (prep, Head::SentenceTransformers { modules: st.modules, prompt_len })
            }
            PipelineKind::M3Sparse => {
                let heads = M3Heads::load(&model.files, hidden)?;
                (flag_prep(), Head::Sparse { heads, dropped: model.tokenizer.special.all() })
            }
            PipelineKind::M3Colbert => (flag_prep(), Head::Colbert { heads: M3Heads::load(&model.files, hidden)? }),
        };
        Ok(Pipeline { kind, max_length, prep, head })
    }

    /// The same hidden states pooled every other way, each with and without a final normalization, named:
    /// the alternatives a `pooling` diagnosis is confirmed with. A sentence-transformers chain keeps its
    /// other modules (Dense, ...) after the replaced pooling, so widths stay comparable.
    pub fn other_poolings(&self, tokens: &[f32], h: usize) -> Result<Vec<(String, Vector)>> {
        Ok(self.pooling_alternatives(tokens, h)?.into_iter().map(|(c, v)| (c.to_string(), v)).collect())
    }

    /// How this pipeline pools (dense pipelines only): the modes of its Pooling module and whether a Normalize
    /// module follows.
    pub fn pooling(&self) -> Option<PoolingChoice> {
        match &self.head {
            Head::Cls { normalize } => Some(PoolingChoice { modes: "cls".into(), normalized: *normalize }),
            Head::Last { normalize } => Some(PoolingChoice { modes: "lasttoken".into(), normalized: *normalize }),
            Head::SentenceTransformers { modules, .. } => modules.iter().find_map(|m| match m {
                StModule::Pooling(p) => {
                    Some(PoolingChoice { modes: p.describe(), normalized: modules.iter().any(|m| matches!(m, StModule::Normalize)) })
                }
                _ => None,
            }),
            _ => None,
        }
    }

    /// [`Pipeline::other_poolings`], each with its [`PoolingChoice`].
    pub fn pooling_alternatives(&self, tokens: &[f32], h: usize) -> Result<Vec<(PoolingChoice, Vector)>> {
        let (modules, prompt_len): (&[StModule], usize) = match &self.head {
            Head::SentenceTransformers { modules, prompt_len } => (modules, *prompt_len),
            _ => (&[], 0),
        };
        let mut out = Vec::new();
        for mode in Pool::ALL {
            let single = PoolingConfig::single(mode);
            let chain: Vec<StModule> = if modules.is_empty() {
                vec![StModule::Pooling(single)]
            } else {
                modules
                    .iter()
                    .filter(|m| !matches!(m, StModule::Normalize))
                    .map(|m| match m {
                        StModule::Pooling(p) => StModule::Pooling(PoolingConfig { include_prompt: p.include_prompt, ..single }),
                        other => other.clone(),
                    })
                    .collect()
            };
            let plain = run_modules(&chain, tokens, h, prompt_len)?;
            let mut normalized = plain.clone();
            normalize(&mut normalized);
            let choice = |normalized| PoolingChoice { modes: mode.name().to_string(), normalized };
            out.push((choice(false), Vector::Dense(plain)));
            out.push((choice(true), Vector::Dense(normalized)));
        }
        Ok(out)
    }

    /// The f32 noise floor per output component, for outputs whose f32 noise is set by the size of the terms
    /// they sum rather than by their own size: a BGE-M3 sparse weight relu(w·h + b) can be 1e-4 while its terms
    /// are O(1), so a relative bound misfires on it. [`NOISE_FLOOR_ULPS`] f32 epsilons of the largest possible
    /// term sum (from the final LayerNorm's weights and the head's). 0 for the other pipelines, whose outputs
    /// are of the size of their terms (a relative bound holds).
    pub fn noise_floor(&self, model: &Model) -> Result<f64> {
        Ok(match &self.head {
            Head::Sparse { heads, .. } => {
                NOISE_FLOOR_ULPS * f64::from(f32::EPSILON) * heads.sparse_term_scale(model.encoder.hidden_norm_bound()?)
            }
            _ => 0.0,
        })
    }

    /// Turns one text's hidden states (`ids.len()` rows of `h`, padding removed) into its output.
    pub fn apply(&self, tokens: &[f32], ids: &[u32], h: usize) -> Result<Vector> {
        Ok(match &self.head {
            Head::Cls { normalize: n } => {
                let mut v = tokens[..h].to_vec();
                if *n {
                    normalize(&mut v);
                }
                Vector::Dense(v)
            }
            Head::Last { normalize: n } => {
                // A tokenizer with no special tokens gives an empty text no token: transformers refuses such an
                // input too, so it is an error here, never a read past the hidden states.
                let last = ids.len().checked_sub(1).filter(|&l| tokens.len() >= (l + 1) * h);
                let last = last.ok_or_else(|| Error::Usage("a text with no tokens has no last token to pool".into()))?;
                let mut v = tokens[last * h..(last + 1) * h].to_vec();
                if *n {
                    normalize(&mut v);
                }
                Vector::Dense(v)
            }
            Head::SentenceTransformers { modules, prompt_len } => Vector::Dense(run_modules(modules, tokens, h, *prompt_len)?),
            Head::Sparse { heads, dropped } => Vector::Sparse(heads.sparse(tokens, ids, dropped)),
            Head::Colbert { heads } => Vector::Multi(heads.colbert(tokens, ids.len())?),
        })
    }
}

/// The EOS id `normalized-last` appends by hand: none when the tokenizer already ends every encoding with EOS
/// (Qwen3-Embedding's tokenizer.json: `$A <|endoftext|>`, which its card relies on), else the tokenizer's EOS
/// (e5-mistral's card: `input_ids + [tokenizer.eos_token_id]` after truncating to max_length − 1).
fn eos_by_hand(model: &Model) -> Result<Option<u32>> {
    let eos = model.tokenizer.special.eos.ok_or_else(|| {
        Error::Usage(format!("normalized-last: {} has no eos_token in tokenizer_config.json to end each text with", model.files.name))
    })?;
    let probe = model.tokenizer.encode_all(&["a".to_string()], usize::MAX)?;
    Ok((probe[0].last() != Some(&eos)).then_some(eos))
}

/// Runs a sentence-transformers module chain on one text's hidden states.
fn run_modules(modules: &[StModule], tokens: &[f32], h: usize, prompt_len: usize) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    for m in modules {
        match m {
            StModule::Pooling(p) => v = p.pool(tokens, h, prompt_len),
            StModule::Dense(d) => v = d.forward(&v)?,
            StModule::Normalize => normalize(&mut v),
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_per_version() {
        let prep = |lowercase| TextPrep { prefix: String::new(), strip: false, lowercase, append: None };
        // Python's str.lower() knows the final sigma; a per-character lowercase does not.
        assert_eq!(prep(Lowercase::Python).apply("ΟΔΟΣ Α"), "οδος α");
        // From 5.4 the tokenizer lowercases (TextPrep::tokenize), not the text preparation.
        assert_eq!(prep(Lowercase::Normalizer).apply("ΟΔΟΣ Α"), "ΟΔΟΣ Α");
        assert_eq!(prep(Lowercase::No).apply("ΟΔΟΣ"), "ΟΔΟΣ");
    }

    #[test]
    fn strip_matches_python() {
        assert_eq!(python_strip("\u{1f}\u{a0} a b\u{3000}\n"), "a b");
        assert_eq!(python_strip("\u{200b}a"), "\u{200b}a");
    }

    #[test]
    fn pipeline_names_round_trip() {
        for p in PipelineKind::ALL {
            assert_eq!(p.name().parse::<PipelineKind>().unwrap(), p);
        }
        assert!("cls".parse::<PipelineKind>().is_err());
    }
}
