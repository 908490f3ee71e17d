//! The decoder families' settings from `config.json`, as transformers 4.56 (`rope_theta`, `rope_scaling`,
//! `use_sliding_window` / `max_window_layers`) and 5.24 (`rope_parameters`, `layer_types`) read them.

use std::path::Path;

use serde_json::Value;

use crate::error::{read_json, Error, Result};

/// Which transformers class computes the model: they differ only in biases, q/k norms and the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderKind {
    /// `llama`: no window; `attention_bias` on q, k, v, o; `mlp_bias` on the MLP.
    Llama,
    /// `mistral`: no bias; a window on every layer when `sliding_window` is set.
    Mistral,
    /// `qwen2`: a bias on q, k, v (never o); windowed layers from `use_sliding_window` / `max_window_layers`.
    Qwen2,
    /// `qwen3`: RMSNorm on each head's query and key before RoPE; `attention_bias` on q, k, v, o.
    Qwen3,
}

/// A decoder's settings beyond the shared ones.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// The class.
    pub kind: DecoderKind,
    /// Key/value heads (grouped-query attention: each serves `heads / kv_heads` query heads).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// Per layer: `Some(w)` when query `i` attends only keys `j` with `i − w < j ≤ i` (transformers'
    /// `sliding_window_overlay`), `None` for plain causal attention.
    pub windows: Vec<Option<usize>>,
    /// Bias on q, k, v.
    pub qkv_bias: bool,
    /// Bias on o.
    pub o_bias: bool,
    /// Bias on gate, up, down.
    pub mlp_bias: bool,
}

/// The `model_type`s computed here.
pub const MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2", "qwen3"];

impl DecoderConfig {
    /// Reads the decoder settings of `config.json` at `path`; `layers` and `heads`, `hidden` as already parsed.
    pub fn load(path: &Path, model_type: &str, layers: usize, heads: usize, hidden: usize) -> Result<Self> {
        let v: Value = read_json(path)?;
        let kind = match model_type {
            "llama" => DecoderKind::Llama,
            "mistral" => DecoderKind::Mistral,
            "qwen2" => DecoderKind::Qwen2,
            "qwen3" => DecoderKind::Qwen3,
            other => return Err(Error::input(path, format!("model_type {other:?} is not a decoder embcheck computes"))),
        };
        let uint = |k: &str| v.get(k).and_then(Value::as_u64).map(|x| x as usize);
        let flag = |k: &str| v.get(k).and_then(Value::as_bool);
        let kv_heads = uint("num_key_value_heads").unwrap_or(if kind == DecoderKind::Mistral { 8 } else { heads });
        let head_dim = match (kind, uint("head_dim")) {
            (_, Some(d)) => d,
            (DecoderKind::Qwen3, None) => 128,
            (_, None) => hidden / heads.max(1),
        };
        if kv_heads == 0 || heads % kv_heads != 0 {
            return Err(Error::input(path, format!("num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")));
        }
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(Error::input(path, format!("head_dim {head_dim}: rotary embeddings need an even, non-zero head size")));
        }
        let rope_theta = rope_theta(path, &v)?;
        let rms_eps = v.get("rms_norm_eps").and_then(Value::as_f64).unwrap_or(1e-6);
        if !(rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(Error::input(path, format!("rms_norm_eps {rms_eps} is not a finite number >= 0")));
        }
        let window = |w: Option<usize>| -> Result<Option<usize>> {
            match w {
                Some(0) => Err(Error::input(path, "sliding_window is 0, expected at least 1")),
                w => Ok(w),
            }
        };
        // A missing key is the classes' default (4096; transformers 5 leaves defaults out), null is none.
        let sliding = match v.get("sliding_window") {
            None => Some(4096),
            Some(Value::Null) => None,
            Some(x) => Some(x.as_u64().ok_or_else(|| Error::input(path, format!("sliding_window {x} is not a whole number")))? as usize),
        };
        let windows = match kind {
            DecoderKind::Llama => vec![None; layers],
            // MistralModel: create_sliding_window_causal_mask on every layer when sliding_window is not None
            // (transformers 5 warns about layer_types and ignores them).
            DecoderKind::Mistral => vec![window(sliding)?; layers],
            // Qwen2Config / Qwen3Config: sliding_window only if use_sliding_window; layer_types as saved, else
            // sliding from layer max_window_layers on.
            DecoderKind::Qwen2 | DecoderKind::Qwen3 => {
                let w = if flag("use_sliding_window").unwrap_or(false) { window(sliding)? } else { None };
                let types: Vec<bool> = match v.get("layer_types").filter(|t| !t.is_null()) {
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|t| match t.as_str() {
                            Some("full_attention") => Ok(false),
                            Some("sliding_attention") => Ok(true),
                            _ => Err(Error::input(path, format!("layer_types: {t} is not full_attention or sliding_attention"))),
                        })
                        .collect::<Result<_>>()?,
                    Some(other) => return Err(Error::input(path, format!("layer_types {other} is not a list"))),
                    None => {
                        let from = uint("max_window_layers").unwrap_or(28);
                        (0..layers).map(|i| w.is_some() && i >= from).collect()
                    }
                };
                if types.len() != layers {
                    return Err(Error::input(path, format!("layer_types lists {} layers, num_hidden_layers is {layers}", types.len())));
                }
                types
                    .into_iter()
                    .map(|sliding| match (sliding, w) {
                        (false, _) => Ok(None),
                        (true, Some(w)) => Ok(Some(w)),
                        (true, None) => Err(Error::input(path, "layer_types has a sliding_attention layer but no sliding window is in use (use_sliding_window false or sliding_window null)")),
                    })
                    .collect::<Result<_>>()?
            }
        };
        let attention_bias = flag("attention_bias").unwrap_or(false);
        let (qkv_bias, o_bias, mlp_bias) = match kind {
            DecoderKind::Llama => (attention_bias, attention_bias, flag("mlp_bias").unwrap_or(false)),
            DecoderKind::Qwen3 => (attention_bias, attention_bias, false),
            DecoderKind::Qwen2 => (true, false, false),
            DecoderKind::Mistral => (false, false, false),
        };
        Ok(DecoderConfig { kind, kv_heads, head_dim, rope_theta, rms_eps, windows, qkv_bias, o_bias, mlp_bias })
    }
}

/// The RoPE base: transformers 5's `rope_parameters` (flat, `rope_type` default), else transformers 4's
/// `rope_theta`; 10000 when neither is given. Any other `rope_type` (linear, dynamic, yarn, llama3, ...) is
/// refused: those rescale the frequencies or the angles, which embcheck does not compute.
fn rope_theta(path: &Path, v: &Value) -> Result<f64> {
    let refuse = |key: &str, kind: &str| Error::input(path, format!("{key}: rope_type {kind:?} is not implemented (embcheck computes the default RoPE only)"));
    if let Some(s) = v.get("rope_scaling").filter(|s| !s.is_null()) {
        let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(Value::as_str).unwrap_or("?");
        if kind != "default" {
            return Err(refuse("rope_scaling", kind));
        }
    }
    let mut theta = v.get("rope_theta").and_then(Value::as_f64);
    if let Some(p) = v.get("rope_parameters").filter(|p| !p.is_null()) {
        let kind = p.get("rope_type").and_then(Value::as_str).unwrap_or("default");
        if kind != "default" {
            return Err(refuse("rope_parameters", kind));
        }
        if let Some(t) = p.get("rope_theta").and_then(Value::as_f64) {
            theta = Some(t);
        }
    }
    let theta = theta.unwrap_or(10_000.0);
    if !(theta.is_finite() && theta > 1.0) {
        return Err(Error::input(path, format!("rope_theta {theta} is not a finite number above 1")));
    }
    Ok(theta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str, model_type: &str, layers: usize) -> Result<DecoderConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        DecoderConfig::load(&path, model_type, layers, 4, 32)
    }

    /// transformers 4's keys and transformers 5's give the same settings; Qwen windows start at
    /// max_window_layers and only with use_sliding_window.
    #[test]
    fn settings_from_either_transformers_version() {
        let tf4 = load(r#"{"rope_theta": 5000.0, "use_sliding_window": true, "sliding_window": 7, "max_window_layers": 1}"#, "qwen2", 3).unwrap();
        let tf5 = load(r#"{"rope_parameters": {"rope_theta": 5000.0, "rope_type": "default"}, "use_sliding_window": true, "sliding_window": 7,
                         "layer_types": ["full_attention", "sliding_attention", "sliding_attention"]}"#, "qwen2", 3).unwrap();
        assert_eq!(tf4, tf5);
        assert_eq!(tf4.windows, vec![None, Some(7), Some(7)]);
        assert_eq!((tf4.qkv_bias, tf4.o_bias, tf4.head_dim, tf4.kv_heads), (true, false, 8, 4));
        // Without use_sliding_window, no window whatever sliding_window says.
        assert_eq!(load(r#"{"sliding_window": 7, "max_window_layers": 0}"#, "qwen3", 2).unwrap().windows, vec![None, None]);
        // Mistral: every layer; its default 8 key/value heads.
        let m = load(r#"{"sliding_window": 5, "num_key_value_heads": 2}"#, "mistral", 2).unwrap();
        assert_eq!((m.windows, m.kv_heads), (vec![Some(5), Some(5)], 2));
        assert_eq!(load(r#"{"sliding_window": null, "num_key_value_heads": 4}"#, "mistral", 1).unwrap().windows, vec![None]);
        // Its default: 8 key/value heads, more than the 4 query heads here.
        assert!(load("{}", "mistral", 1).is_err());
        // Qwen3's head_dim defaults to 128, not hidden / heads.
        assert_eq!(load("{}", "qwen3", 1).unwrap().head_dim, 128);
    }

    /// RoPE scalings are refused with the key and type named.
    #[test]
    fn rope_scalings_are_refused() {
        let e = load(r#"{"rope_scaling": {"type": "linear", "factor": 2.0}}"#, "llama", 1).unwrap_err().to_string();
        assert!(e.contains("rope_scaling") && e.contains("linear"), "{e}");
        let e = load(r#"{"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6}}"#, "qwen3", 1).unwrap_err().to_string();
        assert!(e.contains("yarn"), "{e}");
        assert!(load(r#"{"num_key_value_heads": 3}"#, "llama", 1).is_err());
    }
}
