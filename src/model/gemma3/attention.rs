//! Gemma 3's attention as transformers' eager attention computes it, for every dtype: scores `q kᵀ · s` in the
//! model dtype (`s = query_pre_attn_scalar^-0.5`), the mask added in f32
//! (`finfo.min` where a key is not seen), the softmax in f32, `P V` in the model dtype. In f64 (the value f32
//! noise is measured against) the mask and the softmax are f64 too. Key and value heads are
//! shared by groups of query heads (repeated, as `repeat_kv`). Queries are taken in blocks of rows so that at
//! most [`crate::model::layer::SCORE_BLOCK`] scores exist at once: memory stays bounded to 8192 tokens.

use candle_core::{DType, Tensor};

use super::config::Mask;

/// Whether query `i` sees key `j` under `mask` (padding aside).
pub fn sees(mask: Mask, i: usize, j: usize) -> bool {
    match mask {
        Mask::Bidirectional => true,
        Mask::BidirectionalWindow(w) => i.abs_diff(j) <= w,
        Mask::Causal => j <= i,
        Mask::CausalWindow(w) => j <= i && i - j < w,
    }
}

/// `softmax(q kᵀ · scale + mask) v` for `q` `[B, H, L, d]` and `k`, `v` `[B, Hkv, L, d]`; keys past
/// `lengths[b]` are masked. Returns `[B, H, L, d]`.
#[allow(clippy::too_many_arguments)]
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, lengths: &[usize], scale: f64, mask: Mask, limit: usize) -> candle_core::Result<Tensor> {
    let (b, heads, l, d) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    let repeat = |t: &Tensor| -> candle_core::Result<Tensor> {
        if kv_heads == heads {
            return Ok(t.clone());
        }
        t.unsqueeze(2)?.expand((b, kv_heads, heads / kv_heads, l, d))?.reshape((b, heads, l, d))
    };
    let (k, v) = (repeat(k)?, repeat(v)?);
    let kt = k.t()?.contiguous()?;
    let block = |q: &Tensor, start: usize| -> candle_core::Result<Tensor> {
        let rows = q.dim(2)?;
        let mut scores = (q.matmul(&kt)? * scale)?;
        if mask != Mask::Bidirectional {
            let m: Vec<f32> = (start..start + rows).flat_map(|i| (0..l).map(move |j| if sees(mask, i, j) { 0.0 } else { f32::MIN })).collect();
            let wide = if q.dtype() == DType::F64 { DType::F64 } else { DType::F32 };
            let m = Tensor::from_vec(m, (1, 1, rows, l), q.device())?.to_dtype(wide)?;
            scores = scores.to_dtype(wide)?.broadcast_add(&m)?;
        }
        let probs = crate::model::softmax::masked_softmax(scores, lengths, 1.0)?.to_dtype(q.dtype())?;
        probs.matmul(&v)
    };
    crate::model::layer::in_row_blocks(&q.contiguous()?, limit, block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(b: usize, heads: usize, l: usize, d: usize, seed: usize) -> Tensor {
        let data: Vec<f32> = (0..b * heads * l * d).map(|i| (((i * 7919 + seed * 104_729) % 997) as f32 / 997.0 - 0.5) * 3.0).collect();
        Tensor::from_vec(data, (b, heads, l, d), &Device::Cpu).unwrap()
    }

    /// In f64 the scores, mask and softmax stay in f64: the blocked, masked computation equals a row-by-row one
    /// in f64 within f64 rounding (an f32 step anywhere would leave ~1e-7).
    #[test]
    fn f64_is_computed_in_f64() {
        let (b, heads, kv, l, d) = (2usize, 4usize, 2usize, 13usize, 4usize);
        let wide = |x: Tensor| x.to_dtype(DType::F64).unwrap();
        let (q, k, v) = (wide(t(b, heads, l, d, 1)), wide(t(b, kv, l, d, 2)), wide(t(b, kv, l, d, 3)));
        let lengths = [13usize, 7];
        let (q4, k4, v4): (Vec<Vec<Vec<Vec<f64>>>>, Vec<Vec<Vec<Vec<f64>>>>, Vec<Vec<Vec<Vec<f64>>>>) = (
            (0..b).map(|s| q.get(s).unwrap().to_vec3().unwrap()).collect(),
            (0..b).map(|s| k.get(s).unwrap().to_vec3().unwrap()).collect(),
            (0..b).map(|s| v.get(s).unwrap().to_vec3().unwrap()).collect(),
        );
        for mask in [Mask::Bidirectional, Mask::BidirectionalWindow(3), Mask::Causal, Mask::CausalWindow(4)] {
            let got = attention(&q, &k, &v, &lengths, 0.4, mask, b * heads * l * 3).unwrap();
            assert_eq!(got.dtype(), DType::F64);
            for (s, &n) in lengths.iter().enumerate() {
                let got_s: Vec<Vec<Vec<f64>>> = got.get(s).unwrap().to_vec3().unwrap();
                for h in 0..heads {
                    let g = h / (heads / kv);
                    for i in 0..n {
                        let keys: Vec<usize> = (0..n).filter(|&j| sees(mask, i, j)).collect();
                        let scores: Vec<f64> = keys.iter().map(|&j| (0..d).map(|c| q4[s][h][i][c] * k4[s][g][j][c]).sum::<f64>() * 0.4).collect();
                        let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                        let z: f64 = scores.iter().map(|x| (x - m).exp()).sum();
                        for c in 0..d {
                            let want: f64 = keys.iter().zip(&scores).map(|(&j, x)| (x - m).exp() / z * v4[s][g][j][c]).sum();
                            assert!((want - got_s[h][i][c]).abs() < 1e-13, "{mask:?} text {s} head {h} row {i}: {} vs {want}", got_s[h][i][c]);
                        }
                    }
                }
            }
        }
    }

    /// The masks as transformers 5 builds them: bidirectional windows of `sliding_window // 2 + 1` exclusive
    /// (`|i − j| < w + 1`), causal windows `i − W < j ≤ i`.
    #[test]
    fn masks_see_the_keys_transformers_lets_through() {
        assert!(sees(Mask::BidirectionalWindow(4), 10, 14) && sees(Mask::BidirectionalWindow(4), 10, 6));
        assert!(!sees(Mask::BidirectionalWindow(4), 10, 15) && !sees(Mask::BidirectionalWindow(4), 10, 5));
        assert!(sees(Mask::Causal, 3, 3) && !sees(Mask::Causal, 3, 4));
        assert!(sees(Mask::CausalWindow(8), 10, 3) && !sees(Mask::CausalWindow(8), 10, 2) && !sees(Mask::CausalWindow(8), 10, 11));
    }

    /// Each query row computed by hand (per head, its key head h / groups, only the keys it sees, the
    /// softmax in f64) equals the blocked computation, for every mask, with GQA, in blocks of any size.
    #[test]
    fn equals_a_row_by_row_computation() {
        let (b, heads, kv, l, d) = (2usize, 4usize, 2usize, 13usize, 4usize);
        let (q, k, v) = (t(b, heads, l, d, 1), t(b, kv, l, d, 2), t(b, kv, l, d, 3));
        let lengths = [13usize, 7];
        let q4: Vec<Vec<Vec<Vec<f32>>>> = (0..b).map(|s| q.get(s).unwrap().to_vec3().unwrap()).collect();
        let k4: Vec<Vec<Vec<Vec<f32>>>> = (0..b).map(|s| k.get(s).unwrap().to_vec3().unwrap()).collect();
        let v4: Vec<Vec<Vec<Vec<f32>>>> = (0..b).map(|s| v.get(s).unwrap().to_vec3().unwrap()).collect();
        for mask in [Mask::Bidirectional, Mask::BidirectionalWindow(3), Mask::Causal, Mask::CausalWindow(4)] {
            for limit in [usize::MAX, b * heads * l * 3] {
                let got = attention(&q, &k, &v, &lengths, 0.4, mask, limit).unwrap();
                for (s, &n) in lengths.iter().enumerate() {
                    let got_s: Vec<Vec<Vec<f32>>> = got.get(s).unwrap().to_vec3().unwrap();
                    for h in 0..heads {
                        let g = h / (heads / kv);
                        for i in 0..n {
                            let keys: Vec<usize> = (0..n).filter(|&j| sees(mask, i, j)).collect();
                            let scores: Vec<f64> =
                                keys.iter().map(|&j| (0..d).map(|c| q4[s][h][i][c] as f64 * k4[s][g][j][c] as f64).sum::<f64>() * 0.4).collect();
                            let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                            let z: f64 = scores.iter().map(|x| (x - m).exp()).sum();
                            for c in 0..d {
                                let want: f64 = keys.iter().zip(&scores).map(|(&j, x)| (x - m).exp() / z * v4[s][g][j][c] as f64).sum();
                                let have = got_s[h][i][c] as f64;
                                assert!((want - have).abs() < 2e-5, "{mask:?} text {s} head {h} row {i}: {have} vs {want}");
                            }
                        }
                    }
                }
            }
        }
    }
}
