//! `tokenizer.json` set up the way the Python libraries call it.
//!
//! `Tokenizer::from_file` installs the truncation and padding blocks baked into tokenizer.json, which Python
//! transformers resets on every call (all-MiniLM-L6-v2 ships truncation 128 and `Fixed(128)` padding while
//! its max_seq_length is 256). We clear both and truncate to the pipeline's max length; padding is done by
//! the encoder with the model's own pad id.

use std::path::Path;
use std::sync::Mutex;

use tokenizers::normalizers::{BertNormalizer, Lowercase, NormalizerWrapper, Sequence};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{read_json, Error, Result};
use crate::model::stack::Stack;

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
    /// The same tokenizer with a `Lowercase` normalizer in front of its own, as sentence-transformers 5.4+
    /// sets it up for `do_lower_case`; built on first use.
    lowercased: Mutex<Option<Tokenizer>>,
    /// `tokenizer.json`, for messages.
    path: std::path::PathBuf,
    /// The special token ids read from special_tokens_map.json / tokenizer_config.json.
    pub special: SpecialIds,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` and the special tokens named beside it. `bert_style`: transformers would load
    /// it as a BERT-style fast tokenizer, which rewrites the normalizer from tokenizer_config.json (which of its
    /// options, per [`BertKwargs`]).
    /// With `stack` transformers 5, the tokenizer is rebuilt from the vocabulary the way that version's
    /// tokenizer class does (see [`rebuild_for_transformers5`]) and `bert_style` is not used.
    pub fn load(path: &Path, family_defaults: &[(&str, &str)], bert_style: Option<BertKwargs>, stack: &Stack) -> Result<Self> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut inner = if stack.rebuilds_tokenizers() {
            rebuild_for_transformers5(path)?
        } else {
            Tokenizer::from_file(path).map_err(|e| Error::input(path, format!("cannot load tokenizer: {e}")))?
        };
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::input(path, format!("cannot reset truncation: {e}")))?;
        if let (Some(style), false) = (bert_style, stack.rebuilds_tokenizers()) {
            apply_bert_kwargs(&mut inner, &dir.join("tokenizer_config.json"), style)?;
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
        Ok(TextTokenizer { inner: Mutex::new(inner), lowercased: Mutex::new(None), path: path.to_path_buf(), special })
    }

    /// Token ids of each text, special tokens added, truncated (longest-first, from the right) to
    /// `max_length` tokens counting the special tokens: `tokenizer(texts, truncation=True, max_length=N)`.
    pub fn encode_all(&self, texts: &[String], max_length: usize) -> Result<Vec<Vec<u32>>> {
        let mut tk = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        encode_truncated(&mut tk, texts, max_length, &self.path)
    }

    /// [`encode_all`](Self::encode_all) with a `Lowercase` normalizer put in front of the tokenizer's own, as
    /// sentence-transformers 5.4+ does for `do_lower_case`: the text is lowercased character by character
    /// after the special tokens are split off, so a literal `[CLS]` in a text stays the special token.
    pub fn encode_all_lowercased(&self, texts: &[String], max_length: usize) -> Result<Vec<Vec<u32>>> {
        let mut slot = self.lowercased.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            let mut tk = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
            let mut chain: Vec<NormalizerWrapper> = vec![Lowercase.into()];
            chain.extend(tk.get_normalizer().cloned());
            tk.with_normalizer(Some(Sequence::new(chain)))
                .map_err(|e| Error::Usage(format!("cannot add a Lowercase normalizer: {e}")))?;
            *slot = Some(tk);
        }
        encode_truncated(slot.as_mut().expect("built above"), texts, max_length, &self.path)
    }

    /// One text's tokens in detail (id, piece, character offsets into `text`, special or not), special tokens
    /// added and truncated to `max_length` as [`encode_all`](Self::encode_all) does; `lowercased` as
    /// [`encode_all_lowercased`](Self::encode_all_lowercased). For `embcheck inspect`.
    pub fn encode_detailed(&self, text: &str, max_length: usize, lowercased: bool) -> Result<Vec<TokenInfo>> {
        if lowercased {
            // Builds the lowercasing tokenizer on first use.
            self.encode_all_lowercased(&[text.to_string()], max_length)?;
            let mut slot = self.lowercased.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            detailed(slot.as_mut().expect("built above"), text, max_length)
        } else {
            detailed(&mut self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()), text, max_length)
        }
    }

    /// Whether the normalizer is, or contains, a `Lowercase` normalizer (sentence-transformers 5.4+ then adds
    /// none for `do_lower_case`).
    pub fn has_lowercase_normalizer(&self) -> bool {
        let tk = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Read through the serialized form: the crate keeps a Sequence's members private.
        let Some(v) = tk.get_normalizer().and_then(|n| serde_json::to_value(n).ok()) else { return false };
        let is_lowercase = |n: &serde_json::Value| n.get("type").and_then(|t| t.as_str()) == Some("Lowercase");
        is_lowercase(&v) || v.get("normalizers").and_then(|l| l.as_array()).is_some_and(|l| l.iter().any(is_lowercase))
    }

    /// The normalizer in force, in words (`BertNormalizer(lowercase, strip_accents: none, chinese chars)`,
    /// `Sequence(Precompiled, Replace)`, `none`): after transformers 4's BERT-style rewrite or transformers 5's
    /// rebuild, whichever this tokenizer went through.
    pub fn describe_normalizer(&self) -> String {
        let tk = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match tk.get_normalizer().and_then(|n| serde_json::to_value(n).ok()) {
            None => "none".into(),
            Some(v) => describe_normalizer_json(&v),
        }
    }

    /// Whether `id` is a special added token (`[CLS]`, `</s>`, `<mask>`, ...), as `all_special_ids` says.
    pub fn is_special(&self, id: u32) -> bool {
        let tk = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tk.get_added_tokens_decoder().get(&id).is_some_and(|t| t.special)
    }
}

/// Truncation to `max_length` tokens, longest-first, from the right: `truncation=True, max_length=N`.
fn set_truncation(tk: &mut Tokenizer, max_length: usize) -> Result<()> {
    tk.with_truncation(Some(TruncationParams {
        direction: TruncationDirection::Right,
        max_length,
        strategy: TruncationStrategy::LongestFirst,
        stride: 0,
    }))
    .map_err(|e| Error::Usage(format!("cannot truncate to {max_length} tokens: {e}")))?;
    Ok(())
}

/// A serialized normalizer in words: its type, with BertNormalizer's switches and a Sequence's members.
fn describe_normalizer_json(v: &serde_json::Value) -> String {
    let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or("?");
    match kind {
        "BertNormalizer" => {
            let on = |k: &str| v.get(k).and_then(|x| x.as_bool());
            let accents = match on("strip_accents") {
                Some(true) => "strip accents",
                Some(false) => "keep accents",
                None => "accents stripped when lowercasing",
            };
            format!(
                "BertNormalizer({}, {accents}, {})",
                if on("lowercase") == Some(true) { "lowercase" } else { "cased" },
                if on("handle_chinese_chars") == Some(false) { "CJK as is" } else { "CJK split" }
            )
        }
        "Sequence" => {
            let parts: Vec<String> = v
                .get("normalizers")
                .and_then(|l| l.as_array())
                .map(|l| l.iter().map(describe_normalizer_json).collect())
                .unwrap_or_default();
            format!("Sequence({})", parts.join(", "))
        }
        other => other.to_string(),
    }
}

/// [`TextTokenizer::encode_detailed`] with `tk`.
fn detailed(tk: &mut Tokenizer, text: &str, max_length: usize) -> Result<Vec<TokenInfo>> {
    set_truncation(tk, max_length)?;
    // Character offsets, as Python's `offset_mapping` gives them (`encode` would give bytes).
    let e = tk.encode_char_offsets(text, true).map_err(|e| Error::Usage(format!("cannot tokenize {text:?}: {e}")))?;
    let added = tk.get_added_tokens_decoder();
    Ok(e.get_ids()
        .iter()
        .zip(e.get_tokens())
        .zip(e.get_offsets())
        .zip(e.get_special_tokens_mask())
        .map(|(((&id, piece), &(start, end)), &mask)| TokenInfo {
            id,
            piece: piece.clone(),
            start,
            end,
            special: mask == 1 || added.get(&id).is_some_and(|t| t.special),
        })
        .collect())
}

/// One token of [`TextTokenizer::encode_detailed`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// The token id.
    pub id: u32,
    /// The vocabulary entry (`▁Hello`, `##ing`, `[CLS]`).
    pub piece: String,
    /// Where it starts in the text handed to the tokenizer (characters).
    pub start: usize,
    /// Where it ends (exclusive).
    pub end: usize,
    /// A special token (`[CLS]`, `</s>`, ...), added by the post-processor or written in the text.
    pub special: bool,
}

/// Sets truncation to `max_length` (longest-first, from the right) and encodes each text with special tokens.
/// `path` names tokenizer.json in errors.
fn encode_truncated(tk: &mut Tokenizer, texts: &[String], max_length: usize, path: &Path) -> Result<Vec<Vec<u32>>> {
    set_truncation(tk, max_length)?;
    // encode_batch spreads the texts over the cores (rayon), on candle's pool like the encoder.
    let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tk = &*tk;
    let encodings = match candle_core::Device::Cpu.with_context(|| tk.encode_batch(inputs, true)) {
        Ok(encodings) => encodings,
        // One at a time, to name the text that fails.
        Err(batch_error) => {
            for t in texts {
                tk.encode(t.as_str(), true).map_err(|e| Error::Usage(format!("cannot tokenize {t:?}: {e}")))?;
            }
            return Err(Error::Usage(format!("cannot tokenize: {batch_error}")));
        }
    };
    texts
        .iter()
        .zip(encodings)
        .map(|(t, e)| {
            let ids = e.get_ids().to_vec();
            // Only a tokenizer that adds no special tokens (`"post_processor": null`) gets here, on an
            // empty or whitespace-only text. transformers would embed padding, with a result that depends
            // on the batch: no answer to compare against.
            if ids.is_empty() {
                return Err(Error::input(
                    path,
                    format!("the text {t:?} tokenizes to no tokens (this tokenizer adds no special tokens), so it has no embedding; expected at least one token per text"),
                ));
            }
            Ok(ids)
        })
        .collect()
}

/// Which BertNormalizer options a transformers 4 fast tokenizer class rewrites from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BertKwargs {
    /// `BertTokenizerFast` and its kin: `lowercase`, `strip_accents` and `handle_chinese_chars`.
    All,
    /// `MPNetTokenizerFast`: `lowercase` and `strip_accents`; `handle_chinese_chars` stays as the file says.
    CaseAndAccents,
}

/// `BertTokenizerFast.__init__` replaces the BertNormalizer's `lowercase`, `strip_accents` and
/// `handle_chinese_chars` by its own arguments, read from tokenizer_config.json with the defaults
/// `do_lower_case=True`, `strip_accents=None`, `tokenize_chinese_chars=True`: a cased tokenizer.json whose
/// config omits `do_lower_case` is lowercased by every Python library. `MPNetTokenizerFast.__init__` does the
/// same for the first two only.
fn apply_bert_kwargs(tk: &mut Tokenizer, config: &Path, style: BertKwargs) -> Result<()> {
    let Some(NormalizerWrapper::BertNormalizer(current)) = tk.get_normalizer() else { return Ok(()) };
    let v: serde_json::Value = if config.is_file() { read_json(config)? } else { serde_json::Value::Null };
    let flag = |key: &str, default: bool| v.get(key).and_then(|x| x.as_bool()).unwrap_or(default);
    let wanted = BertNormalizer::new(
        current.clean_text,
        match style {
            BertKwargs::All => flag("tokenize_chinese_chars", true),
            BertKwargs::CaseAndAccents => current.handle_chinese_chars,
        },
        v.get("strip_accents").and_then(|x| x.as_bool()),
        flag("do_lower_case", true),
    );
    tk.with_normalizer(Some(wanted)).map_err(|e| Error::input(config, format!("cannot set the normalizer: {e}")))?;
    Ok(())
}

/// `(key, token)` pairs from special_tokens_map.json, then tokenizer_config.json. Values may be strings or
/// AddedToken objects (`{"content": ...}`). transformers (4.56 and 5.24, `_from_pretrained`) reads
/// special_tokens_map.json only when tokenizer_config.json has no `added_tokens_decoder` (the legacy layout), so
/// then the map is skipped.
fn special_token_names(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    let config = dir.join("tokenizer_config.json");
    let modern = config.is_file() && read_json::<serde_json::Value>(&config)?.get("added_tokens_decoder").is_some();
    for file in ["special_tokens_map.json", "tokenizer_config.json"] {
        let p = dir.join(file);
        if !p.is_file() || (modern && file == "special_tokens_map.json") {
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

/// The tokenizer classes of transformers 5 that are `BertTokenizer` or inherit its constructor unchanged.
const TF5_BERT_CLASSES: &[&str] = &[
    "BertTokenizer",
    "DistilBertTokenizer",
    "ConvBertTokenizer",
    "ElectraTokenizer",
    "LayoutLMTokenizer",
    "LxmertTokenizer",
    "MobileBertTokenizer",
    "SqueezeBertTokenizer",
];

/// The class `AutoTokenizer` of transformers 5 picks: `tokenizer_class` of tokenizer_config.json without its
/// `Fast` suffix (the hub's class wins over the model type's), else the class registered for config.json's
/// `model_type`.
fn tf5_class(tokenizer_config: &serde_json::Value, model_dir: &Path) -> Result<String> {
    let config = model_dir.join("config.json");
    let v: serde_json::Value = if config.is_file() { read_json(&config)? } else { serde_json::Value::Null };
    let model_type = v.get("model_type").and_then(|m| m.as_str()).unwrap_or("");
    // transformers 5 ignores the hub's class for the model types of MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS
    // that map to a class of their own: qwen2 is always Qwen2Tokenizer (a rebuilt tokenizer), whatever
    // tokenizer_config.json names. (qwen3 is not among them: its hub class is trusted.)
    if model_type == "qwen2" {
        return Ok("Qwen2Tokenizer".to_string());
    }
    if let Some(c) = tokenizer_config.get("tokenizer_class").and_then(|c| c.as_str()) {
        return Ok(c.trim_end_matches("Fast").to_string());
    }
    Ok(match model_type {
        "bert" => "BertTokenizer",
        "xlm-roberta" => "XLMRobertaTokenizer",
        "roberta" => "RobertaTokenizer",
        "camembert" => "CamembertTokenizer",
        "mpnet" => "MPNetTokenizer",
        "distilbert" => "DistilBertTokenizer",
        "qwen3" => "Qwen2Tokenizer",
        // transformers 5 lists modernbert among the models whose hub tokenizer class it replaces by
        // TokenizersBackend (tokenizer.json as it is).
        "modernbert" => "TokenizersBackend",
        other => return Err(Error::input(&config, format!("model_type {other:?}: no transformers 5 tokenizer class known to embcheck"))),
    }
    .to_string())
}

/// Builds the tokenizer transformers 5 builds. Its tokenizer classes with their own constructor do not use
/// `tokenizer.json` as it is: they take the vocabulary (and merges) from it and construct the normalizer,
/// pre-tokenizer, model options and post-processor in code, from tokenizer_config.json's arguments
/// (`convert_to_native_format` + the class's `__init__`, transformers 5.24). The added tokens of
/// tokenizer.json are kept (transformers re-adds them from tokenizer_config.json's `added_tokens_decoder`,
/// which a saved tokenizer writes from the same list). `Qwen2Tokenizer` is built by [`crate::model::qwen2_tokenizer`]. Classes embcheck has not mirrored are refused.
pub fn rebuild_for_transformers5(path: &Path) -> Result<Tokenizer> {
    use serde_json::{json, Value};
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tj: Value = read_json(path)?;
    let config_path = dir.join("tokenizer_config.json");
    let config: Value = if config_path.is_file() { read_json(&config_path)? } else { Value::Null };
    let class = tf5_class(&config, dir)?;
    if class == "Qwen2Tokenizer" {
        return crate::model::qwen2_tokenizer::build(path, &tj, &config);
    }
    for key in ["add_bos_token", "add_eos_token"] {
        if config.get(key).is_some() {
            return Err(Error::input(
                &config_path,
                format!("{key} is set: transformers 5 then rewrites the post-processor, which embcheck does not mirror"),
            ));
        }
    }
    let token = |key: &str, default: &str| -> String {
        match config.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Object(o)) => o.get("content").and_then(|c| c.as_str()).unwrap_or(default).to_string(),
            _ => default.to_string(),
        }
    };
    let flag = |key: &str, default: bool| config.get(key).and_then(|x| x.as_bool()).unwrap_or(default);
    let model_type = tj.pointer("/model/type").and_then(|t| t.as_str()).unwrap_or("").to_string();
    let want = |expected: &str| -> Result<()> {
        if model_type == expected {
            Ok(())
        } else {
            Err(Error::input(path, format!("transformers 5's {class} builds a {expected} model, but the file holds {model_type:?}")))
        }
    };
    // The special-token template needs ids: the vocabulary's, else the added tokens'.
    let id_of = |tj: &Value, tok: &str| -> Result<u64> {
        let from_added = tj.get("added_tokens").and_then(|a| a.as_array()).and_then(|a| {
            a.iter().find(|t| t.get("content").and_then(|c| c.as_str()) == Some(tok)).and_then(|t| t.get("id")).and_then(|i| i.as_u64())
        });
        let from_vocab = match tj.pointer("/model/vocab") {
            Some(Value::Object(m)) => m.get(tok).and_then(|i| i.as_u64()),
            Some(Value::Array(a)) => a.iter().position(|e| e.get(0).and_then(|p| p.as_str()) == Some(tok)).map(|i| i as u64),
            _ => None,
        };
        from_vocab.or(from_added).ok_or_else(|| Error::input(path, format!("special token {tok:?} is not in the vocabulary")))
    };
    let template = |tj: &Value, first: &str, last: &str| -> Result<Value> {
        let (a, b) = (id_of(tj, first)?, id_of(tj, last)?);
        let mut special = serde_json::Map::new();
        special.insert(first.to_string(), json!({"id": first, "ids": [a], "tokens": [first]}));
        special.insert(last.to_string(), json!({"id": last, "ids": [b], "tokens": [last]}));
        Ok(json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": first, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": last, "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": first, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": last, "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": last, "type_id": 1}}],
            "special_tokens": special,
        }))
    };
    match class.as_str() {
        // tokenizer.json as it is.
        "TokenizersBackend" | "PreTrainedTokenizer" => {}
        // BertTokenizer and MPNetTokenizer build the same normalizer, pre-tokenizer and WordPiece model from
        // tokenizer_config.json; only the post-processor differs.
        c if TF5_BERT_CLASSES.contains(&c) || c == "MPNetTokenizer" => {
            want("WordPiece")?;
            tj["normalizer"] = json!({
                "type": "BertNormalizer",
                "clean_text": true,
                "handle_chinese_chars": flag("tokenize_chinese_chars", true),
                "strip_accents": config.get("strip_accents").and_then(|x| x.as_bool()),
                "lowercase": flag("do_lower_case", true),
            });
            tj["pre_tokenizer"] = json!({"type": "BertPreTokenizer"});
            let vocab = tj["model"]["vocab"].take();
            tj["model"] = json!({"type": "WordPiece", "unk_token": token("unk_token", "[UNK]"), "continuing_subword_prefix": "##",
                                 "max_input_chars_per_word": 100, "vocab": vocab});
            if c != "MPNetTokenizer" {
                tj["post_processor"] = template(&tj, &token("cls_token", "[CLS]"), &token("sep_token", "[SEP]"))?;
                return finish(path, &tj);
            }
            // MPNetTokenizer: RobertaProcessing `<s> … </s>` (trim_offsets, no prefix space).
            let (sep, cls) = (token("sep_token", "</s>"), token("cls_token", "<s>"));
            tj["post_processor"] = json!({"type": "RobertaProcessing", "sep": [sep, id_of(&tj, &sep)?], "cls": [cls, id_of(&tj, &cls)?],
                                          "trim_offsets": true, "add_prefix_space": false});
        }
        "XLMRobertaTokenizer" => {
            want("Unigram")?;
            // The SentencePiece charsmap, if the file's normalizer (or one in its Sequence) has one; else none.
            let precompiled = {
                let n = &tj["normalizer"];
                let list: Vec<&Value> = match n.get("normalizers").and_then(|l| l.as_array()) {
                    Some(l) if n.get("type").and_then(|t| t.as_str()) == Some("Sequence") => l.iter().collect(),
                    _ => vec![n],
                };
                list.into_iter().find(|x| x.get("type").and_then(|t| t.as_str()) == Some("Precompiled") && x.get("precompiled_charsmap").is_some()).cloned()
            };
            tj["normalizer"] = precompiled.unwrap_or(Value::Null);
            let scheme = if flag("add_prefix_space", true) { "always" } else { "never" };
            tj["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [
                {"type": "WhitespaceSplit"},
                {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": scheme, "split": true},
            ]});
            let vocab = tj["model"]["vocab"].take();
            // unk_id is fixed at 3 by the constructor, whatever the file says.
            tj["model"] = json!({"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": false});
            tj["post_processor"] = template(&tj, &token("bos_token", "<s>"), &token("eos_token", "</s>"))?;
            // XLM-R's pair template repeats `</s>` and keeps type 0; only single texts are encoded here.
        }
        "RobertaTokenizer" => {
            want("BPE")?;
            let prefix = flag("add_prefix_space", false);
            let trim = flag("trim_offsets", true);
            tj["normalizer"] = Value::Null;
            tj["pre_tokenizer"] = json!({"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": true, "use_regex": true});
            let vocab = tj["model"]["vocab"].take();
            let merges = tj["model"]["merges"].take();
            tj["model"] = json!({"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                                 "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                                 "vocab": vocab, "merges": merges});
            let (sep, cls) = (token("sep_token", "</s>"), token("cls_token", "<s>"));
            tj["post_processor"] = json!({"type": "RobertaProcessing", "sep": [sep, id_of(&tj, &sep)?], "cls": [cls, id_of(&tj, &cls)?],
                                          "trim_offsets": trim, "add_prefix_space": prefix});
        }
        other => {
            return Err(Error::input(
                path,
                format!(
                    "transformers 5 loads this tokenizer as {other}, which embcheck does not mirror (it mirrors BertTokenizer, \
                     DistilBertTokenizer, MPNetTokenizer, XLMRobertaTokenizer, RobertaTokenizer and Qwen2Tokenizer, and tokenizer.json as is for TokenizersBackend)"
                ),
            ))
        }
    }
    finish(path, &tj)
}

/// The tokenizer a rebuilt `tokenizer.json` value describes.
fn finish(path: &Path, tj: &serde_json::Value) -> Result<Tokenizer> {
    let text = serde_json::to_string(tj).map_err(|e| Error::input(path, format!("cannot rebuild the tokenizer: {e}")))?;
    text.parse::<Tokenizer>().map_err(|e| Error::input(path, format!("cannot rebuild the tokenizer as transformers 5 does: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers reads special_tokens_map.json only for a tokenizer_config.json without `added_tokens_decoder`
    /// (checked on both stacks: a Qwen3 config naming `<|im_end|>` as EOS over a map naming `<|endoftext|>` gets
    /// `<|im_end|>` appended by the model card's recipe, scripts/check-systems.sh).
    #[test]
    fn special_tokens_map_counts_only_in_the_legacy_layout() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("special_tokens_map.json"), r#"{"eos_token": "<a>", "pad_token": {"content": "<p>"}}"#).unwrap();
        let config = dir.path().join("tokenizer_config.json");
        std::fs::write(&config, r#"{"eos_token": "<b>", "added_tokens_decoder": {}}"#).unwrap();
        assert_eq!(special_token_names(dir.path()).unwrap(), vec![("eos_token".to_string(), "<b>".to_string())]);
        std::fs::write(&config, r#"{"eos_token": "<b>"}"#).unwrap();
        assert_eq!(
            special_token_names(dir.path()).unwrap(),
            vec![("eos_token".to_string(), "<a>".to_string()), ("pad_token".to_string(), "<p>".to_string())]
        );
    }
}
