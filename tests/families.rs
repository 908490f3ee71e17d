//! Model families through the real CLI: a model type embcheck does not implement still gets every model-free
//! check; MPNet, DistilBERT, ModernBERT and Gemma 3 (EmbeddingGemma) are computed by their own encoders on both
//! stacks (Gemma 3: transformers 5 only) and in half precision.

mod common;

use std::path::Path;

use common::*;

const DEBERTA: &str = "tiny-deberta-v2";

/// Writes `{"id", "embedding"}` lines: the suite's texts with `vectors` (rows of `dim`).
fn write_jsonl(path: &Path, ids: &[String], vectors: &[f32], dim: usize) {
    let lines: Vec<String> = ids
        .iter()
        .zip(vectors.chunks(dim))
        .map(|(id, v)| serde_json::json!({"id": id, "embedding": v}).to_string())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn text_ids(suite_dir: &Path) -> Vec<String> {
    let texts = std::fs::read_to_string(suite_dir.join("texts.jsonl")).unwrap();
    texts.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect()
}

/// The failing rows' diagnoses of a diff.csv.
fn failing_diagnoses(csv_path: &Path) -> Vec<String> {
    let mut r = csv::Reader::from_path(csv_path).unwrap_or_else(|e| panic!("{}: {e}", csv_path.display()));
    let h = r.headers().unwrap().clone();
    let (pass, diag) = (h.iter().position(|c| c == "pass").unwrap(), h.iter().position(|c| c == "diagnosis").unwrap());
    r.records().map(|x| x.unwrap()).filter(|x| &x[pass] != "true").map(|x| x[diag].to_string()).collect()
}

/// The DeBERTa-v2 suite (references by the Python libraries on a real `DebertaV2Model`): a system is checked
/// model-free — faithful passes (0), unnormalized fails with the model-free diagnosis (1), never 2 for the
/// model type alone; `gate` and `diff` take it; `embed` and `check` of embcheck's own pipeline say what is
/// implemented.
#[test]
fn an_unimplemented_model_type_gets_every_model_free_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = suite(DEBERTA);
    let reference = read_tensors(&dir.join("reference.safetensors"));
    let ids = text_ids(&dir);
    let (shape, raw) = &reference.f32s["raw-cls"];
    let dim = shape[1];
    // A system that normalizes the CLS hidden state itself (as FlagEmbedding does): faithful.
    let normalized: Vec<f32> = raw
        .chunks(dim)
        .flat_map(|v| {
            let n = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            v.iter().map(move |x| (*x as f64 / n) as f32)
        })
        .collect();
    let faithful = tmp.path().join("faithful.jsonl");
    write_jsonl(&faithful, &ids, &normalized, dim);
    let unnormalized = tmp.path().join("raw.jsonl");
    write_jsonl(&unnormalized, &ids, raw, dim);

    let check = |file: &Path, reports: &Path| {
        embcheck(&["check", dir.to_str().unwrap(), "--against", file.to_str().unwrap(), "--pipeline", "normalized-cls", "--report-dir", reports.to_str().unwrap()])
    };
    let reports = tmp.path().join("ok");
    let o = check(&faithful, &reports);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let summary = std::fs::read_to_string(reports.join("summary.json")).unwrap();
    assert!(summary.contains("model type deberta-v2 is not implemented: model-free diagnoses only"), "{summary}");

    let reports = tmp.path().join("bad");
    let o = check(&unnormalized, &reports);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let failing = failing_diagnoses(&reports.join(DEBERTA).join("diff.csv"));
    assert_eq!(failing.len(), ids.len(), "{}", show(&o));
    assert!(failing.iter().all(|d| d == "normalization"), "{failing:?}\n{}", show(&o));

    // gate with a candidate system (a file), and diff: no model needed.
    let o = embcheck(&[
        "gate", "--baseline", dir.to_str().unwrap(), "--candidate", faithful.to_str().unwrap(), "--pipeline", "normalized-cls",
        "--mode", "parity", "--report-dir", tmp.path().join("gate").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = embcheck(&["diff", faithful.to_str().unwrap(), dir.join("reference.safetensors").to_str().unwrap(), "--pipeline", "normalized-cls"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    // What needs embcheck's own encoder says which model types it implements.
    let o = embcheck(&[
        "embed", "--model", "fixtures/models/tiny-deberta-v2", "--pipeline", "raw-cls", "--input", dir.join("texts.jsonl").to_str().unwrap(),
        "--output", tmp.path().join("e.safetensors").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("\"deberta-v2\" is not implemented") && err.contains("bert, xlm-roberta, roberta, camembert, mpnet, distilbert"), "{err}");
    // Its own pipeline: a skip (never a pass), saying how to check a system instead.
    let o = embcheck(&["check", dir.to_str().unwrap(), suite("tiny-bert-cls").to_str().unwrap(), "--report-dir", tmp.path().join("own").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 passed, 0 failed, 1 skipped"), "{}", show(&o));
    assert!(show(&o).contains("check a system against it with --against"), "{}", show(&o));
}

/// MPNet (relative position bias reached to its capped buckets by 512-token texts), DistilBERT (learned
/// and sinusoidal positions) and ModernBERT (rotary positions, sliding-window layers): embcheck's own encoder in f16 and bf16 stays close to its f32 vectors (no
/// Python bf16 reference: FlagEmbedding runs f16 only; the f16 suites are checked against its f16 run).
#[test]
fn new_families_in_half_precision_are_finite_and_close_to_f32() {
    let tmp = tempfile::tempdir().unwrap();
    for (model, suite_name) in [
        ("tiny-mpnet", "tiny-mpnet"),
        ("tiny-distilbert", "tiny-distilbert"),
        ("tiny-distilbert-sinusoidal", "tiny-distilbert-sinusoidal"),
        ("tiny-modernbert", "tiny-modernbert"),
        ("tiny-modernbert-cls", "tiny-modernbert-cls"),
        ("tiny-embeddinggemma", "tiny-embeddinggemma-tf5"),
    ] {
        let input = suite(suite_name).join("texts.jsonl");
        let run = |dtype: &str| {
            let out = tmp.path().join(format!("{model}-{dtype}.safetensors"));
            let o = embcheck(&[
                "embed", "--model", &format!("fixtures/models/{model}"), "--pipeline", "sentence-transformers", "--input", input.to_str().unwrap(),
                "--output", out.to_str().unwrap(), "--dtype", dtype,
            ]);
            assert!(o.status.success(), "{}", show(&o));
            read_tensors(&out).f32s.remove("embeddings").unwrap()
        };
        let (shape, base) = run("f32");
        for (dtype, bound) in [("f16", 5e-3), ("bf16", 4e-2)] {
            let (_, half) = run(dtype);
            assert!(half.iter().all(|x| x.is_finite()), "{model} {dtype}: NaN or Inf");
            let worst = half.chunks(shape[1]).zip(base.chunks(shape[1])).map(|(a, e)| rel_l2(a, e)).fold(0f64, f64::max);
            eprintln!("{model} sentence-transformers {dtype} vs f32: worst rel-L2 {worst:e}");
            assert!(worst < bound, "{model} {dtype}: worst relative L2 {worst:e}");
        }
    }
}

/// The worst relative L2 of the rows of a diff.csv.
fn worst_rel_l2(csv_path: &Path) -> f64 {
    let mut r = csv::Reader::from_path(csv_path).unwrap_or_else(|e| panic!("{}: {e}", csv_path.display()));
    let h = r.headers().unwrap().clone();
    let col = h.iter().position(|c| c == "rel_l2").unwrap_or_else(|| panic!("no rel_l2 column in {h:?}"));
    r.records().map(|x| x.unwrap()[col].parse::<f64>().unwrap()).fold(0f64, f64::max)
}

/// EmbeddingGemma's shape (Gemma 3 text run bidirectionally, sliding windows shorter than most texts, grouped
/// key heads, mean pooling, two Dense layers, Normalize; queries with the `query` prompt): embcheck's own
/// encoder passes the transformers 5 / sentence-transformers 6 references at f32 rounding level, raw and
/// through the sentence-transformers chain. The same model computed causally (config.json without
/// `use_bidirectional_attention`, what transformers 4.56 or a port that ignores the key computes), checked as a
/// system under test, fails on every text with the `attention-mask` diagnosis.
#[test]
fn embeddinggemma_passes_its_references_and_a_causal_run_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["tiny-embeddinggemma-tf5", "tiny-embeddinggemma-query-tf5"] {
        let reports = tmp.path().join(name);
        let o = embcheck(&["check", suite(name).to_str().unwrap(), "--report-dir", reports.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        let worst = worst_rel_l2(&reports.join(name).join("diff.csv"));
        eprintln!("{name}: worst rel-L2 {worst:e}");
        assert!(worst < 1e-5, "{name}: worst relative L2 {worst:e}");
    }
    // Stage by stage (embeddings, each block's residual stream, the final norm) against transformers 5's states.
    let o = embcheck(&["bisect", suite("tiny-embeddinggemma-tf5").to_str().unwrap(), "--report-dir", tmp.path().join("bisect").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no divergence"), "{}", show(&o));
    // The causal run: the same files with use_bidirectional_attention false.
    let model = tmp.path().join("causal");
    copy_dir(&root().join("fixtures/models/tiny-embeddinggemma"), &model);
    let cfg_path = model.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["use_bidirectional_attention"] = false.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let dir = suite("tiny-embeddinggemma-tf5");
    let out = tmp.path().join("causal.jsonl");
    let o = embcheck(&[
        "embed", "--suite", dir.to_str().unwrap(), "--model", model.to_str().unwrap(), "--pipeline", "sentence-transformers",
        "--output", out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    // Checked as a system under test: every text fails, each proven to be the causal mask by recomputation.
    let reports = tmp.path().join("causal-check");
    let o = embcheck(&[
        "check", dir.to_str().unwrap(), "--against", out.to_str().unwrap(), "--pipeline", "sentence-transformers", "--diagnosis-budget", "600",
        "--report-dir", reports.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let failing = failing_diagnoses(&reports.join("tiny-embeddinggemma-tf5").join("diff.csv"));
    assert_eq!(failing.len(), text_ids(&dir).len(), "{}", show(&o));
    assert!(failing.iter().all(|d| d == "attention-mask"), "{failing:?}");
}
