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
pub mod fused;
pub mod fused_attention;

use candle_core::{DType, Module, Tensor, D};
use fused_attention::{Heads, Text};
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
    /// The query, key and value projections side by side (`[B, L, (heads + 2·kv_heads)·d]`): one matmul.
    qkv: Dense,
    o: Dense,
    /// Qwen3's per-head norms.
    qk_norms: Option<(RmsNorm, RmsNorm)>,
    post_norm: RmsNorm,
    /// The gate and up projections side by side (`[B, L, 2I]`): one matmul.
    gate_up: Dense,
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
                    qkv: Dense::fused(&[linear(at.pp("q_proj"), h, qw, s.qkv_bias)?, linear(at.pp("k_proj"), h, kvw, s.qkv_bias)?, linear(at.pp("v_proj"), h, kvw, s.qkv_bias)?])?,
                    o: linear(at.pp("o_proj"), qw, h, s.o_bias)?,
                    qk_norms,
                    post_norm: RmsNorm::load(l.pp("post_attention_layernorm"), h, eps)?,
                    gate_up: Dense::fused(&[linear(l.pp("mlp").pp("gate_proj"), h, i, s.mlp_bias)?, linear(l.pp("mlp").pp("up_proj"), h, i, s.mlp_bias)?])?,
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
    /// are never read (causal attention keeps real queries off later positions): 0 in the attention context, and
    /// in f32 (where they are not computed) 0 in every stage.
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
        let span = reads.iter().map(|&p| p + 1).max().unwrap_or(0).max(l);
        let tables = rope::RopeTables::new(s.rope_theta, d, span);
        let scale = 1.0 / (d as f64).sqrt();
        // f32 on the CPU: fused passes (`fused`, `fused_attention`) on the texts' rows packed one after another (no
        // padding computed; the stages seen are unpacked to [B, L, H], 0 past each text); other dtypes: candle's
        // ops on the padded batch, rounding each step to the dtype as PyTorch does.
        let fast = fused::applies(self.embeddings.embeddings());
        // Each text's rows and their positions: the real tokens at 0..n, then the padded positions read.
        let mut start = 0;
        let texts: Vec<Text> = lengths
            .iter()
            .map(|&n| {
                let n = n.clamp(1, l);
                let positions: Vec<usize> = (0..n).chain(reads.iter().copied()).collect();
                let text = Text { start: if fast { start } else { 0 }, keys: n, positions };
                start += text.positions.len();
                text
            })
            .collect();
        let ids_dev = ids.device();
        let mut x = if fast {
            let ids = ids.to_vec2::<u32>()?;
            let packed: Vec<u32> = texts.iter().zip(&ids).flat_map(|(t, ids)| ids[..t.positions.len()].iter().copied()).collect();
            self.embeddings.forward(&Tensor::from_vec(packed, start, ids_dev)?)?
        } else {
            self.embeddings.forward(ids)?
        };
        let show = |x: &Tensor| if fast { fused::unpack(x, &texts, b, l) } else { Ok(x.clone()) };
        see(Stage::Embeddings, &show(&x)?)?;
        let half = if fast { None } else { Some(tables.tensors(span, x.dtype(), x.device())?) };
        let norm = |n: &RmsNorm, x: &Tensor| if fast { fused::rms_norm(x, &fused::values(&n.weight)?, n.eps) } else { n.forward(x) };
        let residual = |y: Tensor, x: &Tensor| if fast { fused::residual(y, x) } else { x + y };
        let heads = Heads { heads: self.heads, kv_heads: s.kv_heads, dim: d };
        for (i, layer) in self.layers.iter().enumerate() {
            let qkv = layer.qkv.forward(&norm(&layer.input_norm, &x)?)?;
            let ctx = match &half {
                None => {
                    let norms = match &layer.qk_norms {
                        Some((qn, kn)) => Some((fused::values(&qn.weight)?, fused::values(&kn.weight)?, qn.eps as f32)),
                        None => None,
                    };
                    let norms = norms.as_ref().map(|(q, k, eps)| (&q[..], &k[..], *eps));
                    fused_attention::attention(qkv, &texts, heads, norms, &tables, layer.window, scale as f32)?
                }
                Some((cos, sin)) => self.attention(layer, &qkv, &texts, cos, sin, scale)?,
            };
            x = residual(layer.o.forward(&ctx)?, &x)?;
            see(Stage::Attention(i), &show(&x)?)?;
            let gate_up = layer.gate_up.forward(&norm(&layer.post_norm, &x)?)?;
            let gated = if fast && self.act == Activation::Silu {
                fused::swiglu(&gate_up)?
            } else {
                let i = gate_up.dim(D::Minus1)? / 2;
                (gate_up.narrow(D::Minus1, 0, i)?.contiguous()?.apply(&self.act)? * gate_up.narrow(D::Minus1, i, i)?)?
            };
            x = residual(layer.down.forward(&gated)?, &x)?;
            see(Stage::Mlp(i), &show(&x)?)?;
        }
        let out = show(&norm(&self.norm, &x)?)?;
        see(Stage::FinalNorm, &out)?;
        see(Stage::Output, &out)
    }

    /// The attention context `[B, L, heads·d]` of the fused projection `qkv` with candle's ops, one text at a
    /// time ([`attention::at_positions`]): the half-precision path, each op rounding to the dtype. `cos`, `sin`:
    /// `[positions, d]` in the dtype.
    fn attention(&self, layer: &Layer, qkv: &Tensor, texts: &[Text], cos: &Tensor, sin: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
        let (s, d) = (&self.settings, self.settings.head_dim);
        let l = qkv.dim(1)?;
        let (qw, kvw) = (self.heads * d, s.kv_heads * d);
        let (q, k, v) = (qkv.narrow(D::Minus1, 0, qw)?.contiguous()?, qkv.narrow(D::Minus1, qw, kvw)?.contiguous()?, qkv.narrow(D::Minus1, qw + kvw, kvw)?.contiguous()?);
        let mut out = Vec::with_capacity(texts.len());
        for (t, text) in texts.iter().enumerate() {
            let (n, m) = (text.keys, text.positions.len());
            let (cos, sin) = if m == n {
                (cos.narrow(0, 0, n)?, sin.narrow(0, 0, n)?)
            } else {
                let at = Tensor::from_vec(text.positions.iter().map(|&p| p as u32).collect::<Vec<_>>(), m, qkv.device())?;
                (cos.index_select(&at, 0)?, sin.index_select(&at, 0)?)
            };
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
            let ctx = attention::at_positions(&qt, &kt, &vt, &text.positions, layer.window, scale)?;
            out.push(if m < l { Tensor::cat(&[&ctx, &Tensor::zeros((l - m, self.heads * d), ctx.dtype(), ctx.device())?], 0)? } else { ctx });
        }
        Tensor::stack(&out, 0)
    }
}
