//! BGE-M3's sparse (lexical weights) and ColBERT heads, as `BGEM3FlagModel.encode` applies them.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};

use super::pooling::normalize;
use crate::error::{ComputeContext, Error, Result};
use crate::model::{encoder::Dense, read_pth, ModelFiles};

/// The two heads, read from `sparse_linear.pt` (Linear(H, 1)) and `colbert_linear.pt` (Linear(H, H)).
#[derive(Debug, Clone)]
pub struct M3Heads {
    sparse_w: Vec<f32>,
    sparse_b: f32,
    colbert: Dense,
}

impl M3Heads {
    /// Loads both heads; a model without them is an error for the M3 pipelines (FlagEmbedding would
    /// silently use random heads).
    pub fn load(files: &ModelFiles, hidden: usize) -> Result<Self> {
        let read = |file: &str| -> Result<BTreeMap<String, Tensor>> {
            let p = files.optional(file).ok_or_else(|| {
                Error::model(&files.name, format!("{file} is missing: the m3-sparse and m3-colbert pipelines need BGE-M3's heads"))
            })?;
            Ok(read_pth(&files.name, &p)?.into_iter().collect())
        };
        let tensor = |map: &BTreeMap<String, Tensor>, file: &str, key: &str, shape: &[usize]| -> Result<Tensor> {
            let t = map
                .get(key)
                .ok_or_else(|| Error::model(&files.name, format!("{file} has no tensor {key:?}")))?
                .to_dtype(DType::F32)
                .context(|| format!("{file}: {key}"))?;
            if t.dims() != shape {
                return Err(Error::model(&files.name, format!("{file}: {key} has shape {:?}, expected {shape:?}", t.dims())));
            }
            Ok(t)
        };
        let sparse = read("sparse_linear.pt")?;
        let colbert = read("colbert_linear.pt")?;
        let sw = tensor(&sparse, "sparse_linear.pt", "weight", &[1, hidden])?;
        let sb = tensor(&sparse, "sparse_linear.pt", "bias", &[1])?;
        let cw = tensor(&colbert, "colbert_linear.pt", "weight", &[hidden, hidden])?;
        let cb = tensor(&colbert, "colbert_linear.pt", "bias", &[hidden])?;
        let ctx = || "sparse_linear.pt".to_string();
        Ok(M3Heads {
            sparse_w: sw.flatten_all().and_then(|t| t.to_vec1()).context(ctx)?,
            sparse_b: sb.to_vec1::<f32>().context(ctx)?[0],
            colbert: Dense::new(cw, Some(cb)),
        })
    }

    /// The largest sum of absolute terms a sparse weight can have, for hidden rows of norm at most
    /// `hidden_norm`: |w·h + b| ≤ ‖w‖·‖h‖ + |b|.
    pub fn sparse_term_scale(&self, hidden_norm: f64) -> f64 {
        let w = self.sparse_w.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
        w * hidden_norm + f64::from(self.sparse_b.abs())
    }

    /// Per-token relu weights for one text's hidden states (`n` rows), then FlagEmbedding's filter:
    /// special tokens and weights ≤ 0 dropped, the max weight kept per token id. Sorted by id.
    pub fn sparse(&self, tokens: &[f32], ids: &[u32], dropped: &[u32]) -> Vec<(u32, f32)> {
        let h = self.sparse_w.len();
        let mut best: BTreeMap<u32, f32> = BTreeMap::new();
        for (i, &id) in ids.iter().enumerate() {
            let row = &tokens[i * h..(i + 1) * h];
            let dot: f32 = row.iter().zip(&self.sparse_w).map(|(a, b)| a * b).sum::<f32>() + self.sparse_b;
            let w = dot.max(0.0);
            if dropped.contains(&id) || w <= 0.0 {
                continue;
            }
            let e = best.entry(id).or_insert(0.0);
            if w > *e {
                *e = w;
            }
        }
        best.into_iter().collect()
    }

    /// ColBERT vectors: `colbert_linear` on every token after the first, each L2-normalized
    /// (`n − 1` rows for `n` tokens).
    pub fn colbert(&self, tokens: &[f32], n: usize) -> Result<Vec<Vec<f32>>> {
        let h = tokens.len() / n.max(1);
        if n < 2 {
            return Ok(Vec::new());
        }
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let t = Tensor::from_slice(&tokens[h..], (n - 1, h), &Device::Cpu)?;
            self.colbert.forward(&t)?.to_vec2::<f32>()
        };
        let mut rows = run().context(|| "colbert_linear".to_string())?;
        for r in rows.iter_mut() {
            normalize(r);
        }
        Ok(rows)
    }
}
