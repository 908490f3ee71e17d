//! sentence-transformers' `Pooling` module: every mode, concatenated in the library's order.

use serde::Deserialize;

/// How a pipeline pools hidden states into one vector, in words: its modes (`cls`, `mean`, `cls+mean`, ...)
/// and whether the result is L2-normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolingChoice {
    /// The modes, joined with `+`.
    pub modes: String,
    /// Whether the pooled vector is L2-normalized.
    pub normalized: bool,
}

impl std::fmt::Display for PoolingChoice {
    /// `mean pooling`, `cls pooling, normalized`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} pooling{}", self.modes, if self.normalized { ", normalized" } else { "" })
    }
}

/// The pooling modes switched on, with the `Pooling` constructor's defaults for missing keys
/// (`pooling_mode_mean_tokens` defaults to **true**: a config that sets cls but omits mean pools cls+mean).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PoolingConfig {
    /// First token.
    #[serde(rename = "pooling_mode_cls_token")]
    pub cls: bool,
    /// Max over masked tokens.
    #[serde(rename = "pooling_mode_max_tokens")]
    pub max: bool,
    /// Masked mean.
    #[serde(rename = "pooling_mode_mean_tokens")]
    pub mean: bool,
    /// Masked sum divided by sqrt(token count).
    #[serde(rename = "pooling_mode_mean_sqrt_len_tokens")]
    pub mean_sqrt_len: bool,
    /// Position-weighted mean (weights 1..L).
    #[serde(rename = "pooling_mode_weightedmean_tokens")]
    pub weighted_mean: bool,
    /// Last unmasked token.
    #[serde(rename = "pooling_mode_lasttoken")]
    pub last_token: bool,
    /// When false, prompt tokens are masked out before pooling.
    pub include_prompt: bool,
}

impl Default for PoolingConfig {
    fn default() -> Self {
        PoolingConfig {
            cls: false,
            max: false,
            mean: true,
            mean_sqrt_len: false,
            weighted_mean: false,
            last_token: false,
            include_prompt: true,
        }
    }
}

/// A single pooling mode; a [`PoolingConfig`] concatenates several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// First token.
    Cls,
    /// Max over tokens.
    Max,
    /// Mean over tokens.
    Mean,
    /// Sum / sqrt(n).
    MeanSqrtLen,
    /// Position-weighted mean.
    WeightedMean,
    /// Last token.
    LastToken,
}

impl Pool {
    /// Every mode, in the order the library concatenates them.
    pub const ALL: [Pool; 6] = [Pool::Cls, Pool::Max, Pool::Mean, Pool::MeanSqrtLen, Pool::WeightedMean, Pool::LastToken];

    /// The mode's name as `pooling_mode` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Pool::Cls => "cls",
            Pool::Max => "max",
            Pool::Mean => "mean",
            Pool::MeanSqrtLen => "mean_sqrt_len_tokens",
            Pool::WeightedMean => "weightedmean",
            Pool::LastToken => "lasttoken",
        }
    }
}

impl PoolingConfig {
    /// Applies a `pooling_mode` string (the constructor's override), if the config has one.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        let mut cfg: PoolingConfig = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        if let Some(mode) = v.get("pooling_mode").and_then(|m| m.as_str()) {
            let mode = mode.to_ascii_lowercase();
            let known = ["mean", "max", "cls", "weightedmean", "lasttoken", "mean_sqrt_len_tokens"];
            if !known.contains(&mode.as_str()) {
                return Err(format!("pooling_mode {mode:?} is not one of {known:?}"));
            }
            cfg = PoolingConfig {
                cls: mode == "cls",
                max: mode == "max",
                mean: mode == "mean",
                mean_sqrt_len: mode == "mean_sqrt_len_tokens",
                weighted_mean: mode == "weightedmean",
                last_token: mode == "lasttoken",
                include_prompt: cfg.include_prompt,
            };
        }
        Ok(cfg)
    }

    /// A config with exactly one mode on.
    pub fn single(p: Pool) -> Self {
        PoolingConfig {
            cls: p == Pool::Cls,
            max: p == Pool::Max,
            mean: p == Pool::Mean,
            mean_sqrt_len: p == Pool::MeanSqrtLen,
            weighted_mean: p == Pool::WeightedMean,
            last_token: p == Pool::LastToken,
            include_prompt: true,
        }
    }

    /// The modes switched on, in concatenation order.
    pub fn modes(&self) -> Vec<Pool> {
        let on = [self.cls, self.max, self.mean, self.mean_sqrt_len, self.weighted_mean, self.last_token];
        Pool::ALL.iter().zip(on).filter(|(_, on)| *on).map(|(p, _)| *p).collect()
    }

    /// A short description such as `cls+mean`.
    pub fn describe(&self) -> String {
        self.modes().iter().map(|p| p.name()).collect::<Vec<_>>().join("+")
    }

    /// Pools the hidden states of one text (`tokens`: `n` rows of `h`, padding already removed).
    /// `prompt_len` leading tokens are masked out when `include_prompt` is false.
    pub fn pool(&self, tokens: &[f32], h: usize, prompt_len: usize) -> Vec<f32> {
        let skip = if self.include_prompt { 0 } else { prompt_len };
        let mut out = Vec::with_capacity(h * self.modes().len());
        for mode in self.modes() {
            out.extend(pool_one(mode, tokens, h, skip));
        }
        out
    }
}

/// One pooling mode over `tokens` (`n` rows of `h`), the first `skip` rows masked (not for cls).
pub fn pool_one(mode: Pool, tokens: &[f32], h: usize, skip: usize) -> Vec<f32> {
    let n = tokens.len() / h.max(1);
    let row = |i: usize| &tokens[i * h..(i + 1) * h];
    let masked = skip.min(n)..n;
    let count = masked.len();
    // Sums in f64: torch sums in f32 with a tree order of its own, so neither order is "the" f32 one.
    let weighted_sum = |weight: &dyn Fn(usize) -> f64| {
        let mut acc = vec![0f64; h];
        for i in masked.clone() {
            let w = weight(i);
            for (a, &x) in acc.iter_mut().zip(row(i)) {
                *a += w * x as f64;
            }
        }
        acc
    };
    match mode {
        Pool::Cls => row(0).to_vec(),
        Pool::Max => {
            // Masked positions are set to -1e9 before the max, so an all-masked text pools to -1e9.
            let mut acc = vec![-1e9f32; h];
            for i in masked {
                for (a, &x) in acc.iter_mut().zip(row(i)) {
                    // NaN wins, as in torch.max (f32::max would drop it).
                    if x > *a || x.is_nan() {
                        *a = x;
                    }
                }
            }
            acc
        }
        Pool::Mean => {
            let denom = (count as f64).max(1e-9);
            weighted_sum(&|_| 1.0).into_iter().map(|s| (s / denom) as f32).collect()
        }
        Pool::MeanSqrtLen => {
            let denom = (count as f64).max(1e-9).sqrt();
            weighted_sum(&|_| 1.0).into_iter().map(|s| (s / denom) as f32).collect()
        }
        Pool::WeightedMean => {
            let total: f64 = masked.clone().map(|i| (i + 1) as f64).sum::<f64>().max(1e-9);
            weighted_sum(&|i| (i + 1) as f64).into_iter().map(|s| (s / total) as f32).collect()
        }
        Pool::LastToken => {
            if count == 0 {
                vec![0f32; h]
            } else {
                row(n - 1).to_vec()
            }
        }
    }
}

/// `x / max(‖x‖, 1e-12)`, as `torch.nn.functional.normalize` and the `Normalize` module compute it: a NaN
/// norm stays NaN (torch's clamp keeps it; `f64::max` would not), so one NaN makes the whole vector NaN.
pub fn normalize(x: &mut [f32]) {
    let norm = x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
    let norm = if norm.is_nan() { norm } else { norm.max(1e-12) };
    for v in x.iter_mut() {
        *v = (*v as f64 / norm) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cls_without_mean_key_pools_cls_and_mean() {
        let v = serde_json::json!({"word_embedding_dimension": 2, "pooling_mode_cls_token": true});
        assert_eq!(PoolingConfig::from_json(&v).unwrap().describe(), "cls+mean");
    }

    #[test]
    fn pooling_mode_string_overrides_flags() {
        let v = serde_json::json!({"pooling_mode": "max", "pooling_mode_mean_tokens": true});
        assert_eq!(PoolingConfig::from_json(&v).unwrap().describe(), "max");
    }

    #[test]
    fn modes_compute_what_the_library_computes() {
        let t = [1.0, 10.0, 3.0, -2.0, 5.0, 0.0];
        assert_eq!(pool_one(Pool::Cls, &t, 2, 0), vec![1.0, 10.0]);
        assert_eq!(pool_one(Pool::Max, &t, 2, 0), vec![5.0, 10.0]);
        assert_eq!(pool_one(Pool::Mean, &t, 2, 0), vec![3.0, 8.0 / 3.0]);
        assert_eq!(pool_one(Pool::LastToken, &t, 2, 0), vec![5.0, 0.0]);
        let w = pool_one(Pool::WeightedMean, &t, 2, 0);
        approx::assert_relative_eq!(w[0], (1.0 + 6.0 + 15.0) / 6.0);
        approx::assert_relative_eq!(pool_one(Pool::MeanSqrtLen, &t, 2, 0)[0], 9.0 / 3f32.sqrt());
        // A masked prompt drops the first rows from the mean.
        assert_eq!(pool_one(Pool::Mean, &t, 2, 1), vec![4.0, -1.0]);
    }

    /// What sentence-transformers' Pooling and Normalize give under torch 2.9: a NaN in a token poisons
    /// that dimension of every pooled mode but cls/lasttoken when elsewhere; torch.max propagates NaN;
    /// F.normalize of a vector holding NaN is all NaN, of one holding inf is NaN there and 0 elsewhere.
    #[test]
    fn nan_and_inf_propagate_like_pytorch() {
        let nan = f32::NAN;
        let t = [1.0, 10.0, nan, -2.0, 5.0, 0.0];
        for mode in [Pool::Max, Pool::Mean, Pool::MeanSqrtLen, Pool::WeightedMean] {
            let p = pool_one(mode, &t, 2, 0);
            assert!(p[0].is_nan() && p[1].is_finite(), "{mode:?}: {p:?}");
        }
        // NaN first, then larger values: the max must not forget it.
        let t = [nan, 1.0, 5.0, 2.0];
        assert!(pool_one(Pool::Max, &t, 2, 0)[0].is_nan());
        assert_eq!(pool_one(Pool::Cls, &[1.0, 2.0, nan, 4.0], 2, 0), vec![1.0, 2.0]);
        let mut v = [3.0, nan, 4.0];
        normalize(&mut v);
        assert!(v.iter().all(|x| x.is_nan()), "{v:?}");
        let mut v = [f32::INFINITY, 1.0];
        normalize(&mut v);
        assert!(v[0].is_nan() && v[1] == 0.0, "{v:?}");
    }
}
