//! Per-layer hidden states of embcheck's own encoder (`embed --layers`), in a file that any two systems
//! can be compared with layer by layer.
//!
//! The file is safetensors; with T the real tokens of all texts together (no padding), in text order, H the
//! hidden size and N the model's `num_hidden_layers`:
//!
//! | tensor | dtype, shape | what |
//! |---|---|---|
//! | `hidden_states.0` | f32 `[T, H]` | the embedding output (after its LayerNorm) |
//! | `hidden_states.{i}`, i = 1…N | f32 `[T, H]` | the output of layer i |
//! | `input_ids` | i64 `[T]` | the token ids, special tokens included, after truncation |
//! | `input_offsets` | i64 `[texts + 1]` | text k's tokens are rows `input_offsets[k]..input_offsets[k+1]` |
//!
//! `hidden_states.{i}` is transformers' `output_hidden_states=True` tuple entry i; the last one is what the
//! pipelines pool. Metadata: `format` (`embcheck-layers/1`), `layers` (N + 1), `hidden_size`, `ids`,
//! `texts_sha256`, and the model, pipeline, max length, dtype and stack that decided them.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Tensor};

use crate::embed::plan;
use crate::error::{ComputeContext, Error, Result};
use crate::model::Model;
use crate::pipeline::Pipeline;

/// The `format` metadata value of a layers file.
pub const FORMAT: &str = "embcheck-layers/1";

/// The name of hidden state `i` (0: the embedding output; i ≥ 1: the output of layer i).
pub fn name(i: usize) -> String {
    format!("hidden_states.{i}")
}

/// Every hidden state of some texts, real tokens only.
#[derive(Debug, Clone)]
pub struct LayerStates {
    /// The hidden size H.
    pub hidden: usize,
    /// The token ids of each text.
    pub input_ids: Vec<Vec<u32>>,
    /// Per hidden state (embedding output, then each layer), the rows of every text's tokens in text
    /// order, flattened: `[T × H]`.
    pub states: Vec<Vec<f32>>,
}

impl LayerStates {
    /// Text `k`'s rows `[tokens × H]` of hidden state `i`.
    pub fn text(&self, i: usize, k: usize) -> &[f32] {
        let start: usize = self.input_ids[..k].iter().map(Vec::len).sum();
        &self.states[i][start * self.hidden..(start + self.input_ids[k].len()) * self.hidden]
    }
}

/// Runs `model` over `texts` as `pipeline` prepares and truncates them, in the batches `embed` makes, and
/// keeps every hidden state of every real token.
pub fn compute(model: &Model, pipeline: &Pipeline, texts: &[String], batch_size: usize) -> Result<LayerStates> {
    let ids = pipeline.prep.tokenize(&model.tokenizer, texts, pipeline.max_length)?;
    let hidden = model.config.hidden_size;
    let count = model.config.num_hidden_layers + 1;
    // Per text and state, its rows; put in text order once every batch ran.
    let mut per_text: Vec<Vec<Vec<f32>>> = vec![Vec::new(); texts.len()];
    for chunk in plan(model, &ids, batch_size) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
        let states = model.layer_states(&batch)?;
        if states.len() != count {
            return Err(Error::Usage(format!("the encoder gave {} hidden states, expected {count}", states.len())));
        }
        for state in states {
            let (_, l, h) = state.dims3().context(|| "hidden states".into())?;
            let flat: Vec<f32> = state.to_dtype(DType::F32).and_then(|t: Tensor| t.flatten_all()?.to_vec1()).context(|| "hidden states".into())?;
            for (j, &i) in chunk.iter().enumerate() {
                per_text[i].push(flat[j * l * h..(j * l + ids[i].len()) * h].to_vec());
            }
        }
    }
    let states = (0..count).map(|s| per_text.iter().flat_map(|t| t[s].iter().copied()).collect()).collect();
    Ok(LayerStates { hidden, input_ids: ids, states })
}

/// `states` as a layers file (see the module's table), with `metadata` added to the file's own keys.
pub fn to_bytes(states: &LayerStates, ids: &[String], metadata: BTreeMap<String, String>) -> Result<Vec<u8>> {
    let tokens: usize = states.input_ids.iter().map(Vec::len).sum();
    let le = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (i, s) in states.states.iter().enumerate() {
        tensors.push((name(i), safetensors::Dtype::F32, vec![tokens, states.hidden], le(s)));
    }
    let flat: Vec<u8> = states.input_ids.iter().flatten().flat_map(|&t| i64::from(t).to_le_bytes()).collect();
    tensors.push(("input_ids".into(), safetensors::Dtype::I64, vec![tokens], flat));
    let mut offsets = vec![0i64];
    for t in &states.input_ids {
        offsets.push(offsets.last().copied().unwrap_or(0) + t.len() as i64);
    }
    let n = offsets.len();
    tensors.push(("input_offsets".into(), safetensors::Dtype::I64, vec![n], offsets.iter().flat_map(|o| o.to_le_bytes()).collect()));
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).map(|v| (name.clone(), v)))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Usage(format!("cannot build tensors: {e}")))?;
    let mut meta: HashMap<String, String> = metadata.into_iter().collect();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("layers".into(), states.states.len().to_string());
    meta.insert("hidden_size".into(), states.hidden.to_string());
    meta.insert("ids".into(), serde_json::to_string(ids).unwrap_or_default());
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Usage(format!("cannot serialize: {e}")))
}
