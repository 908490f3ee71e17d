//! `config.json`, parsed once into a plain value with the transformers class defaults filled in
//! (transformers 5 omits keys equal to their defaults).

use std::path::Path;

use candle_nn::Activation;
use serde::Deserialize;

use crate::error::{read_json, Error, Result};

/// The `model_type`s of `config.json` whose encoder embcheck computes. `scripts/generate_fixtures.py` keeps
/// the same list (a unit test compares them) to say whether embcheck can compute a suite's model.
pub const IMPLEMENTED: &[&str] = &["bert", "xlm-roberta", "roberta", "camembert", "mpnet", "distilbert", "modernbert", "llama", "mistral", "qwen2", "qwen3", "gemma3_text"];

/// The encoder families embcheck runs. Chosen from `config.json`'s `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `bert`: positions 0..L.
    Bert,
    /// `xlm-roberta` (and `roberta`, `camembert`): positions counted from `pad_token_id + 1`.
    XlmRoberta,
    /// `mpnet`: positions counted from `pad_token_id + 1`, no token types, a relative position bias.
    Mpnet,
    /// `distilbert`: positions 0..L (learned or sinusoidal), no token types, its own key names.
    DistilBert,
    /// `modernbert`: rotary positions, pre-LN layers alternating global and sliding-window attention, GeGLU.
    ModernBert,
    /// `llama`, `mistral`, `qwen2`, `qwen3`: causal decoders with rotary positions (see [`super::decoder`]).
    Decoder,
    /// `gemma3_text`: scaled embeddings, pre- and post-normed layers (RMSNorm), grouped-query attention with
    /// rotary positions, local and global layers, GeGLU; causal or bidirectional (EmbeddingGemma).
    Gemma3,
}

/// ModernBERT's settings beyond the shared ones (`ModernBertConfig`, transformers 4.56 and 5.24 names).
#[derive(Debug, Clone, PartialEq)]
pub struct ModernBertConfig {
    /// Per layer: whether it attends globally (else within the sliding window).
    pub global_layers: Vec<bool>,
    /// Keys at most this far from the query are attended by the local layers (`local_attention // 2`).
    pub half_window: usize,
    /// RoPE base of the global layers.
    pub global_theta: f64,
    /// RoPE base of the local layers.
    pub local_theta: f64,
    /// LayerNorms have a bias.
    pub norm_bias: bool,
    /// `Wqkv` and the attention's `Wo` have a bias.
    pub attention_bias: bool,
    /// The MLP's `Wi` and `Wo` have a bias.
    pub mlp_bias: bool,
}

/// The encoder's hyper-parameters.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    /// The model family.
    pub family: Family,
    /// Rows of the word-embedding table.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation (`gelu` is the erf form).
    pub hidden_act: Activation,
    /// Rows of the position table.
    pub max_position_embeddings: usize,
    /// Rows of the token-type table.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Padding id; XLM-R and MPNet positions start after it.
    pub pad_token_id: u32,
    /// MPNet: rows of the relative position bias table (at least the 32 buckets used).
    pub relative_attention_num_buckets: usize,
    /// DistilBERT `sinusoidal_pos_embds`: a position table missing from the weights is computed.
    pub sinusoidal_positions: bool,
    /// ModernBERT's own settings (`None` for the other families).
    pub modernbert: Option<ModernBertConfig>,
    /// A decoder's own settings (`None` for the encoder families).
    pub decoder: Option<super::decoder::DecoderConfig>,
    /// Gemma 3's own settings (`None` for the other families).
    pub gemma3: Option<super::gemma3::Gemma3Config>,
}

/// The `hidden_act` names of transformers' `ACT2FN` that candle computes the same way. Others (e.g.
/// `quick_gelu`, `gelu_fast`, `tanh`) are refused rather than approximated.
const ACTIVATIONS: &[(&str, Activation)] = &[
    ("gelu", Activation::Gelu),
    ("gelu_new", Activation::NewGelu),
    ("gelu_pytorch_tanh", Activation::GeluPytorchTanh),
    ("relu", Activation::Relu),
    ("relu2", Activation::Relu2),
    ("relu6", Activation::Relu6),
    ("silu", Activation::Silu),
    ("swish", Activation::Swish),
    ("sigmoid", Activation::Sigmoid),
    ("mish", Activation::Mish),
];

fn activation(name: &str) -> Option<Activation> {
    ACTIVATIONS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

#[derive(Deserialize)]
struct Raw {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    hidden_act: Option<serde_json::Value>,
    max_position_embeddings: Option<usize>,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    pad_token_id: Option<u32>,
    position_embedding_type: Option<String>,
    relative_attention_num_buckets: Option<usize>,
    // DistilBERT's names for the same settings.
    dim: Option<usize>,
    n_layers: Option<usize>,
    n_heads: Option<usize>,
    hidden_dim: Option<usize>,
    activation: Option<serde_json::Value>,
    sinusoidal_pos_embds: Option<bool>,
    // ModernBERT's (and Gemma 3's hidden_activation).
    hidden_activation: Option<serde_json::Value>,
    // Gemma 3's.
    rms_norm_eps: Option<f64>,
    norm_eps: Option<f64>,
    norm_bias: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    global_attn_every_n_layers: Option<usize>,
    local_attention: Option<usize>,
    global_rope_theta: Option<f64>,
    // `null` (the global theta, in transformers 4) is kept apart from a missing key (10000).
    #[serde(default, deserialize_with = "present")]
    local_rope_theta: Option<serde_json::Value>,
    layer_types: Option<Vec<String>>,
    rope_parameters: Option<serde_json::Value>,
    rope_scaling: Option<serde_json::Value>,
}

/// A key that is present, `null` included, as `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

impl EncoderConfig {
    /// Parses `config.json`. Unknown `model_type`s and unsupported settings are errors naming the file.
    pub fn load(path: &Path) -> Result<Self> {
        let raw: Raw = read_json(path)?;
        let model_type = raw.model_type.clone().unwrap_or_default();
        let model_type = model_type.as_str();
        let family = match model_type {
            "bert" => Family::Bert,
            "xlm-roberta" | "roberta" | "camembert" => Family::XlmRoberta,
            "mpnet" => Family::Mpnet,
            "distilbert" => Family::DistilBert,
            "modernbert" => Family::ModernBert,
            t if super::decoder::MODEL_TYPES.contains(&t) => Family::Decoder,
            "gemma3_text" => Family::Gemma3,
            other => return Err(Error::Unimplemented { path: path.to_path_buf(), model_type: other.to_string() }),
        };
        if let Some(p) = raw.position_embedding_type.as_deref() {
            if p != "absolute" {
                return Err(Error::input(path, format!("position_embedding_type {p:?} is not supported (expected \"absolute\")")));
            }
        }
        // DistilBertConfig names them its own way (and fixes LayerNorm's epsilon at 1e-12 in the model code).
        let raw = if family == Family::DistilBert {
            Raw {
                hidden_size: Some(raw.dim.unwrap_or(768)),
                num_hidden_layers: Some(raw.n_layers.unwrap_or(6)),
                num_attention_heads: Some(raw.n_heads.unwrap_or(12)),
                intermediate_size: Some(raw.hidden_dim.unwrap_or(3072)),
                hidden_act: raw.activation.clone(),
                layer_norm_eps: Some(1e-12),
                ..raw
            }
        } else if family == Family::ModernBert {
            // ModernBertConfig's names and defaults (transformers 4.56 / 5.24).
            Raw {
                vocab_size: Some(raw.vocab_size.unwrap_or(50368)),
                intermediate_size: Some(raw.intermediate_size.unwrap_or(1152)),
                num_hidden_layers: Some(raw.num_hidden_layers.unwrap_or(22)),
                max_position_embeddings: Some(raw.max_position_embeddings.unwrap_or(8192)),
                hidden_act: raw.hidden_activation.clone(),
                layer_norm_eps: Some(raw.norm_eps.unwrap_or(1e-5)),
                pad_token_id: Some(raw.pad_token_id.unwrap_or(50283)),
                type_vocab_size: Some(1),
                ..raw
            }
        } else if family == Family::Decoder {
            // LlamaConfig / MistralConfig / Qwen2Config / Qwen3Config defaults (transformers 4.56 / 5.24).
            let qwen = model_type.starts_with("qwen");
            Raw {
                vocab_size: Some(raw.vocab_size.unwrap_or(if qwen { 151936 } else { 32000 })),
                hidden_size: Some(raw.hidden_size.unwrap_or(4096)),
                num_hidden_layers: Some(raw.num_hidden_layers.unwrap_or(32)),
                num_attention_heads: Some(raw.num_attention_heads.unwrap_or(32)),
                intermediate_size: Some(raw.intermediate_size.unwrap_or(match model_type {
                    "llama" => 11008,
                    "mistral" => 14336,
                    _ => 22016,
                })),
                hidden_act: Some(raw.hidden_act.clone().unwrap_or_else(|| "silu".into())),
                max_position_embeddings: Some(raw.max_position_embeddings.unwrap_or(match model_type {
                    "llama" => 2048,
                    "mistral" => 131072,
                    _ => 32768,
                })),
                type_vocab_size: Some(1),
                pad_token_id: Some(raw.pad_token_id.unwrap_or(0)),
                ..raw
            }
        } else if family == Family::Gemma3 {
            // Gemma3TextConfig's defaults (transformers 5.24).
            Raw {
                vocab_size: Some(raw.vocab_size.unwrap_or(262_208)),
                hidden_size: Some(raw.hidden_size.unwrap_or(2304)),
                intermediate_size: Some(raw.intermediate_size.unwrap_or(9216)),
                num_hidden_layers: Some(raw.num_hidden_layers.unwrap_or(super::gemma3::config::DEFAULT_LAYERS)),
                num_attention_heads: Some(raw.num_attention_heads.unwrap_or(super::gemma3::config::DEFAULT_HEADS)),
                max_position_embeddings: Some(raw.max_position_embeddings.unwrap_or(131_072)),
                hidden_act: Some(raw.hidden_activation.clone().unwrap_or_else(|| "gelu_pytorch_tanh".into())),
                layer_norm_eps: Some(raw.rms_norm_eps.unwrap_or(1e-6)),
                type_vocab_size: Some(1),
                ..raw
            }
        } else {
            raw
        };
        let decoder = if family == Family::Decoder {
            let (layers, heads, hidden) = (raw.num_hidden_layers.unwrap_or(32), raw.num_attention_heads.unwrap_or(32), raw.hidden_size.unwrap_or(4096));
            Some(super::decoder::DecoderConfig::load(path, model_type, layers, heads, hidden)?)
        } else {
            None
        };
        let gemma3 = if family == Family::Gemma3 { Some(super::gemma3::Gemma3Config::load(path)?) } else { None };
        let modernbert = if family == Family::ModernBert { Some(modernbert_settings(path, &raw)?) } else { None };
        let hidden_act = match raw.hidden_act {
            None => Activation::Gelu,
            Some(v) => v.as_str().and_then(activation).ok_or_else(|| {
                let names: Vec<&str> = ACTIVATIONS.iter().map(|(n, _)| *n).collect();
                Error::input(path, format!("hidden_act {v} is not supported (expected one of {})", names.join(", ")))
            })?,
        };
        // transformers' BertConfig / XLMRobertaConfig / MPNetConfig defaults.
        let cfg = EncoderConfig {
            family,
            vocab_size: raw.vocab_size.unwrap_or(if family == Family::Mpnet { 30527 } else { 30522 }),
            hidden_size: raw.hidden_size.unwrap_or(768),
            num_hidden_layers: raw.num_hidden_layers.unwrap_or(12),
            num_attention_heads: raw.num_attention_heads.unwrap_or(12),
            intermediate_size: raw.intermediate_size.unwrap_or(3072),
            hidden_act,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(if family == Family::Mpnet { 514 } else { 512 }),
            type_vocab_size: raw.type_vocab_size.unwrap_or(2),
            layer_norm_eps: raw.layer_norm_eps.unwrap_or(1e-12),
            pad_token_id: raw.pad_token_id.unwrap_or(match family {
                Family::Bert | Family::DistilBert | Family::ModernBert | Family::Decoder | Family::Gemma3 => 0,
                Family::XlmRoberta | Family::Mpnet => 1,
            }),
            relative_attention_num_buckets: raw.relative_attention_num_buckets.unwrap_or(32),
            sinusoidal_positions: raw.sinusoidal_pos_embds.unwrap_or(false),
            modernbert,
            decoder,
            gemma3,
        };
        if let Some(m) = &cfg.modernbert {
            if m.global_layers.len() != cfg.num_hidden_layers {
                return Err(Error::input(path, format!("layer_types lists {} layers, num_hidden_layers is {}", m.global_layers.len(), cfg.num_hidden_layers)));
            }
            if (cfg.hidden_size / cfg.num_attention_heads.max(1)) % 2 != 0 {
                return Err(Error::input(path, "the head size is odd: rotary embeddings rotate pairs of values"));
            }
        }
        if family == Family::Mpnet && cfg.relative_attention_num_buckets < super::mpnet::BUCKETS {
            return Err(Error::input(
                path,
                format!(
                    "relative_attention_num_buckets {} is below the {} buckets MPNet's encoder looks up",
                    cfg.relative_attention_num_buckets,
                    super::mpnet::BUCKETS
                ),
            ));
        }
        for (key, value) in [
            ("vocab_size", cfg.vocab_size),
            ("hidden_size", cfg.hidden_size),
            ("num_attention_heads", cfg.num_attention_heads),
            ("intermediate_size", cfg.intermediate_size),
            ("max_position_embeddings", cfg.max_position_embeddings),
            ("type_vocab_size", cfg.type_vocab_size),
        ] {
            if value == 0 {
                return Err(Error::input(path, format!("{key} is 0, expected at least 1")));
            }
        }
        if !(cfg.layer_norm_eps.is_finite() && cfg.layer_norm_eps >= 0.0) {
            return Err(Error::input(path, format!("layer_norm_eps {} is not a finite number >= 0", cfg.layer_norm_eps)));
        }
        if cfg.max_tokens() == 0 {
            return Err(Error::input(
                path,
                format!("max_position_embeddings {} leaves no position for a token after pad_token_id {}", cfg.max_position_embeddings, cfg.pad_token_id),
            ));
        }
        // A decoder's heads have their own width (`head_dim`), not necessarily hidden_size / heads.
        if !matches!(cfg.family, Family::Decoder | Family::Gemma3) && cfg.hidden_size % cfg.num_attention_heads != 0 {
            return Err(Error::input(
                path,
                format!("hidden_size {} is not a multiple of num_attention_heads {}", cfg.hidden_size, cfg.num_attention_heads),
            ));
        }
        Ok(cfg)
    }

    /// The most tokens (special tokens included) the position table can encode.
    pub fn max_tokens(&self) -> usize {
        match self.family {
            Family::Bert | Family::DistilBert | Family::ModernBert | Family::Decoder | Family::Gemma3 => self.max_position_embeddings,
            Family::XlmRoberta | Family::Mpnet => self.max_position_embeddings.saturating_sub(self.pad_token_id as usize + 1),
        }
    }

    /// Position ids for one unpadded sequence of `ids`, computed exactly in integers.
    ///
    /// XLM-R and MPNet: `cumsum(ids != pad) * (ids != pad) + pad`, as transformers does; BERT: `0..len`.
    pub fn position_ids(&self, ids: &[u32], out: &mut Vec<u32>) {
        match self.family {
            Family::Bert | Family::DistilBert | Family::ModernBert | Family::Decoder | Family::Gemma3 => out.extend(0..ids.len() as u32),
            Family::XlmRoberta | Family::Mpnet => {
                let pad = self.pad_token_id;
                let mut count = 0u32;
                out.extend(ids.iter().map(|&id| {
                    if id == pad {
                        pad
                    } else {
                        count += 1;
                        count + pad
                    }
                }));
            }
        }
    }
}

/// `layer_types` as transformers 5 saves them: per layer, whether it attends globally (`full_attention`) or
/// within the sliding window (`sliding_attention`).
pub(crate) fn global_layers(path: &Path, types: &[String]) -> Result<Vec<bool>> {
    types
        .iter()
        .map(|t| match t.as_str() {
            "full_attention" => Ok(true),
            "sliding_attention" => Ok(false),
            other => Err(Error::input(path, format!("layer_types: {other:?} is not full_attention or sliding_attention"))),
        })
        .collect()
}

/// ModernBERT's layer pattern, window, RoPE bases and biases, as transformers 4.56 reads them
/// (`global_attn_every_n_layers`, `local_attention`, `global_rope_theta`, `local_rope_theta`, a null local theta
/// meaning the global one) or as transformers 5 saves them (`layer_types`, `rope_parameters` per layer type).
/// RoPE scalings other than the default are refused, not approximated.
fn modernbert_settings(path: &Path, raw: &Raw) -> Result<ModernBertConfig> {
    let layers = raw.num_hidden_layers.unwrap_or(22);
    let every = raw.global_attn_every_n_layers.unwrap_or(3);
    if every == 0 {
        return Err(Error::input(path, "global_attn_every_n_layers is 0, expected at least 1"));
    }
    let global_layers = match &raw.layer_types {
        Some(types) => global_layers(path, types)?,
        None => (0..layers).map(|i| i % every == 0).collect(),
    };
    let theta = |layer_type: &str| -> Result<Option<f64>> {
        let Some(params) = raw.rope_parameters.as_ref().and_then(|p| p.get(layer_type)).filter(|p| !p.is_null()) else { return Ok(None) };
        if let Some(kind) = params.get("rope_type").and_then(|t| t.as_str()) {
            if kind != "default" {
                return Err(Error::input(path, format!("rope_parameters.{layer_type}.rope_type {kind:?} is not supported (expected \"default\")")));
            }
        }
        Ok(params.get("rope_theta").and_then(|t| t.as_f64()))
    };
    if let Some(s) = raw.rope_scaling.as_ref().filter(|s| !s.is_null()) {
        let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(|t| t.as_str()).unwrap_or("?");
        if kind != "default" {
            return Err(Error::input(path, format!("rope_scaling {kind:?} is not supported (expected none)")));
        }
    }
    let global_theta = match theta("full_attention")? {
        Some(t) => t,
        None => raw.global_rope_theta.unwrap_or(160_000.0),
    };
    let local_theta = match theta("sliding_attention")? {
        Some(t) => t,
        None => match &raw.local_rope_theta {
            None => 10_000.0,
            Some(serde_json::Value::Null) => global_theta,
            Some(v) => v.as_f64().ok_or_else(|| Error::input(path, format!("local_rope_theta {v} is not a number")))?,
        },
    };
    for (key, t) in [("global_rope_theta", global_theta), ("local_rope_theta", local_theta)] {
        if !(t.is_finite() && t > 1.0) {
            return Err(Error::input(path, format!("{key} {t} is not a finite number above 1")));
        }
    }
    Ok(ModernBertConfig {
        global_layers,
        half_window: raw.local_attention.unwrap_or(128) / 2,
        global_theta,
        local_theta,
        norm_bias: raw.norm_bias.unwrap_or(false),
        attention_bias: raw.attention_bias.unwrap_or(false),
        mlp_bias: raw.mlp_bias.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// generate_fixtures.py tells the user whether embcheck computes a model from its own copy of the list.
    #[test]
    fn the_fixture_script_knows_the_implemented_model_types() {
        let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/generate_fixtures.py")).unwrap();
        let line = script.lines().find(|l| l.starts_with("EMBCHECK_IMPLEMENTS = [")).expect("EMBCHECK_IMPLEMENTS in generate_fixtures.py");
        let listed: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(listed, IMPLEMENTED);
    }

    /// ModernBERT's settings read from transformers 4's keys and from the `layer_types` / `rope_parameters`
    /// that transformers 5.24 saves instead of the thetas (its `save_pretrained` of tiny-modernbert-cls's config).
    #[test]
    fn modernbert_settings_from_either_transformers_version() {
        let dir = tempfile::tempdir().unwrap();
        let load = |json: &str| {
            let path = dir.path().join("config.json");
            std::fs::write(&path, json).unwrap();
            EncoderConfig::load(&path).unwrap().modernbert.unwrap()
        };
        let common = r#""model_type": "modernbert", "hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 3,
                        "local_attention": 10, "norm_bias": true, "attention_bias": true, "mlp_bias": true"#;
        let tf4 = load(&format!(r#"{{{common}, "global_attn_every_n_layers": 2, "global_rope_theta": 80000.0, "local_rope_theta": 5000.0}}"#));
        let tf5 = load(&format!(
            r#"{{{common}, "global_attn_every_n_layers": 2, "layer_types": ["full_attention", "sliding_attention", "full_attention"],
                "rope_parameters": {{"full_attention": {{"rope_theta": 80000.0, "rope_type": "default"}},
                                    "sliding_attention": {{"rope_theta": 5000.0, "rope_type": "default"}}}}}}"#
        ));
        assert_eq!(tf4, tf5);
        assert_eq!(tf4.global_layers, vec![true, false, true]);
        assert_eq!((tf4.half_window, tf4.global_theta, tf4.local_theta), (5, 80000.0, 5000.0));
        // transformers 4: a null local theta means the global one; defaults are ModernBERT-base's.
        let null_local = load(&format!(r#"{{{common}, "global_rope_theta": 7000.0, "local_rope_theta": null}}"#));
        assert_eq!((null_local.global_theta, null_local.local_theta), (7000.0, 7000.0));
        assert_eq!(null_local.global_layers, vec![true, false, false]);
        let defaults = load(r#"{"model_type": "modernbert", "num_hidden_layers": 22}"#);
        assert_eq!((defaults.half_window, defaults.global_theta, defaults.local_theta, defaults.norm_bias), (64, 160000.0, 10000.0, false));
    }

    /// An unknown model type is its own error (the model-free checks go on), naming what is implemented.
    #[test]
    fn an_unimplemented_model_type_names_the_implemented_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"model_type": "deberta-v2"}"#).unwrap();
        let e = EncoderConfig::load(&path).unwrap_err();
        assert!(matches!(&e, Error::Unimplemented { model_type, .. } if model_type == "deberta-v2"), "{e}");
        let msg = e.to_string();
        for t in IMPLEMENTED {
            assert!(msg.contains(t), "{msg}");
        }
    }
}
