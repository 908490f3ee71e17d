//! Truncation named in both directions, through the real CLI: a system that keeps more tokens than the
//! reference (cut at the model's 128 positions while the suite was made at 48) and one that keeps fewer, with
//! and without token ids; and embcheck's own pipeline cut earlier or later than the reference. Every failing
//! text must be `truncation`, proven by recomputation, with the length the system (or reference) used.

mod common;

use std::path::Path;

use common::*;

/// `(id, pass, diagnosis, detail)` per row of a diff.csv.
fn rows(reports: &Path, suite: &str) -> Vec<(String, bool, String, String)> {
    let path = reports.join(suite).join("diff.csv");
    let mut r = csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let (id, pass, diag, detail) = (col("id"), col("pass"), col("diagnosis"), col("detail"));
    r.records().map(|rec| rec.unwrap()).map(|rec| (rec[id].to_string(), &rec[pass] == "true", rec[diag].to_string(), rec[detail].to_string())).collect()
}

/// The ids of the texts whose reference token ids (made by the Python library) number `n`.
fn reference_texts_with(n: usize) -> Vec<String> {
    let t = read_tensors(&suite("tiny-bert-cls").join("reference.safetensors"));
    let offsets = &t.i64s.get("input_offsets").or_else(|| t.i64s.get("normalized-cls.input_offsets")).expect("reference input_offsets").1;
    let ids: Vec<String> = std::fs::read_to_string(suite("tiny-bert-cls").join("texts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    offsets.windows(2).zip(ids).filter(|(w, _)| (w[1] - w[0]) as usize == n).map(|(_, id)| id).collect()
}

/// `embed` of the suite's texts with the suite's model at `max_length`, as `.jsonl` with token ids and a copy
/// without them.
fn embed_at(dir: &Path, max_length: usize) -> (String, String) {
    let with = dir.join(format!("at{max_length}.jsonl"));
    let o = embcheck(&[
        "embed", "--model", "fixtures/models/tiny-bert-cls", "--pipeline", "normalized-cls", "--max-length", &max_length.to_string(),
        "--input", "fixtures/suites/tiny-bert-cls/texts.jsonl", "--output", with.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let without = dir.join(format!("at{max_length}-no-ids.jsonl"));
    let lines: Vec<String> = std::fs::read_to_string(&with)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v.as_object_mut().unwrap().remove("token_ids").is_some(), "embed writes token ids");
            v.to_string()
        })
        .collect();
    std::fs::write(&without, lines.join("\n")).unwrap();
    (with.to_str().unwrap().to_string(), without.to_str().unwrap().to_string())
}

fn check_file(file: &str, reports: &Path) -> (Vec<(String, bool, String, String)>, String) {
    let o = embcheck(&[
        "check", "fixtures/suites/tiny-bert-cls", "--against", file, "--pipeline", "normalized-cls", "--report-dir", reports.to_str().unwrap(),
        // What is tested is the diagnosis itself: a budget that lets it finish on a loaded machine (the default,
        // 0.8 of a file check's few milliseconds, is for unattended runs).
        "--diagnosis-budget", "120",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    (rows(reports, "tiny-bert-cls"), show(&o))
}

fn failing(rows: &[(String, bool, String, String)]) -> Vec<&(String, bool, String, String)> {
    rows.iter().filter(|r| !r.1).collect()
}

#[test]
fn a_system_cutting_at_the_models_128_positions_against_a_suite_made_at_48() {
    let tmp = tempfile::tempdir().unwrap();
    let (with_ids, without_ids) = embed_at(tmp.path(), 128);
    // The texts the reference cut: its own ids (from the Python library) reach the suite's 48.
    let cut = reference_texts_with(48);
    assert!(cut.len() >= 3, "{cut:?}");
    for file in [&with_ids, &without_ids] {
        let (rows, out) = check_file(file, &tmp.path().join("r"));
        let failing = failing(&rows);
        let ids: Vec<String> = failing.iter().map(|r| r.0.clone()).collect();
        assert_eq!(ids, cut, "exactly the texts the reference cut fail\n{out}");
        for r in &failing {
            assert_eq!(r.2, "truncation", "{}: {}\n{out}", r.0, r.3);
            assert!(r.3.contains("while the reference cuts it at 48"), "{}", r.3);
            // The system's length: a text it kept whole, or one it cut at the position limit.
            assert!(r.3.contains("which keeps all of its") || r.3.contains("max length 128, the model's position limit"), "{}", r.3);
        }
        if file == &with_ids {
            assert!(failing.iter().all(|r| r.3.starts_with("token ids agree up to position 47")), "{out}");
        }
        // The terminal says it in the same words as the failure message: `keyword: evidence`.
        assert!(out.contains("failed [cosine, rel_l2, max_abs") && out.contains("truncation: ") && out.contains("the system under test matches this text recomputed"), "{out}");
    }
}

#[test]
fn a_system_cutting_earlier_than_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let (with_ids, without_ids) = embed_at(tmp.path(), 32);
    for file in [&with_ids, &without_ids] {
        let (rows, out) = check_file(file, &tmp.path().join("r"));
        let failing = failing(&rows);
        assert!(failing.len() >= 3, "{out}");
        for r in &failing {
            assert_eq!(r.2, "truncation", "{}: {}\n{out}", r.0, r.3);
            assert!(r.3.contains("the system under test matches this text recomputed with max length 32, while the reference"), "{}", r.3);
        }
    }
}

/// A copy of the tiny-bert-cls suite whose `suite.toml` cuts at `max_length`: embcheck's own pipeline then
/// cuts otherwise than the reference (made at 48).
fn suite_cut_at(dir: &Path, max_length: usize) -> std::path::PathBuf {
    let to = dir.join(format!("tiny-bert-cls-{max_length}"));
    std::fs::create_dir_all(&to).unwrap();
    let from = suite("tiny-bert-cls");
    for f in ["texts.jsonl", "reference.safetensors"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    let model = root().join("fixtures/models/tiny-bert-cls");
    let toml = std::fs::read_to_string(from.join("suite.toml"))
        .unwrap()
        .replace("max_length = 48", &format!("max_length = {max_length}"))
        .replace("name = \"tiny-bert-cls\"", &format!("name = \"tiny-bert-cls-{max_length}\""))
        .replace("\"../../models/tiny-bert-cls\"", &format!("{:?}", model.to_str().unwrap()))
        .replace("\"raw-cls\", \"normalized-cls\", \"sentence-transformers\"", "\"normalized-cls\"");
    assert!(toml.contains(&format!("max_length = {max_length}")));
    std::fs::write(to.join("suite.toml"), toml).unwrap();
    to
}

#[test]
fn embcheck_cutting_earlier_or_later_than_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    for (n, words) in [(32, "while embcheck's pipeline cuts it at 32"), (128, "the reference matches this text recomputed with max length 48, while embcheck's pipeline")] {
        let dir = suite_cut_at(tmp.path(), n);
        let reports = tmp.path().join(format!("r{n}"));
        let o = embcheck(&["check", dir.to_str().unwrap(), "--report-dir", reports.to_str().unwrap(), "--diagnosis-budget", "120"]);
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        let rows = rows(&reports, &format!("tiny-bert-cls-{n}"));
        let failing = failing(&rows);
        assert!(failing.len() >= 3, "{}", show(&o));
        for r in &failing {
            assert_eq!(r.2, "truncation", "{}: {}\n{}", r.0, r.3, show(&o));
            assert!(r.3.contains(words), "{}", r.3);
        }
    }
}
