//! DistilBERT (msmarco-distilbert-*, multi-qa-distilbert-*): word + position embeddings (no token types;
//! positions 0..L), learned or sinusoidal (`sinusoidal_pos_embds`), then post-LN layers under
//! `transformer.layer` with their own names.

use candle_core::Tensor;
use candle_nn::{Embedding, VarBuilder};

use crate::model::config::EncoderConfig;
use crate::model::layer::LayerNames;

/// Prefixes under which checkpoints of task heads (`DistilBertForMaskedLM`, ...) store the base model.
pub const PREFIXES: &[&str] = &["", "distilbert."];

/// transformers' `TransformerBlock` names.
pub const LAYER: LayerNames = LayerNames {
    qkv: ["attention.q_lin", "attention.k_lin", "attention.v_lin"],
    attn_out: "attention.out_lin",
    attn_norm: "sa_layer_norm",
    intermediate: "ffn.lin1",
    output: "ffn.lin2",
    out_norm: "output_layer_norm",
};

/// Where the layers are, under the base model.
pub const LAYERS: &str = "transformer.layer";

/// transformers' `create_sinusoidal_embeddings`: row `pos`, column `j` is `sin` (even `j`) or `cos` (odd `j`)
/// of `pos / 10000^(2⌊j/2⌋ / dim)`, computed in f64 (numpy) and stored as f32.
pub fn sinusoidal(n_pos: usize, dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n_pos * dim);
    for pos in 0..n_pos {
        for j in 0..dim {
            let angle = pos as f64 / 10000f64.powf((2 * (j / 2)) as f64 / dim as f64);
            out.push(if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32);
        }
    }
    out
}

/// The position table of a sinusoidal model whose checkpoint leaves it out, computed as transformers
/// initializes a missing one; `None` when the checkpoint has it (learned or saved sinusoids: read as is).
pub fn computed_positions(vb: &VarBuilder, cfg: &EncoderConfig) -> candle_core::Result<Option<Embedding>> {
    if !cfg.sinusoidal_positions || vb.pp("embeddings").contains_tensor("position_embeddings.weight") {
        return Ok(None);
    }
    let (n, h) = (cfg.max_position_embeddings, cfg.hidden_size);
    let table = Tensor::from_vec(sinusoidal(n, h), (n, h), vb.device())?.to_dtype(vb.dtype())?;
    Ok(Some(Embedding::new(table, h)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Position 0 is (0, 1, 0, 1, ...); the first pair of columns is (sin pos, cos pos); the last pairs vary
    /// slowest.
    #[test]
    fn sinusoidal_table_has_transformers_layout() {
        let (n, d) = (5, 6);
        let t = sinusoidal(n, d);
        assert_eq!(&t[..d], &[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
        for pos in 0..n {
            assert_eq!(t[pos * d], (pos as f64).sin() as f32);
            assert_eq!(t[pos * d + 1], (pos as f64).cos() as f32);
            let slow = pos as f64 / 10000f64.powf(4.0 / 6.0);
            assert_eq!(t[pos * d + 4], slow.sin() as f32);
        }
    }
}
