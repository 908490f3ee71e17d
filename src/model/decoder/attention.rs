//! Causal self-attention with grouped key/value heads and an optional sliding window, one text at a time over
//! its real tokens only, in blocks of query rows.
//!
//! Why per text: a right-padded text's real queries never see the padding under a causal mask, so nothing of
//! the padding needs computing; why in blocks: the scores of one block (`heads × rows × keys`) stay under
//! [`SCORES`] values whatever the length (8192 tokens included), instead of an `L × L` matrix per head.

use candle_core::Tensor;
#[cfg(test)]
use candle_core::{DType, D};

/// At most this many scores per block (16 MB in f32).
pub const SCORES: usize = 1 << 22;

/// `softmax(q kᵀ · scale + mask) v` for one text: `q` `[heads, n, d]`, `k` and `v` `[kv_heads, n, d]` (query
/// head `h` reads key/value head `h / (heads / kv_heads)`, as transformers' `repeat_kv`). Query `i` attends keys
/// `j ≤ i`, and with a window `w` only those with `j > i − w`. Returns the context `[n, heads · d]`.
///
/// Half precision: computed in f32 from the rounded q, k, v and the context rounded back, as PyTorch's CPU
/// `scaled_dot_product_attention` (the flash kernel transformers' sdpa attention reaches) accumulates scores,
/// softmax and P·V in float32 for float16 / bfloat16 inputs. f32 and f64 compute in their own precision.
pub fn causal(q: &Tensor, k: &Tensor, v: &Tensor, window: Option<usize>, scale: f64) -> candle_core::Result<Tensor> {
    let dtype = q.dtype();
    if matches!(dtype, candle_core::DType::F16 | candle_core::DType::BF16) {
        let f = |t: &Tensor| t.to_dtype(candle_core::DType::F32);
        return causal(&f(q)?, &f(k)?, &f(v)?, window, scale)?.to_dtype(dtype);
    }
    let (heads, n, d) = q.dims3()?;
    let kv_heads = k.dim(0)?;
    let group = heads / kv_heads;
    // [kv_heads, group, n, d]: the query heads of one key/value head side by side.
    let q = q.reshape((kv_heads, group, n, d))?;
    let rows = (SCORES / (heads * n).max(1)).clamp(1, n.max(1));
    let mut blocks = Vec::new();
    for q0 in (0..n).step_by(rows) {
        let q1 = (q0 + rows).min(n);
        let m = q1 - q0;
        let k0 = window.map_or(0, |w| (q0 + 1).saturating_sub(w));
        let span = q1 - k0;
        let qb = q.narrow(2, q0, m)?.reshape((kv_heads, group * m, d))?;
        let (kb, vb) = (k.narrow(1, k0, span)?.contiguous()?, v.narrow(1, k0, span)?.contiguous()?);
        let scores = (qb.contiguous()?.matmul(&kb.t()?)? * scale)?;
        let mask: Vec<f32> = (0..group)
            .flat_map(|_| (q0..q1).flat_map(move |i| (k0..q1).map(move |j| if j <= i && window.is_none_or(|w| j + w > i) { 0.0 } else { f32::NEG_INFINITY })))
            .collect();
        let mask = Tensor::from_vec(mask, (group * m, span), q.device())?.to_dtype(q.dtype())?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask)?)?;
        // [kv_heads, group · m, d] → [heads, m, d]
        blocks.push(probs.matmul(&vb)?.reshape((heads, m, d))?);
    }
    let ctx = Tensor::cat(&blocks, 1)?;
    ctx.transpose(0, 1)?.contiguous()?.reshape((n, heads * d))
}

/// The same, every score formed and masked at once (the definition, for the tests), in f32 or in f64 for f64.
#[cfg(test)]
fn reference(q: &Tensor, k: &Tensor, v: &Tensor, window: Option<usize>, scale: f64) -> candle_core::Result<Tensor> {
    let wide = if q.dtype() == DType::F64 { DType::F64 } else { DType::F32 };
    let (heads, n, d) = q.dims3()?;
    let group = heads / k.dim(0)?;
    let repeat = |t: &Tensor| -> candle_core::Result<Tensor> {
        let parts: Vec<Tensor> = (0..heads).map(|h| t.get(h / group)).collect::<candle_core::Result<_>>()?;
        Tensor::stack(&parts, 0)
    };
    let (k, v) = (repeat(k)?, repeat(v)?);
    let mask: Vec<f32> = (0..n).flat_map(|i| (0..n).map(move |j| if j <= i && window.is_none_or(|w| i - j < w) { 0.0 } else { f32::NEG_INFINITY })).collect();
    let mask = Tensor::from_vec(mask, (n, n), q.device())?.to_dtype(wide)?;
    let scores = (q.to_dtype(wide)?.matmul(&k.to_dtype(wide)?.t()?)? * scale)?.broadcast_add(&mask)?;
    let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
    probs.matmul(&v.to_dtype(wide)?)?.transpose(0, 1)?.contiguous()?.reshape((n, heads * d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(heads: usize, n: usize, d: usize, seed: usize) -> Tensor {
        let data: Vec<f32> = (0..heads * n * d).map(|i| ((((i + seed * 101) * 7919) % 1013) as f32 / 1013.0 - 0.5) * 3.0).collect();
        Tensor::from_vec(data, (heads, n, d), &Device::Cpu).unwrap()
    }

    /// Blocked, grouped and windowed as the full masked computation; a block boundary inside the window.
    #[test]
    fn blocks_equal_the_full_masked_softmax() {
        let (heads, kv, n, d) = (6usize, 2usize, 700usize, 4usize);
        let (q, k, v) = (t(heads, n, d, 1), t(kv, n, d, 2), t(kv, n, d, 3));
        for window in [None, Some(1), Some(5), Some(300), Some(5000)] {
            let got = causal(&q, &k, &v, window, 0.5).unwrap();
            let want = reference(&q, &k, &v, window, 0.5).unwrap();
            let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "window {window:?}: {diff:e}");
        }
    }

    /// In f64 the blocked computation stays in f64: within f64 rounding of the definition (an f32 step anywhere
    /// would leave ~1e-7), and not the f32 result.
    #[test]
    fn f64_is_computed_in_f64() {
        let (heads, kv, n, d) = (4usize, 2usize, 300usize, 4usize);
        let (q, k, v) = (t(heads, n, d, 1), t(kv, n, d, 2), t(kv, n, d, 3));
        let wide = |x: &Tensor| x.to_dtype(DType::F64).unwrap();
        for window in [None, Some(7)] {
            let got = causal(&wide(&q), &wide(&k), &wide(&v), window, 0.5).unwrap();
            assert_eq!(got.dtype(), DType::F64);
            let want = reference(&wide(&q), &wide(&k), &wide(&v), window, 0.5).unwrap();
            let diff = (&got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
            assert!(diff < 1e-13, "window {window:?}: {diff:e}");
            let f32_ctx = causal(&q, &k, &v, window, 0.5).unwrap().to_dtype(DType::F64).unwrap();
            let apart = (got - f32_ctx).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
            assert!(apart > 1e-9, "window {window:?}: f64 equals f32 ({apart:e})");
        }
    }

    /// Query 0 sees only itself: its context is its value row.
    #[test]
    fn the_first_token_attends_itself_only() {
        let (q, k, v) = (t(2, 3, 4, 1), t(1, 3, 4, 2), t(1, 3, 4, 3));
        let got = causal(&q, &k, &v, None, 1.0).unwrap().get(0).unwrap().to_vec1::<f32>().unwrap();
        let row = v.get(0).unwrap().get(0).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, [row.clone(), row].concat());
    }
}
