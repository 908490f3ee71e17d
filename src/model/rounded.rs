//! Weights rounded to a storage precision and computed in f32: what a model saved in f16/bf16 and run in
//! f32 computes. An alternative that a `precision` diagnosis is proven with (the rounding of the weights is
//! shared by every f16 computation of the model, so it moves embcheck's value towards one).

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

/// Hands out the tensors of `inner` (loaded in the storage dtype, so rounded) converted to the asked dtype.
struct Rounded {
    inner: VarBuilder<'static>,
}

impl SimpleBackend for Rounded {
    fn get(&self, s: Shape, name: &str, _h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.inner.get(s, name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.inner.get_unchecked(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains_tensor(name)
    }
}

/// A var builder giving f32 tensors whose values went through `inner`'s dtype.
pub fn f32_through(inner: VarBuilder<'static>) -> VarBuilder<'static> {
    let device = inner.device().clone();
    VarBuilder::from_backend(Box::new(Rounded { inner }), DType::F32, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_rounded_and_given_in_f32() {
        let t = Tensor::new(&[1.0f32 + 1e-4, 3.0], &Device::Cpu).unwrap();
        let map = std::collections::HashMap::from([("w".to_string(), t)]);
        let inner = VarBuilder::from_tensors(map, DType::F16, &Device::Cpu);
        let vb = f32_through(inner);
        let got = vb.get(2, "w").unwrap();
        assert_eq!(got.dtype(), DType::F32);
        assert_eq!(got.to_vec1::<f32>().unwrap(), vec![1.0, 3.0]);
    }
}
