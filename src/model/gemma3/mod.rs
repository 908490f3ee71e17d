//! Gemma 3 text (`gemma3_text`: EmbeddingGemma and the Gemma 3 decoders' text stack): token embeddings scaled
//! by √hidden in the model dtype, then pre- and post-normed layers — RMSNorm with `(1 + w)` before and after
//! attention and before and after the MLP; attention with q/k RMSNorms per head, grouped key/value heads,
//! rotary positions with a base per layer kind, global or within a sliding window per `layer_types`, scaled by
//! `query_pre_attn_scalar^-0.5` (`attn_logit_softcapping` has no effect there: see [`config`]), causal unless
//! `use_bidirectional_attention`; a GeGLU MLP (`act(gate) · up`) — and a final RMSNorm. As transformers 5's
//! `Gemma3TextModel` (5.24) computes it; transformers 4.56 has no bidirectional mode.

pub mod attention;
pub mod config;

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Activation, Embedding, VarBuilder};

use crate::model::config::EncoderConfig;
use crate::model::dense::Dense;
use crate::model::encoder::{See, Stage};
use crate::model::modernbert::rope;
pub use config::{Gemma3Config, Mask};

/// Prefixes under which checkpoints store the text model: none (`Gemma3TextModel`, EmbeddingGemma) or `model.`
/// (`Gemma3ForCausalLM`).
pub const PREFIXES: &[&str] = &["", "model."];

/// Where the token table is, under the text model (the encoder finds the prefix by it).
pub const WORD_EMBEDDINGS: &str = "embed_tokens.weight";

/// Gemma's RMSNorm: `x · rsqrt(mean(x²) + ε) · (1 + w)` in f32 whatever the dtype, the result cast back; in
/// f64 (the value f32 noise is measured against) in f64, where transformers' float64 model uses float32.
pub struct RmsNorm {
    /// `1 + w` in f32 (in f64 for an f64 model).
    scale: Tensor,
    eps: f64,
}

/// The precision an RMSNorm computes in: f32, or f64 for f64.
fn wide(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

impl RmsNorm {
    fn load(vb: VarBuilder, dim: usize, eps: f64) -> candle_core::Result<Self> {
        let w = vb.get(dim, "weight")?;
        let w = w.to_dtype(wide(w.dtype()))?;
        Ok(RmsNorm { scale: (w + 1.0)?, eps })
    }

    /// Normalizes over the last axis.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let xf = x.to_dtype(wide(x.dtype()))?;
        let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = xf.broadcast_mul(&(ms + self.eps)?.sqrt()?.recip()?)?;
        normed.broadcast_mul(&self.scale)?.to_dtype(x.dtype())
    }

    /// The largest `|1 + w|`.
    fn max_scale(&self) -> candle_core::Result<f64> {
        self.scale.abs()?.max(0)?.to_dtype(DType::F64)?.to_scalar::<f64>()
    }
}

/// One decoder layer.
struct Layer {
    input_norm: RmsNorm,
    q: Dense,
    k: Dense,
    v: Dense,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    o: Dense,
    post_attention_norm: RmsNorm,
    pre_feedforward_norm: RmsNorm,
    /// `gate_proj` and `up_proj` side by side: one matmul, then `act(gate) · up`.
    gate_up: Dense,
    down: Dense,
    post_feedforward_norm: RmsNorm,
    global: bool,
}

/// The loaded Gemma 3 text model.
pub struct Body {
    embeddings: Embedding,
    layers: Vec<Layer>,
    /// The final RMSNorm.
    norm: RmsNorm,
    settings: Gemma3Config,
    act: Activation,
    heads: usize,
    /// `√hidden`: transformers holds it as a scalar of the default dtype at load time (float32, or float64 for
    /// a float64 model), cast to the model dtype.
    embed_scale: f64,
}

fn linear(vb: VarBuilder, d_in: usize, d_out: usize) -> candle_core::Result<Dense> {
    Ok(Dense::new(vb.get((d_out, d_in), "weight")?, None))
}

impl Body {
    /// Loads the text model's tensors under `vb`.
    pub fn load(vb: &VarBuilder, cfg: &EncoderConfig) -> candle_core::Result<Self> {
        let settings = cfg.gemma3.clone().ok_or_else(|| candle_core::Error::Msg("a Gemma 3 model without its settings".into()))?;
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let (heads, kv, d) = (cfg.num_attention_heads, settings.kv_heads, settings.head_dim);
        let layers = (0..cfg.num_hidden_layers)
            .map(|n| {
                let l = vb.pp("layers").pp(n);
                let (a, m) = (l.pp("self_attn"), l.pp("mlp"));
                Ok(Layer {
                    input_norm: RmsNorm::load(l.pp("input_layernorm"), h, eps)?,
                    q: linear(a.pp("q_proj"), h, heads * d)?,
                    k: linear(a.pp("k_proj"), h, kv * d)?,
                    v: linear(a.pp("v_proj"), h, kv * d)?,
                    q_norm: RmsNorm::load(a.pp("q_norm"), d, eps)?,
                    k_norm: RmsNorm::load(a.pp("k_norm"), d, eps)?,
                    o: linear(a.pp("o_proj"), heads * d, h)?,
                    post_attention_norm: RmsNorm::load(l.pp("post_attention_layernorm"), h, eps)?,
                    pre_feedforward_norm: RmsNorm::load(l.pp("pre_feedforward_layernorm"), h, eps)?,
                    gate_up: Dense::fused(&[linear(m.pp("gate_proj"), h, i)?, linear(m.pp("up_proj"), h, i)?])?,
                    down: linear(m.pp("down_proj"), i, h)?,
                    post_feedforward_norm: RmsNorm::load(l.pp("post_feedforward_layernorm"), h, eps)?,
                    global: settings.global_layers[n],
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Body {
            embeddings: candle_nn::embedding(cfg.vocab_size, h, vb.pp("embed_tokens"))?,
            layers,
            norm: RmsNorm::load(vb.pp("norm"), h, eps)?,
            settings,
            act: cfg.hidden_act,
            heads,
            embed_scale: (h as f64).sqrt(),
        })
    }

    /// An upper bound on the L2 norm of any row of the output: the final RMSNorm's `x̂` has norm √H.
    pub fn norm_bound(&self, hidden: usize) -> candle_core::Result<f64> {
        Ok(self.norm.max_scale()? * (hidden as f64).sqrt())
    }

    /// The same model computed with the causal mask (`false`) or the bidirectional one (`true`), whatever its
    /// config says: what a port that gets `use_bidirectional_attention` wrong computes.
    pub fn set_bidirectional(&mut self, bidirectional: bool) {
        self.settings = self.settings.with_bidirectional(bidirectional);
    }

    /// Runs right-padded `[B, L]` ids (positions `0..L`); `lengths`: the real tokens of each sequence (keys past
    /// them are masked). Each stage's hidden states go to `see` (see [`Stage`]): the scaled embeddings, each
    /// layer's residual stream after its attention and after its MLP, the final norm (then again as output).
    pub(crate) fn forward(&self, ids: &Tensor, lengths: &[usize], see: See<'_>) -> candle_core::Result<()> {
        let (b, l) = ids.dims2()?;
        let d = self.settings.head_dim;
        let kv = self.settings.kv_heads;
        let emb = self.embeddings.forward(ids)?;
        let dtype = emb.dtype();
        let scale = match dtype {
            DType::F64 => Tensor::new(self.embed_scale, emb.device())?,
            _ => Tensor::new(self.embed_scale as f32, emb.device())?.to_dtype(dtype)?,
        };
        let mut x = emb.broadcast_mul(&scale)?;
        see(Stage::Embeddings, &x)?;
        let global = rope::RopeTables::new(self.settings.global_theta, d, l).tensors(l, dtype, x.device())?;
        let local = rope::RopeTables::new(self.settings.local_theta, d, l).tensors(l, dtype, x.device())?;
        let scaling = self.settings.query_pre_attn_scalar.powf(-0.5);
        for (n, layer) in self.layers.iter().enumerate() {
            let normed = layer.input_norm.forward(&x)?;
            let split = |t: Tensor, heads: usize| t.reshape((b, l, heads, d))?.transpose(1, 2)?.contiguous();
            let q = layer.q_norm.forward(&split(layer.q.forward(&normed)?, self.heads)?)?;
            let k = layer.k_norm.forward(&split(layer.k.forward(&normed)?, kv)?)?;
            let v = split(layer.v.forward(&normed)?, kv)?;
            let (cos, sin) = if layer.global { &global } else { &local };
            let (q, k) = (rope::apply(&q, cos, sin)?, rope::apply(&k, cos, sin)?);
            let ctx = attention::attention(&q, &k, &v, lengths, scaling, self.settings.mask(n), crate::model::layer::SCORE_BLOCK)?;
            let ctx = ctx.transpose(1, 2)?.reshape((b, l, self.heads * d))?;
            x = (x + layer.post_attention_norm.forward(&layer.o.forward(&ctx)?)?)?;
            see(Stage::Attention(n), &x)?;
            let inner = layer.gate_up.forward(&layer.pre_feedforward_norm.forward(&x)?)?;
            let gated = crate::model::gelu::geglu(&inner, self.act)?;
            x = (x + layer.post_feedforward_norm.forward(&layer.down.forward(&gated)?)?)?;
            see(Stage::Mlp(n), &x)?;
        }
        let out = self.norm.forward(&x)?;
        see(Stage::FinalNorm, &out)?;
        see(Stage::Output, &out)
    }
}
