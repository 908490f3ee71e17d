//! Attention softmax with the padding mask applied by length, for f32 on the CPU.
//!
//! Same result as `softmax(scores + bias)` with bias 0 for real keys and the f32 minimum for padded ones
//! (whose weights come out exactly 0), without materializing the broadcast sum, and with an exp the
//! compiler vectorizes: candle's softmax calls a scalar `expf` per element (7% of encoding time).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

/// e^x for f32 within about one ulp; 0 below -87 (where e^x < 2e-38: below any weight that matters
/// next to the row maximum's 1).
#[inline]
pub fn exp(x: f32) -> f32 {
    if x < -87.0 {
        return 0.0;
    }
    let x = x.min(88.0);
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
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Softmax over the last dimension of `[B, heads, L, L]` scores, keys at or past `lengths[b]` masked.
pub struct MaskedSoftmax {
    /// Real tokens per sequence of the batch.
    pub lengths: Vec<usize>,
}

impl CustomOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(v), Some((start, end)), [b, heads, rows, l]) =
            (storage, layout.contiguous_offsets(), layout.shape().dims())
        else {
            candle_core::bail!("masked-softmax-f32 needs contiguous f32 [B, heads, L, L] scores")
        };
        if *b != self.lengths.len() {
            candle_core::bail!("masked-softmax-f32: {} lengths for a batch of {b}", self.lengths.len())
        }
        let per_seq = heads * rows * l;
        let row = |o: &mut [f32], i: &[f32], n: usize| {
            let max = i[..n].iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            super::simd::map(&i[..n], &mut o[..n], |x| exp(x - max));
            let inv = 1.0 / o[..n].iter().sum::<f32>();
            o[..n].iter_mut().for_each(|o| *o *= inv);
        };
        let out = super::simd::par_rows(&v[start..end], *l, 64, |first, i, o| {
            for (r, (o, i)) in o.chunks_mut(*l).zip(i.chunks(*l)).enumerate() {
                let seq = (first + r) * l / per_seq;
                row(o, i, self.lengths[seq].clamp(1, *l));
            }
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Softmax of f32 scores `[B, heads, L, L]` with keys past each sequence's length masked.
pub fn masked_softmax(scores: &Tensor, lengths: &[usize]) -> candle_core::Result<Tensor> {
    scores.contiguous()?.apply_op1_no_bwd(&MaskedSoftmax { lengths: lengths.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

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
    }

    #[test]
    fn equals_softmax_of_the_masked_scores() {
        let (b, h, l) = (3usize, 2usize, 5usize);
        let data: Vec<f32> = (0..b * h * l * l).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.7).collect();
        let scores = Tensor::from_vec(data, (b, h, l, l), &Device::Cpu).unwrap();
        let lengths = [5usize, 3, 1];
        let bias: Vec<f32> = lengths.iter().flat_map(|&n| (0..l).map(move |j| if j < n { 0.0 } else { f32::MIN })).collect();
        let bias = Tensor::from_vec(bias, (b, 1, 1, l), &Device::Cpu).unwrap();
        let want = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&bias).unwrap()).unwrap();
        let got = masked_softmax(&scores, &lengths).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_dtype(DType::F32).unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() <= 2e-7);
    }
}
