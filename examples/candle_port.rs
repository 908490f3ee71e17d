//! A candle port of a BERT embedding model checked with embcheck, as a downstream crate checks its own in
//! `cargo test`: candle-transformers' `BertModel` loads `fixtures/models/tiny-bert-cls`, embeds the
//! normalized CLS vector (what FlagEmbedding computes), and is checked against the `tiny-bert-cls` suite's
//! `normalized-cls` reference — once faithful (passes), once cutting texts at the model's 128 positions while
//! the suite was made at 48 (fails, diagnosed `truncation`).
//!
//! Run it: `cargo run --release --example candle_port`. Its tests run with `cargo test --release`.
//!
//! In your own crate, the same code goes in `tests/parity.rs`, with these lines in `Cargo.toml`:
//!
//! ```toml
//! [dependencies]
//! candle-core = "0.11"
//! candle-nn = "0.11"
//! candle-transformers = "0.11"
//! tokenizers = { version = "0.23", default-features = false, features = ["onig"] }   # as embcheck has it: built once
//! serde_json = "1"            # candle's BERT `Config` is read from config.json with it
//!
//! [dev-dependencies]
//! embcheck = { path = "../embcheck" }   # or { git = "<this repository's URL>" }
//!
//! # candle's kernels are many times slower unoptimized: optimize the dependencies even in `cargo test`'s
//! # debug profile (your own crate stays quick to build).
//! [profile.dev.package."*"]
//! opt-level = 3
//! ```
//!
//! and a suite directory copied from embcheck's `fixtures/suites/` (or made for your model with
//! `scripts/generate_fixtures.py`).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use embcheck::{Output, PipelineKind, Stage, Status, Suite, SuiteReport, TextSettings, Vector};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The port under test: a BERT model and its tokenizer, embedding the L2-normalized CLS vector.
struct Port {
    model: BertModel,
    tokenizer: Tokenizer,
    settings: TextSettings,
}

impl Port {
    /// Loads the model in `dir`, cutting texts at `max_length` tokens and preparing them as `settings` say
    /// (prompt, stripping, lowercasing: what the reference did).
    fn load(dir: &Path, settings: TextSettings, max_length: usize) -> Result<Port, BoxError> {
        let config: Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
        // SAFETY: the weights file is memory-mapped read-only and not written while the model is alive.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu)? };
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))?;
        // tokenizer.json may carry truncation and padding blocks of its own: set both explicitly.
        tokenizer.with_padding(Some(PaddingParams::default()));
        tokenizer.with_truncation(Some(TruncationParams { max_length, ..Default::default() }))?;
        Ok(Port { model: BertModel::load(vb, &config)?, tokenizer, settings })
    }

    /// One output per text: the vector and the token ids it was computed from (so that embcheck can prove a
    /// tokenization or truncation difference from the ids themselves).
    fn embed(&self, texts: &[String]) -> Result<Vec<Output>, BoxError> {
        let prepared: Vec<String> = texts.iter().map(|t| self.settings.prepare(t)).collect();
        let enc = self.tokenizer.encode_batch(prepared, true)?;
        let stack = |f: fn(&tokenizers::Encoding) -> &[u32]| -> candle_core::Result<Tensor> {
            Tensor::stack(&enc.iter().map(|e| Tensor::new(f(e), &Device::Cpu)).collect::<candle_core::Result<Vec<_>>>()?, 0)
        };
        let (ids, mask) = (stack(|e| e.get_ids())?, stack(|e| e.get_attention_mask())?);
        let cls = self.model.forward(&ids, &ids.zeros_like()?, Some(&mask))?.narrow(1, 0, 1)?.squeeze(1)?;
        let cls = cls.broadcast_div(&cls.sqr()?.sum_keepdim(1)?.sqrt()?)?;
        Ok(cls
            .to_vec2::<f32>()?
            .into_iter()
            .zip(&enc)
            .map(|(v, e)| {
                // The ids the model saw: the padding left out.
                let ids = e.get_ids().iter().zip(e.get_attention_mask()).filter(|(_, m)| **m == 1).map(|(i, _)| *i).collect();
                Output { value: Ok(Vector::Dense(v)), token_ids: Some(ids) }
            })
            .collect())
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The port cutting at `max_length` (the reference's when `None`), checked against the suite.
fn check(max_length: Option<usize>) -> SuiteReport {
    let suite = Suite::load(repo().join("fixtures/suites/tiny-bert-cls")).unwrap();
    // What the reference did to each text: honour it, or the check fails where you did not.
    let settings = suite.settings(PipelineKind::NormalizedCls).unwrap();
    let cut = max_length.unwrap_or(settings.max_length);
    let port = Port::load(Path::new(suite.model_location()), settings, cut).unwrap();
    // A closure returning `Result<Vec<Output>, E>`: an error fails that batch's texts (the message names
    // the batch), the other batches are still checked.
    let mut embed = |texts: &[String]| port.embed(texts);
    suite.check_embedder(PipelineKind::NormalizedCls, &mut embed).unwrap()
}

/// The faithful port passes.
fn faithful() {
    let report = check(None);
    println!("faithful port: {:?}", report.status());
    report.assert_passed(); // panics with every failing text and its diagnosis otherwise
}

/// A port that cuts at the model's 128 positions fails on every text longer than the suite's 48 tokens, each
/// diagnosed `truncation` with the port's length.
fn cuts_at_128() {
    let report = check(Some(128));
    assert_eq!(report.status(), Status::Failed);
    let failing: Vec<_> = report.failing_rows().collect();
    assert!(!failing.is_empty());
    println!("port cutting at 128: {:?}, {} of {} texts failing", report.status(), failing.len(), report.pipelines[0].rows.len());
    for row in &failing {
        assert_eq!(row.diagnosis.as_ref().unwrap().stage, Stage::Truncation, "{}", row.failure_line());
    }
    // What `assert_passed` would panic with:
    print!("{}", report.failure_message());
}

#[cfg_attr(test, allow(dead_code))]
fn main() {
    faithful();
    cuts_at_128();
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_faithful_candle_port_passes() {
        super::faithful();
    }

    #[test]
    fn a_port_cutting_at_128_is_diagnosed_truncation() {
        super::cuts_at_128();
    }
}
