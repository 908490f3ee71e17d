//! BERT and XLM-RoBERTa (also RoBERTa, CamemBERT): word + position + token-type embeddings, then
//! post-LN layers. The two differ only in where position ids start (see
//! [`EncoderConfig::position_ids`](crate::model::EncoderConfig::position_ids)).

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
