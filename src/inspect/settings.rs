//! The settings that drive a pipeline, each with the file (or flag, or library version) it came from.

use serde::Serialize;

use crate::error::{read_json, Result};
use crate::model::Model;
use crate::pipeline::{Lowercase, Pipeline, PipelineKind, PipelineOptions, StConfig};

/// One setting: its value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    /// What it is (`max length`, `pooling`, ...).
    pub name: &'static str,
    /// Its value, in words.
    pub value: String,
    /// The file and key, flag, or library behaviour it comes from.
    pub source: String,
}

impl Setting {
    /// A setting.
    pub fn new(name: &'static str, value: impl Into<String>, source: impl Into<String>) -> Self {
        Setting { name, value: value.into(), source: source.into() }
    }
}

/// `config.json`'s `model_type`, as written.
pub(crate) fn model_type(model: &Model) -> Result<String> {
    let v: serde_json::Value = read_json(&model.files.config)?;
    Ok(v.get("model_type").and_then(|t| t.as_str()).unwrap_or("?").to_string())
}

/// Where an option set on the suite or the command line came from.
fn origin(field: &str, flag: &str, suite: bool, cli: bool) -> String {
    match (cli, suite) {
        (true, _) => flag.to_string(),
        (false, true) => format!("suite.toml: {field}"),
        (false, false) => String::new(),
    }
}

/// The settings of pipeline `p` on `model`, in the order a reader follows the text: preparation, tokenizer,
/// length, model, head.
pub(crate) fn of(p: &Pipeline, model: &Model, suite: &PipelineOptions, cli: &PipelineOptions) -> Result<Vec<Setting>> {
    let st_config = if p.kind == PipelineKind::SentenceTransformers { Some(StConfig::load(&model.files)?) } else { None };
    let st = st_config.is_some();
    let stack = model.stack;
    let mut out = Vec::new();

    // The prefix: a FlagEmbedding instruction or a sentence-transformers prompt.
    let prefix_source = if p.prep.prefix.is_empty() {
        if st {
            "no prompt given, no default_prompt_name".to_string()
        } else if p.kind.is_flag_embedding() {
            "no query instruction given".to_string()
        } else {
            "transformers AutoModel takes the text as given".to_string()
        }
    } else if st {
        if cli.prompt.is_some() || suite.prompt.is_some() {
            origin("prompt", "--prompt", suite.prompt.is_some(), cli.prompt.is_some())
        } else if let Some(name) = cli.prompt_name.as_ref().or(suite.prompt_name.as_ref()) {
            format!(
                "config_sentence_transformers.json: prompts[{name:?}] ({})",
                origin("prompt_name", "--prompt-name", suite.prompt_name.is_some(), cli.prompt_name.is_some())
            )
        } else {
            "config_sentence_transformers.json: default_prompt_name".to_string()
        }
    } else {
        origin("instruction", "--instruction", suite.instruction.is_some(), cli.instruction.is_some())
    };
    let prefix = if p.prep.prefix.is_empty() { "none".to_string() } else { format!("{:?}", p.prep.prefix) };
    out.push(Setting::new("prefix", prefix, prefix_source));

    let strip_source = if !st {
        "the library passes the text as given".to_string()
    } else if cli.st_strip.is_some() || suite.st_strip.is_some() {
        origin("st_strip", "--st-strip", suite.st_strip.is_some(), cli.st_strip.is_some())
    } else if stack.st_strips() {
        format!("sentence-transformers {} strips every text (up to 5.3)", stack.sentence_transformers)
    } else {
        format!("sentence-transformers {} passes texts as they are (5.4 and later)", stack.sentence_transformers)
    };
    out.push(Setting::new("strip", if p.prep.strip { "str.strip()" } else { "no" }, strip_source));

    let (lower, lower_source) = if let Some(c) = &st_config {
        let do_lower = c.do_lower_case;
        let file = format!("sentence_bert_config.json: do_lower_case {do_lower}");
        match p.prep.lowercase {
            Lowercase::No if do_lower => ("no extra: the tokenizer's normalizer lowercases".to_string(), file),
            Lowercase::No => ("no".to_string(), file),
            Lowercase::Python => {
                ("str.lower() on the text".to_string(), format!("{file}; sentence-transformers {} lowercases the text (up to 5.3)", stack.sentence_transformers))
            }
            Lowercase::Normalizer => (
                "a Lowercase normalizer before the tokenizer's".to_string(),
                format!("{file}; sentence-transformers {} lowercases in the tokenizer (5.4 and later)", stack.sentence_transformers),
            ),
        }
    } else {
        ("no".to_string(), "the library passes the text as given".to_string())
    };
    out.push(Setting::new("lowercase", lower, lower_source));

    let normalizer_source = if stack.rebuilds_tokenizers() {
        format!("rebuilt from the vocabulary by transformers {}'s tokenizer class (tokenizer_config.json)", stack.transformers)
    } else {
        format!("tokenizer.json as transformers {} loads it (a BERT-style class takes its options from tokenizer_config.json)", stack.transformers)
    };
    out.push(Setting::new("normalizer", model.tokenizer.describe_normalizer(), normalizer_source));

    let max_source = if cli.max_length.is_some() || suite.max_length.is_some() {
        origin("max_length", "--max-length", suite.max_length.is_some(), cli.max_length.is_some())
    } else {
        model.default_max_length_with_source()?.1
    };
    out.push(Setting::new("max length", p.max_length.to_string(), max_source));

    out.push(Setting::new("padding side", "right, masked (does not change an encoder's output)", padding_source(model)?));

    let (pooling, pooling_source) = match p.kind {
        PipelineKind::RawCls => ("cls: hidden state of token 0, as is".to_string(), "transformers AutoModel(...)[0][:, 0]".to_string()),
        PipelineKind::NormalizedCls => {
            ("cls: hidden state of token 0, L2-normalized".to_string(), "FlagEmbedding: pooling_method cls, normalize_embeddings".to_string())
        }
        PipelineKind::SentenceTransformers => (chain(st_config.as_ref().expect("loaded for sentence-transformers")), modules_source(model)?),
        PipelineKind::M3Sparse => (
            "relu(sparse_linear · h) per token, max per token id, special tokens dropped".to_string(),
            "FlagEmbedding return_sparse; sparse_linear.pt".to_string(),
        ),
        PipelineKind::M3Colbert => (
            "colbert_linear · h for tokens 1.., each L2-normalized".to_string(),
            "FlagEmbedding return_colbert_vecs; colbert_linear.pt".to_string(),
        ),
        PipelineKind::RawLast => ("lasttoken: hidden state of the last real token, as is".to_string(), "transformers AutoModel(...)[0] at each text's last token".to_string()),
        PipelineKind::NormalizedLast => (
            format!("lasttoken, L2-normalized{}", if p.prep.append.is_some() { "; EOS appended by hand" } else { "; EOS from the tokenizer" }),
            "the decoder model cards' last_token_pool + F.normalize".to_string(),
        ),
    };
    out.push(Setting::new("head", pooling, pooling_source));
    Ok(out)
}

/// The sentence-transformers chain after the Transformer, in words: `mean → Dense(768→256, tanh) → Normalize`.
fn chain(st: &StConfig) -> String {
    let parts: Vec<String> = st
        .modules
        .iter()
        .map(|m| match m {
            crate::pipeline::StModule::Pooling(c) => {
                let masked = if c.include_prompt { "" } else { ", prompt masked" };
                format!("{} pooling{masked}", c.describe())
            }
            crate::pipeline::StModule::Dense(_) => "Dense".to_string(),
            crate::pipeline::StModule::Normalize => "Normalize".to_string(),
        })
        .collect();
    parts.join(" → ")
}

/// `modules.json`'s module folders, or the library's default chain when the file is absent.
fn modules_source(model: &Model) -> Result<String> {
    let Some(path) = model.files.optional("modules.json") else {
        return Ok("no modules.json: sentence-transformers builds Transformer + mean pooling".to_string());
    };
    let v: serde_json::Value = read_json(&path)?;
    let paths: Vec<String> = v
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|m| m.get("path").and_then(|p| p.as_str()))
                .filter(|p| !p.is_empty())
                .map(|p| format!("{p}/config.json"))
                .collect()
        })
        .unwrap_or_default();
    Ok(if paths.is_empty() { "modules.json".to_string() } else { format!("modules.json, {}", paths.join(", ")) })
}

fn padding_source(model: &Model) -> Result<String> {
    let side = match model.files.optional("tokenizer_config.json") {
        Some(p) => read_json::<serde_json::Value>(&p)?.get("padding_side").and_then(|s| s.as_str()).map(str::to_string),
        None => None,
    };
    Ok(match side {
        Some(s) => format!("tokenizer_config.json: padding_side {s:?}; embcheck pads right and masks"),
        None => "transformers' default (right); embcheck pads right and masks".to_string(),
    })
}
