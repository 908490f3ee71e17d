//! `embcheck inspect` against what the Python libraries recorded, text by text: the tokens it shows for each
//! pipeline are the ids the reference's library tokenized the text to, its vectors are the reference's, and
//! it says "differs under the other stack" exactly where the transformers 4 and transformers 5 references
//! tokenized a text differently.

mod common;

use std::path::Path;

use common::{embcheck, show, suite};
use embcheck::fixture::{read_texts, Names, SuiteSpec, TensorFile};
use embcheck::inspect::{InspectRequest, Inspector, OutputView};
use embcheck::{PipelineKind, PipelineOptions, Vector};

/// Per pipeline of `dir`'s reference: (ids per text, vectors per text).
fn recorded(dir: &Path, kind: PipelineKind) -> Option<(Vec<Vec<u32>>, Vec<Vector>)> {
    let spec = SuiteSpec::load(dir).unwrap();
    let reference = TensorFile::read(&spec.reference_path()).unwrap();
    if !reference.has(kind.name()) {
        return None;
    }
    let stored = reference.vectors(kind.output(), &Names::reference(kind)).unwrap();
    Some((stored.input_ids.expect("references record input ids"), stored.vectors))
}

/// Inspects every text of the transformers 4 suite `tf4` and compares with its reference and with the
/// transformers 5 suite `tf5` (same model and texts).
fn agrees_with_the_references(tf4: &str, tf5: &str) {
    let (dir4, dir5) = (suite(tf4), suite(tf5));
    let spec = SuiteSpec::load(&dir4).unwrap();
    let texts = read_texts(&spec.texts_path()).unwrap();
    let mut compared = 0;
    let mut stack_differences = 0;
    let request = InspectRequest::for_target(dir4.to_str().unwrap(), None, None, &[], PipelineOptions::default()).unwrap();
    let inspector = Inspector::new(&request).unwrap();
    for (i, t) in texts.iter().enumerate() {
        let found = inspector.inspect(&t.text).unwrap();
        assert!(found.not_run.is_empty(), "{tf4}: {:?}", found.not_run);
        for view in &found.pipelines {
            let (ids, vectors) = recorded(&dir4, view.pipeline).unwrap();
            let shown: Vec<u32> = view.tokens.iter().map(|t| t.id).collect();
            assert_eq!(shown, ids[i], "{tf4} text {} ({:?}) {}: tokens", t.id, t.text, view.pipeline);
            if let (OutputView::Dense { norm, first, .. }, Vector::Dense(expected)) = (&view.output, &vectors[i]) {
                let expected_norm = expected.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
                assert!((norm - expected_norm).abs() <= 1e-4 * expected_norm.max(1e-6), "{tf4} {}: norm {norm} vs {expected_norm}", t.id);
                for (a, e) in first.iter().zip(expected) {
                    assert!((f64::from(*a) - f64::from(*e)).abs() <= 1e-4 * expected_norm.max(1e-6), "{tf4} {}: {a} vs {e}", t.id);
                }
            }
            compared += 1;
            // The other stack's verdict against what transformers 5 itself tokenized.
            if let Some((ids5, _)) = recorded(&dir5, view.pipeline) {
                let d = found.other_stack.iter().find(|d| d.pipeline == view.pipeline).expect("a verdict per pipeline");
                assert_eq!(d.differs, ids5[i] != ids[i], "{tf4} text {} ({:?}) {}: {}", t.id, t.text, view.pipeline, d.verdict);
                stack_differences += usize::from(d.differs);
            }
        }
    }
    assert!(compared >= texts.len(), "{tf4}: compared {compared}");
    eprintln!("{tf4}: {compared} pipeline × text views agree with the references; {stack_differences} tokenize otherwise under transformers 5");
}

#[test]
fn xlmr_m3_tokens_vectors_and_stack_differences_are_the_references() {
    agrees_with_the_references("tiny-xlmr-m3", "tiny-xlmr-m3-tf5");
}

#[test]
fn xlmr_sentencepiece_agrees_with_the_references() {
    agrees_with_the_references("tiny-xlmr-spm", "tiny-xlmr-spm-tf5");
}

#[test]
fn bert_agrees_with_the_references() {
    agrees_with_the_references("tiny-bert-mean", "tiny-bert-mean-tf5");
    agrees_with_the_references("tiny-bert-cased-config-override", "tiny-bert-cased-config-override-tf5");
}

#[test]
fn mpnet_and_distilbert_agree_with_the_references() {
    agrees_with_the_references("tiny-mpnet", "tiny-mpnet-tf5");
    agrees_with_the_references("tiny-distilbert", "tiny-distilbert-tf5");
}

#[test]
fn modernbert_agrees_with_the_references() {
    agrees_with_the_references("tiny-modernbert", "tiny-modernbert-tf5");
}

#[test]
#[ignore = "needs fixtures/external/all-MiniLM-L6-v2 and all-mpnet-base-v2 (scripts/fetch-models.sh)"]
fn real_models_agree_with_the_references() {
    agrees_with_the_references("all-minilm-l6-v2", "all-minilm-l6-v2-tf5");
    agrees_with_the_references("all-mpnet-base-v2", "all-mpnet-base-v2-tf5");
}

/// A text whose raw-cls ids differ between the two stacks' references, and one whose ids agree.
fn texts_by_stack_agreement(tf4: &str, tf5: &str) -> (String, String) {
    let spec = SuiteSpec::load(&suite(tf4)).unwrap();
    let texts = read_texts(&spec.texts_path()).unwrap();
    let (ids4, _) = recorded(&suite(tf4), PipelineKind::RawCls).unwrap();
    let (ids5, _) = recorded(&suite(tf5), PipelineKind::RawCls).unwrap();
    let differ = (0..texts.len()).find(|&i| ids4[i] != ids5[i]).expect("a text the stacks tokenize differently");
    let agree = (0..texts.len()).find(|&i| ids4[i] == ids5[i]).expect("a text the stacks tokenize alike");
    (texts[differ].id.clone(), texts[agree].id.clone())
}

#[test]
fn the_command_shows_settings_sources_and_stack_differences() {
    let dir = suite("tiny-xlmr-m3");
    let (differ, agree) = texts_by_stack_agreement("tiny-xlmr-m3", "tiny-xlmr-m3-tf5");
    let out = embcheck(&["inspect", dir.to_str().unwrap(), "--text-id", &differ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in ["suite.toml: max_length", "modules.json", "str.strip()", "sentence-transformers 5.1 strips", "cosine between pipelines"] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let raw_line = text.lines().find(|l| l.trim_start().starts_with("raw-cls") && l.contains("DIFFERS")).map(str::to_string);
    assert!(raw_line.is_some(), "text {differ}: raw-cls should differ under transformers 5:\n{text}");

    let out = embcheck(&["inspect", dir.to_str().unwrap(), "--text-id", &agree, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let raw = v["other_stack"].as_array().unwrap().iter().find(|d| d["pipeline"] == "raw-cls").unwrap();
    assert_eq!(raw["differs"], false, "{raw}");
    assert_eq!(v["pipelines"].as_array().unwrap().len(), 5, "the suite's five pipelines");
    let st = v["pipelines"].as_array().unwrap().iter().find(|p| p["pipeline"] == "sentence-transformers").unwrap();
    let max = st["settings"].as_array().unwrap().iter().find(|s| s["name"] == "max length").unwrap();
    assert_eq!(max["value"], "128");
    assert_eq!(max["source"], "suite.toml: max_length");
}

#[test]
fn a_model_without_a_suite_shows_the_seed_pipelines_and_its_own_max_length() {
    let model = common::root().join("fixtures/models/tiny-bert-mean");
    let out = embcheck(&["inspect", model.to_str().unwrap(), "--text", "Hello there", "--prompt", "query: ", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["pipelines"].as_array().unwrap().iter().map(|p| p["pipeline"].as_str().unwrap()).collect();
    assert_eq!(names, ["raw-cls", "normalized-cls", "sentence-transformers"]);
    let st = &v["pipelines"][2];
    assert_eq!(st["prepared"], "query: Hello there");
    let prefix = st["settings"].as_array().unwrap().iter().find(|s| s["name"] == "prefix").unwrap();
    assert_eq!(prefix["source"], "--prompt");
    let max = st["settings"].as_array().unwrap().iter().find(|s| s["name"] == "max length").unwrap();
    let source = max["source"].as_str().unwrap();
    assert!(source.starts_with("sentence_bert_config.json") || source.starts_with("tokenizer_config.json") || source.starts_with("config.json"), "{source}");
}

#[test]
fn bad_requests_exit_2_with_one_line() {
    let dir = suite("tiny-xlmr-m3");
    let model = common::root().join("fixtures/models/tiny-bert-mean");
    for args in [
        vec!["inspect", dir.to_str().unwrap(), "--text-id", "no-such-id"],
        vec!["inspect", model.to_str().unwrap(), "--text-id", "en-simple"],
        vec!["inspect", dir.to_str().unwrap()],
        vec!["inspect", "/nonexistent/model", "--text", "x"],
    ] {
        let out = embcheck(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(out.stdout.is_empty(), "{args:?}: {}", show(&out));
    }
}
