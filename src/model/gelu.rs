//! GELU (erf form) for f32 on the CPU, with a rational approximation of erf that the compiler vectorizes.
//!
//! Why: candle computes `gelu_erf` with a scalar libm `erff`, measured at 15% of encoding time on
//! all-MiniLM-L6-v2. The approximation (Eigen's and XLA's f32 erf) is within 1.1e-7 of the exact erf
//! (checked against f64 below), the size of f32 rounding. Other dtypes and devices use candle's op.

use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Tensor};

/// erf(x) for f32, |error| ≤ 1.1e-7 (about an f32 ulp near ±1). Plain multiply-adds: `mul_add` without
/// the FMA target feature is a slow library call.
#[inline]
pub fn erf(x: f32) -> f32 {
    // Evaluated in f64 (still vectorized) so the f32 result carries only the approximation's error.
    let x = x.clamp(-4.0, 4.0) as f64;
    let x2 = x * x;
    let mut p = x2 * -2.726_142_258_013_06e-10 + 2.770_681_424_959_02e-8;
    p = x2 * p - 2.101_024_020_825_08e-6;
    p = x2 * p - 5.692_506_394_623_46e-5;
    p = x2 * p - 7.349_906_303_268_55e-4;
    p = x2 * p - 2.954_599_808_540_25e-3;
    p = x2 * p - 1.609_603_332_624_15e-2;
    let mut q = x2 * -1.456_607_184_649_96e-5 - 2.133_740_552_789_05e-4;
    q = x2 * q - 1.682_826_974_382_03e-3;
    q = x2 * q - 7.373_329_167_204_68e-3;
    q = x2 * q - 1.426_473_905_141_89e-2;
    (x * p / q) as f32
}

/// `0.5 x (1 + erf(x / √2))`; NaN for NaN and for ±inf, as PyTorch's vectorized CPU kernel gives (it
/// handles every tensor of a model; only its scalar path, for a handful of elements, returns +inf at +inf).
#[inline]
pub fn gelu(x: f32) -> f32 {
    let y = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    if x.is_infinite() {
        f32::NAN
    } else {
        y
    }
}

struct GeluErf;

impl InplaceOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-f32"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(v), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("gelu-erf-f32 needs a contiguous f32 tensor")
        };
        // Split across the cores: the op is a large share of encoding time and otherwise runs on one.
        super::simd::par_rows_mut(&mut v[start..end], 1, 1 << 14, |_, part| super::simd::map_inplace(part, gelu));
        Ok(())
    }
}

/// GELU (erf form): the fast path for contiguous f32 on the CPU, computed in place (`x` is overwritten:
/// pass a tensor nothing else holds, such as a fresh matmul output), candle's op otherwise.
pub fn gelu_erf(x: Tensor) -> candle_core::Result<Tensor> {
    if x.dtype() == DType::F32 && matches!(x.device(), Device::Cpu) {
        let x = x.contiguous()?;
        x.inplace_op1(&GeluErf)?;
        Ok(x)
    } else {
        x.gelu_erf()
    }
}

/// GeGLU as ModernBERT's MLP computes it: `x` `[rows, 2I]` chunked into input and gate halves, `act(input) ·
/// gate` `[rows, I]`. GELU (erf) in f32 on the CPU takes the fast kernel in one pass; other activations and
/// dtypes use candle's ops.
pub fn geglu(x: &Tensor, act: candle_nn::Activation) -> candle_core::Result<Tensor> {
    use candle_core::{Module, D};
    let two_i = x.dim(D::Minus1)?;
    let i = two_i / 2;
    if act == candle_nn::Activation::Gelu && x.dtype() == DType::F32 && matches!(x.device(), Device::Cpu) {
        let x = x.contiguous()?;
        let rows = x.elem_count() / two_i.max(1);
        let src = x.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; rows * i];
        super::simd::par_rows_mut(&mut out, i, 16, |first, part| {
            for (r, row) in part.chunks_mut(i.max(1)).enumerate() {
                let s = &src[(first + r) * two_i..(first + r + 1) * two_i];
                row.copy_from_slice(&s[..i]);
                super::simd::map_inplace(row, gelu);
                row.iter_mut().zip(&s[i..]).for_each(|(y, g)| *y *= g);
            }
        });
        let mut dims = x.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = i;
        }
        return Tensor::from_vec(out, dims, x.device());
    }
    let input = x.narrow(D::Minus1, 0, i)?.contiguous()?;
    let gate = x.narrow(D::Minus1, i, two_i - i)?;
    let a = match act {
        candle_nn::Activation::Gelu => input.gelu_erf()?,
        act => act.forward(&input)?,
    };
    a.mul(&gate)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64 by its series / continued fraction is overkill: use the identity with libm's f64 erf.
    #[test]
    fn erf_is_within_f32_rounding_of_the_exact_value() {
        let mut worst = 0f64;
        let mut x = -6.0f64;
        while x <= 6.0 {
            let exact = libm_erf(x);
            worst = worst.max((erf(x as f32) as f64 - exact).abs());
            x += 1e-4;
        }
        assert!(worst <= 1.5e-7, "max |erf error| {worst:e}");
    }

    #[test]
    fn gelu_matches_the_exact_formula() {
        for i in -2000..2000 {
            let x = i as f64 / 200.0;
            let exact = 0.5 * x * (1.0 + libm_erf(x / std::f64::consts::SQRT_2));
            let got = gelu(x as f32) as f64;
            assert!((got - exact).abs() <= 3e-7 * (1.0 + x.abs()), "x {x}: {got} vs {exact}");
        }
    }

    /// torch.nn.functional.gelu (erf form) on a 64-element tensor (torch 2.9): NaN, +inf and -inf → NaN;
    /// ±1e30 → 1e30 and -0.
    #[test]
    fn nan_and_inf_propagate_like_pytorch() {
        assert!(gelu(f32::NAN).is_nan());
        assert!(gelu(f32::INFINITY).is_nan());
        assert!(gelu(f32::NEG_INFINITY).is_nan());
        assert_eq!(gelu(1e30), 1e30);
        assert_eq!(gelu(-1e30), 0.0);
        assert!(erf(f32::NAN).is_nan());
        let t = Tensor::new(&[1.0f32, f32::NAN, -2.0], &Device::Cpu).unwrap();
        let out = gelu_erf(t).unwrap().to_vec1::<f32>().unwrap();
        assert!(out[0].is_finite() && out[1].is_nan() && out[2].is_finite(), "{out:?}");
    }

    /// The one-pass f32 GeGLU equals chunking, GELU and the product done as separate ops.
    #[test]
    fn geglu_equals_chunk_gelu_times_gate() {
        let data: Vec<f32> = (0..3 * 5 * 8).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.3).collect();
        let x = Tensor::from_vec(data, (3, 5, 8), &Device::Cpu).unwrap();
        let got = geglu(&x, candle_nn::Activation::Gelu).unwrap();
        assert_eq!(got.dims(), &[3, 5, 4]);
        let input = gelu_erf(x.narrow(2, 0, 4).unwrap().contiguous().unwrap()).unwrap();
        let want = (input * x.narrow(2, 4, 4).unwrap()).unwrap();
        let (g, w) = (got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert!(g.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    fn libm_erf(x: f64) -> f64 {
        // candle depends on the libm crate's erf through `gelu_erf`; use its f64 version as the truth.
        let t = Tensor::new(&[x], &Device::Cpu).unwrap();
        t.erf().unwrap().to_vec1::<f64>().unwrap()[0]
    }
}
