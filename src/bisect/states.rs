//! Per-layer hidden states of some texts: the file `scripts/generate_layers.py` writes beside a suite's
//! reference (`layers.safetensors`) and `embcheck embed --layers` writes for any system, read and written here.
//!
//! Tensors (all texts' real tokens one after another, no padding):
//! - `<stage>` f32 `[T, H]` for each stage, in the order of the metadata key `stages` (a JSON list):
//!   `embeddings`, then per layer `layers.{i}.attention` (the attention block after its add & norm; optional)
//!   and `layers.{i}.mlp` (the feed-forward block after its add & norm: the layer's output);
//! - `input_ids` i64 `[T]`, `offsets` i64 `[n+1]` (text k is rows `offsets[k]..offsets[k+1]`), `text_index`
//!   i64 `[n]` (the line of the suite's texts.jsonl each text is).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};
use crate::fixture::TensorFile;

/// The `format` metadata value of a layers file.
pub const FORMAT: &str = "embcheck-layers/1";

/// One text's states.
#[derive(Debug, Clone, PartialEq)]
pub struct TextStates {
    /// Its line in the suite's texts.jsonl.
    pub index: usize,
    /// Its token ids.
    pub ids: Vec<u32>,
    /// Per stage (in [`LayerStates::stages`] order), `ids.len()` rows of `hidden` values.
    pub states: Vec<Vec<f32>>,
}

/// Per-stage hidden states of several texts.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStates {
    /// Stage names, in forward order.
    pub stages: Vec<String>,
    /// Values per token and stage.
    pub hidden: usize,
    /// The texts.
    pub texts: Vec<TextStates>,
    /// Provenance (libraries, model files, how the texts were tokenized).
    pub metadata: BTreeMap<String, String>,
}

/// Where a stage sits in the model, for people: `embeddings`, `layer 3 attention`, `layer 3 MLP`.
pub fn describe_stage(stage: &str) -> String {
    let parts: Vec<&str> = stage.split('.').collect();
    match parts.as_slice() {
        ["layers", i, "attention"] => format!("layer {i} attention"),
        ["layers", i, "mlp"] => format!("layer {i} MLP"),
        _ => stage.replace('_', " "),
    }
}

impl LayerStates {
    /// Reads a layers file; shapes that do not agree are an error naming the file and tensor.
    pub fn read(path: &Path) -> Result<Self> {
        let file = TensorFile::read(path)?;
        let metadata = file.metadata();
        let bad = |m: String| Error::input(path, m);
        if metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!("metadata format is {:?}, expected {FORMAT:?}", metadata.get("format"))));
        }
        let stages: Vec<String> = serde_json::from_str(metadata.get("stages").map_or("", String::as_str))
            .map_err(|e| bad(format!("metadata \"stages\" is not a JSON list of stage names: {e}")))?;
        if stages.is_empty() {
            return Err(bad("metadata \"stages\" lists no stage".into()));
        }
        let ids = file.ints("input_ids")?;
        let offsets = file.ints("offsets")?;
        let index = file.ints("text_index")?;
        let total = ids.len();
        if offsets.len() != index.len() + 1 || offsets.first() != Some(&0) || offsets.last() != Some(&(total as i64)) || offsets.windows(2).any(|w| w[1] < w[0]) {
            return Err(bad(format!(
                "offsets ({} values) must rise from 0 to the {total} tokens of input_ids, one more than text_index ({} values)",
                offsets.len(),
                index.len()
            )));
        }
        let mut per_stage = Vec::with_capacity(stages.len());
        let mut hidden = 0;
        for s in &stages {
            let (shape, values) = file.floats(s)?;
            match shape.as_slice() {
                [t, h] if *t == total && *h > 0 && (hidden == 0 || *h == hidden) => hidden = *h,
                _ => return Err(bad(format!("tensor {s:?} has shape {shape:?}, expected [{total}, H] with one H for every stage"))),
            }
            per_stage.push(values);
        }
        let mut texts = Vec::with_capacity(index.len());
        for (k, &i) in index.iter().enumerate() {
            let (a, b) = (offsets[k] as usize, offsets[k + 1] as usize);
            let ids: Vec<u32> = ids[a..b]
                .iter()
                .map(|&x| u32::try_from(x).map_err(|_| bad(format!("input_ids holds {x}, not a token id"))))
                .collect::<Result<_>>()?;
            let index = usize::try_from(i).map_err(|_| bad(format!("text_index holds {i}, not a line number")))?;
            texts.push(TextStates { index, ids, states: per_stage.iter().map(|v| v[a * hidden..b * hidden].to_vec()).collect() });
        }
        Ok(LayerStates { stages, hidden, texts, metadata })
    }

    /// The file's bytes (see the module documentation for its tensors).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let total: usize = self.texts.iter().map(|t| t.ids.len()).sum();
        let mut stage_bytes: Vec<Vec<u8>> = vec![Vec::with_capacity(total * self.hidden * 4); self.stages.len()];
        let (mut ids, mut offsets, mut index) = (Vec::new(), vec![0i64], Vec::new());
        for t in &self.texts {
            for (s, values) in t.states.iter().enumerate() {
                stage_bytes[s].extend(values.iter().flat_map(|x| x.to_le_bytes()));
            }
            ids.extend(t.ids.iter().flat_map(|&x| i64::from(x).to_le_bytes()));
            offsets.push(offsets.last().copied().unwrap_or(0) + t.ids.len() as i64);
            index.extend((t.index as i64).to_le_bytes());
        }
        let offsets: Vec<u8> = offsets.iter().flat_map(|x| x.to_le_bytes()).collect();
        fn view(dtype: Dtype, shape: Vec<usize>, data: &[u8]) -> Result<TensorView<'_>> {
            TensorView::new(dtype, shape, data).map_err(|e| Error::Usage(format!("cannot build a layers tensor: {e}")))
        }
        let mut tensors: Vec<(String, TensorView<'_>)> = Vec::new();
        for (name, bytes) in self.stages.iter().zip(&stage_bytes) {
            tensors.push((name.clone(), view(Dtype::F32, vec![total, self.hidden], bytes)?));
        }
        tensors.push(("input_ids".into(), view(Dtype::I64, vec![total], &ids)?));
        tensors.push(("offsets".into(), view(Dtype::I64, vec![self.texts.len() + 1], &offsets)?));
        tensors.push(("text_index".into(), view(Dtype::I64, vec![self.texts.len()], &index)?));
        let mut metadata: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        metadata.insert("format".into(), FORMAT.into());
        metadata.insert("stages".into(), serde_json::to_string(&self.stages).unwrap_or_default());
        safetensors::serialize(tensors, Some(metadata)).map_err(|e| Error::Usage(format!("cannot write a layers file: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layers_file_round_trips() {
        let states = LayerStates {
            stages: vec!["embeddings".into(), "layers.0.mlp".into()],
            hidden: 2,
            texts: vec![
                TextStates { index: 3, ids: vec![5, 6], states: vec![vec![1.0, 2.0, 3.0, 4.0], vec![0.5, 0.25, -1.0, 8.0]] },
                TextStates { index: 0, ids: vec![7], states: vec![vec![9.0, 10.0], vec![11.0, 12.0]] },
            ],
            metadata: BTreeMap::from([("note".to_string(), "x".to_string())]),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layers.safetensors");
        std::fs::write(&path, states.to_bytes().unwrap()).unwrap();
        let back = LayerStates::read(&path).unwrap();
        assert_eq!(back.stages, states.stages);
        assert_eq!(back.texts, states.texts);
        assert_eq!(back.metadata["note"], "x");
    }

    #[test]
    fn stages_read_as_places_in_the_model() {
        assert_eq!(describe_stage("layers.3.attention"), "layer 3 attention");
        assert_eq!(describe_stage("layers.0.mlp"), "layer 0 MLP");
        assert_eq!(describe_stage("embeddings"), "embeddings");
        assert_eq!(describe_stage("final_norm"), "final norm");
    }
}
