//! The faults the self-test injects: changes to a model's files (written to a temporary copy, the bundled
//! model is never touched) and changes to how embcheck's own pipeline is run on it. A mutated system is
//! embcheck's pipeline with exactly one thing changed, wrapped as an [`Embedder`] so that it is checked like
//! any system under test, token ids included.

use std::path::{Path, PathBuf};

use candle_core::DType;

use crate::embed::for_each_batch;
use crate::error::{Error, Result};
use crate::fixture::TextItem;
use crate::model::{Model, ModelFiles, Stack};
use crate::pipeline::{Pipeline, PipelineKind, Vector};
use crate::source::{command, Embedder, Output};

/// A change to the model's files, applied to a temporary copy of its directory.
#[derive(Debug, Clone, PartialEq)]
pub enum FileChange {
    /// The files as bundled.
    None,
    /// Every f32 weight of `model.safetensors` rounded to f16 (`true`) or bf16 (`false`) and stored back as f32.
    Round { f16: bool },
    /// Every f32 weight w of `model.safetensors` replaced by w·(1 + ε·u), u uniform in [−1, 1) from a fixed seed.
    Noise(f64),
    /// `config.json`'s `num_hidden_layers` one less: the last layer is not run.
    DropLayer,
    /// `config.json`'s `pad_token_id` set to this id, and the batch padded with it: XLM-R counts its position
    /// ids from the pad id, so this is BERT's pad id used on an XLM-R.
    PadId(u32),
    /// `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json` taken from this bundled model.
    Tokenizer(&'static str),
    /// `config.json`'s `use_bidirectional_attention` set false: EmbeddingGemma run causally, as transformers 4.56
    /// (which does not know the key) or a decoder port runs it.
    Causal,
}

/// A change to how the pipeline is run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunChange {
    /// The suite's pipeline as it is.
    None,
    /// Another pipeline's head on the same model (e.g. raw-cls instead of normalized-cls).
    Head(PipelineKind),
    /// The hidden states pooled another way, named as [`Pipeline::other_poolings`] names it
    /// (e.g. `"cls pooling, normalized"`, `"mean pooling"`).
    Pooling(&'static str),
    /// Texts cut at this many tokens.
    MaxLength(usize),
    /// Lowercasing toggled.
    Lowercase,
    /// Stripping of leading/trailing whitespace toggled.
    Strip,
    /// This prefix added to every text.
    Prefix(&'static str),
    /// The suite's instruction or prompt left out.
    DropPrefix,
    /// Texts fed to the encoder in batches of this size.
    BatchSize(usize),
    /// Each batch embedded in reverse order.
    Reversed,
    /// The batch padded before the encoder sees it, so the pad tokens are attended to (no attention mask):
    /// a text's value depends on the longest text of its batch.
    PadsAttended,
    /// The pipeline run by the `embcheck embed` binary in a child process with `RAYON_NUM_THREADS` set to this.
    Threads(usize),
    /// EOS appended by hand after the tokenizer (`true`: doubled where the tokenizer appends it already) or not
    /// (`false`: missing where the recipe appends it by hand).
    EosByHand(bool),
    /// Texts in batches of this size, in input order, padded on the right with the model's pad id, and the last
    /// token read at the batch's last position: a pad for every text shorter than its batch's longest (the
    /// model-card recipe's `last_hidden_state[:, -1]`, which assumes left padding).
    LastPositionOfRightPadded(usize),
}

/// Each text's value (an error where the encoder gave none) with the ids it was computed from.
fn outputs(values: Vec<Option<Vector>>, ids: Vec<Vec<u32>>) -> Vec<Output> {
    values.into_iter().zip(ids).map(|(v, ids)| Output { value: v.ok_or_else(|| "no output".to_string()), token_ids: Some(ids) }).collect()
}

/// A temporary directory removed when dropped (tempfile's).
pub type TempDir = tempfile::TempDir;

/// A fresh directory under the system's temporary directory, named after `tag`.
pub fn temp_dir(tag: &str) -> Result<TempDir> {
    tempfile::Builder::new().prefix(&format!("embcheck-selftest-{tag}-")).tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&src, e))?;
        }
    }
    Ok(())
}

/// SplitMix64: a fixed, dependency-free stream of uniform numbers, so the noise is the same on every run.
struct SplitMix(u64);

impl SplitMix {
    fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 53 random bits → [0, 1) → [−1, 1).
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// Rewrites every f32 tensor of a safetensors file through `f` (tensors in name order), keeping the others.
fn rewrite_weights(path: &Path, mut f: impl FnMut(f32) -> f32) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::input(path, format!("not a safetensors file: {e}")))?;
    let mut names: Vec<String> = st.names().into_iter().map(|n| n.to_string()).collect();
    names.sort();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for name in names {
        let view = st.tensor(&name).map_err(|e| Error::input(path, format!("tensor {name}: {e}")))?;
        let data = if view.dtype() == safetensors::Dtype::F32 {
            view.data().chunks_exact(4).flat_map(|c| f(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes()).collect()
        } else {
            view.data().to_vec()
        };
        owned.push((name, view.dtype(), view.shape().to_vec(), data));
    }
    let views = owned
        .iter()
        .map(|(n, d, s, b)| safetensors::tensor::TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::input(path, format!("rewriting the weights: {e}")))?;
    safetensors::serialize_to_file(views, None, path).map_err(|e| Error::input(path, format!("writing the weights: {e}")))
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>) -> Result<()>) -> Result<()> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::input(&path, format!("invalid JSON: {e}")))?;
    let obj = v.as_object_mut().ok_or_else(|| Error::input(&path, "expected a JSON object"))?;
    edit(obj)?;
    std::fs::write(&path, v.to_string()).map_err(|e| Error::io(&path, e))
}

/// Loads the model in `source` (a bundled model directory) with `change` applied to a copy in `tmp`, in `dtype`,
/// as `stack` loads it (the stack the suite's reference was made with).
pub fn load_mutated(source: &Path, change: &FileChange, dtype: DType, tmp: &TempDir, models_root: &Path, stack: Stack) -> Result<Model> {
    if *change == FileChange::None {
        return Model::from_files_for(ModelFiles::from_dir(&source.display().to_string(), source)?, dtype, stack);
    }
    let dir = tmp.path().join("model");
    copy_dir(source, &dir)?;
    let weights = dir.join("model.safetensors");
    match change {
        FileChange::None => {}
        FileChange::Round { f16: true } => rewrite_weights(&weights, |x| half::f16::from_f32(x).to_f32())?,
        FileChange::Round { f16: false } => rewrite_weights(&weights, |x| half::bf16::from_f32(x).to_f32())?,
        FileChange::Noise(eps) => {
            let mut rng = SplitMix(0x5EED);
            rewrite_weights(&weights, |x| (f64::from(x) * (1.0 + eps * rng.next_unit())) as f32)?;
        }
        FileChange::DropLayer => edit_config(&dir, |c| {
            let n = c.get("num_hidden_layers").and_then(|n| n.as_u64()).filter(|&n| n > 1);
            let n = n.ok_or_else(|| Error::input(source.join("config.json"), "expected num_hidden_layers above 1"))?;
            c.insert("num_hidden_layers".into(), (n - 1).into());
            Ok(())
        })?,
        FileChange::Causal => edit_config(&dir, |c| {
            c.insert("use_bidirectional_attention".into(), false.into());
            Ok(())
        })?,
        FileChange::PadId(id) => edit_config(&dir, |c| {
            c.insert("pad_token_id".into(), (*id).into());
            Ok(())
        })?,
        FileChange::Tokenizer(other) => {
            let from = models_root.join(other);
            for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
                let _ = std::fs::remove_file(dir.join(f));
                if from.join(f).is_file() {
                    std::fs::copy(from.join(f), dir.join(f)).map_err(|e| Error::io(from.join(f), e))?;
                }
            }
        }
    }
    let mut model = Model::from_files_for(ModelFiles::from_dir(&dir.display().to_string(), &dir)?, dtype, stack)?;
    if let FileChange::PadId(id) = change {
        model.pad_id = *id;
    }
    Ok(model)
}

/// embcheck's own pipeline on a (possibly mutated) model, run with one change, as a system under test.
pub struct MutatedSystem {
    /// The model it runs.
    pub model: Model,
    /// The pipeline, already changed for the preparation and max-length mutations.
    pub pipeline: Pipeline,
    /// How it is run.
    pub run: RunChange,
    /// The `embcheck` binary, for [`RunChange::Threads`].
    pub exe: Option<PathBuf>,
}

impl MutatedSystem {
    /// Builds the system: `pipeline` is the suite's pipeline built on `model`.
    pub fn new(model: Model, mut pipeline: Pipeline, run: RunChange, options: &crate::PipelineOptions, exe: Option<PathBuf>) -> Result<Self> {
        match &run {
            RunChange::Head(kind) => pipeline = Pipeline::build(*kind, &model, options)?,
            RunChange::MaxLength(n) => pipeline.max_length = *n,
            RunChange::Lowercase => {
                use crate::pipeline::Lowercase;
                pipeline.prep.lowercase = if pipeline.prep.lowercase == Lowercase::No { Lowercase::Python } else { Lowercase::No }
            }
            RunChange::Strip => pipeline.prep.strip = !pipeline.prep.strip,
            RunChange::Prefix(p) => pipeline.prep.prefix = format!("{p}{}", pipeline.prep.prefix),
            RunChange::DropPrefix => pipeline.prep.prefix.clear(),
            RunChange::EosByHand(add) => {
                let eos = model.tokenizer.special.eos.ok_or_else(|| Error::Usage("selftest: the model has no eos_token".into()))?;
                pipeline.prep.append = add.then_some(eos);
            }
            _ => {}
        }
        Ok(MutatedSystem { model, pipeline, run, exe })
    }

    fn embed_here(&self, texts: &[String], batch_size: usize) -> Result<Vec<Output>> {
        let ids = self.pipeline.prep.tokenize(&self.model.tokenizer, texts, self.pipeline.max_length)?;
        let mut out: Vec<Option<Vector>> = vec![None; texts.len()];
        for_each_batch(&self.model, &ids, batch_size, |i, tokens, h| {
            out[i] = Some(match self.run {
                RunChange::Pooling(name) => {
                    let pooled = self.pipeline.other_poolings(tokens, h)?.into_iter().find(|(n, _)| n == name);
                    pooled.ok_or_else(|| Error::Usage(format!("selftest: no pooling named {name:?}")))?.1
                }
                _ => self.pipeline.apply(tokens, &ids[i], h)?,
            });
            Ok(())
        })?;
        Ok(outputs(out, ids))
    }

    /// One batch, padded by hand with the model's pad id and run with no mask, in the order given.
    fn embed_unmasked(&self, texts: &[String]) -> Result<Vec<Output>> {
        let ids = self.pipeline.prep.tokenize(&self.model.tokenizer, texts, self.pipeline.max_length)?;
        let l = ids.iter().map(Vec::len).max().unwrap_or(0);
        let padded: Vec<Vec<u32>> = ids.iter().map(|s| s.iter().copied().chain(std::iter::repeat(self.model.pad_id)).take(l).collect()).collect();
        let hidden = self.model.hidden_states(&padded)?;
        let h = self.model.config.hidden_size;
        let flat: Vec<f32> = hidden
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(|source| Error::Compute { context: "selftest: hidden states".into(), source })?;
        ids.into_iter()
            .enumerate()
            .map(|(j, ids)| {
                let v = self.pipeline.apply(&flat[j * l * h..(j * l + ids.len()) * h], &ids, h)?;
                Ok(Output { value: Ok(v), token_ids: Some(ids) })
            })
            .collect()
    }

    /// Batches of `size` in input order, each text's last row replaced by the row at its batch's last position.
    fn embed_last_position(&self, texts: &[String], size: usize) -> Result<Vec<Output>> {
        let ids = self.pipeline.prep.tokenize(&self.model.tokenizer, texts, self.pipeline.max_length)?;
        let size = size.max(1);
        let longest: Vec<usize> = ids.chunks(size).flat_map(|batch| {
            let l = batch.iter().map(Vec::len).max().unwrap_or(0);
            std::iter::repeat_n(l, batch.len())
        }).collect();
        let mut out: Vec<Option<Vector>> = vec![None; texts.len()];
        for_each_batch(&self.model, &ids, texts.len(), |i, rows, h| {
            let (text, l) = (&ids[i], longest[i]);
            let mut rows = rows.to_vec();
            if !text.is_empty() && text.len() < l {
                let row = self.model.encoder.padded_rows(text, &[(self.model.pad_id, l - 1)])?;
                let row: Vec<f32> = row
                    .ok_or_else(|| Error::Usage("selftest: the family's padded positions are not computed".into()))?
                    .flatten_all()
                    .and_then(|t| t.to_vec1())
                    .map_err(|source| Error::Compute { context: "selftest: padded row".into(), source })?;
                rows[(text.len() - 1) * h..].copy_from_slice(&row);
            }
            out[i] = Some(self.pipeline.apply(&rows, text, h)?);
            Ok(())
        })?;
        Ok(outputs(out, ids))
    }

    fn embed_in_child(&self, texts: &[String], threads: usize) -> Result<Vec<Output>> {
        let exe = self.exe.as_ref().ok_or_else(|| Error::Usage("selftest: the thread-count check needs the embcheck binary".into()))?;
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let cmd = format!(
            "RAYON_NUM_THREADS={threads} exec {} embed --model {} --pipeline {} --max-length {} --input - --output -",
            quote(&exe.display().to_string()),
            quote(&self.model.files.dir.display().to_string()),
            self.pipeline.kind,
            self.pipeline.max_length
        );
        let items: Vec<TextItem> = texts.iter().enumerate().map(|(i, t)| TextItem { id: format!("t{i}"), text: t.clone() }).collect();
        // The child computes the whole batch before its first answer: a generous wait, still bounded.
        Ok(command::run(&cmd, self.pipeline.kind, &items, std::time::Duration::from_secs(600), None)?.outputs)
    }
}

impl Embedder for MutatedSystem {
    fn embed(&mut self, texts: &[String]) -> Result<Vec<Output>> {
        match self.run {
            RunChange::BatchSize(n) => self.embed_here(texts, n),
            RunChange::Reversed => {
                let reversed: Vec<String> = texts.iter().rev().cloned().collect();
                let mut out = self.embed_here(&reversed, texts.len())?;
                out.reverse();
                Ok(out)
            }
            RunChange::Threads(n) => self.embed_in_child(texts, n),
            RunChange::PadsAttended => self.embed_unmasked(texts),
            RunChange::LastPositionOfRightPadded(n) => self.embed_last_position(texts, n),
            _ => self.embed_here(texts, texts.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models").join(name)
    }

    #[test]
    fn mutated_copies_change_only_what_they_say() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models");
        let src = bundled("tiny-bert-mean");
        let orig = Model::from_files(ModelFiles::from_dir("orig", &src).unwrap(), DType::F32).unwrap();
        let tmp = temp_dir("unit").unwrap();
        let m = load_mutated(&src, &FileChange::DropLayer, DType::F32, &tmp, &root, Stack::default()).unwrap();
        assert_eq!(m.config.num_hidden_layers + 1, orig.config.num_hidden_layers);
        let tmp = temp_dir("unit").unwrap();
        let m = load_mutated(&src, &FileChange::PadId(7), DType::F32, &tmp, &root, Stack::default()).unwrap();
        assert_eq!((m.pad_id, m.config.pad_token_id), (7, 7));
        // Rounded weights are f16 values; the bundled file is left as it was.
        let tmp = temp_dir("unit").unwrap();
        load_mutated(&src, &FileChange::Round { f16: true }, DType::F32, &tmp, &root, Stack::default()).unwrap();
        let bytes = std::fs::read(tmp.path().join("model/model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let w = st.tensor("embeddings.word_embeddings.weight").unwrap();
        let vals: Vec<f32> = w.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert!(vals.iter().all(|&x| half::f16::from_f32(x).to_f32() == x));
        let orig_bytes = std::fs::read(src.join("model.safetensors")).unwrap();
        let ost = safetensors::SafeTensors::deserialize(&orig_bytes).unwrap();
        assert_ne!(ost.tensor("embeddings.word_embeddings.weight").unwrap().data(), w.data());
        let dir = tmp.path().to_path_buf();
        drop(tmp);
        assert!(!dir.exists(), "the temporary copy is removed");
    }

    #[test]
    fn noise_is_uniform_in_the_unit_interval_and_repeatable() {
        let draw = || {
            let mut r = SplitMix(0x5EED);
            (0..10_000).map(|_| r.next_unit()).collect::<Vec<_>>()
        };
        let a = draw();
        assert_eq!(a, draw());
        assert!(a.iter().all(|&u| (-1.0..1.0).contains(&u)));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!(a.iter().any(|&u| u < -0.9) && a.iter().any(|&u| u > 0.9));
    }
}
