//! ModernBERT (gte-modernbert-base, modernbert-embed-base and kin): token embeddings (no positions, no token
//! types) and a LayerNorm, then pre-LN layers — attention with rotary positions, global every
//! `global_attn_every_n_layers`-th layer (from layer 0) and within a sliding window of `local_attention / 2`
//! keys on each side otherwise, each kind with its own RoPE base; a GeGLU MLP — and a final LayerNorm. The
//! first layer has no attention norm. LayerNorms and linears have biases only where `norm_bias`,
//! `attention_bias`, `mlp_bias` say. As transformers' `ModernBertModel` (4.56 and 5.24) computes it.

pub mod rope;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Activation, Embedding, LayerNorm, VarBuilder};

use crate::model::config::{EncoderConfig, ModernBertConfig};
use crate::model::dense::Dense;
use crate::model::encoder::{See, Stage};

/// Prefixes under which checkpoints of task heads (`ModernBertForMaskedLM`, ...) store the base model.
pub const PREFIXES: &[&str] = &["", "model."];

/// Where the token table is, under the base model (the encoder finds the prefix by it).
pub const WORD_EMBEDDINGS: &str = "embeddings.tok_embeddings.weight";

/// A LayerNorm, with a bias only where the config has one (`norm_bias`).
fn layer_norm(vb: VarBuilder, h: usize, eps: f64, bias: bool) -> candle_core::Result<LayerNorm> {
    if bias {
        candle_nn::layer_norm(h, eps, vb)
    } else {
        Ok(LayerNorm::new_no_bias(vb.get(h, "weight")?, eps))
    }
}

/// A linear layer, with a bias only where the config has one.
pub(crate) fn linear(vb: VarBuilder, d_in: usize, d_out: usize, bias: bool) -> candle_core::Result<Dense> {
    if bias {
        Dense::load(&vb, d_in, d_out)
    } else {
        Ok(Dense::new(vb.get((d_out, d_in), "weight")?, None))
    }
}

/// One ModernBERT layer.
struct Layer {
    /// None for layer 0 (transformers' `nn.Identity`).
    attn_norm: Option<LayerNorm>,
    wqkv: Dense,
    wo: Dense,
    mlp_norm: LayerNorm,
    wi: Dense,
    mlp_wo: Dense,
    /// Global attention (all keys) or local (keys within the half window).
    global: bool,
}

/// The loaded ModernBERT encoder.
pub struct Body {
    embeddings: Embedding,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    /// The last LayerNorm (`final_norm`).
    pub final_norm: LayerNorm,
    settings: ModernBertConfig,
    act: Activation,
    heads: usize,
    head_dim: usize,
    /// The LayerNorms' epsilon (f64 LayerNorms are computed step by step, see [`Body::norm`]).
    eps: f64,
}

impl Body {
    /// Loads the base model's tensors under `vb`.
    pub fn load(vb: &VarBuilder, cfg: &EncoderConfig) -> candle_core::Result<Self> {
        let settings = cfg.modernbert.clone().ok_or_else(|| candle_core::Error::Msg("a ModernBERT encoder without its settings".into()))?;
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let emb = vb.pp("embeddings");
        let layers = (0..cfg.num_hidden_layers)
            .map(|n| {
                let l = vb.pp("layers").pp(n);
                Ok(Layer {
                    attn_norm: if n == 0 { None } else { Some(layer_norm(l.pp("attn_norm"), h, eps, settings.norm_bias)?) },
                    wqkv: linear(l.pp("attn").pp("Wqkv"), h, 3 * h, settings.attention_bias)?,
                    wo: linear(l.pp("attn").pp("Wo"), h, h, settings.attention_bias)?,
                    mlp_norm: layer_norm(l.pp("mlp_norm"), h, eps, settings.norm_bias)?,
                    wi: linear(l.pp("mlp").pp("Wi"), h, 2 * i, settings.mlp_bias)?,
                    mlp_wo: linear(l.pp("mlp").pp("Wo"), i, h, settings.mlp_bias)?,
                    global: settings.global_layers[n],
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Body {
            embeddings: candle_nn::embedding(cfg.vocab_size, h, emb.pp("tok_embeddings"))?,
            emb_norm: layer_norm(emb.pp("norm"), h, eps, settings.norm_bias)?,
            layers,
            final_norm: layer_norm(vb.pp("final_norm"), h, eps, settings.norm_bias)?,
            settings,
            act: cfg.hidden_act,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            eps,
        })
    }

    /// `norm(x)`; in f64 step by step in f64 (candle's LayerNorm op has no f64 kernel).
    fn norm(&self, norm: &LayerNorm, x: &Tensor) -> candle_core::Result<Tensor> {
        crate::model::dense::layer_norm(norm, self.eps, x)
    }

    /// Runs right-padded `[B, L]` ids; `lengths`: the real tokens of each sequence (keys past them are masked).
    /// Each stage's hidden states go to `see` (see [`Stage`]): the embeddings, each layer's residual stream
    /// after its attention and after its MLP, the final norm (then again as the output).
    pub(crate) fn forward(&self, ids: &Tensor, lengths: &[usize], see: See<'_>) -> candle_core::Result<()> {
        let (b, l) = ids.dims2()?;
        let h = self.heads * self.head_dim;
        let global = rope::RopeTables::new(self.settings.global_theta, self.head_dim, l);
        let local = rope::RopeTables::new(self.settings.local_theta, self.head_dim, l);
        let mut x = self.norm(&self.emb_norm, &self.embeddings.forward(ids)?)?;
        see(Stage::Embeddings, &x)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        // f64 (the value f32 noise is measured against) takes the same fused ops as f32, in f64.
        let fast = matches!(x.dtype(), DType::F32 | DType::F64) && matches!(x.device(), Device::Cpu);
        // The half-precision path's cos/sin tensors, built once per kind of layer.
        let half_tables = if fast {
            None
        } else {
            Some((global.tensors(l, x.dtype(), x.device())?, local.tensors(l, x.dtype(), x.device())?))
        };
        for (i, layer) in self.layers.iter().enumerate() {
            let normed = match &layer.attn_norm {
                Some(n) => self.norm(n, &x)?,
                None => x.clone(),
            };
            let qkv = layer.wqkv.forward(&normed)?;
            let window = (!layer.global).then_some(self.settings.half_window);
            let ctx = if fast {
                let qkv = qkv.contiguous()?;
                let tables = if layer.global { &global } else { &local };
                qkv.inplace_op1(&rope::RotateQk { tables, heads: self.heads, len: l })?;
                match window {
                    None => crate::model::attention::attention(&qkv, lengths, self.heads, scale as f32, None)?,
                    Some(w) => crate::model::attention::windowed_attention(&qkv, lengths, self.heads, scale as f32, w)?,
                }
            } else {
                let ((gc, gs), (lc, ls)) = half_tables.as_ref().expect("built for the half-precision path");
                let (cos, sin) = if layer.global { (gc, gs) } else { (lc, ls) };
                let qkv = qkv.reshape((b, l, 3, self.heads, self.head_dim))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
                let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
                let (q, k) = (rope::apply(&q, cos, sin)?, rope::apply(&k, cos, sin)?);
                crate::model::layer::attention(&q, &k, &v, lengths, self.head_dim, None, window, crate::model::layer::SCORE_BLOCK)?
                    .transpose(1, 2)?
                    .reshape((b, l, h))?
            };
            x = (x + layer.wo.forward(&ctx)?)?;
            see(Stage::Attention(i), &x)?;
            let inner = layer.wi.forward(&self.norm(&layer.mlp_norm, &x)?)?;
            let gated = crate::model::gelu::geglu(&inner, self.act)?;
            x = (x + layer.mlp_wo.forward(&gated)?)?;
            see(Stage::Mlp(i), &x)?;
        }
        let out = self.norm(&self.final_norm, &x)?;
        see(Stage::FinalNorm, &out)?;
        see(Stage::Output, &out)
    }
}
