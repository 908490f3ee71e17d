//! A linear layer, and the fused bias + residual + LayerNorm that follows one in post-LN transformer layers.

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{LayerNorm, VarBuilder};

/// A linear layer applied to `[..., in]` by flattening to 2-D (one large matmul instead of a batched one).
#[derive(Debug, Clone)]
pub struct Dense {
    weight: Tensor,
    bias: Option<Tensor>,
    /// The bias as f32 values when the layer runs in f32 on the CPU: added in place (no new buffer).
    pub(crate) fast_bias: Option<Vec<f32>>,
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
    pub(crate) fn forward_add_norm(&self, x: &Tensor, residual: &Tensor, norm: &LayerNorm, eps: f64, fused: Option<&super::fused::AddNorm>) -> candle_core::Result<Tensor> {
        match fused {
            Some(op) => {
                let (y, dims) = self.matmul(x)?;
                op.apply(y, residual)?.reshape(dims)
            }
            None => layer_norm(norm, eps, &(self.forward(x)? + residual)?),
        }
    }
}

/// `norm(x)`; in f64 with every step in f64 (candle's fused LayerNorm op has no f64 kernel, and its half
/// precision path sums in f32), the centred variance `E[(x − mean)²]` as PyTorch's LayerNorm computes it.
pub(crate) fn layer_norm(norm: &LayerNorm, eps: f64, x: &Tensor) -> candle_core::Result<Tensor> {
    if x.dtype() != DType::F64 {
        return norm.forward(x);
    }
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let y = centred.broadcast_div(&(var + eps)?.sqrt()?)?.broadcast_mul(norm.weight())?;
    match norm.bias() {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// The fused bias + residual + LayerNorm of `dense` and `norm`, when both are f32 on the CPU.
pub(crate) fn add_norm(dense: &Dense, norm: &LayerNorm, eps: f64) -> candle_core::Result<Option<super::fused::AddNorm>> {
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
