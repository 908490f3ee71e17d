//! `embcheck check` and `embcheck diff` on real files: passes, each corruption caught with the right
//! diagnosis, and input errors with exit code 2.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// `(pipeline, id, pass, diagnosis)` per row of a diff.csv.
type Row = (String, String, bool, String);

fn diagnoses(csv_path: &Path) -> Vec<Row> {
    let mut r = csv::Reader::from_path(csv_path).unwrap_or_else(|e| panic!("{}: {e}", csv_path.display()));
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name} in {h:?}"));
    let (p, id, pass, diag) = (col("pipeline"), col("id"), col("pass"), col("diagnosis"));
    r.records().map(|rec| {
        let rec = rec.unwrap();
        (rec[p].to_string(), rec[id].to_string(), &rec[pass] == "true", rec[diag].to_string())
    }).collect()
}

/// Runs check on one suite copy; returns the exit code and its diff.csv rows. What these tests check is the
/// diagnosis itself: a budget that lets every one finish on a loaded machine (the default budget, a fraction
/// of the check's own compute, is tested in tests/unattended.rs).
fn check(suite: &Path, reports: &Path) -> (Option<i32>, Vec<Row>, String) {
    let o = embcheck(&["check", suite.to_str().unwrap(), "--report-dir", reports.to_str().unwrap(), "--diagnosis-budget", "300"]);
    let name = suite.file_name().unwrap().to_str().unwrap();
    let rows = if reports.join(name).join("diff.csv").is_file() { diagnoses(&reports.join(name).join("diff.csv")) } else { Vec::new() };
    (o.status.code(), rows, show(&o))
}

/// A copy of tiny-bert-mean whose reference is changed by `corrupt`.
fn corrupted(tmp: &Path, corrupt: impl FnOnce(&mut Tensors)) -> PathBuf {
    let dir = suite_copy("tiny-bert-mean", tmp);
    let path = dir.join("reference.safetensors");
    let mut t = read_tensors(&path);
    corrupt(&mut t);
    write_tensors(&path, &t);
    dir
}

/// Every failing row of `pipeline` carries `keyword`, and at least one row fails.
fn assert_diagnosed(rows: &[Row], pipeline: &str, keyword: &str, out: &str) {
    let failing: Vec<_> = rows.iter().filter(|r| r.0 == pipeline && !r.2).collect();
    assert!(!failing.is_empty(), "no failing {pipeline} row\n{out}");
    for r in &failing {
        assert_eq!(r.3, keyword, "{pipeline} {}: diagnosed {:?}, expected {keyword}\n{out}", r.1, r.3);
    }
}

#[test]
fn bundled_suites_pass_and_write_every_report() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = vec!["check".to_string()];
    args.extend(bundled_suites().iter().map(|p| p.to_string_lossy().into_owned()));
    args.extend(["--report-dir".into(), tmp.path().to_string_lossy().into_owned()]);
    let o = embcheck(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    for f in ["index.html", "summary.md", "summary.json", "junit.xml", "tiny-bert-mean/diff.csv", "tiny-bert-mean/summary.md", "tiny-bert-mean/report.html"] {
        assert!(tmp.path().join(f).is_file(), "{f} missing");
    }
    let rows = diagnoses(&tmp.path().join("tiny-xlmr-m3/diff.csv"));
    assert_eq!(rows.len(), 42 * 5);
    assert!(rows.iter().all(|r| r.2 && r.3.is_empty()));
}

#[test]
fn normalized_and_raw_swapped_is_normalization() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = corrupted(tmp.path(), |t| {
        let raw = t.f32s.remove("raw-cls").unwrap();
        let norm = t.f32s.insert("normalized-cls".into(), raw).unwrap();
        t.f32s.insert("raw-cls".into(), norm);
    });
    let (code, rows, out) = check(&dir, &tmp.path().join("reports"));
    assert_eq!(code, Some(1), "{out}");
    assert_diagnosed(&rows, "raw-cls", "normalization", &out);
    assert_diagnosed(&rows, "normalized-cls", "normalization", &out);
    assert!(rows.iter().filter(|r| r.0 == "sentence-transformers").all(|r| r.2));
}

#[test]
fn reference_pooled_the_other_way_is_pooling() {
    let tmp = tempfile::tempdir().unwrap();
    // The suite's sentence-transformers pipeline mean-pools; give it Python's CLS vectors, normalized.
    let dir = corrupted(tmp.path(), |t| {
        let (shape, raw) = t.f32s["raw-cls"].clone();
        let mut cls = raw.clone();
        for row in cls.chunks_mut(shape[1]) {
            let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= n);
        }
        t.f32s.insert("sentence-transformers".into(), (shape, cls));
    });
    let (code, rows, out) = check(&dir, &tmp.path().join("reports"));
    assert_eq!(code, Some(1), "{out}");
    assert_diagnosed(&rows, "sentence-transformers", "pooling", &out);
}

#[test]
fn reference_made_with_a_shorter_max_length_is_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = suite_copy("tiny-bert-mean", tmp.path());
    std::fs::copy(root().join("fixtures/corruptions/tiny-bert-mean-max24/reference.safetensors"), dir.join("reference.safetensors")).unwrap();
    let (code, rows, out) = check(&dir, &tmp.path().join("reports"));
    assert_eq!(code, Some(1), "{out}");
    for p in ["raw-cls", "normalized-cls", "sentence-transformers"] {
        assert_diagnosed(&rows, p, "truncation", &out);
    }
    // Texts shorter than 24 tokens are unaffected and pass.
    assert!(rows.iter().any(|r| r.2), "{out}");
}

#[test]
fn reference_rounded_to_f16_is_precision() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = corrupted(tmp.path(), |t| {
        for (name, (_, v)) in t.f32s.iter_mut() {
            if !name.contains('.') {
                v.iter_mut().for_each(|x| *x = half::f16::from_f32(*x).to_f32());
            }
        }
    });
    let (code, rows, out) = check(&dir, &tmp.path().join("reports"));
    assert_eq!(code, Some(1), "{out}");
    for p in ["raw-cls", "normalized-cls", "sentence-transformers"] {
        assert_diagnosed(&rows, p, "precision", &out);
    }
}

#[test]
fn nan_in_the_reference_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = corrupted(tmp.path(), |t| t.f32s.get_mut("normalized-cls").unwrap().1[5] = f32::NAN);
    let (code, rows, out) = check(&dir, &tmp.path().join("reports"));
    assert_eq!(code, Some(1), "{out}");
    let failing: Vec<_> = rows.iter().filter(|r| !r.2).collect();
    assert_eq!(failing.len(), 1, "{out}");
    assert_eq!((failing[0].0.as_str(), failing[0].3.as_str()), ("normalized-cls", "non-finite"));
}

#[test]
fn truncated_reference_file_is_an_input_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = suite_copy("tiny-bert-mean", tmp.path());
    let path = dir.join("reference.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let o = embcheck(&["check", dir.to_str().unwrap(), "--report-dir", tmp.path().join("r").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("reference.safetensors") && err.contains("not a valid safetensors file"), "{err}");
}

#[test]
fn missing_model_is_an_error_unless_skipped_and_a_skip_is_never_a_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = suite_copy("tiny-bert-mean", tmp.path());
    let toml = std::fs::read_to_string(dir.join("suite.toml")).unwrap();
    let toml: String = toml.lines().map(|l| if l.starts_with("model") { "model = \"../no-such-model\"".to_string() } else { l.to_string() }).collect::<Vec<_>>().join("\n");
    std::fs::write(dir.join("suite.toml"), toml).unwrap();
    let reports = tmp.path().join("r");
    let o = embcheck(&["check", dir.to_str().unwrap(), "--report-dir", reports.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-model"), "{}", show(&o));

    // Skipped alone is not a pass: nothing was checked.
    let o = embcheck(&["check", dir.to_str().unwrap(), "--report-dir", reports.to_str().unwrap(), "--skip-missing"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no suite was checked"), "{}", show(&o));
    // Beside a suite that runs, the skip is counted and the exit code is the other suite's.
    let other = suite("tiny-bert-cls");
    let o = embcheck(&["check", dir.to_str().unwrap(), other.to_str().unwrap(), "--report-dir", reports.to_str().unwrap(), "--skip-missing"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 passed, 0 failed, 1 skipped"), "{}", show(&o));
    let summary = std::fs::read_to_string(reports.join("summary.md")).unwrap();
    assert!(summary.contains("SKIPPED"), "{summary}");
    let junit = std::fs::read_to_string(reports.join("junit.xml")).unwrap();
    assert!(junit.contains("<skipped"), "{junit}");
    let report = embcheck::Suite::load(&dir).unwrap().run_with(&embcheck::RunOptions { skip_missing: true, ..Default::default() }).unwrap();
    assert_eq!(report.status(), embcheck::Status::Skipped);
    assert!(!report.passed());
}

#[test]
fn bad_suite_toml_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = suite_copy("tiny-bert-mean", tmp.path());
    std::fs::write(dir.join("suite.toml"), "model = \"x\"\npipelines = [\"mean-cls\"]\n").unwrap();
    let o = embcheck(&["check", dir.to_str().unwrap(), "--report-dir", tmp.path().join("r").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("suite.toml") && err.contains("mean-cls"), "{err}");
}

#[test]
fn diff_compares_two_embedding_files() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = suite("tiny-bert-mean").join("texts.jsonl");
    let embed = |batch: &str, out: &Path| {
        let o = embcheck(&[
            "embed", "--model", "fixtures/models/tiny-bert-mean", "--pipeline", "normalized-cls",
            "--input", texts.to_str().unwrap(), "--output", out.to_str().unwrap(), "--batch-size", batch,
        ]);
        assert!(o.status.success(), "{}", show(&o));
    };
    let (a, b) = (tmp.path().join("a.safetensors"), tmp.path().join("b.safetensors"));
    embed("1", &a);
    embed("16", &b);
    let o = embcheck(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let csv = String::from_utf8_lossy(&o.stdout);
    assert!(csv.starts_with("suite,pipeline,id,cosine,l2,rel_l2,max_abs_diff"), "{csv}");
    assert_eq!(csv.lines().count(), 43);

    // The reference's raw CLS against our normalized vectors: same direction, other norm.
    let o = embcheck(&[
        "diff", a.to_str().unwrap(), suite("tiny-bert-mean").join("reference.safetensors").to_str().unwrap(),
        "--pipeline", "raw-cls", "--output", tmp.path().join("d.csv").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert_diagnosed(&diagnoses(&tmp.path().join("d.csv")), "raw-cls", "normalization", &show(&o));

    let o = embcheck(&["diff", a.to_str().unwrap(), tmp.path().join("absent.safetensors").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));

    // A suite's reference names its tensors after the pipelines: the error says to choose one.
    let o = embcheck(&["diff", a.to_str().unwrap(), suite("tiny-bert-mean").join("reference.safetensors").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("raw-cls, normalized-cls, sentence-transformers: choose one with --pipeline"), "{err}");
}

#[test]
fn library_api_passes_and_panics_like_assert_allclose() {
    for dir in bundled_suites() {
        embcheck::Suite::load(&dir).unwrap().run().unwrap().assert_passed();
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = corrupted(tmp.path(), |t| t.f32s.get_mut("sentence-transformers").unwrap().1[0] += 0.5);
    let report = embcheck::Suite::load(&dir).unwrap().run().unwrap();
    let msg = std::panic::catch_unwind(|| report.assert_passed()).unwrap_err();
    let msg = msg.downcast_ref::<String>().unwrap();
    assert!(msg.contains("Mismatched texts: 1 / 42") && msg.contains("Max absolute difference") && msg.contains("en-simple"), "{msg}");
}

#[test]
fn a_model_file_changed_since_the_reference_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    copy_dir(&root().join("fixtures/models/tiny-bert-mean"), &model);
    // A change that alters no vector: the check passes, and still says the files differ.
    let cfg = model.join("tokenizer_config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}\n")).unwrap();
    let dir = suite_copy("tiny-bert-mean", tmp.path());
    let toml = std::fs::read_to_string(dir.join("suite.toml")).unwrap();
    let toml: String = toml
        .lines()
        .map(|l| if l.starts_with("model") { format!("model = {:?}", model.to_string_lossy()) } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("suite.toml"), toml).unwrap();
    let reports = tmp.path().join("r");
    let o = embcheck(&["check", dir.to_str().unwrap(), "--report-dir", reports.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("WARN tiny-bert-mean: model file changed since the reference was made: tokenizer_config.json"), "{}", show(&o));
    let summary = std::fs::read_to_string(reports.join("summary.md")).unwrap();
    assert!(summary.contains("model file changed since the reference was made"), "{summary}");
}

#[test]
fn markdown_summary_is_appended_to_github_step_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = tmp.path().join("step-summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let dir = suite("tiny-bert-cls");
    let o = embcheck_env(
        &["check", dir.to_str().unwrap(), "--report-dir", tmp.path().join("r").to_str().unwrap()],
        &[("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.starts_with("earlier step\n") && text.contains("tiny-bert-cls") && text.contains("sentence-transformers"), "{text}");
}

#[test]
fn truncation_is_found_by_recomputing_when_the_reference_has_no_token_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = suite_copy("tiny-bert-mean", tmp.path());
    let path = dir.join("reference.safetensors");
    // The reference made at max length 24 (its metadata says so), its token ids dropped.
    let mut t = read_tensors(&root().join("fixtures/corruptions/tiny-bert-mean-max24/reference.safetensors"));
    t.i64s.retain(|name, _| !name.ends_with(".input_ids") && !name.ends_with(".input_offsets"));
    write_tensors(&path, &t);
    let (code, rows, out) = check(&dir, &tmp.path().join("reports"));
    assert_eq!(code, Some(1), "{out}");
    for p in ["raw-cls", "normalized-cls", "sentence-transformers"] {
        assert_diagnosed(&rows, p, "truncation", &out);
    }
    assert!(rows.iter().all(|r| r.2 || r.3 == "truncation"));
}

/// index.html links every suite's page of the run (each link resolving to a written file) and states the totals.
#[test]
fn index_links_every_suite_page() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = corrupted(tmp.path(), |t| t.f32s.get_mut("raw-cls").unwrap().1[0] += 0.5);
    let reports = tmp.path().join("r");
    let o = embcheck(&["check", suite("tiny-bert-cls").to_str().unwrap(), bad.to_str().unwrap(), "--report-dir", reports.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let index = std::fs::read_to_string(reports.join("index.html")).unwrap();
    assert!(index.contains("2 suites: <b>1</b> passed, <b>1</b> failed"), "{index}");
    for name in ["tiny-bert-cls", "tiny-bert-mean"] {
        let href = format!("href=\"{name}/report.html\"");
        assert!(index.contains(&href), "{href} not in {index}");
        assert!(reports.join(name).join("report.html").is_file());
    }
    assert!(index.contains("raw-cls: 1 / 42 failed"), "{index}");
}

/// `--help` lists the values each typed flag takes, and a bad value is a usage error naming it.
#[test]
fn help_lists_valid_values() {
    let help = |args: &[&str]| String::from_utf8_lossy(&embcheck(args).stdout).into_owned();
    let check = help(&["check", "--help"]);
    for v in ["raw-cls", "normalized-cls", "sentence-transformers", "m3-sparse", "m3-colbert", "openai", "tei"] {
        assert!(check.contains(v), "check --help lacks {v}:\n{check}");
    }
    let embed = help(&["embed", "--help"]);
    for v in ["f32", "f16", "bf16", "transformers4", "transformers5", "--suite"] {
        assert!(embed.contains(v), "embed --help lacks {v}:\n{embed}");
    }
    // embed judges nothing: its help lists no "out of tolerance" exit code; check's does.
    assert!(!embed.contains("out of tolerance") && check.contains("out of tolerance"), "{embed}");
    let o = embcheck(&["diff", "a.jsonl", "b.jsonl", "--dtype", "f64"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("f64"), "{}", show(&o));
    // reject takes no reason (it was accepted and ignored).
    let o = embcheck(&["reject", "fixtures/suites/tiny-bert-cls", "--reason", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

/// A usage error is found before any suite runs: exit 2 and no report directory.
#[test]
fn usage_error_writes_no_report() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("r");
    let file = tmp.path().join("x.jsonl");
    std::fs::write(&file, "").unwrap();
    let o = embcheck(&["check", suite("tiny-bert-cls").to_str().unwrap(), "--against", file.to_str().unwrap(), "--report-dir", reports.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--pipeline"), "{}", show(&o));
    assert!(!reports.exists(), "a usage error wrote {}", reports.display());
}

/// `embed --suite` takes the suite's settings (tiny-xlmr-m3: max length 128, below the model's 2560), so its
/// output passes that suite; the same model embedded with its own settings fails the long texts.
#[test]
fn embed_with_the_suite_settings_is_comparable_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = suite("tiny-xlmr-m3");
    let (with, without) = (tmp.path().join("with.jsonl"), tmp.path().join("without.jsonl"));
    let o = embcheck(&["embed", "--suite", dir.to_str().unwrap(), "--pipeline", "normalized-cls", "--output", with.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let o = embcheck(&[
        "embed", "--model", "fixtures/models/tiny-xlmr-m3", "--pipeline", "normalized-cls",
        "--input", dir.join("texts.jsonl").to_str().unwrap(), "--output", without.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let run = |file: &Path, rep: &str| {
        let reports = tmp.path().join(rep);
        let o = embcheck(&["check", dir.to_str().unwrap(), "--against", file.to_str().unwrap(), "--pipeline", "normalized-cls", "--report-dir", reports.to_str().unwrap()]);
        (o.status.code(), diagnoses(&reports.join("tiny-xlmr-m3/diff.csv")), show(&o))
    };
    let (code, _, out) = run(&with, "r1");
    assert_eq!(code, Some(0), "{out}");
    let (code, rows, out) = run(&without, "r2");
    assert_eq!(code, Some(1), "{out}");
    assert!(rows.iter().any(|r| !r.2), "{out}");
}
