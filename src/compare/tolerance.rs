//! Tolerances: per pipeline in suite.toml, with defaults per dtype and output kind.
//!
//! Evidence for the f32 defaults (README, "Tolerances"): candle f32 vs PyTorch differs by ≤ 8e-7 relative L2
//! (1 − cosine ≤ 2e-7) and batch padding by ~1e-7, while the smallest real bug class, sentence-transformers'
//! whitespace strip, gives cosine 0.99924 (relative L2 ≈ 4e-2). f16/bf16 defaults sit above the drift measured
//! on GPU (f16: 2.2e-3 relative L2, cosine 0.9999977; bf16: 2.0e-2, 0.99981).

use candle_core::DType;
use serde::{Deserialize, Serialize};

use crate::pipeline::OutputKind;

/// Limits a text's comparison must stay within. All must hold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    /// Lowest cosine (ColBERT: per row).
    pub min_cosine: f64,
    /// Highest ‖a − e‖ / ‖e‖ (also bounds the relative difference of retrieval scores).
    pub max_rel_l2: f64,
    /// Highest |a − e| of any component.
    pub max_abs: f64,
    /// Sparse: lowest Jaccard of the token-id sets (1 = exactly the same ids).
    pub min_jaccard: f64,
    /// f32 noise floor per component, from the size of the terms an output sums (see
    /// [`crate::Pipeline::noise_floor`]); 0 when the output's own size bounds its noise.
    #[serde(default)]
    pub noise_floor: f64,
}

/// A partial tolerance as written in suite.toml; missing keys take the defaults.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToleranceOverride {
    /// See [`Tolerance::min_cosine`].
    pub min_cosine: Option<f64>,
    /// See [`Tolerance::max_rel_l2`].
    pub max_rel_l2: Option<f64>,
    /// See [`Tolerance::max_abs`].
    pub max_abs: Option<f64>,
    /// See [`Tolerance::min_jaccard`].
    pub min_jaccard: Option<f64>,
}

impl Tolerance {
    /// The default for a dtype and output kind.
    ///
    /// Sparse weights get a wider relative bound in half precision: a text with one or two small weights
    /// has a relative L2 of |Δw|/w (measured: f16 vs f32 8.5e-3 in FlagEmbedding, 6.9e-3 here; bf16 0.13).
    pub fn default_for(dtype: DType, kind: OutputKind) -> Self {
        use OutputKind::*;
        let (min_cosine, max_rel_l2, max_abs, min_jaccard) = match (dtype, kind) {
            (DType::F16, Dense) => (0.9999, 5e-3, 5e-2, 1.0),
            (DType::F16, Sparse) => (0.9999, 2e-2, 5e-3, 0.0),
            (DType::F16, Multi) => (0.9999, 5e-3, 1e-2, 1.0),
            (DType::BF16, Dense) => (0.999, 4e-2, 0.25, 1.0),
            (DType::BF16, Sparse) => (0.999, 0.2, 5e-2, 0.0),
            (DType::BF16, Multi) => (0.999, 4e-2, 5e-2, 1.0),
            (_, Dense) => (1.0 - 1e-6, 1e-5, 1e-4, 1.0),
            (_, Sparse) => (1.0 - 1e-6, 1e-5, 1e-5, 1.0),
            (_, Multi) => (1.0 - 1e-6, 1e-5, 2e-5, 1.0),
        };
        Tolerance { min_cosine, max_rel_l2, max_abs, min_jaccard, noise_floor: 0.0 }
    }

    /// This tolerance with the keys an override sets replaced.
    pub fn with(self, o: &ToleranceOverride) -> Self {
        Tolerance {
            min_cosine: o.min_cosine.unwrap_or(self.min_cosine),
            max_rel_l2: o.max_rel_l2.unwrap_or(self.max_rel_l2),
            max_abs: o.max_abs.unwrap_or(self.max_abs),
            min_jaccard: o.min_jaccard.unwrap_or(self.min_jaccard),
            noise_floor: self.noise_floor,
        }
    }
}
