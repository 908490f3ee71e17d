//! Bad input, through the real CLI: every case exits 2 with one line on stderr that names the file and
//! says what was expected, never panics, and leaves no half-written output. Also: reports that agree with
//! the exit code, inputs that must not pass vacuously, and a closed stdout.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

/// Asserts exit 2 and exactly one stderr line, an `embcheck: error:` naming `file` and containing each of
/// `expected`; no panic.
#[track_caller]
fn assert_input_error(o: &Output, file: &str, expected: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}", show(o));
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE") && !err.contains("candle_core::"), "{}", show(o));
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr\n{}", show(o));
    let line = lines[0];
    assert!(line.starts_with("embcheck: error:"), "{}", show(o));
    assert!(line.contains(file), "the line does not name {file}\n{}", show(o));
    for e in expected {
        assert!(line.contains(e), "the line does not say {e:?}\n{}", show(o));
    }
}

/// Runs `check` on one suite with reports under `tmp/reports`.
fn check(suite: &Path, tmp: &Path) -> Output {
    embcheck(&["check", suite.to_str().unwrap(), "--report-dir", tmp.join("reports").to_str().unwrap()])
}

/// `check` on a copy of tiny-bert-mean changed by `edit(suite dir)`: an input error naming `file`.
#[track_caller]
fn suite_error(edit: impl FnOnce(&Path), file: &str, expected: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = suite_copy("tiny-bert-mean", tmp.path());
    edit(&dir);
    let o = check(&dir, tmp.path());
    assert_input_error(&o, file, expected);
    // The errored suite is in the reports, as an error (see reports_agree_with_the_exit_code).
    let json = std::fs::read_to_string(tmp.path().join("reports/summary.json")).unwrap();
    assert!(json.contains("\"status\": \"error\""), "{json}");
}

/// A copy of a bundled model changed by `edit(model dir)`, and a copy of its suite pointing at it.
fn with_model(tmp: &Path, suite: &str, model: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let m = tmp.join("model");
    copy_dir(&root().join("fixtures/models").join(model), &m);
    edit(&m);
    let dir = suite_copy(suite, tmp);
    set_model(&dir, &m);
    dir
}

fn set_model(suite: &Path, model: &Path) {
    let toml = std::fs::read_to_string(suite.join("suite.toml")).unwrap();
    let line = toml.lines().find(|l| l.starts_with("model")).unwrap();
    std::fs::write(suite.join("suite.toml"), toml.replace(line, &format!("model = {:?}", model.to_string_lossy()))).unwrap();
}

#[track_caller]
fn model_error(suite: &str, model: &str, edit: impl FnOnce(&Path), file: &str, expected: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = with_model(tmp.path(), suite, model, edit);
    assert_input_error(&check(&dir, tmp.path()), file, expected);
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn edit_reference(suite: &Path, f: impl FnOnce(&mut Tensors)) {
    let path = suite.join("reference.safetensors");
    let mut t = read_tensors(&path);
    f(&mut t);
    write_tensors(&path, &t);
}

// ---- the model ---------------------------------------------------------------------------------------

#[test]
fn missing_model_directory() {
    suite_error(|d| set_model(d, Path::new("/nonexistent/model-dir")), "/nonexistent/model-dir", &["no such directory"]);
}

#[test]
fn missing_config_and_tokenizer_and_weights() {
    model_error("tiny-bert-mean", "tiny-bert-mean", |m| std::fs::remove_file(m.join("config.json")).unwrap(), "config.json", &["is missing"]);
    model_error("tiny-bert-mean", "tiny-bert-mean", |m| std::fs::remove_file(m.join("tokenizer.json")).unwrap(), "tokenizer.json", &["is missing"]);
    model_error(
        "tiny-bert-mean",
        "tiny-bert-mean",
        |m| std::fs::remove_file(m.join("model.safetensors")).unwrap(),
        "model",
        &["no weights", "expected model.safetensors"],
    );
}

#[test]
fn unsupported_model_type_and_activation_list_the_supported_ones() {
    // A model type embcheck does not implement: what needs its encoder (here `embed`) names the implemented
    // ones; its suites still check systems model-free (tests/families.rs).
    let tmp = tempfile::tempdir().unwrap();
    with_model(tmp.path(), "tiny-bert-mean", "tiny-bert-mean", |m| edit_json(&m.join("config.json"), |v| v["model_type"] = "gpt2".into()));
    let (model, texts) = (tmp.path().join("model"), suite("tiny-bert-mean").join("texts.jsonl"));
    let out = tmp.path().join("out.safetensors");
    let o = embcheck(&["embed", "--model", model.to_str().unwrap(), "--pipeline", "raw-cls", "--input", texts.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    assert_input_error(&o, "config.json", &["model_type \"gpt2\" is not implemented", "bert, xlm-roberta, roberta, camembert, mpnet, distilbert"]);
    assert!(!out.exists());
    model_error(
        "tiny-bert-mean",
        "tiny-bert-mean",
        |m| edit_json(&m.join("config.json"), |v| v["hidden_act"] = "quick_gelu".into()),
        "config.json",
        &["hidden_act \"quick_gelu\" is not supported", "gelu, gelu_new", "relu"],
    );
    model_error(
        "tiny-bert-mean",
        "tiny-bert-mean",
        |m| edit_json(&m.join("config.json"), |v| v["hidden_size"] = 0.into()),
        "config.json",
        &["hidden_size is 0"],
    );
}

#[test]
fn weights_missing_a_tensor_or_a_bias_or_with_a_wrong_shape_name_the_tensor() {
    let drop = |name: &'static str| {
        move |m: &Path| {
            let p = m.join("model.safetensors");
            let mut t = read_tensors(&p);
            assert!(t.f32s.remove(name).is_some(), "{name}");
            write_tensors(&p, &t);
        }
    };
    model_error("tiny-bert-mean", "tiny-bert-mean", drop("encoder.layer.1.attention.self.query.bias"), "tiny-bert-mean", &[
        "encoder.layer.1.attention.self.query.bias",
    ]);
    model_error("tiny-bert-mean", "tiny-bert-mean", drop("encoder.layer.0.output.LayerNorm.weight"), "tiny-bert-mean", &[
        "encoder.layer.0.output.LayerNorm.weight",
    ]);
    model_error(
        "tiny-bert-mean",
        "tiny-bert-mean",
        |m| {
            let p = m.join("model.safetensors");
            let mut t = read_tensors(&p);
            let (shape, v) = t.f32s.get_mut("encoder.layer.0.intermediate.dense.weight").unwrap();
            let keep = shape[0] / 2 * shape[1];
            v.truncate(keep);
            shape[0] /= 2;
            write_tensors(&p, &t);
        },
        "tiny-bert-mean",
        &["encoder.layer.0.intermediate.dense.weight", "shape"],
    );
    // ModernBERT: a bias its config says the model has (never computed without it), and a norm weight.
    model_error(
        "tiny-modernbert",
        "tiny-modernbert",
        |m| edit_json(&m.join("config.json"), |v| v["attention_bias"] = true.into()),
        "tiny-modernbert",
        &["layers.0.attn.Wqkv.bias"],
    );
    model_error("tiny-modernbert-cls", "tiny-modernbert-cls", drop("layers.1.mlp.Wi.bias"), "tiny-modernbert-cls", &["layers.1.mlp.Wi.bias"]);
    model_error("tiny-modernbert", "tiny-modernbert", drop("final_norm.weight"), "tiny-modernbert", &["final_norm.weight"]);
}

/// ModernBERT settings embcheck does not compute are refused, naming the key.
#[test]
fn modernbert_settings_it_does_not_compute_are_refused() {
    model_error(
        "tiny-modernbert",
        "tiny-modernbert",
        |m| edit_json(&m.join("config.json"), |v| v["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 2.0})),
        "config.json",
        &["rope_scaling \"yarn\" is not supported"],
    );
    model_error(
        "tiny-modernbert",
        "tiny-modernbert",
        |m| edit_json(&m.join("config.json"), |v| v["layer_types"] = serde_json::json!(["full_attention", "chunked_attention", "full_attention", "full_attention"])),
        "config.json",
        &["layer_types", "chunked_attention"],
    );
    model_error(
        "tiny-modernbert",
        "tiny-modernbert",
        |m| edit_json(&m.join("config.json"), |v| v["global_attn_every_n_layers"] = 0.into()),
        "config.json",
        &["global_attn_every_n_layers is 0"],
    );
}

#[test]
fn a_tokenizer_that_adds_no_special_tokens_and_an_empty_text() {
    // `"post_processor": null` and an empty text batched with one-token texts: was an index panic.
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("model");
    copy_dir(&root().join("fixtures/models/tiny-bert-mean"), &m);
    edit_json(&m.join("tokenizer.json"), |v| v["post_processor"] = serde_json::Value::Null);
    let texts = tmp.path().join("texts.jsonl");
    let lines: String = ["a", "b", "c", "d", "e", "f", ""].iter().map(|t| format!("{{\"text\": {t:?}}}\n")).collect();
    std::fs::write(&texts, lines).unwrap();
    let out = tmp.path().join("out.safetensors");
    let o = embcheck(&["embed", "--model", m.to_str().unwrap(), "--pipeline", "raw-cls", "--input", texts.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    assert_input_error(&o, "tokenizer.json", &["\"\" tokenizes to no tokens"]);
    assert!(!out.exists(), "no output on error");
}

// ---- the reference file ------------------------------------------------------------------------------

#[test]
fn truncated_or_non_safetensors_reference() {
    suite_error(
        |d| {
            let p = d.join("reference.safetensors");
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() / 2]).unwrap();
        },
        "reference.safetensors",
        &["not a valid safetensors file"],
    );
    suite_error(|d| std::fs::write(d.join("reference.safetensors"), b"{\"not\": \"safetensors\"}\n").unwrap(), "reference.safetensors", &[
        "not a valid safetensors file",
    ]);
}

#[test]
fn reference_tensor_with_wrong_shape_dtype_or_rows() {
    suite_error(
        |d| edit_reference(d, |t| t.f32s.get_mut("raw-cls").unwrap().0 = vec![42 * 32]),
        "reference.safetensors",
        &["tensor \"raw-cls\" has shape [1344], expected [n, dim]"],
    );
    suite_error(
        |d| {
            edit_reference(d, |t| {
                let (shape, v) = t.f32s.remove("raw-cls").unwrap();
                t.i64s.insert("raw-cls".into(), (shape, v.iter().map(|x| *x as i64).collect()));
            })
        },
        "reference.safetensors",
        &["tensor \"raw-cls\" is I64, expected a float type"],
    );
    suite_error(
        |d| {
            edit_reference(d, |t| {
                let (shape, v) = t.f32s.get_mut("raw-cls").unwrap();
                shape[0] -= 1;
                v.truncate(shape[0] * shape[1]);
                // Without token ids, so that the row count itself is what is wrong.
                t.i64s.remove("raw-cls.input_ids");
                t.i64s.remove("raw-cls.input_offsets");
            })
        },
        "reference.safetensors",
        &["holds 41 texts, texts.jsonl has 42"],
    );
    suite_error(
        |d| edit_reference(d, |t| t.f32s.get_mut("raw-cls").unwrap().0 = vec![42, 32, 1]),
        "reference.safetensors",
        &["expected [n, dim]"],
    );
}

#[test]
fn token_ids_of_another_number_of_texts_than_the_values() {
    // Was an index out of bounds in compare.
    suite_error(
        |d| {
            edit_reference(d, |t| {
                let (shape, o) = t.i64s.get_mut("raw-cls.input_offsets").unwrap();
                o.remove(1);
                shape[0] -= 1;
            })
        },
        "reference.safetensors",
        &["raw-cls.input_offsets", "token ids of 41 texts", "values of 42"],
    );
    suite_error(
        |d| edit_reference(d, |t| t.i64s.get_mut("raw-cls.input_ids").unwrap().1[3] = -5),
        "reference.safetensors",
        &["raw-cls.input_ids", "is -5, expected a token id"],
    );
}

/// A copy of tiny-xlmr-m3 whose sparse token ids are changed by `edit(ids, offsets)`.
fn sparse_error(edit: impl FnOnce(&mut Vec<i64>, &[i64]), expected: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = suite_copy("tiny-xlmr-m3", tmp.path());
    edit_reference(&dir, |t| {
        let offsets = t.i64s["m3-sparse.offsets"].1.clone();
        edit(&mut t.i64s.get_mut("m3-sparse.token_ids").unwrap().1, &offsets);
    });
    let o = embcheck(&["check", dir.to_str().unwrap(), "--pipeline", "m3-sparse", "--report-dir", tmp.path().join("r").to_str().unwrap()]);
    assert_input_error(&o, "reference.safetensors", expected);
}

/// The first text with at least two sparse weights: its range in the flat arrays.
fn two_weights(offsets: &[i64]) -> (usize, usize) {
    let w = offsets.windows(2).find(|w| w[1] - w[0] >= 2).expect("a text with two weights");
    (w[0] as usize, w[1] as usize)
}

#[test]
fn sparse_ids_unsorted_duplicate_or_negative() {
    sparse_error(
        |ids, o| {
            let (a, _) = two_weights(o);
            ids.swap(a, a + 1);
        },
        &["m3-sparse.token_ids", "expected strictly increasing ids"],
    );
    sparse_error(
        |ids, o| {
            let (a, _) = two_weights(o);
            ids[a + 1] = ids[a];
        },
        &["m3-sparse.token_ids", "expected strictly increasing ids"],
    );
    sparse_error(|ids, _| ids[0] = -1, &["m3-sparse.token_ids", "is -1, expected a token id"]);
    sparse_error(|ids, _| ids[0] = 1 << 40, &["m3-sparse.token_ids", "expected a token id"]);
}

#[test]
fn metadata_with_a_non_ascii_sha256_does_not_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = suite_copy("tiny-bert-mean", tmp.path());
    edit_reference(&dir, |t| {
        let mut sha: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&t.metadata["sha256"]).unwrap();
        sha.insert("config.json".into(), "ü".repeat(64).into());
        t.metadata.insert("sha256".into(), serde_json::to_string(&sha).unwrap());
    });
    let o = check(&dir, tmp.path());
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("config.json: sha256"), "{}", show(&o));
}

// ---- the texts ---------------------------------------------------------------------------------------

#[test]
fn texts_with_invalid_json_invalid_utf8_or_no_text_name_the_line() {
    let append = |bytes: &'static [u8]| {
        move |d: &Path| {
            let mut b = std::fs::read(d.join("texts.jsonl")).unwrap();
            b.extend_from_slice(bytes);
            std::fs::write(d.join("texts.jsonl"), b).unwrap();
        }
    };
    suite_error(append(b"{\"text\": \"unterminated}\n"), "texts.jsonl", &["line 43: invalid JSON"]);
    suite_error(append(b"{\"text\": \"caf\xe9\"}\n"), "texts.jsonl", &["line 43: invalid UTF-8"]);
    suite_error(append(b"{\"id\": \"x\", \"body\": \"no text key\"}\n"), "texts.jsonl", &["line 43: expected an object with a string \"text\""]);
    suite_error(append(b"[1, 2]\n"), "texts.jsonl", &["line 43: expected an object"]);
}

#[test]
fn duplicate_ids_and_empty_texts_files() {
    suite_error(
        |d| {
            let t = std::fs::read_to_string(d.join("texts.jsonl")).unwrap();
            let first = t.lines().next().unwrap().to_string();
            std::fs::write(d.join("texts.jsonl"), format!("{t}{first}\n")).unwrap();
        },
        "texts.jsonl",
        &["appears more than once"],
    );
    suite_error(|d| std::fs::write(d.join("texts.jsonl"), b"").unwrap(), "texts.jsonl", &["holds no texts"]);
    suite_error(|d| std::fs::write(d.join("texts.jsonl"), b"\n  \n").unwrap(), "texts.jsonl", &["holds no texts"]);
}

#[test]
fn texts_edited_since_the_reference_was_made() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = suite_copy("tiny-bert-mean", tmp.path());
    let recorded: serde_json::Value =
        serde_json::from_str(&read_tensors(&dir.join("reference.safetensors")).metadata["sha256"]).unwrap();
    let want = recorded["texts.jsonl"].as_str().unwrap().to_string();
    let t = std::fs::read_to_string(dir.join("texts.jsonl")).unwrap();
    std::fs::write(dir.join("texts.jsonl"), t.replacen("\"text\": \"", "\"text\": \"edited ", 1)).unwrap();
    let got = embcheck::fixture::provenance::sha256_file(&dir.join("texts.jsonl")).unwrap();
    let o = check(&dir, tmp.path());
    assert_input_error(&o, "texts.jsonl", &[&got, &want, "edited"]);
}

#[test]
fn embed_of_an_empty_texts_file_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = tmp.path().join("texts.jsonl");
    std::fs::write(&texts, b"").unwrap();
    let out = tmp.path().join("out.safetensors");
    let model = root().join("fixtures/models/tiny-bert-mean");
    let o = embcheck(&["embed", "--model", model.to_str().unwrap(), "--pipeline", "raw-cls", "--input", texts.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    assert_input_error(&o, "texts.jsonl", &["holds no texts"]);
    assert!(!out.exists());
}

#[test]
fn embed_to_an_unwritable_output() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = tmp.path().join("texts.jsonl");
    std::fs::write(&texts, b"{\"text\": \"hello\"}\n").unwrap();
    // Missing directories are created; a regular file in the way is not replaced.
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"keep").unwrap();
    let out = blocker.join("out.safetensors");
    let model = root().join("fixtures/models/tiny-bert-mean");
    let o = embcheck(&["embed", "--model", model.to_str().unwrap(), "--pipeline", "raw-cls", "--input", texts.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    assert_input_error(&o, "a-file", &[]);
    assert_eq!(std::fs::read(&blocker).unwrap(), b"keep");
}

// ---- suite.toml, flags, the report directory ----------------------------------------------------------

#[test]
fn suite_toml_with_unknown_keys_or_bad_tolerances() {
    let append = |extra: &'static str| move |d: &Path| {
        let t = std::fs::read_to_string(d.join("suite.toml")).unwrap();
        std::fs::write(d.join("suite.toml"), format!("{t}\n{extra}\n")).unwrap();
    };
    suite_error(append("colour = \"blue\""), "suite.toml", &["unknown field `colour`"]);
    suite_error(append("[tolerance.raw-cls]\nmax_rel = 1e-3"), "suite.toml", &["unknown field `max_rel`"]);
    suite_error(append("[tolerance.raw-cls]\nmax_rel_l2 = inf"), "suite.toml", &["[tolerance.raw-cls] max_rel_l2 = inf: expected a finite number"]);
    suite_error(append("[tolerance.raw-cls]\nmax_abs = nan"), "suite.toml", &["max_abs = NaN"]);
    suite_error(append("[tolerance.raw-cls]\nmin_cosine = 2.0"), "suite.toml", &["min_cosine = 2: expected a number from -1 to 1"]);
    suite_error(append("[tolerance.raw-clz]\nmin_cosine = 0.9"), "suite.toml", &["[tolerance.raw-clz]"]);
}

#[test]
fn unknown_pipeline() {
    suite_error(
        |d| {
            let t = std::fs::read_to_string(d.join("suite.toml")).unwrap();
            std::fs::write(d.join("suite.toml"), t.replace("\"raw-cls\"", "\"raw-clz\"")).unwrap();
        },
        "suite.toml",
        &["raw-clz"],
    );
    let o = embcheck(&["check", suite("tiny-bert-mean").to_str().unwrap(), "--pipeline", "dense-mean"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("dense-mean"), "{}", show(&o));
}

#[test]
fn unwritable_report_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let reports = blocker.join("reports");
    let o = embcheck(&["check", suite("tiny-bert-mean").to_str().unwrap(), "--report-dir", reports.to_str().unwrap()]);
    assert_input_error(&o, "a-file/reports", &[]);
    assert_eq!(std::fs::read(&blocker).unwrap(), b"not a directory");
}

// ---- diff ----------------------------------------------------------------------------------------------

fn dense_file(path: &Path, rows: usize, dim: usize, value: f32) {
    let t = Tensors {
        f32s: [("embeddings".to_string(), (vec![rows, dim], vec![value; rows * dim]))].into_iter().collect(),
        i64s: Default::default(),
        metadata: Default::default(),
    };
    write_tensors(path, &t);
}

#[test]
fn diff_of_different_dimensions_is_an_input_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.safetensors"), tmp.path().join("b.safetensors"));
    dense_file(&a, 3, 8, 1.0);
    dense_file(&b, 3, 9, 1.0);
    let o = embcheck(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_input_error(&o, "a.safetensors", &["dim", "8", "9"]);
}

#[test]
fn diff_of_empty_or_zero_dimension_files_is_an_input_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.safetensors"), tmp.path().join("b.safetensors"));
    dense_file(&a, 0, 0, 1.0);
    dense_file(&b, 0, 0, 1.0);
    let o = embcheck(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_input_error(&o, "a.safetensors", &["dimension 0"]);
    dense_file(&a, 0, 4, 1.0);
    dense_file(&b, 0, 4, 1.0);
    let o = embcheck(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_input_error(&o, "a.safetensors", &["holds no vectors"]);
}

#[test]
fn diff_with_a_tolerance_that_is_not_finite_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.safetensors");
    dense_file(&a, 2, 4, 1.0);
    let o = embcheck(&["diff", a.to_str().unwrap(), a.to_str().unwrap(), "--max-rel-l2", "inf"]);
    assert_input_error(&o, "--max-rel-l2", &["expected a finite number"]);
}

#[test]
fn all_zero_vectors_on_both_sides_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.safetensors");
    dense_file(&a, 2, 4, 0.0);
    let o = embcheck(&["diff", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let csv = String::from_utf8_lossy(&o.stdout);
    assert!(csv.lines().skip(1).all(|l| l.contains(",false,")), "{csv}");
}

// ---- reports and stdout -----------------------------------------------------------------------------

/// One errored suite beside a passing one: exit 2, and every report says error with the message.
#[test]
fn reports_agree_with_the_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = suite_copy("tiny-bert-cls", tmp.path());
    std::fs::write(bad.join("texts.jsonl"), b"{\"text\": 1}\n").unwrap();
    let reports = tmp.path().join("reports");
    let o = embcheck(&["check", suite("tiny-bert-mean").to_str().unwrap(), bad.to_str().unwrap(), "--report-dir", reports.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let read = |p: &str| std::fs::read_to_string(reports.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let message = "line 1: expected an object with a string";
    let json: serde_json::Value = serde_json::from_str(&read("summary.json")).unwrap();
    assert_eq!(json["status"], "error");
    assert_eq!(json["suites"][0]["status"], "passed");
    assert_eq!(json["suites"][1]["status"], "error");
    assert!(json["suites"][1]["error"].as_str().unwrap().contains(message), "{json}");
    let junit = read("junit.xml");
    assert!(junit.contains("<error") && junit.contains(message), "{junit}");
    let md = read("summary.md");
    assert!(md.contains("ERROR") && md.contains(message), "{md}");
    let html = read("tiny-bert-cls/report.html");
    assert!(html.contains("ERROR") && html.contains(message), "{html}");
}

/// `embcheck diff a b | head` and `embcheck check | head`: the reader leaves, embcheck ends quietly with
/// the verdict's exit code (and `check` still writes its reports).
#[test]
fn a_closed_stdout_ends_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.safetensors");
    // Enough rows that the CSV overflows a pipe buffer: the write must meet the closed pipe.
    dense_file(&a, 5000, 4, 1.0);
    let reports = tmp.path().join("reports");
    for args in [
        vec!["diff".to_string(), a.to_string_lossy().into_owned(), a.to_string_lossy().into_owned()],
        vec!["check".into(), suite("tiny-bert-mean").to_string_lossy().into_owned(), "--report-dir".into(), reports.to_string_lossy().into_owned()],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_embcheck"))
            .args(&args)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("error") && !err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(reports.join("summary.json").is_file());
}
