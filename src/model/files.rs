//! Where a model's files are: a local directory, or a hub id resolved through hf-hub's cache.
//!
//! Everything downstream sees only [`ModelFiles`], so nothing else knows where the files came from.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The weights of the encoder, in the order they are tried.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightFiles {
    /// `model.safetensors`, or every shard named in `model.safetensors.index.json`.
    Safetensors(Vec<PathBuf>),
    /// A zip-format `torch.save` file (`pytorch_model.bin`).
    Pytorch(PathBuf),
}

/// The files of one model, found on disk.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// How the user named the model (directory or `hub/id@rev`); used in messages.
    pub name: String,
    /// The directory holding the files (a hub snapshot directory for hub ids).
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// The encoder weights.
    pub weights: WeightFiles,
}

impl ModelFiles {
    /// An optional file of the model, if present (`modules.json`, `1_Pooling/config.json`, ...).
    pub fn optional(&self, relative: &str) -> Option<PathBuf> {
        let p = self.dir.join(relative);
        p.is_file().then_some(p)
    }

    /// Finds the files of a model named by a local directory or a hub id (`org/name[@revision]`).
    ///
    /// A path that exists is a directory; otherwise a name of the form `org/name` is a hub id.
    pub fn resolve(model: &str) -> Result<Self> {
        let path = Path::new(model);
        if path.is_dir() {
            return Self::from_dir(model, path);
        }
        match HubId::parse(model) {
            Some(id) if !path.exists() && !model.starts_with('.') && !model.starts_with('/') => {
                let dir = id.snapshot_dir()?;
                Self::from_dir(model, &dir)
            }
            _ => Err(Error::model(model, "no such directory (and not a hub id of the form org/name[@revision])")),
        }
    }

    /// The files of a model in a local directory in Hugging Face layout.
    pub fn from_dir(name: &str, dir: &Path) -> Result<Self> {
        let need = |file: &str| {
            let p = dir.join(file);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::model(name, format!("{} is missing", p.display())))
            }
        };
        let config = need("config.json")?;
        let tokenizer = need("tokenizer.json")?;
        let weights = find_weights(name, dir)?;
        Ok(ModelFiles { name: name.to_string(), dir: dir.to_path_buf(), config, tokenizer, weights })
    }
}

fn find_weights(name: &str, dir: &Path) -> Result<WeightFiles> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(WeightFiles::Safetensors(vec![single]));
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: std::collections::BTreeMap<String, String>,
        }
        let idx: Index = crate::error::read_json(&index)?;
        let mut shards: Vec<String> = idx.weight_map.into_values().collect();
        shards.sort();
        shards.dedup();
        let mut paths = Vec::new();
        for s in shards {
            let p = dir.join(&s);
            if !p.is_file() {
                return Err(Error::input(&index, format!("names shard {s}, which is missing")));
            }
            paths.push(p);
        }
        return Ok(WeightFiles::Safetensors(paths));
    }
    let bin = dir.join("pytorch_model.bin");
    if bin.is_file() {
        return Ok(WeightFiles::Pytorch(bin));
    }
    Err(Error::model(
        name,
        format!(
            "no weights in {}: expected model.safetensors, model.safetensors.index.json or pytorch_model.bin",
            dir.display()
        ),
    ))
}

/// A model on the Hugging Face hub: `org/name` with an optional `@revision` (branch, tag or commit).
#[derive(Debug, Clone, PartialEq)]
pub struct HubId {
    /// `org/name`.
    pub repo: String,
    /// Branch, tag or commit; `main` when not given.
    pub revision: String,
}

/// The files a model may need, fetched when the hub is online. Missing optional ones are fine.
const HUB_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    "sparse_linear.pt",
    "colbert_linear.pt",
];

impl HubId {
    /// Parses `org/name[@revision]`; `None` if it does not have that form.
    pub fn parse(s: &str) -> Option<Self> {
        let (repo, revision) = match s.split_once('@') {
            Some((r, rev)) if !rev.is_empty() => (r, rev.to_string()),
            Some(_) => return None,
            None => (s, "main".to_string()),
        };
        let mut parts = repo.split('/');
        let ok = matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty());
        ok.then(|| HubId { repo: repo.to_string(), revision })
    }

    fn display(&self) -> String {
        format!("{}@{}", self.repo, self.revision)
    }

    /// The hub cache, as the Python libraries find it: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`.
    pub fn cache() -> hf_hub::Cache {
        match std::env::var_os("HF_HUB_CACHE").or_else(|| std::env::var_os("HUGGINGFACE_HUB_CACHE")) {
            Some(p) => hf_hub::Cache::new(PathBuf::from(p)),
            None => hf_hub::Cache::from_env(),
        }
    }

    /// Whether `HF_HUB_OFFLINE` forbids network access (any of 1/true/yes/on).
    pub fn offline() -> bool {
        std::env::var("HF_HUB_OFFLINE")
            .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false)
    }

    /// The snapshot directory of this revision in the cache, downloading the model's files first
    /// unless `HF_HUB_OFFLINE` is set.
    pub fn snapshot_dir(&self) -> Result<PathBuf> {
        let cache = Self::cache();
        if let Some(dir) = self.cached_snapshot(&cache) {
            if dir.join("config.json").is_file() || Self::offline() {
                return Ok(dir);
            }
        }
        if Self::offline() {
            return Err(Error::model(
                self.display(),
                format!("not in the hub cache {} and HF_HUB_OFFLINE is set", cache.path().display()),
            ));
        }
        self.download(cache)
    }

    /// The snapshot directory if the cache knows this revision (a ref file, or a commit's folder).
    fn cached_snapshot(&self, cache: &hf_hub::Cache) -> Option<PathBuf> {
        let repo = hf_hub::Repo::with_revision(self.repo.clone(), hf_hub::RepoType::Model, self.revision.clone());
        if let Some(config) = cache.repo(repo.clone()).get("config.json") {
            return config.parent().map(Path::to_path_buf);
        }
        // A commit hash has no ref file: its snapshot folder is named after it.
        let dir = cache.path().join(repo.folder_name()).join("snapshots").join(&self.revision);
        dir.is_dir().then_some(dir)
    }

    fn download(&self, cache: hf_hub::Cache) -> Result<PathBuf> {
        let err = |e: hf_hub::api::sync::ApiError| Error::model(self.display(), format!("download failed: {e}"));
        let api = hf_hub::api::sync::ApiBuilder::from_cache(cache).build().map_err(err)?;
        let repo = api.repo(hf_hub::Repo::with_revision(
            self.repo.clone(),
            hf_hub::RepoType::Model,
            self.revision.clone(),
        ));
        let info = repo.info().map_err(err)?;
        let listed: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
        let has = |f: &str| listed.iter().any(|l| l == f);
        let mut wanted: Vec<String> = HUB_FILES.iter().filter(|f| has(f)).map(|f| f.to_string()).collect();
        if has("model.safetensors") {
            wanted.push("model.safetensors".into());
        } else if has("model.safetensors.index.json") {
            wanted.push("model.safetensors.index.json".into());
            wanted.extend(listed.iter().filter(|f| f.starts_with("model-") && f.ends_with(".safetensors")).cloned());
        } else if has("pytorch_model.bin") {
            wanted.push("pytorch_model.bin".into());
        }
        // Post-pooling Dense modules live in folders named by modules.json, e.g. 2_Dense/.
        wanted.extend(listed.iter().filter(|f| f.contains("_Dense/")).cloned());
        let mut config = None;
        for f in &wanted {
            let p = repo.get(f).map_err(err)?;
            if f == "config.json" {
                config = Some(p);
            }
        }
        config
            .and_then(|c| c.parent().map(Path::to_path_buf))
            .ok_or_else(|| Error::model(self.display(), "the repository has no config.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_ids() {
        assert_eq!(
            HubId::parse("BAAI/bge-m3@abc"),
            Some(HubId { repo: "BAAI/bge-m3".into(), revision: "abc".into() })
        );
        assert_eq!(HubId::parse("BAAI/bge-m3").unwrap().revision, "main");
        assert_eq!(HubId::parse("bge-m3"), None);
        assert_eq!(HubId::parse("a/b/c"), None);
        assert_eq!(HubId::parse("a/b@"), None);
    }
}
