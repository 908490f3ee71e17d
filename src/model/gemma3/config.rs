//! Gemma 3's settings beyond the shared ones, read from `config.json` as transformers 5's `Gemma3TextConfig`
//! reads them (its defaults for missing keys), or as transformers 4 saved them (`sliding_window_pattern`,
//! `rope_theta`, `rope_local_base_freq`). `attn_logit_softcapping` is read by neither: transformers' Gemma 3
//! attention (4.56 and 5.24) keeps it but never passes it to the attention function (Gemma 2's softcapping gave
//! way to the q/k norms), so a config that sets it computes as one that does not.

use std::path::Path;

use serde::Deserialize;

use crate::error::{read_json, Error, Result};

/// How a layer's queries see the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// Every real key (`use_bidirectional_attention`, a global layer).
    Bidirectional,
    /// Keys at most this far on either side (`use_bidirectional_attention`, a local layer):
    /// `sliding_window // 2`, as transformers 5 turns the window into `sliding_window // 2 + 1` exclusive.
    BidirectionalWindow(usize),
    /// Keys at or before the query (a global layer of a causal model).
    Causal,
    /// Keys at or before the query and fewer than this many positions back (a local layer of a causal model:
    /// `q − sliding_window < k ≤ q`).
    CausalWindow(usize),
}

/// Gemma 3 text settings that the shared [`super::super::EncoderConfig`] has no place for.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Config {
    /// Key/value heads (grouped-query attention: each serves `num_attention_heads / num_key_value_heads`).
    pub kv_heads: usize,
    /// Width of each head (`head_dim`, not necessarily `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// Scores are scaled by `query_pre_attn_scalar^-0.5`.
    pub query_pre_attn_scalar: f64,
    /// Per layer: global (`full_attention`) or local (`sliding_attention`).
    pub global_layers: Vec<bool>,
    /// `sliding_window` as config.json says it.
    pub sliding_window: usize,
    /// `use_bidirectional_attention` (EmbeddingGemma): no causal mask.
    pub bidirectional: bool,
    /// RoPE base of the global layers.
    pub global_theta: f64,
    /// RoPE base of the local layers.
    pub local_theta: f64,
}

impl Gemma3Config {
    /// The mask of layer `i`.
    pub fn mask(&self, layer: usize) -> Mask {
        match (self.bidirectional, self.global_layers[layer]) {
            (true, true) => Mask::Bidirectional,
            (true, false) => Mask::BidirectionalWindow(self.sliding_window / 2),
            (false, true) => Mask::Causal,
            (false, false) => Mask::CausalWindow(self.sliding_window),
        }
    }

    /// The same model with the other mask kind (a causal port of a bidirectional model, or the reverse).
    pub fn with_bidirectional(&self, bidirectional: bool) -> Self {
        Gemma3Config { bidirectional, ..self.clone() }
    }
}

#[derive(Deserialize)]
struct Raw {
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    query_pre_attn_scalar: Option<f64>,
    sliding_window: Option<usize>,
    sliding_window_pattern: Option<usize>,
    layer_types: Option<Vec<String>>,
    rope_theta: Option<f64>,
    rope_local_base_freq: Option<f64>,
    rope_parameters: Option<serde_json::Value>,
    rope_scaling: Option<serde_json::Value>,
    use_bidirectional_attention: Option<bool>,
    attention_bias: Option<bool>,
}

/// Gemma3TextConfig's defaults (transformers 5.24).
pub const DEFAULT_LAYERS: usize = 26;
/// Default `num_attention_heads`.
pub const DEFAULT_HEADS: usize = 8;

impl Gemma3Config {
    /// Reads the Gemma 3 settings of `config.json` at `path`. RoPE scalings other than the default,
    /// attention biases and unknown layer types are refused, not approximated.
    pub fn load(path: &Path) -> Result<Self> {
        let raw: Raw = read_json(path)?;
        let layers = raw.num_hidden_layers.unwrap_or(DEFAULT_LAYERS);
        let heads = raw.num_attention_heads.unwrap_or(DEFAULT_HEADS);
        let kv_heads = raw.num_key_value_heads.unwrap_or(4);
        if kv_heads == 0 || heads % kv_heads != 0 {
            return Err(Error::input(path, format!("num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")));
        }
        if raw.attention_bias == Some(true) {
            return Err(Error::input(path, "attention_bias true is not supported (Gemma 3 has none)"));
        }
        let head_dim = raw.head_dim.unwrap_or(256);
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(Error::input(path, format!("head_dim {head_dim} is not even: rotary embeddings rotate pairs of values")));
        }
        let global_layers = match &raw.layer_types {
            Some(types) => crate::model::config::global_layers(path, types)?,
            None => {
                let every = raw.sliding_window_pattern.unwrap_or(6);
                if every == 0 {
                    return Err(Error::input(path, "sliding_window_pattern is 0, expected at least 1"));
                }
                (0..layers).map(|i| (i + 1) % every == 0).collect()
            }
        };
        if global_layers.len() != layers {
            return Err(Error::input(path, format!("layer_types lists {} layers, num_hidden_layers is {layers}", global_layers.len())));
        }
        if let Some(s) = raw.rope_scaling.as_ref().filter(|s| !s.is_null()) {
            let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(|t| t.as_str()).unwrap_or("?");
            if kind != "default" {
                return Err(Error::input(path, format!("rope_scaling {kind:?} is not supported (expected none)")));
            }
        }
        let theta = |layer_type: &str| -> Result<Option<f64>> {
            let Some(params) = raw.rope_parameters.as_ref().and_then(|p| p.get(layer_type)).filter(|p| !p.is_null()) else {
                return Ok(None);
            };
            if let Some(kind) = params.get("rope_type").and_then(|t| t.as_str()) {
                if kind != "default" {
                    return Err(Error::input(path, format!("rope_parameters.{layer_type}.rope_type {kind:?} is not supported (expected \"default\")")));
                }
            }
            Ok(params.get("rope_theta").and_then(|t| t.as_f64()))
        };
        let global_theta = theta("full_attention")?.or(raw.rope_theta).unwrap_or(1_000_000.0);
        let local_theta = theta("sliding_attention")?.or(raw.rope_local_base_freq).unwrap_or(10_000.0);
        for (key, t) in [("full_attention rope_theta", global_theta), ("sliding_attention rope_theta", local_theta)] {
            if !(t.is_finite() && t > 1.0) {
                return Err(Error::input(path, format!("{key} {t} is not a finite number above 1")));
            }
        }
        let sliding_window = raw.sliding_window.unwrap_or(4096);
        if sliding_window == 0 {
            return Err(Error::input(path, "sliding_window is 0, expected at least 1"));
        }
        let query_pre_attn_scalar = raw.query_pre_attn_scalar.unwrap_or(256.0);
        if !(query_pre_attn_scalar.is_finite() && query_pre_attn_scalar > 0.0) {
            return Err(Error::input(path, format!("query_pre_attn_scalar {query_pre_attn_scalar} is not a finite number above 0")));
        }
        Ok(Gemma3Config {
            kv_heads,
            head_dim,
            query_pre_attn_scalar,
            global_layers,
            sliding_window,
            bidirectional: raw.use_bidirectional_attention.unwrap_or(false),
            global_theta,
            local_theta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> Gemma3Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        Gemma3Config::load(&path).unwrap()
    }

    /// transformers 4's keys (`sliding_window_pattern`, `rope_theta`, `rope_local_base_freq`) and transformers 5's
    /// (`layer_types`, `rope_parameters`) give the same settings; the pattern makes every 6th layer global.
    #[test]
    fn settings_from_either_transformers_version() {
        let tf4 = load(
            r#"{"model_type": "gemma3_text", "num_hidden_layers": 7, "num_attention_heads": 4, "num_key_value_heads": 1,
            "sliding_window_pattern": 6, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "sliding_window": 512}"#,
        );
        let tf5 = load(
            r#"{"model_type": "gemma3_text", "num_hidden_layers": 7, "num_attention_heads": 4, "num_key_value_heads": 1,
            "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
                            "full_attention", "sliding_attention"],
            "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}, "sliding_window": 512}"#,
        );
        assert_eq!(tf4, tf5);
        assert_eq!(tf4.global_layers, vec![false, false, false, false, false, true, false]);
        assert_eq!((tf4.mask(0), tf4.mask(5)), (Mask::CausalWindow(512), Mask::Causal));
        let bi = tf4.with_bidirectional(true);
        // transformers 5: sliding_window // 2 + 1 exclusive, i.e. 256 keys on each side.
        assert_eq!((bi.mask(0), bi.mask(5)), (Mask::BidirectionalWindow(256), Mask::Bidirectional));
    }

    /// Scalings the code does not compute, and a head count that does not split into the key heads, are errors.
    #[test]
    fn refuses_what_it_does_not_compute() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        for json in [
            r#"{"rope_scaling": {"rope_type": "linear", "factor": 8.0}}"#,
            r#"{"num_attention_heads": 6, "num_key_value_heads": 4}"#,
            r#"{"rope_parameters": {"full_attention": {"rope_type": "yarn", "rope_theta": 1.0}}}"#,
            r#"{"head_dim": 15}"#,
        ] {
            std::fs::write(&path, json).unwrap();
            assert!(Gemma3Config::load(&path).is_err(), "{json}");
        }
    }
}
