//! BERT and XLM-RoBERTa (also RoBERTa, CamemBERT): word + position + token-type embeddings, then
//! post-LN layers. The two differ only in where position ids start (see [`EncoderConfig::position_ids`]).

use candle_core::{DType, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use crate::model::config::EncoderConfig;
use crate::model::layer::LayerNames;

/// Prefixes under which checkpoints of task heads store the base model's weights.
pub const PREFIXES: &[&str] = &["", "bert.", "roberta.", "model.", "xlm_roberta."];

/// transformers' `BertLayer` names (`XLMRobertaLayer` has the same).
pub const LAYER: LayerNames = LayerNames {
    qkv: ["attention.self.query", "attention.self.key", "attention.self.value"],
    attn_out: "attention.output.dense",
    attn_norm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    out_norm: "output.LayerNorm",
};

/// Where the layers are, under the base model.
pub const LAYERS: &str = "encoder.layer";

/// `BertEmbeddings`: word + position + token type (always type 0 here), then LayerNorm.
pub struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    /// The LayerNorm after the sum.
    pub norm: LayerNorm,
}

impl Embeddings {
    /// Loads `embeddings.*` under the base model's `vb`.
    pub fn load(vb: &VarBuilder, cfg: &EncoderConfig) -> candle_core::Result<Self> {
        let (h, emb) = (cfg.hidden_size, vb.pp("embeddings"));
        Ok(Embeddings {
            word: candle_nn::embedding(cfg.vocab_size, h, emb.pp("word_embeddings"))?,
            position: candle_nn::embedding(cfg.max_position_embeddings, h, emb.pp("position_embeddings"))?,
            token_type: candle_nn::embedding(cfg.type_vocab_size, h, emb.pp("token_type_embeddings"))?,
            norm: candle_nn::layer_norm(h, cfg.layer_norm_eps, emb.pp("LayerNorm"))?,
        })
    }

    /// `[B, L]` ids and positions → `[B, L, H]`.
    pub fn forward(&self, ids: &Tensor, positions: &Tensor) -> candle_core::Result<Tensor> {
        let types = Tensor::zeros(ids.dims(), DType::U32, ids.device())?;
        let x = ((self.word.forward(ids)? + self.position.forward(positions)?)? + self.token_type.forward(&types)?)?;
        self.norm.forward(&x)
    }
}
