//! Rotary position embeddings as transformers' `ModernBertRotaryEmbedding` computes them (the default RoPE):
//! `inv_freq[i] = 1 / θ^(2i / d)` in float32, the angle `position · inv_freq[i]` as a float32 product, its cos
//! and sin in float32, then `x · cos + rotate_half(x) · sin` on each head's query and key.

use std::sync::Arc;

use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Tensor, D};

/// The cos and sin of every (position, frequency) of a batch, for one RoPE base.
#[derive(Clone)]
pub struct RopeTables {
    /// `cos[p · d/2 + i]`, positions 0..L.
    pub cos: Arc<Vec<f32>>,
    /// `sin[p · d/2 + i]`.
    pub sin: Arc<Vec<f32>>,
    /// `d / 2`.
    pub half: usize,
}

/// `1 / θ^(2i / d)` for `i < d/2`, as `compute_default_rope_parameters` computes it in float32: the exponent
/// `2i / d` rounded to f32, the power of the f32 base correctly rounded to f32 (computed in f64), then the
/// f32 reciprocal.
pub fn inv_freq(theta: f64, head_dim: usize) -> Vec<f32> {
    let base = theta as f32 as f64;
    (0..head_dim / 2)
        .map(|i| {
            let e = (2 * i) as f32 / head_dim as f32;
            1.0f32 / (base.powf(e as f64) as f32)
        })
        .collect()
}

impl RopeTables {
    /// The tables for positions `0..len`.
    pub fn new(theta: f64, head_dim: usize, len: usize) -> Self {
        let freq = inv_freq(theta, head_dim);
        let half = freq.len();
        let (mut cos, mut sin) = (Vec::with_capacity(len * half), Vec::with_capacity(len * half));
        for p in 0..len {
            for &f in &freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        RopeTables { cos: Arc::new(cos), sin: Arc::new(sin), half }
    }

    /// The `[L, d]` cos and sin tensors (`cat(t, t)`) in `dtype`, for the half-precision path.
    pub fn tensors(&self, len: usize, dtype: DType, device: &candle_core::Device) -> candle_core::Result<(Tensor, Tensor)> {
        let full = |t: &[f32]| -> candle_core::Result<Tensor> {
            let t = Tensor::from_slice(&t[..len * self.half], (len, self.half), device)?;
            Tensor::cat(&[&t, &t], 1)?.to_dtype(dtype)
        };
        Ok((full(&self.cos)?, full(&self.sin)?))
    }
}

/// `x · cos + rotate_half(x) · sin` on `[B, heads, L, d]` (half precision: each product and the sum rounded
/// to the dtype, as PyTorch computes it there).
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let (x1, x2) = (x.narrow(D::Minus1, 0, d / 2)?, x.narrow(D::Minus1, d / 2, d - d / 2)?);
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)?.add(&rotated.broadcast_mul(sin)?)
}

/// Rotates the query and key columns of a fused `[B, L, 3H]` f32 (or f64) QKV tensor in place, token `t` of each
/// sequence at position `t`: per head, `out[i] = x[i]·cos[i] − x[i + d/2]·sin[i]` and
/// `out[i + d/2] = x[i + d/2]·cos[i] + x[i]·sin[i]` — PyTorch's two products and one sum, in f32.
pub struct RotateQk<'a> {
    /// The tables, for at least L positions.
    pub tables: &'a RopeTables,
    /// Attention heads.
    pub heads: usize,
    /// Positions per sequence (L).
    pub len: usize,
}

impl InplaceOp1 for RotateQk<'_> {
    fn name(&self) -> &'static str {
        "rotate-qk-f32"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("rotate-qk needs a contiguous tensor")
        };
        let h3 = *layout.shape().dims().last().unwrap_or(&0);
        let half = self.tables.half;
        if h3 == 0 || h3 % 3 != 0 || h3 / 3 != self.heads * 2 * half || self.tables.cos.len() < self.len * half {
            candle_core::bail!("rotate-qk: rows of {h3} for {} heads of {} and {} positions", self.heads, 2 * half, self.len)
        }
        match storage {
            CpuStorage::F32(v) => self.rotate(&mut v[start..end], h3),
            // The f64 recomputation f32 noise is measured against (`compare::noise`): the same f32 tables
            // (transformers computes cos and sin in float32 in every dtype), products and sums in f64.
            CpuStorage::F64(v) => self.rotate(&mut v[start..end], h3),
            _ => candle_core::bail!("rotate-qk needs an f32 or f64 tensor"),
        }
        Ok(())
    }
}

impl RotateQk<'_> {
    /// The rotation of rows of `h3` values, in the precision of `T`.
    fn rotate<T>(&self, v: &mut [T], h3: usize)
    where
        T: Copy + Send + From<f32> + std::ops::Mul<Output = T> + std::ops::Add<Output = T> + std::ops::Neg<Output = T>,
    {
        let (cos, sin, len, heads, half) = (&self.tables.cos, &self.tables.sin, self.len.max(1), self.heads, self.tables.half);
        crate::model::simd::par_rows_mut(v, h3, 16, |first, rows| {
            for (r, row) in rows.chunks_mut(h3).enumerate() {
                let p = (first + r) % len;
                let (c, s) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
                // Query heads, then key heads: 2 · heads vectors of d = 2 · half.
                for x in row[..2 * heads * 2 * half].chunks_mut(2 * half) {
                    let (x1, x2) = x.split_at_mut(half);
                    for i in 0..half {
                        let (a, b, ci, si) = (x1[i], x2[i], T::from(c[i]), T::from(s[i]));
                        x1[i] = a * ci + (-b) * si;
                        x2[i] = b * ci + a * si;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The in-place f32 rotation equals the tensor formula `x · cos + rotate_half(x) · sin` bit for bit.
    #[test]
    fn in_place_rotation_equals_the_formula() {
        let (b, l, heads, d) = (2usize, 7usize, 3usize, 8usize);
        let h = heads * d;
        let data: Vec<f32> = (0..b * l * 3 * h).map(|i| (((i * 7919) % 1013) as f32 / 1013.0 - 0.5) * 3.0).collect();
        let qkv = Tensor::from_vec(data, (b, l, 3 * h), &Device::Cpu).unwrap();
        let tables = RopeTables::new(10_000.0, d, l);
        let rotated = qkv.copy().unwrap();
        rotated.inplace_op1(&RotateQk { tables: &tables, heads, len: l }).unwrap();
        let (cos, sin) = tables.tensors(l, DType::F32, &Device::Cpu).unwrap();
        let split = qkv.reshape((b, l, 3, heads, d)).unwrap().permute((2, 0, 3, 1, 4)).unwrap().contiguous().unwrap();
        let got = rotated.reshape((b, l, 3, heads, d)).unwrap().permute((2, 0, 3, 1, 4)).unwrap().contiguous().unwrap();
        for part in 0..2 {
            let want = apply(&split.get(part).unwrap(), &cos, &sin).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let have = got.get(part).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(want.iter().zip(&have).all(|(a, b)| a.to_bits() == b.to_bits()), "part {part}");
        }
        // Values are left alone.
        assert_eq!(got.get(2).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), split.get(2).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }

    /// Position 0 is the identity; the first frequency is 1 whatever the base.
    #[test]
    fn position_zero_is_identity_and_first_frequency_is_one() {
        let t = RopeTables::new(160_000.0, 64, 3);
        assert!(t.cos[..32].iter().all(|&c| c == 1.0) && t.sin[..32].iter().all(|&s| s == 0.0));
        assert_eq!(inv_freq(160_000.0, 64)[0], 1.0);
        assert_eq!(t.cos[32], 1f32.cos());
    }
}
