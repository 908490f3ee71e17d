//! The decoder's row-wise steps in f32 on the CPU as single passes on the rayon pool: RMSNorm, the residual add
//! (in place, into the fresh matmul output) and SwiGLU's `silu(gate) · up`; and the unpacking of the texts' rows
//! (the f32 path computes them one after another, without padding) into a right-padded batch.
//!
//! Why: as candle ops each is several passes with a fresh buffer each (RMSNorm alone: square, mean, add,
//! sqrt, recip, two broadcast multiplies), every pass ending at candle's spin-waiting thread barrier (23% of
//! `embcheck embed` on a Qwen3 of realistic shape, measured with perf). The arithmetic is the same f32
//! operations in the same order, except the sum of squares (16 lanes, [`crate::model::simd::sum_lanes`]'s
//! order) and SiLU's exponential ([`crate::model::softmax::exp`]): f32 rounding apart (tested below).

use candle_core::{CpuStorage, CustomOp1, DType, Device, InplaceOp2, Layout, Shape, Tensor};

use crate::model::simd::par_rows_mut;

/// Whether `x` takes the fused f32 path.
pub fn applies(x: &Tensor) -> bool {
    x.dtype() == DType::F32 && matches!(x.device(), Device::Cpu)
}

/// The f32 values of `t` (a norm's weight).
pub fn values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()
}

/// The sum of the squares of `xs` in 16 interleaved partial sums, as [`crate::model::simd::sum_lanes`] adds.
#[inline(always)]
fn sum_squares(xs: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x * x;
        }
    }
    lanes.iter().copied().chain(rest.iter().map(|x| x * x)).fold(0.0, |a, x| a + x)
}

/// `out = w · (x / √(mean(x²) + ε))` for one row, the mean as candle's (the sum times `1/n` rounded to f32),
/// then candle's `+ ε`, `sqrt`, `recip`: the steps of [`super::RmsNorm::forward`] in f32.
#[inline(always)]
pub fn rms_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let inv_n = (1.0 / x.len().max(1) as f64) as f32;
    let inv = ((sum_squares(x) * inv_n) + eps).sqrt().recip();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = (v * inv) * g;
    }
}

/// [`rms_row`] in place.
#[inline(always)]
pub fn rms_row_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let inv_n = (1.0 / x.len().max(1) as f64) as f32;
    let inv = ((sum_squares(x) * inv_n) + eps).sqrt().recip();
    for (v, &g) in x.iter_mut().zip(w) {
        *v = (*v * inv) * g;
    }
}

/// RMSNorm of every row of the last dimension into a new tensor.
struct RmsNorm<'a> {
    weight: &'a [f32],
    eps: f32,
}

impl CustomOp1 for RmsNorm<'_> {
    fn name(&self) -> &'static str {
        "decoder-rms-norm-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(v), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("decoder-rms-norm-f32 needs a contiguous f32 tensor")
        };
        let w = self.weight.len();
        if w == 0 || layout.shape().dims().last() != Some(&w) {
            candle_core::bail!("decoder-rms-norm-f32: rows of {:?} for a weight of {w}", layout.shape())
        }
        let src = &v[start..end];
        let mut out = vec![0f32; src.len()];
        par_rows_mut(&mut out, w, 16, |first, part| {
            for (r, row) in part.chunks_mut(w).enumerate() {
                rms_row(&src[(first + r) * w..(first + r + 1) * w], self.weight, self.eps, row);
            }
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// RMSNorm over the last dimension of an f32 tensor: a new tensor, `x` unchanged.
pub fn rms_norm(x: &Tensor, weight: &[f32], eps: f64) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&RmsNorm { weight, eps: eps as f32 })
}

/// `y ← y + x`, in place.
struct AddInPlace;

impl InplaceOp2 for AddInPlace {
    fn name(&self) -> &'static str {
        "decoder-add-f32"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(y), CpuStorage::F32(x), Some((a, b)), Some((c, d))) = (s1, s2, l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("decoder-add-f32 needs contiguous f32 tensors")
        };
        if l1.shape() != l2.shape() {
            candle_core::bail!("decoder-add-f32: shapes {:?} and {:?}", l1.shape(), l2.shape())
        }
        let x = &x[c..d];
        const WIDTH: usize = 4096;
        par_rows_mut(&mut y[a..b], WIDTH, 16, |first, part| {
            part.iter_mut().zip(&x[first * WIDTH..]).for_each(|(y, x)| *y += x);
        });
        Ok(())
    }
}

/// `x + y` computed into `y` (a fresh matmul output nothing else holds); `x`, which callers may still hold
/// (the stage seen last), is left alone.
pub fn residual(y: Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
    let y = y.contiguous()?;
    y.inplace_op2(&x.contiguous()?, &AddInPlace)?;
    Ok(y)
}

/// `silu(gate) · up` of `[rows, 2I]` (gate then up) into `[rows, I]`.
struct SwiGlu;

impl CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "decoder-swiglu-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(v), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("decoder-swiglu-f32 needs a contiguous f32 tensor")
        };
        let two_i = *layout.shape().dims().last().unwrap_or(&0);
        if two_i == 0 || two_i % 2 != 0 {
            candle_core::bail!("decoder-swiglu-f32: rows of {two_i}, not gate and up halves")
        }
        let i = two_i / 2;
        let src = &v[start..end];
        let mut out = vec![0f32; src.len() / 2];
        par_rows_mut(&mut out, i, 16, |first, part| {
            for (r, row) in part.chunks_mut(i).enumerate() {
                let s = &src[(first + r) * two_i..(first + r + 1) * two_i];
                silu_mul(&s[..i], &s[i..], row);
            }
        });
        let mut dims = layout.shape().dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = i;
        }
        Ok((CpuStorage::F32(out), Shape::from_dims(&dims)))
    }
}

/// `out = silu(g) · u`, silu as candle's `g / (1 + e^(−g))`.
fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked on the line above.
            return unsafe { silu_mul_avx512(g, u, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked on the line above.
            return unsafe { silu_mul_avx2(g, u, out) };
        }
    }
    silu_mul_inline(g, u, out)
}

#[inline(always)]
fn silu_mul_inline(g: &[f32], u: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
        *o = (g / (1.0 + crate::model::softmax::exp(-g))) * u;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn silu_mul_avx512(g: &[f32], u: &[f32], out: &mut [f32]) {
    silu_mul_inline(g, u, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn silu_mul_avx2(g: &[f32], u: &[f32], out: &mut [f32]) {
    silu_mul_inline(g, u, out)
}

/// SwiGLU of a fused gate-and-up projection `[..., 2I]`: `silu(gate) · up`, `[..., I]`.
pub fn swiglu(gate_up: &Tensor) -> candle_core::Result<Tensor> {
    gate_up.contiguous()?.apply_op1_no_bwd(&SwiGlu)
}

/// The rows of `texts` (packed in `x` `[rows, H]`) as a right-padded batch `[b, l, H]`: text `t`'s rows first
/// in its sequence, then 0. No copy when no row is padding.
pub fn unpack(x: &Tensor, texts: &[super::fused_attention::Text], b: usize, l: usize) -> candle_core::Result<Tensor> {
    let h = x.dim(1)?;
    if texts.len() != b || texts.iter().any(|t| t.positions.len() > l) {
        candle_core::bail!("unpacking {} texts into a batch of {b} x {l}", texts.len())
    }
    if x.dim(0)? == b * l && texts.iter().enumerate().all(|(i, t)| t.start == i * l && t.positions.len() == l) {
        return x.reshape((b, l, h));
    }
    let mut parts = Vec::with_capacity(2 * b);
    for t in texts {
        let m = t.positions.len();
        parts.push(x.narrow(0, t.start, m)?);
        if m < l {
            parts.push(Tensor::zeros((l - m, h), x.dtype(), x.device())?);
        }
    }
    Tensor::cat(&parts, 0)?.reshape((b, l, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::D;

    fn data(rows: usize, w: usize, seed: usize) -> Tensor {
        let v: Vec<f32> = (0..rows * w).map(|i| (((i * 7919 + seed * 104_729) % 1013) as f32 / 1013.0 - 0.5) * 6.0).collect();
        Tensor::from_vec(v, (rows, w), &Device::Cpu).unwrap()
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        let (a, b) = (a.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert_eq!(a.len(), b.len());
        a.iter().zip(&b).map(|(x, y)| (x - y).abs() / y.abs().max(1e-3)).fold(0.0, f32::max)
    }

    /// Equals the candle ops of [`super::super::RmsNorm::forward`] to f32 rounding, widths with and without a
    /// remainder past the 16 lanes.
    #[test]
    fn rms_norm_equals_the_candle_ops() {
        for w in [7usize, 128, 200, 512] {
            let x = data(33, w, 1);
            let weight = data(1, w, 2).squeeze(0).unwrap();
            let eps = 1e-6;
            let want = {
                let inv = (x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + eps).unwrap().sqrt().unwrap().recip().unwrap();
                x.broadcast_mul(&inv).unwrap().broadcast_mul(&weight).unwrap()
            };
            let got = rms_norm(&x, &values(&weight).unwrap(), eps).unwrap();
            let rel = max_rel(&got, &want);
            assert!(rel <= 4e-7, "width {w}: {rel:e}");
            let mut rows = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            rows.chunks_mut(w).for_each(|r| rms_row_inplace(r, &values(&weight).unwrap(), eps as f32));
            assert_eq!(rows, got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), "in place and into a new buffer alike");
        }
    }

    /// The in-place residual add is candle's add bit for bit, on sizes that do and do not split into parts.
    #[test]
    fn residual_equals_the_add() {
        for rows in [1usize, 40, 300] {
            let (x, y) = (data(rows, 512, 3), data(rows, 512, 4));
            let want = (&x + &y).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let got = residual(y.copy().unwrap(), &x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(got, want);
            assert_eq!(x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), data(rows, 512, 3).flatten_all().unwrap().to_vec1::<f32>().unwrap());
        }
    }

    /// Unpacking puts each text's rows first in its sequence and 0 after; a batch without padding is a reshape.
    #[test]
    fn unpack_pads_each_text_with_zeros() {
        use super::super::fused_attention::Text;
        let text = |start: usize, rows: usize| Text { start, keys: rows, positions: (0..rows).collect() };
        let x = data(6, 4, 1);
        let got = unpack(&x, &[text(0, 3), text(3, 1), text(4, 2)], 3, 3).unwrap();
        let (rows, batch) = (x.to_vec2::<f32>().unwrap(), got.to_vec3::<f32>().unwrap());
        let zero = vec![0f32; 4];
        assert_eq!(batch[0], rows[..3].to_vec());
        assert_eq!(batch[1], [rows[3].clone(), zero.clone(), zero.clone()]);
        assert_eq!(batch[2], [rows[4].clone(), rows[5].clone(), zero]);
        let full = unpack(&x, &[text(0, 3), text(3, 3)], 2, 3).unwrap();
        assert_eq!(full.flatten_all().unwrap().to_vec1::<f32>().unwrap(), x.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert!(unpack(&x, &[text(0, 3)], 2, 3).is_err(), "a text per sequence");
    }

    /// SwiGLU equals candle's `silu(gate) · up` to f32 rounding; large |gate| (e^x past f32 range) included.
    #[test]
    fn swiglu_equals_silu_times_up() {
        let (rows, i) = (17usize, 96usize);
        let mut v = data(rows, 2 * i, 5).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v[3] = 120.0;
        v[4] = -120.0;
        let x = Tensor::from_vec(v, (rows, 2 * i), &Device::Cpu).unwrap();
        let want = (x.narrow(1, 0, i).unwrap().silu().unwrap() * x.narrow(1, i, i).unwrap()).unwrap();
        let got = swiglu(&x).unwrap();
        let rel = max_rel(&got, &want);
        assert!(rel <= 4e-7, "{rel:e}");
    }
}
