//! A model: its files, `config.json`, tokenizer and encoder, loaded once.

pub mod attention;
pub mod bert;
pub mod config;
pub mod decoder;
pub mod dense;
pub mod distilbert;
pub mod embeddings;
pub mod encoder;
pub mod files;
pub mod fused;
pub mod gemma3;
pub mod gelu;
pub mod layer;
pub mod modernbert;
pub mod mpnet;
pub mod qwen2_tokenizer;
pub mod simd;
pub mod softmax;
pub mod stack;
pub mod tokenizer;
mod rounded;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

pub use config::{EncoderConfig, Family};
pub use encoder::Encoder;
pub use files::{HubId, ModelFiles, WeightFiles};
pub use stack::{Stack, Version};
pub use tokenizer::{BertKwargs, SpecialIds, TextTokenizer, TokenInfo};

use crate::error::{read_json, Error, Result};

/// A loaded model, ready to turn token ids into hidden states.
pub struct Model {
    /// Where its files are.
    pub files: ModelFiles,
    /// `config.json`.
    pub config: EncoderConfig,
    /// `tokenizer.json`, truncation reset.
    pub tokenizer: TextTokenizer,
    /// The encoder.
    pub encoder: Encoder,
    /// The id padding is done with: the tokenizer's pad token, else config.json's `pad_token_id`.
    pub pad_id: u32,
    /// The Python stack whose tokenizer and text handling are mirrored.
    pub stack: Stack,
}

/// Parses a dtype name as used on the command line and in suite.toml.
pub fn parse_dtype(s: &str) -> Option<DType> {
    match s {
        "f32" | "float32" => Some(DType::F32),
        "f16" | "float16" | "fp16" => Some(DType::F16),
        "bf16" | "bfloat16" => Some(DType::BF16),
        // Weights and accumulation in f64: the value f32 noise is measured against (see `compare::noise`).
        "f64" | "float64" => Some(DType::F64),
        _ => None,
    }
}

/// The name [`parse_dtype`] accepts for a dtype.
pub fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F64 => "f64",
        _ => "f32",
    }
}

/// Sets how many threads embcheck computes with, everywhere (tokenization, matmuls, the row-parallel ops):
/// `n`, else `RAYON_NUM_THREADS`, else every logical CPU. Returns the count. Call it first thing, before any
/// model is loaded or any thread started: it sets `RAYON_NUM_THREADS` and `CANDLE_NUM_THREADS`, which candle
/// reads once.
///
/// Why not candle's default: it counts *physical* cores, so on a 2-vCPU machine with SMT (one core, two
/// hyperthreads — common on cloud Intel machines) it computes on one thread and leaves the other vCPU idle,
/// while PyTorch uses both.
pub fn set_threads(n: Option<usize>) -> Result<usize> {
    let from_env = std::env::var("RAYON_NUM_THREADS").ok().and_then(|s| s.trim().parse::<usize>().ok()).filter(|&n| n > 0);
    let n = match n {
        Some(0) => return Err(Error::Usage("--threads 0: expected at least 1".into())),
        Some(n) => n,
        None => from_env.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    // The global pool serves rayon work started outside candle's pool; an error means it already exists.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    Ok(n)
}

impl Model {
    /// Loads a model from a local directory or hub id (see [`ModelFiles::resolve`]) in `dtype`, on the CPU.
    /// The tokenizer is the pinned stack's ([`Stack::default`]); see [`Model::from_files_for`].
    pub fn load(model: &str, dtype: DType) -> Result<Self> {
        Self::from_files(ModelFiles::resolve(model)?, dtype)
    }

    /// Loads a model whose files are known, for the pinned stack.
    pub fn from_files(files: ModelFiles, dtype: DType) -> Result<Self> {
        Self::from_files_for(files, dtype, Stack::default())
    }

    /// Loads a model whose files are known, its tokenizer built as `stack`'s transformers builds it.
    pub fn from_files_for(files: ModelFiles, dtype: DType, stack: Stack) -> Result<Self> {
        let vb = weights(&files, dtype)?;
        Self::with_weights(files, vb, stack)
    }

    /// The model with every weight rounded to `storage` (f16, bf16) and computed in f32, as a checkpoint
    /// saved in that precision and run in f32 computes.
    pub fn from_files_rounded(files: ModelFiles, storage: DType, stack: Stack) -> Result<Self> {
        let vb = rounded::f32_through(weights(&files, storage)?);
        Self::with_weights(files, vb, stack)
    }

    fn with_weights(files: ModelFiles, vb: VarBuilder<'static>, stack: Stack) -> Result<Self> {
        let config = EncoderConfig::load(&files.config)?;
        let defaults: &[(&str, &str)] = match config.family {
            // XLMRobertaTokenizer's constructor defaults, for files that do not name them.
            Family::XlmRoberta => &[("cls_token", "<s>"), ("eos_token", "</s>"), ("pad_token", "<pad>"), ("unk_token", "<unk>")],
            Family::Bert | Family::DistilBert => &[("cls_token", "[CLS]"), ("pad_token", "[PAD]"), ("unk_token", "[UNK]")],
            // MPNetTokenizer's constructor defaults.
            Family::Mpnet => &[("cls_token", "<s>"), ("eos_token", "</s>"), ("pad_token", "<pad>"), ("unk_token", "[UNK]")],
            // ModernBERT-base's special tokens (PreTrainedTokenizerFast has no defaults of its own).
            Family::ModernBert => &[("cls_token", "[CLS]"), ("pad_token", "[PAD]"), ("unk_token", "[UNK]")],
            // The decoders' tokenizers name their special tokens in tokenizer_config.json.
            Family::Decoder => &[],
            // GemmaTokenizer's constructor defaults.
            Family::Gemma3 => &[("eos_token", "<eos>"), ("pad_token", "<pad>"), ("unk_token", "<unk>")],
        };
        let tokenizer = TextTokenizer::load(&files.tokenizer, defaults, loads_as_bert_tokenizer(&files, config.family)?, &stack)?;
        let pad_id = tokenizer.special.pad.unwrap_or(config.pad_token_id);
        let encoder = Encoder::load(vb, &config, &files.name)?;
        Ok(Model { files, config, tokenizer, encoder, pad_id, stack })
    }

    /// The model's default max length (special tokens included): `sentence_bert_config.json`'s
    /// `max_seq_length`, else `tokenizer_config.json`'s `model_max_length`, each capped by what the
    /// position table allows, else what the position table allows.
    pub fn default_max_length(&self) -> Result<usize> {
        Ok(self.default_max_length_with_source()?.0)
    }

    /// [`Model::default_max_length`] and where it comes from, in words
    /// (`sentence_bert_config.json: max_seq_length 256`).
    pub fn default_max_length_with_source(&self) -> Result<(usize, String)> {
        let limit = self.config.max_tokens();
        let read = |file: &'static str, key: &'static str| -> Result<Option<(f64, String)>> {
            match self.files.optional(file) {
                Some(p) => Ok(read_json::<serde_json::Value>(&p)?.get(key).and_then(|v| v.as_f64()).map(|v| (v, format!("{file}: {key}")))),
                None => Ok(None),
            }
        };
        let from_files = match read("sentence_bert_config.json", "max_seq_length")? {
            Some(v) => Some(v),
            None => read("tokenizer_config.json", "model_max_length")?,
        };
        Ok(match from_files {
            Some((v, key)) if v >= 1.0 && v > limit as f64 => (limit, format!("{key} {v}, capped at the position table's {limit}")),
            Some((v, key)) if v >= 1.0 => (v as usize, format!("{key} {}", v as usize)),
            _ => (limit, format!("config.json: the position table's {limit} tokens")),
        })
    }

    /// Hidden states `[B, L, H]` (f32) of a right-padded batch of token-id sequences.
    pub fn hidden_states(&self, ids: &[Vec<u32>]) -> Result<Tensor> {
        self.encoder.forward(ids, self.pad_id)
    }
}

/// The model's weights read in `dtype`, named in errors.
fn weights(files: &ModelFiles, dtype: DType) -> Result<VarBuilder<'static>> {
    let device = Device::Cpu;
    match &files.weights {
        // SAFETY: the files are memory-mapped read-only; embcheck does not write model files while running.
        WeightFiles::Safetensors(paths) => unsafe { VarBuilder::from_mmaped_safetensors(paths, dtype, &device) }
            .map_err(|e| Error::model(&files.name, format!("cannot read {}: {e}", paths[0].display()))),
        WeightFiles::Pytorch(path) => VarBuilder::from_pth(path, dtype, &device).map_err(|e| pth_error(&files.name, path, e)),
    }
}

/// The fast tokenizers of transformers that rewrite their BertNormalizer from tokenizer_config.json.
const BERT_STYLE_TOKENIZERS: &[&str] = &[
    "BertTokenizer",
    "DistilBertTokenizer",
    "ConvBertTokenizer",
    "ElectraTokenizer",
    "FunnelTokenizer",
    "LayoutLMTokenizer",
    "LxmertTokenizer",
    "MobileBertTokenizer",
    "RoFormerTokenizer",
    "SqueezeBertTokenizer",
];

/// Whether (and how) `AutoTokenizer` of transformers 4 would build a BERT-style fast tokenizer that rewrites
/// its normalizer: `tokenizer_class` in tokenizer_config.json names one, or is absent and the model type's
/// default class is one.
fn loads_as_bert_tokenizer(files: &ModelFiles, family: Family) -> Result<Option<BertKwargs>> {
    let class = match files.optional("tokenizer_config.json") {
        Some(p) => read_json::<serde_json::Value>(&p)?.get("tokenizer_class").and_then(|c| c.as_str()).map(str::to_string),
        None => None,
    };
    Ok(match class.as_deref().map(|c| c.trim_end_matches("Fast")) {
        Some("MPNetTokenizer") => Some(BertKwargs::CaseAndAccents),
        Some(c) => BERT_STYLE_TOKENIZERS.contains(&c).then_some(BertKwargs::All),
        None => match family {
            Family::Bert | Family::DistilBert => Some(BertKwargs::All),
            Family::Mpnet => Some(BertKwargs::CaseAndAccents),
            Family::XlmRoberta | Family::ModernBert | Family::Decoder | Family::Gemma3 => None,
        },
    })
}

/// Reads a zip-format `torch.save` file into named tensors, with a message that names the file.
pub fn read_pth(name: &str, path: &std::path::Path) -> Result<Vec<(String, Tensor)>> {
    candle_core::pickle::read_all(path).map_err(|e| pth_error(name, path, e))
}

fn pth_error(name: &str, path: &std::path::Path, e: candle_core::Error) -> Error {
    let hint = if e.to_string().contains("Central Directory") {
        " (candle's zip reader rejects some archives torch writes, depending on the archive's internal folder \
         name; re-save it as safetensors, or under the name pytorch_model.bin)"
    } else {
        ""
    };
    Error::model(name, format!("cannot read PyTorch file {}: {e}{hint}", path.display()))
}
