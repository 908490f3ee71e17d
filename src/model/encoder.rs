//! The BERT / XLM-RoBERTa encoder, written on candle's building blocks.
//!
//! Why not `candle_transformers::models::{bert, xlm_roberta}` as they are: their XLM-R computes position ids
//! with a cumsum in the model dtype (exact only to 256 tokens in bf16, 2048 in f16) and adds an f32 mask to
//! half-precision scores, and their BERT turns the attention mask into NaN in f16/bf16. The weight names and
//! the arithmetic are the same; `tests/encoder_vs_candle.rs` checks both families against them in f32.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Activation, Embedding, LayerNorm, VarBuilder};

use super::config::EncoderConfig;
use crate::error::{ComputeContext, Error, Result};

/// A linear layer applied to `[..., in]` by flattening to 2-D (one large matmul instead of a batched one).
#[derive(Debug, Clone)]
pub struct Dense {
    weight: Tensor,
    bias: Option<Tensor>,
    /// The bias as f32 values when the layer runs in f32 on the CPU: added in place (no new buffer).
    fast_bias: Option<Vec<f32>>,
}

impl Dense {
    /// Loads `weight` `[out, in]` and `bias` `[out]`. Every BERT / XLM-R linear layer has a bias: a missing
    /// one is an error naming the tensor, never a layer silently computed without it.
    pub fn load(vb: &VarBuilder, d_in: usize, d_out: usize) -> candle_core::Result<Self> {
        let weight = vb.get((d_out, d_in), "weight")?;
        let bias = Some(vb.get(d_out, "bias")?);
        Self::build(weight, bias)
    }

    /// Wraps tensors already loaded.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        let fast_bias = bias.as_ref().and_then(|b| super::fused::f32_values(b).ok().flatten());
        Dense { weight, bias, fast_bias }
    }

    fn build(weight: Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let fast_bias = match &bias {
            Some(b) => super::fused::f32_values(b)?,
            None => None,
        };
        Ok(Dense { weight, bias, fast_bias })
    }

    /// One layer computing the outputs of `parts` side by side (weights stacked along the output axis; a
    /// missing bias counts as zeros).
    pub fn fused(parts: &[Dense]) -> candle_core::Result<Self> {
        let weight = Tensor::cat(&parts.iter().map(|d| &d.weight).collect::<Vec<_>>(), 0)?;
        let bias = if parts.iter().all(|d| d.bias.is_none()) {
            None
        } else {
            let biases = parts
                .iter()
                .map(|d| match &d.bias {
                    Some(b) => Ok(b.clone()),
                    None => Tensor::zeros(d.weight.dim(0)?, d.weight.dtype(), d.weight.device()),
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            Some(Tensor::cat(&biases, 0)?)
        };
        Self::build(weight, bias)
    }

    /// `x W^T + b`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (y, dims) = self.matmul(x)?;
        let y = match (&self.fast_bias, &self.bias) {
            (Some(fast), _) => {
                // y is the matmul's fresh output: nothing else holds it.
                y.inplace_op1(&super::fused::AddBias(fast))?;
                y
            }
            (None, Some(b)) => y.broadcast_add(b)?,
            (None, None) => y,
        };
        y.reshape(dims)
    }

    /// `x W^T` as `[rows, out]` and the output's full shape.
    fn matmul(&self, x: &Tensor) -> candle_core::Result<(Tensor, Vec<usize>)> {
        let mut dims = x.dims().to_vec();
        let d_in = *dims.last().unwrap_or(&0);
        let rows = x.elem_count() / d_in.max(1);
        let y = x.reshape((rows, d_in))?.matmul(&self.weight.t()?)?;
        if let Some(last) = dims.last_mut() {
            *last = self.weight.dim(0)?;
        }
        Ok((y, dims))
    }

    /// `LayerNorm(x W^T + b + residual)` in one pass when in f32 on the CPU (`fused` built by
    /// [`add_norm`]), else with candle's ops.
    fn forward_add_norm(&self, x: &Tensor, residual: &Tensor, norm: &LayerNorm, fused: Option<&super::fused::AddNorm>) -> candle_core::Result<Tensor> {
        match fused {
            Some(op) => {
                let (y, dims) = self.matmul(x)?;
                op.apply(y, residual)?.reshape(dims)
            }
            None => norm.forward(&(self.forward(x)? + residual)?),
        }
    }
}

/// The fused bias + residual + LayerNorm of `dense` and `norm`, when both are f32 on the CPU.
fn add_norm(dense: &Dense, norm: &LayerNorm, eps: f64) -> candle_core::Result<Option<super::fused::AddNorm>> {
    let (Some(gamma), Some(beta)) = (super::fused::f32_values(norm.weight())?, norm.bias().map(super::fused::f32_values).transpose()?.flatten()) else {
        return Ok(None);
    };
    let Some(bias) = (match &dense.bias {
        Some(_) => dense.fast_bias.clone(),
        None => super::fused::f32_values(&dense.weight)?.map(|_| vec![0f32; gamma.len()]),
    }) else {
        return Ok(None);
    };
    Ok(Some(super::fused::AddNorm { bias, gamma, beta, eps: eps as f32 }))
}

struct Layer {
    /// Query, key and value projections as one `[3H, H]` matmul: one pass over the activations, one
    /// layout change for all three.
    qkv: Dense,
    attn_out: Dense,
    attn_norm: LayerNorm,
    attn_add_norm: Option<super::fused::AddNorm>,
    intermediate: Dense,
    act: Activation,
    output: Dense,
    out_norm: LayerNorm,
    out_add_norm: Option<super::fused::AddNorm>,
    heads: usize,
    head_dim: usize,
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &EncoderConfig) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let att = vb.pp("attention");
        let attn_out = Dense::load(&att.pp("output").pp("dense"), h, h)?;
        let attn_norm = candle_nn::layer_norm(h, cfg.layer_norm_eps, att.pp("output").pp("LayerNorm"))?;
        let output = Dense::load(&vb.pp("output").pp("dense"), cfg.intermediate_size, h)?;
        let out_norm = candle_nn::layer_norm(h, cfg.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?;
        Ok(Layer {
            qkv: Dense::fused(&["query", "key", "value"].map(|n| Dense::load(&att.pp("self").pp(n), h, h)).into_iter().collect::<candle_core::Result<Vec<_>>>()?)?,
            attn_add_norm: add_norm(&attn_out, &attn_norm, cfg.layer_norm_eps)?,
            attn_out,
            attn_norm,
            intermediate: Dense::load(&vb.pp("intermediate").pp("dense"), h, cfg.intermediate_size)?,
            act: cfg.hidden_act,
            out_add_norm: add_norm(&output, &out_norm, cfg.layer_norm_eps)?,
            output,
            out_norm,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
        })
    }

    /// `x`: `[B, L, H]`; `lengths`: the real tokens of each sequence (keys past them are masked).
    fn forward(&self, x: &Tensor, lengths: &[usize]) -> candle_core::Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        let qkv = self.qkv.forward(x)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let ctx = if qkv.dtype() == DType::F32 && matches!(qkv.device(), Device::Cpu) {
            super::attention::attention(&qkv, lengths, self.heads, scale as f32)?
        } else {
            // [B, L, 3H] → [3, B, heads, L, head_dim] in one copy; q, k, v are views into it.
            let qkv = qkv.reshape((b, l, 3, self.heads, self.head_dim))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
            let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
            attention(&q, &k, &v, lengths, self.head_dim, SCORE_BLOCK)?.transpose(1, 2)?.reshape((b, l, h))?
        };
        let attn = self.attn_out.forward_add_norm(&ctx, x, &self.attn_norm, self.attn_add_norm.as_ref())?;
        let pre = self.intermediate.forward(&attn)?;
        let inter = match self.act {
            Activation::Gelu => super::gelu::gelu_erf(pre)?,
            act => act.forward(&pre)?,
        };
        self.output.forward_add_norm(&inter, &attn, &self.out_norm, self.out_add_norm.as_ref())
    }
}

/// Most attention scores (batch × heads × query rows × keys) formed at once: 2^25 f32 = 128 MiB per copy.
/// Past it the queries are taken in blocks of rows, so one 8192-token bge-m3 text (16 heads: 2^30 scores,
/// 4 GiB per copy) needs 128 MiB per copy instead. Each query row's scores, softmax and weighted sum are
/// the same arithmetic either way.
const SCORE_BLOCK: usize = 1 << 25;

/// `softmax(q kᵀ / √d, keys past each length masked) v` for `[B, heads, L, d]` inputs, in blocks of query
/// rows when the whole score matrix would exceed `limit` scores ([`SCORE_BLOCK`]). Half precision only: f32
/// takes the fused [`super::attention`] op, whose scratch is bounded per task.
fn attention(q: &Tensor, k: &Tensor, v: &Tensor, lengths: &[usize], head_dim: usize, limit: usize) -> candle_core::Result<Tensor> {
    let (b, heads, l, _) = q.dims4()?;
    let scale = 1.0 / (head_dim as f64).sqrt();
    let kt = k.t()?;
    let block = |q: &Tensor| -> candle_core::Result<Tensor> {
        // Scores scaled in the model dtype (as PyTorch's eager attention does), then the softmax in f32
        // whatever the model dtype, as fused GPU attention kernels do. Masking by length never forms
        // `(1 − m) · min` in half precision, which is what turns candle's BERT mask into NaN.
        let scores = (q.matmul(&kt)? * scale)?;
        let probs = super::softmax::masked_softmax(scores, lengths, 1.0)?.to_dtype(q.dtype())?;
        probs.matmul(v)
    };
    let rows = (limit / (b * heads * l).max(1)).max(1);
    if rows >= l {
        return block(q);
    }
    let mut parts = Vec::with_capacity(l.div_ceil(rows));
    for start in (0..l).step_by(rows) {
        parts.push(block(&q.narrow(2, start, rows.min(l - start))?.contiguous()?)?);
    }
    Tensor::cat(&parts, 2)
}

/// A loaded encoder: embeddings, then `num_hidden_layers` transformer layers.
pub struct Encoder {
    cfg: EncoderConfig,
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    dtype: DType,
    device: Device,
}

/// Prefixes under which checkpoints of task heads store the base model's weights.
const PREFIXES: &[&str] = &["", "bert.", "roberta.", "model.", "xlm_roberta."];

impl Encoder {
    /// Builds the encoder from a [`VarBuilder`] over the checkpoint; the base model may sit under a
    /// `bert.` / `roberta.` prefix.
    pub fn load(vb: VarBuilder, cfg: &EncoderConfig, what: &str) -> Result<Self> {
        let prefix = PREFIXES
            .iter()
            .find(|p| vb.contains_tensor(&format!("{p}embeddings.word_embeddings.weight")))
            .ok_or_else(|| {
                Error::model(what, "no tensor embeddings.word_embeddings.weight (nor under bert./roberta.) in the weights")
            })?;
        let vb = if prefix.is_empty() { vb } else { vb.pp(prefix.trim_end_matches('.')) };
        let dtype = vb.dtype();
        let device = vb.device().clone();
        let h = cfg.hidden_size;
        let emb = vb.pp("embeddings");
        let build = || -> candle_core::Result<Self> {
            let layers = (0..cfg.num_hidden_layers)
                .map(|i| Layer::load(vb.pp("encoder").pp("layer").pp(i), cfg))
                .collect::<candle_core::Result<Vec<_>>>()?;
            Ok(Encoder {
                cfg: cfg.clone(),
                word: candle_nn::embedding(cfg.vocab_size, h, emb.pp("word_embeddings"))?,
                position: candle_nn::embedding(cfg.max_position_embeddings, h, emb.pp("position_embeddings"))?,
                token_type: candle_nn::embedding(cfg.type_vocab_size, h, emb.pp("token_type_embeddings"))?,
                emb_norm: candle_nn::layer_norm(h, cfg.layer_norm_eps, emb.pp("LayerNorm"))?,
                layers,
                dtype,
                device: device.clone(),
            })
        };
        build().map_err(|e| Error::model(what, format!("weights do not match config.json: {e}")))
    }

    /// An upper bound on the L2 norm of any row of the last hidden state: the final LayerNorm returns
    /// γ ⊙ x̂ + β with ‖x̂‖ = √H, so ‖h‖ ≤ max|γ|·√H + ‖β‖. It sizes the f32 noise of heads whose output is
    /// a small sum of large terms (BGE-M3's sparse weights).
    pub fn hidden_norm_bound(&self) -> Result<f64> {
        let norm = self.layers.last().map_or(&self.emb_norm, |l| &l.out_norm);
        let bound = || -> candle_core::Result<f64> {
            let gamma = norm.weight().to_dtype(DType::F64)?.abs()?.max(0)?.to_scalar::<f64>()?;
            let beta = match norm.bias() {
                Some(b) => b.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt(),
                None => 0.0,
            };
            Ok(gamma * (self.cfg.hidden_size as f64).sqrt() + beta)
        };
        bound().context(|| "final LayerNorm weights".into())
    }

    /// The model's configuration.
    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    /// The dtype the weights were loaded in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs a right-padded batch. `ids` are the unpadded token ids of each sequence; pads get `pad_id`.
    /// Returns the last hidden state `[B, L, H]` as f32, `L` the longest sequence.
    pub fn forward(&self, ids: &[Vec<u32>], pad_id: u32) -> Result<Tensor> {
        let b = ids.len();
        let l = ids.iter().map(Vec::len).max().unwrap_or(0);
        if b == 0 || l == 0 {
            return Err(Error::Usage("empty batch".into()));
        }
        if l > self.cfg.max_tokens() {
            return Err(Error::Usage(format!(
                "a sequence of {l} tokens exceeds the position table ({} tokens)",
                self.cfg.max_tokens()
            )));
        }
        let mut flat_ids = Vec::with_capacity(b * l);
        let mut positions = Vec::with_capacity(b * l);
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        for seq in ids {
            let mut padded = seq.clone();
            padded.resize(l, pad_id);
            self.cfg.position_ids(&padded, &mut positions);
            flat_ids.extend_from_slice(&padded);
        }
        // On candle's thread pool, so that its matmuls and our row-parallel ops share one set of workers.
        let run = move || -> candle_core::Result<Tensor> {
            let ids_t = Tensor::from_vec(flat_ids, (b, l), &self.device)?;
            let pos_t = Tensor::from_vec(positions, (b, l), &self.device)?;
            let types = Tensor::zeros((b, l), DType::U32, &self.device)?;
            let x = self.word.forward(&ids_t)?;
            let x = ((x + self.position.forward(&pos_t)?)? + self.token_type.forward(&types)?)?;
            let mut x = self.emb_norm.forward(&x)?;
            for layer in &self.layers {
                x = layer.forward(&x, &lengths)?;
            }
            x.to_dtype(DType::F32)
        };
        self.device.with_context(run).context(|| format!("encoder forward on a batch of {b} x {l} tokens"))
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    /// Attention in blocks of query rows is the same computation as all rows at once.
    #[test]
    fn attention_in_row_blocks_equals_attention_at_once() {
        let (b, heads, l, d) = (2usize, 3usize, 11usize, 4usize);
        let t = |seed: usize| {
            let data: Vec<f32> = (0..b * heads * l * d).map(|i| (((i * 7919 + seed * 104_729) % 997) as f32 / 997.0 - 0.5) * 3.0).collect();
            Tensor::from_vec(data, (b, heads, l, d), &Device::Cpu).unwrap()
        };
        let (q, k, v) = (t(1), t(2), t(3));
        let lengths = [11usize, 6];
        let whole = attention(&q, &k, &v, &lengths, d, usize::MAX).unwrap();
        for rows in [1usize, 3, 4, 10] {
            let blocked = attention(&q, &k, &v, &lengths, d, b * heads * l * rows).unwrap();
            let diff = (&blocked - &whole).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(diff <= 1e-6, "{rows} rows per block: max difference {diff}");
        }
    }
}
