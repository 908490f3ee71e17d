//! MPNet (all-mpnet-base-v2 and kin): word + position embeddings (no token types; positions counted from
//! `pad_token_id + 1` as in RoBERTa), post-LN layers whose attention scores get a relative position bias:
//! the key's offset from the query, put in one of 32 buckets (exact below 8, logarithmic to 128, then
//! capped; one half per direction), looked up per head in `encoder.relative_attention_bias`. As in
//! transformers, the bias is computed once per batch and shared by every layer.

use std::sync::Arc;

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::model::config::EncoderConfig;
use crate::model::layer::{LayerNames, PositionBias};

/// Prefixes under which checkpoints of task heads (`MPNetForMaskedLM`, ...) store the base model.
pub const PREFIXES: &[&str] = &["", "mpnet."];

/// transformers' `MPNetLayer` names.
pub const LAYER: LayerNames = LayerNames {
    qkv: ["attention.attn.q", "attention.attn.k", "attention.attn.v"],
    attn_out: "attention.attn.o",
    attn_norm: "attention.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    out_norm: "output.LayerNorm",
};

/// Where the layers are, under the base model.
pub const LAYERS: &str = "encoder.layer";

/// The buckets `MPNetEncoder.compute_position_bias` uses: its default `num_buckets=32`, which the encoder
/// never overrides (whatever `relative_attention_num_buckets` says; that only sizes the table).
pub const BUCKETS: usize = 32;

/// `relative_position_bucket`'s `max_distance`: offsets from 128 on share the last bucket of their side.
const MAX_DISTANCE: i64 = 128;

/// transformers' `MPNetEncoder.relative_position_bucket(memory − context, num_buckets=32, max_distance=128)`,
/// with its float32 arithmetic (the logarithmic buckets are `trunc` of an f32 expression; computing it in
/// f64 would move none of the integers below 128 here, but f32 is what runs).
pub fn bucket(relative: i64) -> usize {
    let half = (BUCKETS / 2) as i64;
    let max_exact = half / 2;
    let n = -relative;
    let side = if n < 0 { half } else { 0 };
    let n = n.abs();
    let within = if n < max_exact {
        n
    } else {
        let log_ratio = ((n as f32) / max_exact as f32).ln() / ((MAX_DISTANCE as f64 / max_exact as f64).ln() as f32);
        (max_exact + (log_ratio * (half - max_exact) as f32) as i64).min(half - 1)
    };
    (side + within) as usize
}

/// `encoder.relative_attention_bias`: one value per bucket and head.
pub struct RelativeBias {
    /// `[buckets][heads]`, as f32 (exact for f16 / bf16 weights).
    values: Vec<Vec<f32>>,
    heads: usize,
}

impl RelativeBias {
    /// Loads the `[relative_attention_num_buckets, heads]` table under the base model's `vb`.
    pub fn load(vb: &VarBuilder, cfg: &EncoderConfig) -> candle_core::Result<Self> {
        let heads = cfg.num_attention_heads;
        let w = vb.pp("encoder").pp("relative_attention_bias").get((cfg.relative_attention_num_buckets, heads), "weight")?;
        Ok(RelativeBias { values: w.to_dtype(DType::F32)?.to_vec2::<f32>()?, heads })
    }

    /// The bias of a batch padded to `len` tokens, for every layer; `dtype` is the model's (the `[heads, L, L]`
    /// tensor is built for the half-precision path only).
    pub fn for_length(&self, len: usize, dtype: DType) -> candle_core::Result<PositionBias> {
        let width = 2 * len - 1;
        let mut table = vec![0f32; self.heads * width];
        for k in 0..width {
            let row = &self.values[bucket(k as i64 - (len as i64 - 1))];
            for head in 0..self.heads {
                table[head * width + k] = row[head];
            }
        }
        let full = if dtype == DType::F32 {
            None
        } else {
            let mut all = Vec::with_capacity(self.heads * len * len);
            for head in 0..self.heads {
                for i in 0..len {
                    all.extend_from_slice(&table[head * width + (len - 1 - i)..][..len]);
                }
            }
            Some(Tensor::from_vec(all, (self.heads, len, len), &candle_core::Device::Cpu)?.to_dtype(dtype)?)
        };
        Ok(PositionBias { table: Arc::new(table), len, full })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the buckets: exact offsets below 8 on each side, logarithmic up to 128, capped at the
    /// side's last bucket; keys after the query (positive offsets) in the upper half.
    #[test]
    fn buckets_are_exact_near_logarithmic_far_and_capped() {
        assert_eq!(bucket(0), 0);
        for d in 1..8 {
            assert_eq!(bucket(-d), d as usize, "{d} before");
            assert_eq!(bucket(d), 16 + d as usize, "{d} after");
        }
        let mut last = 0;
        for d in 8..1000i64 {
            let b = bucket(-d);
            assert!(b >= last && (8..16).contains(&b), "{d}: {b}");
            assert_eq!(bucket(d), 16 + b, "{d}");
            last = b;
        }
        // Where each logarithmic bucket starts, as transformers' relative_position_bucket (4.56 and 5.24, on
        // [L, L] grids of L = 7 … 1000) gives it.
        for (first, b) in [(8, 8), (12, 9), (16, 10), (23, 11), (32, 12), (46, 13), (64, 14), (91, 15)] {
            assert_eq!(bucket(-first), b, "{first} before");
            assert_eq!(bucket(-(first - 1)), if first == 8 { 7 } else { b - 1 }, "{} before", first - 1);
        }
        assert_eq!(bucket(-127), 15);
        assert_eq!(bucket(-5000), 15);
        assert_eq!(bucket(5000), 31);
    }
}
