//! The element-wise tails of a transformer layer fused into one in-place pass over the matmul output, for
//! f32 on the CPU: `x W^T + b`'s bias, and `LayerNorm((x W^T + b) + residual)`.
//!
//! Why: candle runs each of bias add, residual add and LayerNorm as its own pass with a fresh buffer (three
//! `[tokens, H]` allocations, each page-faulted in), the adds on a spin-waiting pool of their own (6% of
//! encoding time waiting at its barrier, measured with perf on all-MiniLM-L6-v2). Here the row is
//! still in cache. The arithmetic is candle's, in the same order, so results are bit-identical.

use candle_core::{CpuStorage, DType, Device, InplaceOp1, InplaceOp2, Layout, Tensor};

/// The f32 values of a 1-D tensor, when the model runs in f32 on the CPU (where the fused paths apply).
pub fn f32_values(t: &Tensor) -> candle_core::Result<Option<Vec<f32>>> {
    if t.dtype() == DType::F32 && matches!(t.device(), Device::Cpu) {
        Ok(Some(t.flatten_all()?.to_vec1::<f32>()?))
    } else {
        Ok(None)
    }
}

/// Adds `bias` to every row, in place.
pub struct AddBias<'a>(pub &'a [f32]);

impl InplaceOp1 for AddBias<'_> {
    fn name(&self) -> &'static str {
        "add-bias-f32"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(v), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("add-bias-f32 needs a contiguous f32 tensor")
        };
        let w = self.0.len();
        if w == 0 || (end - start) % w != 0 {
            candle_core::bail!("add-bias-f32: {} values are not rows of {w}", end - start)
        }
        super::simd::par_rows_mut(&mut v[start..end], w, 16, |_, part| {
            for row in part.chunks_mut(w) {
                row.iter_mut().zip(self.0).for_each(|(y, b)| *y += b);
            }
        });
        Ok(())
    }
}

/// `y ← LayerNorm((y + bias) + residual)` row by row, in place, with candle's LayerNorm arithmetic
/// (f32 sums of x and x² in order, `var = E[x²] − mean²`).
pub struct AddNorm {
    /// The dense layer's bias (zeros when it has none).
    pub bias: Vec<f32>,
    /// LayerNorm weight.
    pub gamma: Vec<f32>,
    /// LayerNorm bias.
    pub beta: Vec<f32>,
    /// LayerNorm epsilon.
    pub eps: f32,
}

impl AddNorm {
    /// Applies it to `y` (a fresh matmul output nothing else holds, overwritten) with `residual`.
    pub fn apply(&self, y: Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        let residual = residual.contiguous()?;
        y.inplace_op2(&residual, self)?;
        Ok(y)
    }
}

impl InplaceOp2 for AddNorm {
    fn name(&self) -> &'static str {
        "add-layer-norm-f32"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(y), CpuStorage::F32(r), Some((a, b)), Some((c, d))) =
            (s1, s2, l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("add-layer-norm-f32 needs contiguous f32 tensors")
        };
        let w = self.gamma.len();
        if w == 0 || b - a != d - c || (b - a) % w != 0 || self.bias.len() != w || self.beta.len() != w {
            candle_core::bail!("add-layer-norm-f32: shapes {:?} and {:?} for rows of {w}", l1.shape(), l2.shape())
        }
        let r = &r[c..d];
        super::simd::par_rows_mut(&mut y[a..b], w, 16, |first, part| {
            for (i, row) in part.chunks_mut(w).enumerate() {
                let res = &r[(first + i) * w..(first + i + 1) * w];
                let (mut sum, mut sum2) = (0f32, 0f32);
                for ((v, b), x) in row.iter_mut().zip(&self.bias).zip(res) {
                    *v = (*v + b) + x;
                    sum += *v;
                    sum2 += *v * *v;
                }
                let mean = sum / w as f32;
                let var = sum2 / w as f32 - mean * mean;
                let inv_std = (var + self.eps).sqrt().recip();
                for ((v, g), be) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
                    *v = (*v - mean) * inv_std * g + be;
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Module;

    /// Bit-identical to candle's broadcast_add, add and LayerNorm, NaN included.
    #[test]
    fn equals_candles_separate_ops_bit_for_bit() {
        let (rows, w) = (37usize, 24usize);
        let val = |i: usize, k: usize| ((i * k % 29) as f32 - 14.0) * 0.37 + (i as f32).sin();
        let mut yv: Vec<f32> = (0..rows * w).map(|i| val(i, 7)).collect();
        yv[5 * w + 3] = f32::NAN;
        let dev = Device::Cpu;
        let y = Tensor::from_vec(yv, (rows, w), &dev).unwrap();
        let res = Tensor::from_vec((0..rows * w).map(|i| val(i, 11)).collect::<Vec<_>>(), (rows, w), &dev).unwrap();
        let bias: Vec<f32> = (0..w).map(|i| val(i, 3) * 0.1).collect();
        let gamma: Vec<f32> = (0..w).map(|i| 1.0 + val(i, 5) * 0.01).collect();
        let beta: Vec<f32> = (0..w).map(|i| val(i, 13) * 0.01).collect();
        let t = |v: &[f32]| Tensor::new(v, &dev).unwrap();
        let ln = candle_nn::LayerNorm::new(t(&gamma), t(&beta), 1e-12);
        let want = ln.forward(&(y.broadcast_add(&t(&bias)).unwrap() + &res).unwrap()).unwrap();
        let op = AddNorm { bias: bias.clone(), gamma, beta, eps: 1e-12 };
        let got = op.apply(y.copy().unwrap(), &res).unwrap();
        let (g, w_) = (got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert!(g.iter().zip(&w_).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())));
        assert!(g[5 * 24..6 * 24].iter().all(|x| x.is_nan()), "a NaN poisons its row");
        let biased = y.copy().unwrap();
        biased.inplace_op1(&AddBias(&bias)).unwrap();
        let want = y.broadcast_add(&t(&bias)).unwrap();
        let (g, w_) = (biased.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert!(g.iter().zip(&w_).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())));
    }
}
