//! The embedding layer every family has: word + position (+ the type-0 row where the family has token
//! types), then LayerNorm, under `embeddings.*` of the base model.

use candle_core::{DType, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use super::config::EncoderConfig;

/// Word, position and (BERT, XLM-R) token-type tables and the LayerNorm after their sum.
pub struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Option<Embedding>,
    /// The LayerNorm after the sum.
    pub norm: LayerNorm,
    eps: f64,
}

impl Embeddings {
    /// Loads `embeddings.*` under the base model's `vb`; `token_types`: the family adds the type-0 row;
    /// `position`: a position table the family computes instead of reading it.
    pub fn load(vb: &VarBuilder, cfg: &EncoderConfig, token_types: bool, position: Option<Embedding>) -> candle_core::Result<Self> {
        let (h, emb) = (cfg.hidden_size, vb.pp("embeddings"));
        let position = match position {
            Some(p) => p,
            None => candle_nn::embedding(cfg.max_position_embeddings, h, emb.pp("position_embeddings"))?,
        };
        let token_type = if token_types { Some(candle_nn::embedding(cfg.type_vocab_size, h, emb.pp("token_type_embeddings"))?) } else { None };
        Ok(Embeddings {
            word: candle_nn::embedding(cfg.vocab_size, h, emb.pp("word_embeddings"))?,
            position,
            token_type,
            norm: candle_nn::layer_norm(h, cfg.layer_norm_eps, emb.pp("LayerNorm"))?,
            eps: cfg.layer_norm_eps,
        })
    }

    /// `[B, L]` ids and positions → `[B, L, H]`, summed in transformers' order (word, position, type).
    pub fn forward(&self, ids: &Tensor, positions: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = (self.word.forward(ids)? + self.position.forward(positions)?)?;
        if let Some(types) = &self.token_type {
            x = (x + types.forward(&Tensor::zeros(ids.dims(), DType::U32, ids.device())?)?)?;
        }
        super::dense::layer_norm(&self.norm, self.eps, &x)
    }
}
