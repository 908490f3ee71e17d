//! The post-LayerNorm transformer layer that BERT, XLM-RoBERTa, MPNet and DistilBERT share: self-attention
//! (optionally with a position bias on the scores), add & norm, feed-forward, add & norm. Only the weight
//! names differ between the families; each family's folder names its own ([`LayerNames`]).

use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Activation, LayerNorm, VarBuilder};

use super::config::EncoderConfig;
use super::dense::{add_norm, Dense};

/// Where a family keeps one layer's tensors, relative to the layer (`a.b.c` names nested modules).
pub struct LayerNames {
    /// Query, key and value projections.
    pub qkv: [&'static str; 3],
    /// The attention output projection.
    pub attn_out: &'static str,
    /// The LayerNorm after attention.
    pub attn_norm: &'static str,
    /// The feed-forward layer's first projection.
    pub intermediate: &'static str,
    /// Its second projection.
    pub output: &'static str,
    /// The LayerNorm after the feed-forward layer.
    pub out_norm: &'static str,
}

/// A bias added to every attention score that depends only on the head and on the key's offset from the
/// query (MPNet's relative position bias). Computed once per batch and shared by every layer.
#[derive(Clone)]
pub struct PositionBias {
    /// `table[head · (2L − 1) + (j − i + L − 1)]`: the bias of query `i`, key `j`, as f32.
    pub table: Arc<Vec<f32>>,
    /// `L`, the batch's padded length.
    pub len: usize,
    /// The same bias as a `[heads, L, L]` tensor in the model's dtype, for the half-precision path.
    pub full: Option<Tensor>,
}

/// One transformer layer.
pub struct Layer {
    /// Query, key and value projections as one `[3H, H]` matmul: one pass over the activations, one
    /// layout change for all three.
    qkv: Dense,
    attn_out: Dense,
    attn_norm: LayerNorm,
    attn_add_norm: Option<super::fused::AddNorm>,
    intermediate: Dense,
    act: Activation,
    output: Dense,
    /// The last LayerNorm of the layer (the encoder's output norm for the last layer).
    pub out_norm: LayerNorm,
    out_add_norm: Option<super::fused::AddNorm>,
    heads: usize,
    head_dim: usize,
    eps: f64,
}

impl Layer {
    /// Loads a layer whose tensors sit under `vb` with the family's `names`.
    pub fn load(vb: VarBuilder, cfg: &EncoderConfig, names: &LayerNames) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let attn_out = Dense::load(&vb.pp(names.attn_out), h, h)?;
        let attn_norm = candle_nn::layer_norm(h, cfg.layer_norm_eps, vb.pp(names.attn_norm))?;
        let output = Dense::load(&vb.pp(names.output), cfg.intermediate_size, h)?;
        let out_norm = candle_nn::layer_norm(h, cfg.layer_norm_eps, vb.pp(names.out_norm))?;
        let qkv = names.qkv.map(|n| Dense::load(&vb.pp(n), h, h)).into_iter().collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Layer {
            qkv: Dense::fused(&qkv)?,
            attn_add_norm: add_norm(&attn_out, &attn_norm, cfg.layer_norm_eps)?,
            attn_out,
            attn_norm,
            intermediate: Dense::load(&vb.pp(names.intermediate), h, cfg.intermediate_size)?,
            act: cfg.hidden_act,
            out_add_norm: add_norm(&output, &out_norm, cfg.layer_norm_eps)?,
            output,
            out_norm,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            eps: cfg.layer_norm_eps,
        })
    }

    /// `x`: `[B, L, H]`; `lengths`: the real tokens of each sequence (keys past them are masked); `bias`:
    /// added to the scaled scores before the softmax.
    pub fn forward(&self, x: &Tensor, lengths: &[usize], bias: Option<&PositionBias>) -> candle_core::Result<Tensor> {
        Ok(self.forward_blocks(x, lengths, bias)?.1)
    }

    /// [`Layer::forward`] with the attention block's output (after its add & norm) beside the layer's
    /// (after the feed-forward block's add & norm): what a port's per-layer states are compared on.
    pub fn forward_blocks(&self, x: &Tensor, lengths: &[usize], bias: Option<&PositionBias>) -> candle_core::Result<(Tensor, Tensor)> {
        let (b, l, h) = x.dims3()?;
        let qkv = self.qkv.forward(x)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let ctx = if matches!(qkv.dtype(), DType::F32 | DType::F64) && matches!(qkv.device(), Device::Cpu) {
            super::attention::attention(&qkv, lengths, self.heads, scale as f32, bias)?
        } else {
            // [B, L, 3H] → [3, B, heads, L, head_dim] in one copy; q, k, v are views into it.
            let qkv = qkv.reshape((b, l, 3, self.heads, self.head_dim))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
            let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
            let full = match bias {
                Some(p) => Some(p.full.as_ref().ok_or_else(|| candle_core::Error::Msg("position bias without its tensor".into()))?),
                None => None,
            };
            attention(&q, &k, &v, lengths, self.head_dim, full, None, SCORE_BLOCK)?.transpose(1, 2)?.reshape((b, l, h))?
        };
        let attn = self.attn_out.forward_add_norm(&ctx, x, &self.attn_norm, self.eps, self.attn_add_norm.as_ref())?;
        let pre = self.intermediate.forward(&attn)?;
        let inter = match self.act {
            Activation::Gelu => super::gelu::gelu_erf(pre)?,
            act => act.forward(&pre)?,
        };
        let out = self.output.forward_add_norm(&inter, &attn, &self.out_norm, self.eps, self.out_add_norm.as_ref())?;
        Ok((attn, out))
    }
}

/// Most attention scores (batch × heads × query rows × keys) formed at once: 2^25 f32 = 128 MiB per copy.
/// Past it the queries are taken in blocks of rows, so one 8192-token bge-m3 text (16 heads: 2^30 scores,
/// 4 GiB per copy) needs 128 MiB per copy instead. Each query row's scores, softmax and weighted sum are
/// the same arithmetic either way.
pub(crate) const SCORE_BLOCK: usize = 1 << 25;

/// `softmax(q kᵀ / √d + bias, keys past each length masked) v` for `[B, heads, L, d]` inputs (`bias`
/// `[heads, L, L]`; `window`: keys farther than it from the query masked, as ModernBERT's local layers do), in
/// blocks of query rows when the whole score matrix would exceed `limit` scores ([`SCORE_BLOCK`]). Half
/// precision only: f32 takes the fused [`super::attention`] op, whose scratch is bounded per task.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(q: &Tensor, k: &Tensor, v: &Tensor, lengths: &[usize], head_dim: usize, bias: Option<&Tensor>, window: Option<usize>, limit: usize) -> candle_core::Result<Tensor> {
    let l = q.dim(2)?;
    let scale = 1.0 / (head_dim as f64).sqrt();
    let kt = k.t()?;
    let block = |q: &Tensor, start: usize| -> candle_core::Result<Tensor> {
        // Scores scaled in the model dtype (as PyTorch's eager attention does), then the softmax in f32
        // whatever the model dtype, as fused GPU attention kernels do. Masking by length never forms
        // `(1 − m) · min` in half precision, which is what turns candle's BERT mask into NaN.
        let mut scores = (q.matmul(&kt)? * scale)?;
        if let Some(bias) = bias {
            scores = scores.broadcast_add(&bias.narrow(1, start, q.dim(2)?)?.unsqueeze(0)?)?;
        }
        if let Some(w) = window {
            // Added in f32 with a finite minimum (transformers adds finfo.min): a padding query whose window
            // holds no real key gets a finite row, not NaN — which 0-weighted would still poison P V.
            let rows = q.dim(2)?;
            let mask: Vec<f32> = (start..start + rows).flat_map(|i| (0..l).map(move |j| if i.abs_diff(j) <= w { 0.0 } else { f32::MIN })).collect();
            let mask = Tensor::from_vec(mask, (1, 1, rows, l), q.device())?;
            scores = scores.to_dtype(DType::F32)?.broadcast_add(&mask)?;
        }
        let probs = super::softmax::masked_softmax(scores, lengths, 1.0)?.to_dtype(q.dtype())?;
        probs.matmul(v)
    };
    in_row_blocks(q, limit, block)
}

/// `block(rows, start)` on the query rows of `q` `[B, heads, L, d]` taken in blocks whose scores (against `L`
/// keys) stay under `limit`, the results concatenated along the rows: the whole `q` at once when it fits.
pub(crate) fn in_row_blocks(q: &Tensor, limit: usize, block: impl Fn(&Tensor, usize) -> candle_core::Result<Tensor>) -> candle_core::Result<Tensor> {
    let (b, heads, l, _) = q.dims4()?;
    let rows = (limit / (b * heads * l).max(1)).max(1);
    if rows >= l {
        return block(q, 0);
    }
    let mut parts = Vec::with_capacity(l.div_ceil(rows));
    for start in (0..l).step_by(rows) {
        parts.push(block(&q.narrow(2, start, rows.min(l - start))?.contiguous()?, start)?);
    }
    Tensor::cat(&parts, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(b: usize, heads: usize, l: usize, d: usize, seed: usize) -> Tensor {
        let data: Vec<f32> = (0..b * heads * l * d).map(|i| (((i * 7919 + seed * 104_729) % 997) as f32 / 997.0 - 0.5) * 3.0).collect();
        Tensor::from_vec(data, (b, heads, l, d), &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// Attention in blocks of query rows is the same computation as all rows at once, with and without a
    /// position bias.
    #[test]
    fn attention_in_row_blocks_equals_attention_at_once() {
        let (b, heads, l, d) = (2usize, 3usize, 11usize, 4usize);
        let (q, k, v) = (t(b, heads, l, d, 1), t(b, heads, l, d, 2), t(b, heads, l, d, 3));
        let bias = t(1, heads, l, l, 4).squeeze(0).unwrap();
        let lengths = [11usize, 6];
        for bias in [None, Some(&bias)] {
            let whole = attention(&q, &k, &v, &lengths, d, bias, None, usize::MAX).unwrap();
            for rows in [1usize, 3, 4, 10] {
                let blocked = attention(&q, &k, &v, &lengths, d, bias, None, b * heads * l * rows).unwrap();
                let diff = max_diff(&blocked, &whole);
                assert!(diff <= 1e-6, "{rows} rows per block: max difference {diff}");
            }
        }
    }
}
