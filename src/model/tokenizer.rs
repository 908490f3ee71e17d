//! `tokenizer.json` set up the way the Python libraries call it.
//!
//! `Tokenizer::from_file` installs the truncation and padding blocks baked into tokenizer.json, which Python
//! transformers resets on every call (all-MiniLM-L6-v2 ships truncation 128 and `Fixed(128)` padding while
//! its max_seq_length is 256). We clear both and truncate to the pipeline's max length; padding is done by
//! the encoder with the model's own pad id.

use std::path::Path;
use std::sync::Mutex;

use tokenizers::normalizers::{BertNormalizer, NormalizerWrapper};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{read_json, Error, Result};

/// The special tokens FlagEmbedding drops from sparse weights, and the pad id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecialIds {
    /// `cls_token` (BERT `[CLS]`, XLM-R `<s>`).
    pub cls: Option<u32>,
    /// `eos_token` (XLM-R `</s>`; BERT has none).
    pub eos: Option<u32>,
    /// `pad_token`.
    pub pad: Option<u32>,
    /// `unk_token`.
    pub unk: Option<u32>,
}

impl SpecialIds {
    /// The ids present, for filtering.
    pub fn all(&self) -> Vec<u32> {
        [self.cls, self.eos, self.pad, self.unk].into_iter().flatten().collect()
    }
}

/// A tokenizer with truncation cleared of what tokenizer.json baked in.
pub struct TextTokenizer {
    /// Behind a lock because truncation is set per call (to the caller's max length), not copied per call:
    /// a clone would copy the whole vocabulary.
    inner: Mutex<Tokenizer>,
    /// The special token ids read from special_tokens_map.json / tokenizer_config.json.
    pub special: SpecialIds,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` and the special tokens named beside it. `bert_style`: transformers would load
    /// it as a BERT-style fast tokenizer, which rewrites the normalizer from tokenizer_config.json.
    pub fn load(path: &Path, family_defaults: &[(&str, &str)], bert_style: bool) -> Result<Self> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| Error::input(path, format!("cannot load tokenizer: {e}")))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::input(path, format!("cannot reset truncation: {e}")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if bert_style {
            apply_bert_kwargs(&mut inner, &dir.join("tokenizer_config.json"))?;
        }
        let named = special_token_names(dir)?;
        let lookup = |key: &str| -> Option<u32> {
            let name = named
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .or_else(|| family_defaults.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))?;
            inner.token_to_id(name)
        };
        let special = SpecialIds { cls: lookup("cls_token"), eos: lookup("eos_token"), pad: lookup("pad_token"), unk: lookup("unk_token") };
        Ok(TextTokenizer { inner: Mutex::new(inner), special })
    }

    /// Token ids of each text, special tokens added, truncated (longest-first, from the right) to
    /// `max_length` tokens counting the special tokens: `tokenizer(texts, truncation=True, max_length=N)`.
    pub fn encode_all(&self, texts: &[String], max_length: usize) -> Result<Vec<Vec<u32>>> {
        let mut tk = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tk.with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map_err(|e| Error::Usage(format!("cannot truncate to {max_length} tokens: {e}")))?;
        // encode_batch spreads the texts over the cores (rayon), on candle's pool like the encoder.
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        match candle_core::Device::Cpu.with_context(|| tk.encode_batch(inputs, true)) {
            Ok(encodings) => Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect()),
            // One at a time, to name the text that fails.
            Err(batch_error) => {
                for t in texts {
                    tk.encode(t.as_str(), true).map_err(|e| Error::Usage(format!("cannot tokenize {t:?}: {e}")))?;
                }
                Err(Error::Usage(format!("cannot tokenize: {batch_error}")))
            }
        }
    }

    /// Whether `id` is a special added token (`[CLS]`, `</s>`, `<mask>`, ...), as `all_special_ids` says.
    pub fn is_special(&self, id: u32) -> bool {
        let tk = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tk.get_added_tokens_decoder().get(&id).is_some_and(|t| t.special)
    }
}

/// `BertTokenizerFast.__init__` replaces the BertNormalizer's `lowercase`, `strip_accents` and
/// `handle_chinese_chars` by its own arguments, read from tokenizer_config.json with the defaults
/// `do_lower_case=True`, `strip_accents=None`, `tokenize_chinese_chars=True`: a cased tokenizer.json whose
/// config omits `do_lower_case` is lowercased by every Python library.
fn apply_bert_kwargs(tk: &mut Tokenizer, config: &Path) -> Result<()> {
    let Some(NormalizerWrapper::BertNormalizer(current)) = tk.get_normalizer() else { return Ok(()) };
    let v: serde_json::Value = if config.is_file() { read_json(config)? } else { serde_json::Value::Null };
    let flag = |key: &str, default: bool| v.get(key).and_then(|x| x.as_bool()).unwrap_or(default);
    let wanted = BertNormalizer::new(
        current.clean_text,
        flag("tokenize_chinese_chars", true),
        v.get("strip_accents").and_then(|x| x.as_bool()),
        flag("do_lower_case", true),
    );
    tk.with_normalizer(Some(wanted)).map_err(|e| Error::input(config, format!("cannot set the normalizer: {e}")))?;
    Ok(())
}

/// `(key, token)` pairs from special_tokens_map.json, then tokenizer_config.json. Values may be strings or
/// AddedToken objects (`{"content": ...}`).
fn special_token_names(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for file in ["special_tokens_map.json", "tokenizer_config.json"] {
        let p = dir.join(file);
        if !p.is_file() {
            continue;
        }
        let v: serde_json::Value = read_json(&p)?;
        for key in ["cls_token", "eos_token", "pad_token", "unk_token"] {
            let tok = match v.get(key) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Object(o)) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
                _ => None,
            };
            if let Some(t) = tok {
                if !out.iter().any(|(k, _)| k == key) {
                    out.push((key.to_string(), t));
                }
            }
        }
    }
    Ok(out)
}
