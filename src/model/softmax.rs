//! Attention softmax with the padding mask applied by length, for f32 on the CPU.
//!
//! Same result as `softmax(scores · scale + bias)` with bias 0 for real keys and the f32 minimum for padded
//! ones (whose weights come out exactly 0), in one pass over the scores, in place (no broadcast sum, no
//! scaled copy), and with an exp the compiler vectorizes: candle's softmax calls a scalar `expf` per element
//! (7% of encoding time).

use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Tensor};

/// e^x for f32 within about one ulp; 0 below -87 (where e^x < 2e-38: below any weight that matters
/// next to the row maximum's 1). NaN gives NaN and +inf gives +inf, as in PyTorch: a clamp with
/// `f32::min` would turn NaN into e^88 and hide a model that overflowed.
#[inline]
pub fn exp(x: f32) -> f32 {
    // ln(f32::MAX): above it e^x overflows. NaN fails every comparison below and flows into the result.
    if x > 88.722_84 {
        return f32::INFINITY;
    }
    if x < -87.0 {
        return 0.0;
    }
    // Above 88 the scale 2^n would need 2^128: compute e^(x − 8) · e^8 there.
    let big = x > 88.0;
    let x = if big { x - 8.0 } else { x };
    // Round x / ln 2 to the nearest integer with the 1.5·2^23 trick (no libm call, vectorizes).
    const SHIFT: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + SHIFT) - SHIFT;
    // r = x − n ln 2, in two parts so r keeps f32 precision.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    // Taylor series of e^r on |r| ≤ ln2/2 to degree 7: truncation error < 1e-8 relative.
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let e = p * f32::from_bits(((n as i32 + 127) as u32) << 23);
    if big {
        e * 2_980.958
    } else {
        e
    }
}

/// Softmax over one row of scores in place: the first `n` keys scaled by `scale` and normalized, the rest
/// (padding) set to 0. NaN and Inf propagate as in PyTorch (a NaN or +inf score makes the whole row NaN).
/// The row sum is taken in 16 vector lanes (a fixed order, the same on every CPU and thread count).
pub fn softmax_row(row: &mut [f32], n: usize, scale: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked on the line above.
            return unsafe { softmax_row_avx512(row, n, scale) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked on the line above.
            return unsafe { softmax_row_avx2(row, n, scale) };
        }
    }
    softmax_row_inline(row, n, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_row_avx512(row: &mut [f32], n: usize, scale: f32) {
    softmax_row_inline(row, n, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_row_avx2(row: &mut [f32], n: usize, scale: f32) {
    softmax_row_inline(row, n, scale)
}

#[inline(always)]
fn softmax_row_inline(row: &mut [f32], n: usize, scale: f32) {
    let (keys, padding) = row.split_at_mut(n.min(row.len()));
    keys.iter_mut().for_each(|k| *k *= scale);
    let max = super::simd::nan_max(keys);
    keys.iter_mut().for_each(|k| *k = exp(*k - max));
    let inv = 1.0 / super::simd::sum_lanes(keys);
    keys.iter_mut().for_each(|k| *k *= inv);
    padding.fill(0.0);
}

/// Scaled softmax over the last dimension of `[B, heads, L, L]` scores, in place, keys at or past
/// `lengths[b]` masked.
pub struct MaskedSoftmax {
    /// Real tokens per sequence of the batch.
    pub lengths: Vec<usize>,
    /// Applied to every score first (1/√head_dim).
    pub scale: f32,
}

impl InplaceOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax-f32"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        if let (CpuStorage::F64(v), Some((start, end)), &[b, heads, rows, l]) = (&mut *storage, layout.contiguous_offsets(), layout.shape().dims()) {
            if b != self.lengths.len() {
                candle_core::bail!("masked-softmax-f64: {} lengths for a batch of {b}", self.lengths.len())
            }
            let per_seq = heads * rows;
            let scale = self.scale as f64;
            use rayon::prelude::*;
            v[start..end].par_chunks_mut(l).enumerate().for_each(|(r, row)| softmax_row_f64(row, self.lengths[r / per_seq].clamp(1, l), scale));
            return Ok(());
        }
        let (CpuStorage::F32(v), Some((start, end)), &[b, heads, rows, l]) =
            (storage, layout.contiguous_offsets(), layout.shape().dims())
        else {
            candle_core::bail!("masked-softmax-f32 needs contiguous f32 [B, heads, L, L] scores")
        };
        if b != self.lengths.len() {
            candle_core::bail!("masked-softmax-f32: {} lengths for a batch of {b}", self.lengths.len())
        }
        let per_seq = heads * rows;
        super::simd::par_rows_mut(&mut v[start..end], l, 64, |first, part| {
            for (r, row) in part.chunks_mut(l).enumerate() {
                softmax_row(row, self.lengths[(first + r) / per_seq].clamp(1, l), self.scale);
            }
        });
        Ok(())
    }
}

/// The f64 row softmax (the reference value f32 noise is measured against): plain libm exp, sums in order.
pub(crate) fn softmax_row_f64(row: &mut [f64], n: usize, scale: f64) {
    let (keys, padding) = row.split_at_mut(n.min(row.len()));
    keys.iter_mut().for_each(|k| *k *= scale);
    let max = keys.iter().fold(f64::NEG_INFINITY, |m, &k| if k.is_nan() || m.is_nan() { f64::NAN } else { m.max(k) });
    keys.iter_mut().for_each(|k| *k = (*k - max).exp());
    let inv = 1.0 / keys.iter().sum::<f64>();
    keys.iter_mut().for_each(|k| *k *= inv);
    padding.fill(0.0);
}

/// Softmax of `scores · scale` (`[B, heads, L, L]`) with keys past each sequence's length masked: in f32
/// (half-precision scores are widened, as fused GPU kernels do), or in f64 for f64 scores.
/// The scores are overwritten and returned: pass a tensor that nothing else holds (a fresh matmul output).
pub fn masked_softmax(scores: Tensor, lengths: &[usize], scale: f32) -> candle_core::Result<Tensor> {
    let wide = if scores.dtype() == DType::F64 { DType::F64 } else { DType::F32 };
    let scores = scores.to_dtype(wide)?.contiguous()?;
    scores.inplace_op1(&MaskedSoftmax { lengths: lengths.to_vec(), scale })?;
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn exp_is_within_two_ulps() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            assert!(((got - want) / want).abs() <= 1.2e-7, "exp({x}) = {got}, expected {want}");
            x += 0.001_37;
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1e30), 0.0);
        // Up to the overflow threshold, through the e^(x − 8) · e^8 branch.
        let mut x = 88.0f32;
        while x < 88.72 {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            assert!(((got - want) / want).abs() <= 2.4e-7, "exp({x}) = {got}, expected {want}");
            x += 0.0137;
        }
    }

    /// PyTorch: exp(NaN) = NaN, exp(inf) = inf, exp(-inf) = 0.
    /// The dispatched row softmax gives the baseline's bits.
    #[test]
    fn dispatched_row_matches_the_baseline_bit_for_bit() {
        for n in [1usize, 7, 16, 33, 300] {
            let src: Vec<f32> = (0..n + 5).map(|i| ((i * 131 % 97) as f32 - 48.0) * 0.21).collect();
            let (mut a, mut b) = (src.clone(), src);
            softmax_row(&mut a, n, 0.3);
            softmax_row_inline(&mut b, n, 0.3);
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "n = {n}");
        }
    }

    #[test]
    fn exp_propagates_nan_and_inf() {
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    }

    /// torch.softmax: a NaN or +inf among the real keys makes the row NaN; -inf keys get weight 0; keys
    /// past the length are dropped (what PyTorch computes for the text alone, unpadded).
    #[test]
    fn nan_and_inf_propagate_like_pytorch() {
        let mut row = [1.0, f32::NAN, 2.0, 0.5];
        softmax_row(&mut row, 4, 1.0);
        assert!(row.iter().all(|x| x.is_nan()), "{row:?}");
        let mut row = [1.0, 2.0, f32::NAN, 0.5];
        softmax_row(&mut row, 2, 1.0);
        assert!(row[..2].iter().all(|x| x.is_finite()) && row[2..] == [0.0, 0.0], "{row:?}");
        let mut row = [1.0, f32::INFINITY, 2.0];
        softmax_row(&mut row, 3, 1.0);
        assert!(row.iter().all(|x| x.is_nan()), "{row:?}");
        let mut row = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY];
        softmax_row(&mut row, 3, 1.0);
        assert_eq!(row, [0.0, 1.0, 0.0]);
        let mut row = [f32::NEG_INFINITY; 3];
        softmax_row(&mut row, 3, 1.0);
        assert!(row.iter().all(|x| x.is_nan()), "{row:?}");
        // Whole tensors: a NaN score in the first sequence makes its row NaN and leaves the others alone.
        let mut data = vec![0.5f32; 2 * 3 * 3];
        data[4] = f32::NAN;
        let scores = Tensor::from_vec(data, (2, 1, 3, 3), &Device::Cpu).unwrap();
        let p = masked_softmax(scores, &[3, 3], 1.0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(p[3..6].iter().all(|x| x.is_nan()) && p.iter().filter(|x| x.is_nan()).count() == 3, "{p:?}");
    }

    #[test]
    fn equals_softmax_of_the_masked_scores() {
        let (b, h, l) = (3usize, 2usize, 5usize);
        let data: Vec<f32> = (0..b * h * l * l).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.7).collect();
        let scores = Tensor::from_vec(data, (b, h, l, l), &Device::Cpu).unwrap();
        let lengths = [5usize, 3, 1];
        let bias: Vec<f32> = lengths.iter().flat_map(|&n| (0..l).map(move |j| if j < n { 0.0 } else { f32::MIN })).collect();
        let bias = Tensor::from_vec(bias, (b, 1, 1, l), &Device::Cpu).unwrap();
        let scaled = scores.affine(0.35, 0.0).unwrap();
        let want = candle_nn::ops::softmax_last_dim(&scaled.broadcast_add(&bias).unwrap()).unwrap();
        let got = masked_softmax(scores, &lengths, 0.35).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_dtype(DType::F32).unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() <= 2e-7);
    }
}
