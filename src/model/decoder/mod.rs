//! Decoder language models used as embedders (Qwen3-Embedding, e5-mistral and other Mistral / Llama / Qwen2
//! based ones): token embeddings, then pre-norm layers — RMSNorm, causal grouped-query attention with rotary
//! positions (Qwen3: an RMSNorm on each head's query and key first; a sliding window where the config sets
//! one), RMSNorm, SwiGLU MLP — and a final RMSNorm. As transformers' `LlamaModel`, `MistralModel`,
//! `Qwen2Model` and `Qwen3Model` (4.56 and 5.24) compute it.
//!
//! Positions are 0..n for every text. Python batches pad on the tokenizer's side, and with left padding the
//! positions of a text shift by its padding; RoPE scores depend on position differences only, so the values
//! agree within f32 noise (the bundled suites' references were made with left padding for Qwen3).

pub mod attention;
pub mod config;

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Activation, Embedding, VarBuilder};

pub use config::{DecoderConfig, DecoderKind, MODEL_TYPES};

use crate::model::config::EncoderConfig;
use crate::model::dense::Dense;
use crate::model::encoder::{See, Stage};
use crate::model::modernbert::{linear, rope};

/// Prefixes under which checkpoints of task heads (`Qwen3ForCausalLM`, ...) store the base model.
pub const PREFIXES: &[&str] = &["", "model."];

/// Where the token table is, under the base model.
pub const WORD_EMBEDDINGS: &str = "embed_tokens.weight";

/// transformers' `LlamaRMSNorm` (and its copies): `w · (x / √(mean(x²) + ε))`, the normalization in f32, the
/// result rounded to the input dtype before the weight multiplies it. In f64 (the value f32 noise is measured
/// against) every step stays in f64, where transformers' float64 model still normalizes in float32.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn load(vb: VarBuilder, width: usize, eps: f64) -> candle_core::Result<Self> {
        Ok(RmsNorm { weight: vb.get(width, "weight")?, eps })
    }

    /// Normalizes the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let xf = x.to_dtype(if x.dtype() == DType::F64 { DType::F64 } else { DType::F32 })?;
        let inv = (xf.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?.sqrt()?.recip()?;
        xf.broadcast_mul(&inv)?.to_dtype(x.dtype())?.broadcast_mul(&self.weight)
    }

    /// The largest |weight|: ‖output row‖ ≤ max|w| · √width.
    fn max_abs_weight(&self) -> candle_core::Result<f64> {
        self.weight.to_dtype(DType::F64)?.abs()?.max(0)?.to_scalar::<f64>()
    }
}

struct Layer {
    input_norm: RmsNorm,
    q: Dense,
    k: Dense,
    v: Dense,
    o: Dense,
    /// Qwen3's per-head norms.
    qk_norms: Option<(RmsNorm, RmsNorm)>,
    post_norm: RmsNorm,
    gate: Dense,
    up: Dense,
    down: Dense,
    window: Option<usize>,
}

/// The loaded decoder.
pub struct Body {
    embeddings: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    settings: DecoderConfig,
    act: Activation,
    heads: usize,
    hidden: usize,
}

impl Body {
    /// Loads the base model's tensors under `vb`.
    pub fn load(vb: &VarBuilder, cfg: &EncoderConfig) -> candle_core::Result<Self> {
        let s = cfg.decoder.clone().ok_or_else(|| candle_core::Error::Msg("a decoder without its settings".into()))?;
        let (h, i, eps, d) = (cfg.hidden_size, cfg.intermediate_size, s.rms_eps, s.head_dim);
        let (qw, kvw) = (cfg.num_attention_heads * d, s.kv_heads * d);
        let layers = (0..cfg.num_hidden_layers)
            .map(|n| {
                let l = vb.pp("layers").pp(n);
                let at = l.pp("self_attn");
                let qk_norms = if s.kind == DecoderKind::Qwen3 {
                    Some((RmsNorm::load(at.pp("q_norm"), d, eps)?, RmsNorm::load(at.pp("k_norm"), d, eps)?))
                } else {
                    None
                };
                Ok(Layer {
                    input_norm: RmsNorm::load(l.pp("input_layernorm"), h, eps)?,
                    q: linear(at.pp("q_proj"), h, qw, s.qkv_bias)?,
                    k: linear(at.pp("k_proj"), h, kvw, s.qkv_bias)?,
                    v: linear(at.pp("v_proj"), h, kvw, s.qkv_bias)?,
                    o: linear(at.pp("o_proj"), qw, h, s.o_bias)?,
                    qk_norms,
                    post_norm: RmsNorm::load(l.pp("post_attention_layernorm"), h, eps)?,
                    gate: linear(l.pp("mlp").pp("gate_proj"), h, i, s.mlp_bias)?,
                    up: linear(l.pp("mlp").pp("up_proj"), h, i, s.mlp_bias)?,
                    down: linear(l.pp("mlp").pp("down_proj"), i, h, s.mlp_bias)?,
                    window: s.windows[n],
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Body {
            embeddings: candle_nn::embedding(cfg.vocab_size, h, vb.pp("embed_tokens"))?,
            layers,
            norm: RmsNorm::load(vb.pp("norm"), h, eps)?,
            settings: s,
            act: cfg.hidden_act,
            heads: cfg.num_attention_heads,
            hidden: h,
        })
    }

    /// An upper bound on the L2 norm of any row of the output (the final RMSNorm's).
    pub fn hidden_norm_bound(&self) -> candle_core::Result<f64> {
        Ok(self.norm.max_abs_weight()? * (self.hidden as f64).sqrt())
    }

    /// Runs right-padded `[B, L]` ids; `lengths`: the real tokens of each sequence. Rows past a text's length
    /// are 0 in the attention context (never read: causal attention keeps real queries off later positions).
    /// Each stage's hidden states go to `see`, as [`Stage`] lists them.
    pub(crate) fn forward(&self, ids: &Tensor, lengths: &[usize], see: See<'_>) -> candle_core::Result<()> {
        self.forward_reading(ids, lengths, &[], see)
    }

    /// [`Body::forward`], and for a batch of one text (`ids` `[1, n + r]`, `lengths` `[n]`) with `reads` (`r`
    /// positions, none before `n`): the `r` ids after the text are computed as padded positions of a
    /// right-padded batch, token `n + k` at position `reads[k]` — each attends the text's tokens only (the
    /// padding mask hides the pads, its own key included) — and their rows follow the text's in every stage.
    /// What a batch padded on the right holds at its padded positions, without computing the others.
    pub(crate) fn forward_reading(&self, ids: &Tensor, lengths: &[usize], reads: &[usize], see: See<'_>) -> candle_core::Result<()> {
        let (b, l) = ids.dims2()?;
        if !reads.is_empty() && (b != 1 || lengths.first().is_none_or(|&n| n + reads.len() != l || reads.iter().any(|&p| p < n))) {
            candle_core::bail!("padded positions are read for one text, after its tokens");
        }
        let s = &self.settings;
        let d = s.head_dim;
        let mut x = self.embeddings.forward(ids)?;
        see(Stage::Embeddings, &x)?;
        let span = reads.iter().map(|&p| p + 1).max().unwrap_or(0).max(l);
        let (cos, sin) = rope::RopeTables::new(s.rope_theta, d, span).tensors(span, x.dtype(), x.device())?;
        let scale = 1.0 / (d as f64).sqrt();
        // Each text's rows and their positions: the real tokens at 0..n, then the padded positions read.
        let rows: Vec<(usize, Vec<usize>)> = lengths
            .iter()
            .map(|&n| {
                let n = n.clamp(1, l);
                let positions: Vec<usize> = (0..n).chain(reads.iter().copied()).collect();
                (n, positions)
            })
            .collect();
        let angles = |positions: &[usize]| -> candle_core::Result<(Tensor, Tensor)> {
            let at = Tensor::from_vec(positions.iter().map(|&p| p as u32).collect::<Vec<_>>(), positions.len(), x.device())?;
            Ok((cos.index_select(&at, 0)?, sin.index_select(&at, 0)?))
        };
        let tables: Vec<(Tensor, Tensor)> = rows
            .iter()
            .map(|(n, positions)| if positions.len() == *n { Ok((cos.narrow(0, 0, *n)?, sin.narrow(0, 0, *n)?)) } else { angles(positions) })
            .collect::<candle_core::Result<_>>()?;
        for (i, layer) in self.layers.iter().enumerate() {
            let normed = layer.input_norm.forward(&x)?;
            let (q, k, v) = (layer.q.forward(&normed)?, layer.k.forward(&normed)?, layer.v.forward(&normed)?);
            let mut texts = Vec::with_capacity(b);
            for (t, ((n, positions), (cos, sin))) in rows.iter().zip(&tables).enumerate() {
                let (n, m) = (*n, positions.len());
                // The first `rows` of [l, heads · d] → [heads, rows, d], normed per head (Qwen3) and rotated.
                let split = |x: &Tensor, rows: usize, heads: usize, norm: Option<&RmsNorm>| -> candle_core::Result<Tensor> {
                    let x = x.get(t)?.narrow(0, 0, rows)?.reshape((rows, heads, d))?;
                    let x = match norm {
                        Some(norm) => norm.forward(&x)?,
                        None => x,
                    };
                    rope::apply(&x.transpose(0, 1)?.contiguous()?, &cos.narrow(0, 0, rows)?, &sin.narrow(0, 0, rows)?)
                };
                let (qn, kn) = match &layer.qk_norms {
                    Some((qn, kn)) => (Some(qn), Some(kn)),
                    None => (None, None),
                };
                let qt = split(&q, m, self.heads, qn)?;
                let kt = split(&k, n, s.kv_heads, kn)?;
                let vt = v.get(t)?.narrow(0, 0, n)?.reshape((n, s.kv_heads, d))?.transpose(0, 1)?.contiguous()?;
                let ctx = attention::at_positions(&qt, &kt, &vt, positions, layer.window, scale)?;
                texts.push(if m < l { Tensor::cat(&[&ctx, &Tensor::zeros((l - m, self.heads * d), ctx.dtype(), ctx.device())?], 0)? } else { ctx });
            }
            let ctx = Tensor::stack(&texts, 0)?;
            x = (x + layer.o.forward(&ctx)?)?;
            see(Stage::Attention(i), &x)?;
            let h = layer.post_norm.forward(&x)?;
            let gated = (layer.gate.forward(&h)?.apply(&self.act)? * layer.up.forward(&h)?)?;
            x = (x + layer.down.forward(&gated)?)?;
            see(Stage::Mlp(i), &x)?;
        }
        let out = self.norm.forward(&x)?;
        see(Stage::FinalNorm, &out)?;
        see(Stage::Output, &out)
    }
}
