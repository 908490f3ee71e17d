//! Causal self-attention with grouped key/value heads and an optional sliding window, one text at a time over
//! its real tokens only, in blocks of query rows, on candle's ops: the half-precision path, and the definition
//! the f32 path ([`super::fused_attention`]) is tested against.
//!
//! Why per text: a right-padded text's real queries never see the padding under a causal mask, so nothing of
//! the padding needs computing; why in blocks: the scores of one block (`heads × rows × keys`) stay under
//! [`SCORES`] values whatever the length (8192 tokens included), instead of an `L × L` matrix per head.

use candle_core::Tensor;
#[cfg(test)]
use candle_core::{DType, D};

/// At most this many scores per block (16 MB in f32).
pub const SCORES: usize = 1 << 22;

/// [`at_positions`] with query `i` at position `i`: the text's own rows (the tests' shorthand).
#[cfg(test)]
fn causal(q: &Tensor, k: &Tensor, v: &Tensor, window: Option<usize>, scale: f64) -> candle_core::Result<Tensor> {
    let positions: Vec<usize> = (0..q.dim(1)?).collect();
    at_positions(q, k, v, &positions, window, scale)
}

/// `softmax(q kᵀ · scale + mask) v` for one text: `q` `[heads, m, d]`, `k` and `v` `[kv_heads, n, d]` (query
/// head `h` reads key/value head `h / (heads / kv_heads)`, as transformers' `repeat_kv`); query `r` sits at
/// `positions[r]` and attends the keys `j ≤ positions[r]`, and with a window `w` only those with
/// `j > positions[r] − w`, among the text's `n` keys at positions `0..n`. Returns the context `[m, heads · d]`.
/// Queries past the text are the padded positions of a right-padded batch as transformers computes them: their
/// own key is masked (a pad), so they read the text's real tokens only. Positions must not decrease. A query that
/// sees no key (a window that ends before the text does) gets a context of 0, as PyTorch's
/// `scaled_dot_product_attention` gives a fully masked row.
///
/// Half precision: computed in f32 from the rounded q, k, v and the context rounded back, as PyTorch's CPU
/// `scaled_dot_product_attention` (the flash kernel transformers' sdpa attention reaches) accumulates scores,
/// softmax and P·V in float32 for float16 / bfloat16 inputs. f32 and f64 compute in their own precision.
pub fn at_positions(q: &Tensor, k: &Tensor, v: &Tensor, positions: &[usize], window: Option<usize>, scale: f64) -> candle_core::Result<Tensor> {
    let dtype = q.dtype();
    if matches!(dtype, candle_core::DType::F16 | candle_core::DType::BF16) {
        let f = |t: &Tensor| t.to_dtype(candle_core::DType::F32);
        return at_positions(&f(q)?, &f(k)?, &f(v)?, positions, window, scale)?.to_dtype(dtype);
    }
    let (heads, n, d) = q.dims3()?;
    if positions.len() != n || positions.windows(2).any(|p| p[1] < p[0]) {
        candle_core::bail!("{} query positions, not increasing, for {n} queries", positions.len());
    }
    let (kv_heads, keys) = (k.dim(0)?, k.dim(1)?);
    let group = heads / kv_heads;
    // [kv_heads, group, n, d]: the query heads of one key/value head side by side.
    let q = q.reshape((kv_heads, group, n, d))?;
    let rows = (SCORES / (heads * keys).max(1)).clamp(1, n.max(1));
    let mut blocks = Vec::new();
    for q0 in (0..n).step_by(rows) {
        let q1 = (q0 + rows).min(n);
        let m = q1 - q0;
        let (first, last) = (positions[q0], positions[q1 - 1]);
        // The keys any query of the block may see: up to the last position, from the first one's window.
        let k1 = (last + 1).min(keys);
        let k0 = window.map_or(0, |w| (first + 1).saturating_sub(w)).min(k1 - 1);
        let span = k1 - k0;
        let qb = q.narrow(2, q0, m)?.reshape((kv_heads, group * m, d))?;
        let (kb, vb) = (k.narrow(1, k0, span)?.contiguous()?, v.narrow(1, k0, span)?.contiguous()?);
        let scores = (qb.contiguous()?.matmul(&kb.t()?)? * scale)?;
        let block = &positions[q0..q1];
        let mask: Vec<f32> = (0..group)
            .flat_map(|_| block.iter().flat_map(move |&i| (k0..k1).map(move |j| if j <= i && window.is_none_or(|w| j + w > i) { 0.0 } else { f32::NEG_INFINITY })))
            .collect();
        let mask = Tensor::from_vec(mask, (group * m, span), q.device())?.to_dtype(q.dtype())?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask)?)?;
        let mut ctx = probs.matmul(&vb)?;
        // A query with no key in reach: PyTorch's sdpa returns 0 for a fully masked row (the softmax here, NaN).
        if block.iter().any(|&i| window.is_some_and(|w| i + 1 >= k1 + w)) {
            let keep: Vec<f32> = (0..group).flat_map(|_| block.iter().map(|&i| if window.is_some_and(|w| i + 1 >= k1 + w) { 0.0 } else { 1.0 })).collect();
            let keep = Tensor::from_vec(keep, (group * m, 1), q.device())?;
            ctx = keep.ne(0f32)?.broadcast_as(ctx.shape())?.where_cond(&ctx, &ctx.zeros_like()?)?;
        }
        // [kv_heads, group · m, d] → [heads, m, d]
        blocks.push(ctx.reshape((heads, m, d))?);
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

    /// Queries at padded positions (after the text) as a right-padded batch with a padding mask computes them,
    /// written out in f64 one score at a time: each reads the text's keys up to its position within the window;
    /// the text's own rows are unchanged by the extra queries.
    #[test]
    fn padded_positions_read_the_text_only() {
        let (heads, kv, n, d, extra) = (4usize, 2usize, 9usize, 4usize, [9usize, 12, 12, 20]);
        let q = t(heads, n + extra.len(), d, 1);
        let (k, v) = (t(kv, n, d, 2), t(kv, n, d, 3));
        let positions: Vec<usize> = (0..n).chain(extra).collect();
        let (qv, kv_, vv) = (q.to_vec3::<f32>().unwrap(), k.to_vec3::<f32>().unwrap(), v.to_vec3::<f32>().unwrap());
        for window in [None, Some(6), Some(12)] {
            let got = at_positions(&q, &k, &v, &positions, window, 0.5).unwrap().to_vec2::<f32>().unwrap();
            let own = causal(&q.narrow(1, 0, n).unwrap(), &k, &v, window, 0.5).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!(&got[..n], &own[..], "window {window:?}: the text's rows changed");
            for (r, &p) in positions.iter().enumerate() {
                for h in 0..heads {
                    let g = h / (heads / kv);
                    let seen: Vec<usize> = (0..n).filter(|&j| j <= p && window.is_none_or(|w| p - j < w)).collect();
                    let scores: Vec<f64> = seen.iter().map(|&j| (0..d).map(|c| qv[h][r][c] as f64 * kv_[g][j][c] as f64).sum::<f64>() * 0.5).collect();
                    let top = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let total: f64 = scores.iter().map(|s| (s - top).exp()).sum();
                    for c in 0..d {
                        let want: f64 = seen.iter().zip(&scores).map(|(&j, s)| (s - top).exp() / total * vv[g][j][c] as f64).sum();
                        let have = got[r][h * d + c] as f64;
                        if seen.is_empty() {
                            assert_eq!(have, 0.0, "window {window:?}, query at {p}: no key in reach");
                        } else {
                            assert!((have - want).abs() < 1e-5, "window {window:?}, query {r} at {p}, head {h}: {have} vs {want}");
                        }
                    }
                }
            }
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
