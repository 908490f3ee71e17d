//! A candidate's embedding split by text across CI jobs: `embed --partition M/N` (embcheck's own encoder, or
//! a `cmd:` system through `--against`) writes part files, `merge-embeddings` joins them, and the gate on
//! the merged file gives the verdict and figures of the unpartitioned gate. A part missing, given twice,
//! overlapping, of another N, suite or pipeline is refused with exit 2 and one line naming it.

mod common;

use std::path::{Path, PathBuf};

use common::{embcheck, show, suite};
use embcheck::source::{file, parts, write};

const SUITE: &str = "tiny-bert-mean-retrieval";
const PIPELINE: &str = "sentence-transformers";

fn run(args: &[&str]) -> (Option<i32>, String) {
    let o = embcheck(args);
    (o.status.code(), show(&o))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `embed` of part `m`/`n` of the texts of suite `name` with `extra` flags, into `dir`.
fn part_of(name: &str, dir: &Path, m: u64, n: u64, extra: &[&str]) -> PathBuf {
    let out = dir.join(format!("part-{m}-of-{n}.safetensors"));
    let spec = format!("{m}/{n}");
    let dir = suite(name);
    let args = [&["embed", "--suite", s(&dir), "--pipeline", PIPELINE, "--partition", &spec, "--output", s(&out)], extra].concat();
    let (code, o) = run(&args);
    assert_eq!(code, Some(0), "{o}");
    out
}

/// [`part_of`] the default suite.
fn part(dir: &Path, m: u64, n: u64, extra: &[&str]) -> PathBuf {
    part_of(SUITE, dir, m, n, extra)
}

fn merge(parts: &[&Path], out: &Path) -> (Option<i32>, String) {
    let mut args = vec!["merge-embeddings", "--output", s(out)];
    args.extend(parts.iter().map(|p| s(p)));
    run(&args)
}

/// The gate's exit code and its per-pipeline figures (gate.json without the candidate's name; null when
/// it wrote none).
fn gate(candidate: &str, reports: &Path) -> (Option<i32>, serde_json::Value, String) {
    gate_of(SUITE, candidate, reports)
}

/// [`gate`] of suite `name`.
fn gate_of(name: &str, candidate: &str, reports: &Path) -> (Option<i32>, serde_json::Value, String) {
    // The stand-in server (`common::serve_openai`) lists no models: name its model.
    let http: &[&str] = if candidate.starts_with("http://") { &["--model-name", "fake"] } else { &[] };
    let base = suite(name);
    // The question asked: the same figures either way; parity gates the neighbours and drift.
    let args = [&["gate", "--baseline", s(&base), "--candidate", candidate, "--pipeline", PIPELINE, "--mode", "parity", "--report-dir", s(reports)], http].concat();
    let (code, o) = run(&args);
    // A refused candidate writes no report.
    let j: serde_json::Value = std::fs::read_to_string(reports.join("gate.json")).map_or(serde_json::Value::Null, |t| serde_json::from_str(&t).unwrap());
    (code, j["pipelines"].clone(), o)
}

/// Everything a vectors file holds: ids, token ids and metadata exactly; the values as numbers.
type Contents = (Option<Vec<String>>, Vec<Option<Vec<u32>>>, std::collections::BTreeMap<String, String>, Vec<Result<Vec<f32>, String>>);

fn contents(path: &Path) -> Contents {
    let f = file::read(path, None).unwrap();
    let values = f
        .rows
        .iter()
        .map(|r| match &r.value {
            Ok(embcheck::Vector::Dense(v)) => Ok(v.clone()),
            Ok(other) => Err(format!("{other:?}")),
            Err(m) => Err(m.clone()),
        })
        .collect();
    (f.ids, f.rows.iter().map(|r| r.token_ids.clone()).collect(), f.metadata, values)
}

/// The same file up to f32 noise in the values: texts batched with other texts (a part's, not the whole
/// suite's) pad to other lengths, and the matrix products may round the last bit otherwise (README: results do
/// not depend on batch size or order beyond f32 noise).
fn assert_same_within_noise(a: &Contents, b: &Contents) {
    assert_eq!((&a.0, &a.1, &a.2), (&b.0, &b.1, &b.2), "ids, token ids or metadata differ");
    assert_eq!(a.3.len(), b.3.len());
    for (k, (x, y)) in a.3.iter().zip(&b.3).enumerate() {
        match (x, y) {
            (Ok(x), Ok(y)) => {
                let d: f64 = x.iter().zip(y).map(|(p, q)| (f64::from(*p) - f64::from(*q)).powi(2)).sum::<f64>().sqrt();
                let n: f64 = y.iter().map(|q| f64::from(*q).powi(2)).sum::<f64>().sqrt();
                assert!(x.len() == y.len() && d <= 1e-6 * n.max(1e-30), "text {k}: relative L2 {} beyond f32 noise", d / n);
            }
            _ => assert_eq!(x, y, "text {k}"),
        }
    }
}

/// Two gate.json figure trees equal, numbers within `tol` (relative, or absolute below 1).
fn assert_figures_match(a: &serde_json::Value, b: &serde_json::Value, tol: f64, at: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= tol * y.abs().max(1.0), "{at}: {x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_figures_match(p, q, tol, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{at}");
            for (k, p) in x {
                // Seconds per 1,000 texts is wall time, never equal.
                if k != "seconds_per_1000_texts" {
                    assert_figures_match(p, &y[k], tol, &format!("{at}.{k}"));
                }
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// Splits the texts of suite `name` in three, merges and gates a candidate two ways, checks that the split
/// changes nothing, and returns the gate's exit code.
fn split_merge_gate(name: &str, tmp: &Path, extra: &[&str], unpartitioned: &str) -> Option<i32> {
    std::fs::create_dir_all(tmp).unwrap();
    let parts: Vec<PathBuf> = (1..=3).map(|m| part_of(name, tmp, m, 3, extra)).collect();
    // Every text in exactly one part, in order, sizes within one.
    let ids: Vec<Vec<String>> = parts.iter().map(|p| file::read(p, None).unwrap().ids.unwrap()).collect();
    let texts = embcheck::fixture::read_texts(&suite(name).join("texts.jsonl")).unwrap();
    assert_eq!(ids.concat(), texts.iter().map(|t| t.id.clone()).collect::<Vec<_>>());
    assert!(ids.iter().map(Vec::len).max().unwrap() - ids.iter().map(Vec::len).min().unwrap() <= 1);

    // Merged in any order: the file an unpartitioned `embed` writes, value for value and key for key.
    let merged = tmp.join("merged.safetensors");
    let (code, o) = merge(&[&parts[2], &parts[0], &parts[1]], &merged);
    assert_eq!(code, Some(0), "{o}");
    let whole = tmp.join("whole.safetensors");
    let dir = suite(name);
    let args = [&["embed", "--suite", s(&dir), "--pipeline", PIPELINE, "--output", s(&whole)], extra].concat();
    let (code, o) = run(&args);
    assert_eq!(code, Some(0), "{o}");
    assert_same_within_noise(&contents(&merged), &contents(&whole));
    assert!(!contents(&merged).2.contains_key(parts::PARTITION));

    // The gate on the merged file: the unpartitioned gate's verdict and every figure.
    let (code_whole, figures_whole, o_whole) = gate_of(name, unpartitioned, &tmp.join("gate-whole"));
    let (code_merged, figures_merged, o_merged) = gate_of(name, s(&merged), &tmp.join("gate-merged"));
    assert_eq!(code_merged, code_whole, "{o_whole}\n{o_merged}");
    assert!(figures_whole.is_array(), "{o_whole}");
    assert_figures_match(&figures_merged, &figures_whole, 1e-5, "pipelines");

    // A single part is not the candidate: the gate refuses it rather than gating a third of the texts.
    let (code, _, o) = gate_of(name, s(&parts[0]), &tmp.join("gate-part"));
    assert_eq!(code, Some(2), "{o}");
    assert!(o.contains("is part 1/3 of a partitioned embedding") && o.contains("merge-embeddings"), "{o}");

    // `check --against` takes the merged file as it takes the unpartitioned one, and refuses a lone part.
    let check = |file: &Path| {
        let o = embcheck(&["check", s(&suite(name)), "--against", s(file), "--pipeline", PIPELINE, "--report-dir", s(&tmp.join("check"))]);
        let verdict: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("PASS ") || l.starts_with("FAIL ")).map(String::from).collect();
        (o.status.code(), verdict, show(&o))
    };
    let (merged_check, whole_check) = (check(&merged), check(&whole));
    assert_eq!((&merged_check.0, &merged_check.1), (&whole_check.0, &whole_check.1), "{}\n{}", merged_check.2, whole_check.2);
    assert_eq!(merged_check.1.len(), 1, "{}", merged_check.2);
    let (code, _, o) = check(&parts[1]);
    assert_eq!(code, Some(2), "{o}");
    assert!(o.contains("is part 2/3 of a partitioned embedding"), "{o}");
    code_whole
}

#[test]
fn own_encoder_parts_merge_into_the_unpartitioned_embedding_and_gate() {
    let tmp = tempfile::tempdir().unwrap();
    // Another model than the baseline's, through embcheck's own encoder with the suite's settings.
    let model = common::root().join("fixtures/models/tiny-bert-cls");
    let code = split_merge_gate(SUITE, tmp.path(), &["--model", s(&model)], s(&model));
    assert_eq!(code, Some(1), "the candidate differs from the baseline, so the figures are not trivial");
}

#[test]
fn command_parts_merge_into_the_unpartitioned_embedding_and_gate() {
    let tmp = tempfile::tempdir().unwrap();
    // A `cmd:` system that answers with another pipeline's vectors than the baseline's.
    let model = common::root().join("fixtures/models/tiny-bert-mean");
    let cmd = format!("cmd:{} embed --model {} --pipeline normalized-cls --input - --output -", env!("CARGO_BIN_EXE_embcheck"), s(&model));
    let code = split_merge_gate(SUITE, tmp.path(), &["--against", &cmd], &cmd);
    assert_eq!(code, Some(1), "the candidate differs from the baseline, so the figures are not trivial");
}

#[test]
fn server_parts_merge_into_the_unpartitioned_embedding_and_gate() {
    let tmp = tempfile::tempdir().unwrap();
    // Another model's vectors (embcheck's own encoder) served over HTTP by the protocol stand-in.
    let whole = tmp.path().join("served.safetensors");
    let model = common::root().join("fixtures/models/tiny-bert-cls");
    let (code, o) = run(&["embed", "--suite", s(&suite(SUITE)), "--model", s(&model), "--pipeline", PIPELINE, "--output", s(&whole)]);
    assert_eq!(code, Some(0), "{o}");
    let f = file::read(&whole, None).unwrap();
    let texts = embcheck::fixture::read_texts(&suite(SUITE).join("texts.jsonl")).unwrap();
    let table = texts
        .iter()
        .zip(f.rows)
        .map(|(t, r)| match r.value {
            Ok(embcheck::pipeline::Vector::Dense(v)) => (t.text.clone(), v),
            other => panic!("{other:?}"),
        })
        .collect();
    let url = common::serve_openai(table);
    let code = split_merge_gate(SUITE, &tmp.path().join("http"), &["--against", &url, "--model-name", "fake"], &url);
    assert_eq!(code, Some(1), "the candidate differs from the baseline, so the figures are not trivial");
}

#[test]
#[ignore = "needs all-MiniLM-L6-v2 (bash scripts/fetch-models.sh; scripts/test.sh runs it)"]
fn minilm_parts_merge_into_the_unpartitioned_embedding_and_gate() {
    let model = common::root().join("fixtures/external/all-MiniLM-L6-v2");
    assert!(model.join("model.safetensors").is_file(), "run bash scripts/fetch-models.sh first");
    let name = "all-minilm-l6-v2-retrieval";
    let tmp = tempfile::tempdir().unwrap();
    // The real model through embcheck's own encoder: the baseline's own model passes.
    let code = split_merge_gate(name, &tmp.path().join("own"), &[], s(&model));
    assert_eq!(code, Some(0));
    // The real model behind a `cmd:` system that pools the [CLS] token instead of the mean.
    let cmd = format!("cmd:{} embed --model {} --pipeline normalized-cls --input - --output -", env!("CARGO_BIN_EXE_embcheck"), s(&model));
    let code = split_merge_gate(name, &tmp.path().join("cmd"), &["--against", &cmd], &cmd);
    assert_eq!(code, Some(1), "CLS pooling moves the neighbours");
}

#[test]
fn parts_missing_twice_overlapping_or_of_another_embedding_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let p: Vec<PathBuf> = (1..=3).map(|m| part(t, m, 3, &[])).collect();
    let out = t.join("merged.safetensors");
    let refused = |parts: &[&Path], says: &str| {
        let (code, o) = merge(parts, &out);
        assert_eq!(code, Some(2), "{o}");
        let errors: Vec<&str> = o.lines().filter(|l| l.starts_with("embcheck: error:")).collect();
        assert_eq!(errors.len(), 1, "one line: {o}");
        assert!(errors[0].contains(says), "expected {says:?} in {o}");
        assert!(!out.exists(), "nothing is written when refused");
    };
    let total = embcheck::fixture::read_texts(&suite(SUITE).join("texts.jsonl")).unwrap().len();
    refused(&[&p[0], &p[2]], &format!("part 2/3 (texts {}..{} of {total}) is missing", total / 3, 2 * total / 3));
    refused(&[&p[0], &p[1], &p[1], &p[2]], "part 2/3 is given twice");

    // Another N.
    let dir4 = t.join("four");
    std::fs::create_dir(&dir4).unwrap();
    let q = part(&dir4, 3, 4, &[]);
    refused(&[&p[0], &p[1], &q], "is part 3/4");

    // Another suite (same model, pipeline and settings: only its texts differ).
    let other = t.join("other.safetensors");
    let (code, o) = run(&["embed", "--suite", s(&suite("tiny-bert-mean")), "--pipeline", PIPELINE, "--partition", "3/3", "--output", s(&other)]);
    assert_eq!(code, Some(0), "{o}");
    refused(&[&p[0], &p[1], &other], "was embedded from other texts");

    // Another pipeline of the same texts.
    let dirn = t.join("normalized");
    std::fs::create_dir(&dirn).unwrap();
    let spec = "3/3";
    let n3 = dirn.join("p3.safetensors");
    let (code, o) = run(&["embed", "--suite", s(&suite(SUITE)), "--pipeline", "normalized-cls", "--partition", spec, "--output", s(&n3)]);
    assert_eq!(code, Some(0), "{o}");
    refused(&[&p[0], &p[1], &n3], "pipeline is \"sentence-transformers\" there and \"normalized-cls\" here");

    // A file that is no part, and a part whose record was edited to overlap its neighbour.
    let whole = t.join("whole.safetensors");
    let (code, o) = run(&["embed", "--suite", s(&suite(SUITE)), "--pipeline", PIPELINE, "--output", s(&whole)]);
    assert_eq!(code, Some(0), "{o}");
    refused(&[&p[0], &p[1], &whole], "records no partition");
    let f = file::read(&p[1], None).unwrap();
    let mut rec = parts::record(&p[1], &f.metadata).unwrap().unwrap();
    rec.first -= 6;
    let mut meta = f.metadata.clone();
    meta.insert(parts::PARTITION.into(), serde_json::to_string(&rec).unwrap());
    for k in [write::IDS, write::REJECTED] {
        meta.remove(k);
    }
    let edited = t.join("edited.safetensors");
    std::fs::write(&edited, write::to_safetensors(f.kind, f.ids.as_ref().unwrap(), &f.rows, meta).unwrap()).unwrap();
    refused(&[&p[0], &edited, &p[2]], &format!("covers texts {}..{}", total / 3 - 6, 2 * total / 3));

    // Usage: a part file must be .safetensors (its metadata records the part); more parts than texts.
    let (code, o) = run(&["embed", "--suite", s(&suite(SUITE)), "--pipeline", PIPELINE, "--partition", "1/3", "--output", s(&t.join("p.jsonl"))]);
    assert_eq!(code, Some(2), "{o}");
    assert!(o.contains("--partition writes a .safetensors part file"), "{o}");
    let too_many = format!("1/{}", total + 1);
    let (code, o) = run(&["embed", "--suite", s(&suite(SUITE)), "--pipeline", PIPELINE, "--partition", &too_many, "--output", s(&t.join("p.safetensors"))]);
    assert_eq!(code, Some(2), "{o}");
    assert!(o.contains(&format!("{total} texts cannot be split into {} parts", total + 1)), "{o}");
    let (code, o) = run(&["embed", "--suite", s(&suite(SUITE)), "--pipeline", PIPELINE, "--partition", "4/3", "--output", s(&t.join("p.safetensors"))]);
    assert_eq!(code, Some(2), "{o}");
    assert!(o.contains("expected M/N with 1 <= M <= N"), "{o}");
}

/// A system that rejects a text: the rejection travels through the part file and the merge, and the gate
/// counts it as the unpartitioned gate does.
#[test]
fn rejections_travel_through_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // A program that answers every text with a fixed vector, except text x05, which it rejects.
    let script = t.join("system.sh");
    let vector: Vec<String> = (0..32).map(|i| format!("{}", (i as f32 * 0.37).sin())).collect();
    let answer = format!("{{\"embedding\":[{}]}}", vector.join(","));
    std::fs::write(
        &script,
        format!("while IFS= read -r line; do\n  case \"$line\" in\n    *'\"x05\"'*) echo '{{\"error\":\"413 too long\"}}' ;;\n    *) echo '{answer}' ;;\n  esac\ndone\n"),
    )
    .unwrap();
    let cmd = format!("cmd:sh {}", s(&script));
    let parts: Vec<PathBuf> = (1..=2).map(|m| part(t, m, 2, &["--against", &cmd])).collect();
    let merged = t.join("merged.safetensors");
    let (code, o) = merge(&[&parts[0], &parts[1]], &merged);
    assert_eq!(code, Some(0), "{o}");
    let f = file::read(&merged, None).unwrap();
    let i = f.ids.as_ref().unwrap().iter().position(|x| x == "x05").expect("x05 is a text of the suite");
    assert_eq!(f.rows[i].value, Err("413 too long".to_string()));
    assert_eq!(f.rows.iter().filter(|r| r.value.is_err()).count(), 1);
    let (code_whole, figures_whole, o_whole) = gate(&cmd, &t.join("g1"));
    let (code_merged, figures_merged, _) = gate(s(&merged), &t.join("g2"));
    assert_eq!((code_merged, &figures_merged), (code_whole, &figures_whole), "{o_whole}");
    let rejected = figures_merged[0]["checks"].as_array().unwrap().iter().find(|c| c["name"] == "texts the candidate rejected").unwrap()["value"].as_f64();
    assert_eq!(rejected, Some(1.0));
}
