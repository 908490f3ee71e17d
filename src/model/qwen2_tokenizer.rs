//! transformers 5's `Qwen2Tokenizer`, the tokenizer `AutoTokenizer` builds for Qwen2 and Qwen3 models
//! (Qwen3-Embedding) whatever `tokenizer.json` says about its normalizer and pre-tokenizer.
//!
//! Read in transformers 5.24 (`models/qwen2/tokenization_qwen2.py`, `TokenizersBackend.__init__`,
//! `PreTrainedTokenizerBase._from_pretrained`) and confirmed by the token ids transformers 5 gives on the bundled
//! texts (`scripts/check-systems.sh`, the `*-qwen2tok-tf5` suite):
//! - the byte-level BPE is built from the file's vocabulary and merges, with an `NFC` normalizer and a
//!   `Split(PRETOKENIZE_REGEX, isolated)` + `ByteLevel(add_prefix_space, use_regex=false)` pre-tokenizer, whatever
//!   the file has (`add_prefix_space` from tokenizer_config.json, default false);
//! - the file's post-processor is kept (Qwen3-Embedding's appends `<|endoftext|>`); a file without one gets
//!   `$A` (nothing added). `add_bos_token` / `add_eos_token` of tokenizer_config.json are dropped when a
//!   tokenizer.json exists, so they change nothing;
//! - added tokens come from tokenizer_config.json's `added_tokens_decoder` (by id), else from the file's
//!   `added_tokens`; then each named special token not among them (`unk`, `eos`, `pad` default to
//!   `<|endoftext|>`), then every special token again as `AddedToken(token, special=True)`;
//! - `split_special_tokens` decides whether special tokens written in a text are matched.

use std::path::Path;

use serde_json::{json, Map, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{read_json, Error, Result};

/// `PRETOKENIZE_REGEX` of transformers' `tokenization_qwen2.py`.
const PRETOKENIZE_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The named special tokens, in transformers' order (`SPECIAL_TOKENS_ATTRIBUTES`).
const NAMED: [&str; 7] = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

/// Builds the tokenizer transformers 5's `Qwen2Tokenizer` builds from `tj` (tokenizer.json at `path`) and
/// `config` (tokenizer_config.json, `Null` when absent).
pub fn build(path: &Path, tj: &Value, config: &Value) -> Result<Tokenizer> {
    let bad = |what: String| Error::input(path, what);
    let model = tj.get("model").cloned().unwrap_or(Value::Null);
    if model.get("type").and_then(|t| t.as_str()) != Some("BPE") {
        return Err(bad(format!(
            "transformers 5's Qwen2Tokenizer builds a BPE model, but the file holds {:?}",
            model.get("type").and_then(|t| t.as_str()).unwrap_or("")
        )));
    }
    // A list vocabulary becomes token -> position, as `convert_to_native_format` does.
    let vocab = match model.get("vocab") {
        Some(Value::Array(list)) => Value::Object(
            list.iter()
                .enumerate()
                .filter_map(|(i, e)| e.as_str().or_else(|| e.get(0).and_then(|p| p.as_str())).map(|t| (t.to_string(), json!(i))))
                .collect(),
        ),
        Some(v @ Value::Object(_)) => v.clone(),
        _ => return Err(bad("the BPE model has no vocabulary".into())),
    };
    let bpe = json!({"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                     "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                     "vocab": vocab, "merges": model.get("merges").cloned().unwrap_or(json!([]))});
    let bpe: ModelWrapper = serde_json::from_value(bpe).map_err(|e| bad(format!("cannot build the BPE model: {e}")))?;

    let flag = |key: &str| config.get(key).and_then(|x| x.as_bool()).unwrap_or(false);
    let split = Split::new(SplitPattern::Regex(PRETOKENIZE_REGEX.into()), SplitDelimiterBehavior::Isolated, false)
        .map_err(|e| bad(format!("cannot compile Qwen2Tokenizer's pre-tokenizer pattern: {e}")))?;
    let mut tk = Tokenizer::new(bpe);
    tk.with_normalizer(Some(NFC)).map_err(|e| bad(format!("cannot set the NFC normalizer: {e}")))?;
    tk.with_pre_tokenizer(Some(Sequence::new(vec![split.into(), ByteLevel::new(flag("add_prefix_space"), true, false).into()])));
    tk.with_decoder(Some(ByteLevelDecoder::default()));
    let processor: PostProcessorWrapper = match tj.get("post_processor") {
        Some(p) if !p.is_null() => {
            serde_json::from_value(p.clone()).map_err(|e| bad(format!("cannot read the post-processor: {e}")))?
        }
        _ => TemplateProcessing::builder()
            .try_single("$A:0")
            .and_then(|b| b.try_pair("$A:0 $B:1"))
            .map_err(|e| bad(format!("cannot build the empty template: {e}")))?
            .build()
            .map_err(|e| bad(format!("cannot build the empty template: {e}")))?
            .into(),
    };
    tk.with_post_processor(Some(processor));

    let dir = path.parent().unwrap_or(Path::new("."));
    let (listed, specials) = added_and_special_tokens(tj, config, dir)?;
    // In transformers' order: the listed tokens with any special token missing from them, in one call;
    // then `Qwen2Tokenizer.__init__`'s `add_tokens([AddedToken(t, special=True) ...])`, which gives each
    // special token those properties.
    let mut first = listed;
    for s in &specials {
        if !first.iter().any(|t| &t.content == s) {
            first.push(AddedToken::from(s.clone(), true).normalized(false));
        }
    }
    let again: Vec<AddedToken> = specials.iter().map(|s| AddedToken::from(s.clone(), true).normalized(false)).collect();
    for tokens in [first, again] {
        tk.add_tokens(tokens).map_err(|e| bad(format!("cannot add the added tokens: {e}")))?;
    }
    tk.set_encode_special_tokens(flag("split_special_tokens"));
    Ok(tk)
}

/// The added tokens transformers 5 lists before construction (tokenizer_config.json's `added_tokens_decoder`
/// by id, else tokenizer.json's `added_tokens`) and the special tokens' contents (named, then model-specific,
/// then extra), without repeats.
fn added_and_special_tokens(tj: &Value, config: &Value, dir: &Path) -> Result<(Vec<AddedToken>, Vec<String>)> {
    let mut settings: Map<String, Value> = config.as_object().cloned().unwrap_or_default();
    let listed: Vec<AddedToken> = match config.get("added_tokens_decoder").and_then(|d| d.as_object()) {
        Some(decoder) => {
            let mut by_id: Vec<(u64, &Value)> = decoder.iter().filter_map(|(k, v)| Some((k.parse().ok()?, v))).collect();
            by_id.sort_by_key(|(id, _)| *id);
            by_id.into_iter().filter_map(|(_, v)| added_token(v)).collect()
        }
        None => {
            // Without `added_tokens_decoder`, special_tokens_map.json's values take the special keys.
            let map = dir.join("special_tokens_map.json");
            if map.is_file() {
                if let Value::Object(m) = read_json::<Value>(&map)? {
                    settings.extend(m);
                }
            }
            tj.get("added_tokens").and_then(|a| a.as_array()).map(|a| a.iter().filter_map(added_token).collect()).unwrap_or_default()
        }
    };
    let content = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
            _ => None,
        }
    };
    let mut specials: Vec<String> = Vec::new();
    let mut push = |s: Option<String>| {
        if let Some(s) = s.filter(|s| !specials.contains(s)) {
            specials.push(s);
        }
    };
    for key in NAMED {
        match settings.get(key) {
            Some(v) => push(content(v)),
            // Qwen2Tokenizer's defaults: unk, eos and pad `<|endoftext|>`, no bos.
            None if matches!(key, "unk_token" | "eos_token" | "pad_token") => push(Some("<|endoftext|>".into())),
            None => {}
        }
    }
    // Model-specific named tokens: other `*_token` keys, and `extra_special_tokens` given as a map.
    for (key, v) in &settings {
        if key.ends_with("_token") && !NAMED.contains(&key.as_str()) {
            push(content(v));
        }
    }
    // `additional_special_tokens` stands in for an empty or missing `extra_special_tokens`.
    let extra = match settings.get("extra_special_tokens") {
        Some(Value::Array(a)) if !a.is_empty() => settings.get("extra_special_tokens"),
        Some(Value::Object(m)) if !m.is_empty() => settings.get("extra_special_tokens"),
        _ => settings.get("additional_special_tokens"),
    };
    if let Some(Value::Object(m)) = extra {
        m.values().for_each(|v| push(content(v)));
    }
    if let Some(Value::Array(list)) = extra {
        list.iter().for_each(|v| push(content(v)));
    }
    Ok((listed, specials))
}

/// An `AddedToken` from its serialized form (`{"content", "single_word", "lstrip", "rstrip", "normalized",
/// "special"}`), with Python's defaults: not special, normalized unless special.
fn added_token(v: &Value) -> Option<AddedToken> {
    let content = v.get("content")?.as_str()?;
    let on = |k: &str| v.get(k).and_then(|x| x.as_bool());
    let special = on("special").unwrap_or(false);
    Some(
        AddedToken::from(content.to_string(), special)
            .single_word(on("single_word").unwrap_or(false))
            .lstrip(on("lstrip").unwrap_or(false))
            .rstrip(on("rstrip").unwrap_or(false))
            .normalized(on("normalized").unwrap_or(!special)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specials(config: Value) -> Vec<String> {
        added_and_special_tokens(&json!({"added_tokens": []}), &config, Path::new("/nonexistent")).unwrap().1
    }

    /// Qwen2Tokenizer's defaults fill unk, eos and pad; an explicit null drops one; `additional_special_tokens`
    /// counts when `extra_special_tokens` is empty (as transformers 5 converts it).
    #[test]
    fn special_tokens_follow_transformers5s_defaults() {
        assert_eq!(specials(json!({})), ["<|endoftext|>"]);
        assert_eq!(
            specials(json!({"unk_token": null, "eos_token": "<|im_end|>", "extra_special_tokens": {},
                            "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})),
            ["<|im_end|>", "<|endoftext|>", "<|im_start|>"]
        );
        assert_eq!(specials(json!({"bos_token": {"content": "<s>"}, "pad_token": "<pad>"})), ["<s>", "<|endoftext|>", "<pad>"]);
    }

    /// tokenizer_config.json's `added_tokens_decoder` is read in id order with each token's properties; without
    /// it, tokenizer.json's `added_tokens` are.
    #[test]
    fn added_tokens_come_from_the_config_by_id_else_the_file() {
        let file = json!({"added_tokens": [{"id": 5, "content": "<f>", "special": true, "normalized": false}]});
        let config = json!({"added_tokens_decoder": {
            "10": {"content": "<b>", "special": false, "normalized": true, "lstrip": true},
            "9": {"content": "<a>", "special": true, "normalized": false}}});
        let (listed, _) = added_and_special_tokens(&file, &config, Path::new("/nonexistent")).unwrap();
        assert_eq!(listed, vec![AddedToken::from("<a>", true).normalized(false), AddedToken::from("<b>", false).lstrip(true)]);
        let (listed, _) = added_and_special_tokens(&file, &json!({}), Path::new("/nonexistent")).unwrap();
        assert_eq!(listed, vec![AddedToken::from("<f>", true).normalized(false)]);
    }
}
