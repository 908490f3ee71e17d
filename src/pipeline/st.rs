//! The sentence-transformers module chain, read from the model's own files.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::pooling::PoolingConfig;
use crate::error::{read_json, ComputeContext, Error, Result};
use crate::model::{encoder::Dense, ModelFiles};

/// One module after the Transformer, in `modules.json` order.
#[derive(Debug, Clone)]
pub enum StModule {
    /// `Pooling`.
    Pooling(PoolingConfig),
    /// `Dense`: a linear layer and an activation on the pooled vector.
    Dense(DenseModule),
    /// `Normalize`: unit L2 norm.
    Normalize,
}

/// A post-pooling `Dense` module.
#[derive(Debug, Clone)]
pub struct DenseModule {
    layer: Dense,
    tanh: bool,
}

impl DenseModule {
    /// Applies the layer and activation to one vector.
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>> {
        let run = || -> candle_core::Result<Vec<f32>> {
            let t = Tensor::from_slice(x, (1, x.len()), &Device::Cpu)?;
            let y = self.layer.forward(&t)?;
            let y = if self.tanh { y.tanh()? } else { y };
            y.squeeze(0)?.to_vec1::<f32>()
        };
        run().context(|| "sentence-transformers Dense module".to_string())
    }
}

/// What sentence-transformers reads besides the Transformer's own files.
#[derive(Debug, Clone)]
pub struct StConfig {
    /// The modules after the Transformer.
    pub modules: Vec<StModule>,
    /// `sentence_bert_config.json`'s `max_seq_length`.
    pub max_seq_length: Option<usize>,
    /// `sentence_bert_config.json`'s `do_lower_case`.
    pub do_lower_case: bool,
    /// `config_sentence_transformers.json`'s `prompts`.
    pub prompts: BTreeMap<String, String>,
    /// `config_sentence_transformers.json`'s `default_prompt_name`.
    pub default_prompt_name: Option<String>,
}

#[derive(Deserialize)]
struct ModuleEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, Default)]
struct SbertConfig {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

#[derive(Deserialize, Default)]
struct StModelConfig {
    #[serde(default)]
    prompts: BTreeMap<String, String>,
    default_prompt_name: Option<String>,
}

#[derive(Deserialize)]
struct DenseConfig {
    in_features: usize,
    out_features: usize,
    #[serde(default = "yes")]
    bias: bool,
    #[serde(default)]
    activation_function: Option<String>,
}

fn yes() -> bool {
    true
}

impl StConfig {
    /// Reads `modules.json` and the files it names. Without `modules.json` the library builds
    /// Transformer + mean pooling, no Normalize; so does this.
    pub fn load(files: &ModelFiles) -> Result<Self> {
        let sbert: SbertConfig = match files.optional("sentence_bert_config.json") {
            Some(p) => read_json(&p)?,
            None => SbertConfig::default(),
        };
        let st_model: StModelConfig = match files.optional("config_sentence_transformers.json") {
            Some(p) => read_json(&p)?,
            None => StModelConfig::default(),
        };
        let modules = match files.optional("modules.json") {
            None => vec![StModule::Pooling(PoolingConfig::default())],
            Some(p) => load_modules(&p, &files.dir)?,
        };
        Ok(StConfig {
            modules,
            max_seq_length: sbert.max_seq_length,
            do_lower_case: sbert.do_lower_case,
            prompts: st_model.prompts,
            default_prompt_name: st_model.default_prompt_name,
        })
    }
}

fn load_modules(path: &Path, dir: &Path) -> Result<Vec<StModule>> {
    let entries: Vec<ModuleEntry> = read_json(path)?;
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let kind = e.kind.rsplit('.').next().unwrap_or(&e.kind);
        match kind {
            "Transformer" if i == 0 => {
                if !e.path.is_empty() && !dir.join(&e.path).join("config.json").is_file() {
                    // The Transformer reads the model root; a sub-folder model is not what we loaded.
                    return Err(Error::input(path, format!("Transformer module at path {:?} is not supported (expected \"\")", e.path)));
                }
            }
            "Pooling" => {
                let cfg_path = dir.join(&e.path).join("config.json");
                let v: serde_json::Value = read_json(&cfg_path)?;
                let cfg = PoolingConfig::from_json(&v).map_err(|m| Error::input(&cfg_path, m))?;
                if cfg.modes().is_empty() {
                    return Err(Error::input(&cfg_path, "no pooling mode is switched on"));
                }
                out.push(StModule::Pooling(cfg));
            }
            "Normalize" => out.push(StModule::Normalize),
            "Dense" => out.push(StModule::Dense(load_dense(&dir.join(&e.path))?)),
            _ => {
                return Err(Error::input(
                    path,
                    format!("module {} ({}) is not supported (expected Transformer, Pooling, Dense, Normalize)", i, e.kind),
                ))
            }
        }
    }
    if !out.iter().any(|m| matches!(m, StModule::Pooling(_))) {
        return Err(Error::input(path, "the module chain has no Pooling module"));
    }
    Ok(out)
}

fn load_dense(dir: &Path) -> Result<DenseModule> {
    let cfg_path = dir.join("config.json");
    let cfg: DenseConfig = read_json(&cfg_path)?;
    let act = cfg.activation_function.as_deref().unwrap_or("torch.nn.modules.activation.Tanh");
    let tanh = match act.rsplit('.').next().unwrap_or(act) {
        "Tanh" => true,
        "Identity" => false,
        other => return Err(Error::input(&cfg_path, format!("activation {other} is not supported (expected Tanh or Identity)"))),
    };
    let tensors: Vec<(String, Tensor)> = if dir.join("model.safetensors").is_file() {
        let p = dir.join("model.safetensors");
        candle_core::safetensors::load(&p, &Device::Cpu)
            .map_err(|e| Error::input(&p, format!("cannot read: {e}")))?
            .into_iter()
            .collect()
    } else {
        let p = dir.join("pytorch_model.bin");
        crate::model::read_pth(&dir.display().to_string(), &p)?
    };
    let get = |name: &str| -> Result<Option<Tensor>> {
        tensors
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, t)| t.to_dtype(DType::F32).context(|| format!("{}: tensor {name}", dir.display())))
            .transpose()
    };
    let weight = get("linear.weight")?.ok_or_else(|| Error::input(dir, "Dense module has no tensor linear.weight"))?;
    if weight.dims() != [cfg.out_features, cfg.in_features] {
        return Err(Error::input(
            dir,
            format!("linear.weight has shape {:?}, expected [{}, {}]", weight.dims(), cfg.out_features, cfg.in_features),
        ));
    }
    let bias = if cfg.bias {
        // config.json says the layer has a bias: loading without it would give other vectors, silently.
        let b = get("linear.bias")?.ok_or_else(|| Error::input(dir, "Dense module has bias: true but no tensor linear.bias"))?;
        if b.dims() != [cfg.out_features] {
            return Err(Error::input(dir, format!("linear.bias has shape {:?}, expected [{}]", b.dims(), cfg.out_features)));
        }
        Some(b)
    } else {
        None
    };
    Ok(DenseModule { layer: Dense::new(weight, bias), tanh })
}
