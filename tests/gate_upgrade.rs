//! `embcheck gate` on the upgrade question, through the real CLI: all-MiniLM-L6-v2's bundled retrieval suite
//! as the baseline and all-mpnet-base-v2's vectors as the candidate, computed by sentence-transformers with
//! scripts/make_upgrade_candidates.py and committed (fixtures/candidates/…, with provenance.json): as it
//! ships, cut at 6 tokens, and with one language's texts replaced by seeded random vectors. A vectors file
//! needs no model, so these run without the real weights.

mod common;

use std::path::{Path, PathBuf};

use common::{embcheck, root, show, suite};

const SUITE: &str = "all-minilm-l6-v2-retrieval";

fn candidate(name: &str) -> String {
    root().join("fixtures/candidates").join(SUITE).join(format!("{name}.npy")).to_string_lossy().into_owned()
}

fn gate(baseline: &Path, candidate: &str, reports: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["gate", "--baseline", baseline.to_str().unwrap(), "--candidate", candidate, "--pipeline", "sentence-transformers", "--report-dir", reports.to_str().unwrap()];
    args.extend_from_slice(extra);
    embcheck(&args)
}

fn json(reports: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(reports.join("gate.json")).unwrap()).unwrap()
}

/// (name, value, verdict) of every check.
fn checks(j: &serde_json::Value) -> Vec<(String, f64, &'static str)> {
    j["pipelines"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let v = if c["passed"].as_bool().unwrap() {
                "pass"
            } else if c["inconclusive"].as_bool().unwrap() {
                "inconclusive"
            } else {
                "fail"
            };
            (c["name"].as_str().unwrap().to_string(), c["value"].as_f64().unwrap_or(f64::NAN), v)
        })
        .collect()
}

fn verdict_of<'a>(c: &'a [(String, f64, &'static str)], starts: &str) -> &'a (String, f64, &'static str) {
    c.iter().find(|c| c.0.starts_with(starts)).unwrap_or_else(|| panic!("no check {starts:?} in {c:?}"))
}

/// A copy of the suite whose retrieval set is found from anywhere, with extra `[gate]` lines.
fn suite_with_gate(tmp: &Path, gate_lines: &str) -> PathBuf {
    let dest = tmp.join(SUITE);
    common::copy_dir(&suite(SUITE), &dest);
    let toml = std::fs::read_to_string(dest.join("suite.toml")).unwrap();
    let retrieval = root().join("fixtures/retrieval").canonicalize().unwrap();
    let toml = toml.replace("retrieval = \"../../retrieval\"", &format!("retrieval = {:?}", retrieval.to_string_lossy()));
    assert!(toml.contains(&*retrieval.to_string_lossy()));
    std::fs::write(dest.join("suite.toml"), format!("{toml}\n[gate]\n{gate_lines}\n")).unwrap();
    dest
}

#[test]
fn all_mpnet_base_v2_improves_ndcg_and_recall_and_cannot_resolve_mrr_on_42_queries() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("r");
    // No --mode: the width (768 against 384) says another model.
    let o = gate(&suite(SUITE), &candidate("all-mpnet-base-v2"), &reports, &[]);
    let j = json(&reports);
    assert_eq!(j["mode"]["mode"], "upgrade");
    assert!(j["mode"]["reason"].as_str().unwrap().contains("width 768"), "{}", j["mode"]);
    let c = checks(&j);
    let r = &j["pipelines"][0]["retrieval"];
    let (nb, nc) = (r["ndcg_baseline"].as_f64().unwrap(), r["ndcg_candidate"].as_f64().unwrap());
    assert!((nb - 0.9174).abs() < 5e-5 && (nc - 0.9415).abs() < 5e-5, "nDCG@10 {nb} -> {nc}");
    assert_eq!(verdict_of(&c, "all queries: nDCG@10").2, "pass");
    assert_eq!(verdict_of(&c, "all queries: recall@10").2, "pass");
    for (name, _, v) in c.iter().filter(|c| c.0.starts_with("lang=en")) {
        assert_eq!(*v, "pass", "{name}");
    }
    // MRR@10 0.976 -> 0.964 (two queries' best passage fell to rank 2): on 42 queries the drop's interval
    // holds both 0 and the margin.
    let mrr = j["pipelines"][0]["checks"].as_array().unwrap().iter().find(|c| c["name"].as_str().unwrap().starts_with("all queries: MRR@10")).unwrap();
    assert_eq!(mrr["inconclusive"], true, "{mrr}");
    let note = mrr["note"].as_str().unwrap();
    assert!(note.starts_with("inconclusive: 42 queries cannot resolve a drop of 0.05 in MRR@10") && note.contains("queries would"), "{note}");
    assert_eq!(o.status.code(), Some(3), "inconclusive exits 3: {}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("question: upgrade") && out.contains("INCONCLUSIVE all queries: MRR@10"), "{out}");
    // Neighbours moved (an upgrade moves them by design) and are reported, not gated.
    assert!(!c.iter().any(|c| c.0.contains("Jaccard") || c.0.contains("Spearman")), "{c:?}");
    let re = &j["pipelines"][0]["reindex"];
    assert_eq!(re["passages"], 157);
    assert!(re["passages_changed"].as_u64().unwrap() > 100, "{re}");
    assert_eq!(re["shared_index"]["possible"], false, "768 and 384 wide vectors cannot share an index");
    assert!(re["seconds_per_1000_texts"].is_null(), "a file's time is not the candidate's");
    // Too-small slices are reported, not gated.
    let slices = r["slices"].as_array().unwrap();
    let names: Vec<(&str, u64, bool)> = slices.iter().map(|s| (s["slice"].as_str().unwrap(), s["queries"].as_u64().unwrap(), s["gated"].as_bool().unwrap())).collect();
    assert!(names.contains(&("en", 27, true)) && names.contains(&("ja", 1, false)) && names.contains(&("cross-lingual", 1, false)), "{names:?}");
    let md = std::fs::read_to_string(reports.join("gate.md")).unwrap();
    assert!(md.contains("| lang=ja (1) | nDCG@10 |") && md.contains("reported, not gated (< 10 queries)") && md.contains("Re-index impact"), "{md}");
    let junit = std::fs::read_to_string(reports.join("junit.xml")).unwrap();
    assert!(junit.contains("skipped") && junit.contains("inconclusive"), "{junit}");

    // The flag decides whether inconclusive fails CI.
    let o = gate(&suite(SUITE), &candidate("all-mpnet-base-v2"), &tmp.path().join("r2"), &["--allow-inconclusive"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    // A wider MRR margin, set in the suite's [gate] table, makes it a pass.
    let s = suite_with_gate(tmp.path(), "max_mrr_drop = 0.07");
    let o = gate(&s, &candidate("all-mpnet-base-v2"), &tmp.path().join("r3"), &["--mode", "upgrade"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

#[test]
fn the_same_model_cut_at_6_tokens_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("r");
    let o = gate(&suite(SUITE), &candidate("all-mpnet-base-v2-cut6"), &reports, &["--mode", "upgrade"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let c = checks(&json(&reports));
    let ndcg = verdict_of(&c, "all queries: nDCG@10");
    assert!(ndcg.2 == "fail" && ndcg.1 > 0.3, "{ndcg:?}");
    assert_eq!(verdict_of(&c, "lang=en: nDCG@10").2, "fail");
}

#[test]
fn a_model_broken_on_one_language_fails_naming_the_slice() {
    let tmp = tempfile::tempdir().unwrap();
    // English (27 queries, a gated slice): the English slice fails.
    let reports = tmp.path().join("en");
    let o = gate(&suite(SUITE), &candidate("all-mpnet-base-v2-broken-en"), &reports, &["--mode", "upgrade"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let c = checks(&json(&reports));
    assert_eq!(verdict_of(&c, "lang=en: nDCG@10").2, "fail");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("FAIL lang=en: nDCG@10 drop"), "{out}");

    // German: 4 queries, under the default 10 a slice needs to be gated. Every other query improves, so
    // the mean over all 42 cannot tell the drop from none: inconclusive, and the German slice is shown
    // with its drop, not gated.
    let reports = tmp.path().join("de");
    let o = gate(&suite(SUITE), &candidate("all-mpnet-base-v2-broken-de"), &reports, &["--mode", "upgrade"]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let j = json(&reports);
    let de = j["pipelines"][0]["retrieval"]["slices"].as_array().unwrap().iter().find(|s| s["slice"] == "de").unwrap().clone();
    assert_eq!(de["gated"], false);
    assert!(de["metrics"][0]["diff"]["mean"].as_f64().unwrap() < -0.5, "German lost most of its nDCG: {de}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("lang=de: 4 queries") && out.contains("reported, not gated"), "{out}");

    // With min_slice_queries = 4 the German slice is gated: it fails, by name, while English passes.
    let s = suite_with_gate(tmp.path(), "min_slice_queries = 4");
    let reports = tmp.path().join("de4");
    let o = gate(&s, &candidate("all-mpnet-base-v2-broken-de"), &reports, &["--mode", "upgrade"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let c = checks(&json(&reports));
    assert_eq!(verdict_of(&c, "lang=de: nDCG@10").2, "fail");
    assert_eq!(verdict_of(&c, "lang=en: nDCG@10").2, "pass");
    let md = std::fs::read_to_string(reports.join("gate.md")).unwrap();
    assert!(md.contains("| lang=de: nDCG@10 drop, upper bound of the 95% interval |") && md.contains("| FAIL |"), "{md}");
    let html = std::fs::read_to_string(reports.join("gate.html")).unwrap();
    assert!(html.contains("lang=de: nDCG@10 drop") && html.contains("question: upgrade"), "gate.html");
}

#[test]
fn the_mode_is_asked_for_when_nothing_tells_and_parity_keeps_the_neighbour_limits() {
    let tmp = tempfile::tempdir().unwrap();
    // The baseline's own vectors as a file: same width, no weights, no model id — nothing tells.
    let own = suite(SUITE).join("reference.safetensors");
    let o = gate(&suite(SUITE), own.to_str().unwrap(), &tmp.path().join("a"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--mode parity or --mode upgrade"), "{err}");
    // As parity: every neighbour agrees, today's checks.
    let reports = tmp.path().join("b");
    let o = gate(&suite(SUITE), own.to_str().unwrap(), &reports, &["--mode", "parity"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let c = checks(&json(&reports));
    assert_eq!(verdict_of(&c, "mean Jaccard@10").1, 1.0);
    assert!(json(&reports)["pipelines"][0]["reindex"].is_null());
    // all-mpnet-base-v2 asked the parity question fails it on neighbours: it is not the same model.
    let reports = tmp.path().join("c");
    let o = gate(&suite(SUITE), &candidate("all-mpnet-base-v2"), &reports, &["--mode", "parity"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let c = checks(&json(&reports));
    let jac = verdict_of(&c, "mean Jaccard@10");
    assert!(jac.2 == "fail" && jac.1 < 0.6, "{jac:?}");
}

#[test]
fn same_weights_choose_parity_and_an_upgrade_needs_a_retrieval_set() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("r");
    let tiny = root().join("fixtures/models/tiny-bert-mean");
    let o = embcheck(&["gate", "--baseline", suite("tiny-bert-mean-retrieval").to_str().unwrap(), "--candidate", tiny.to_str().unwrap(), "--report-dir", reports.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let j = json(&reports);
    assert_eq!(j["mode"]["mode"], "parity");
    assert!(j["mode"]["reason"].as_str().unwrap().contains("model.safetensors has the baseline's sha256"), "{}", j["mode"]);

    // The same model asked the upgrade question: same width, so its queries are run against the old
    // passages on the judgments (identical vectors: the index can be shared), and embcheck timed it.
    let reports = tmp.path().join("u");
    let o = embcheck(&["gate", "--baseline", suite("tiny-bert-mean-retrieval").to_str().unwrap(), "--candidate", tiny.to_str().unwrap(), "--pipeline", "sentence-transformers", "--mode", "upgrade", "--report-dir", reports.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let re = &json(&reports)["pipelines"][0]["reindex"];
    assert_eq!(re["passages_changed"], 0, "{re}");
    assert_eq!(re["shared_index"]["possible"], true, "{re}");
    assert_eq!(re["shared_index"]["mixed"].as_array().unwrap().len(), 3, "{re}");
    assert!(re["seconds_per_1000_texts"].as_f64().unwrap() > 0.0, "{re}");

    // A suite without a retrieval set cannot answer the upgrade question.
    let o = embcheck(&["gate", "--baseline", suite("tiny-bert-mean").to_str().unwrap(), "--candidate", tiny.to_str().unwrap(), "--mode", "upgrade", "--report-dir", tmp.path().join("n").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("carries no retrieval set"), "{}", show(&o));
}

#[test]
#[ignore = "needs all-mpnet-base-v2 in fixtures/external (bash scripts/fetch-models.sh; scripts/test.sh runs it)"]
fn all_mpnet_base_v2_through_embcheck_ranks_as_the_committed_sentence_transformers_vectors() {
    // The committed file came from sentence-transformers; embcheck's own mpnet on the real weights is an
    // independent computation of the same vectors: every query's figures must agree.
    let tmp = tempfile::tempdir().unwrap();
    let model = root().join("fixtures/external/all-mpnet-base-v2");
    let (own, file) = (tmp.path().join("own"), tmp.path().join("file"));
    let o = gate(&suite(SUITE), model.to_str().unwrap(), &own, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let o = gate(&suite(SUITE), &candidate("all-mpnet-base-v2"), &file, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let (a, b) = (json(&own), json(&file));
    assert_eq!(a["mode"]["mode"], "upgrade");
    let per_query = |j: &serde_json::Value| -> Vec<(String, f64, f64)> {
        j["pipelines"][0]["retrieval"]["queries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| (q["id"].as_str().unwrap().to_string(), q["ndcg_candidate"].as_f64().unwrap(), q["mrr_candidate"].as_f64().unwrap()))
            .collect()
    };
    let (pa, pb) = (per_query(&a), per_query(&b));
    assert_eq!(pa.len(), 42);
    for (x, y) in pa.iter().zip(&pb) {
        assert!(x.0 == y.0 && (x.1 - y.1).abs() < 1e-9 && x.2 == y.2, "{x:?} vs {y:?}");
    }
    assert!(a["pipelines"][0]["reindex"]["seconds_per_1000_texts"].as_f64().unwrap() > 0.0, "embcheck ran it: timed");
}
