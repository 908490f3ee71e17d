//! Reports of hand-built suites: a passing one, a failing one (NaN row, diagnoses, markup in ids), a skipped one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::compare::diagnosis::Stage;
use crate::compare::{failed_checks, Diagnosis, Metrics, PipelineResult, RowResult, Summary, TokenMatch, Tolerance};
use crate::pipeline::{OutputKind, PipelineKind};

fn f32_tolerance() -> Tolerance {
    Tolerance::default_for(candle_core::DType::F32, OutputKind::Dense)
}

/// A dense row whose relative L2 is `rel` (cosine follows as for unit vectors: 1 − rel²/2).
fn row(index: usize, id: &str, rel: f64, tokens: TokenMatch, tol: &Tolerance) -> RowResult {
    let metrics = Metrics {
        cosine: 1.0 - rel * rel / 2.0,
        l2: rel,
        rel_l2: rel,
        max_abs_diff: rel / 8.0,
        max_abs_index: index * 7 % 384,
        norm_actual: 1.0,
        norm_expected: 1.0,
        finite: rel.is_finite(),
        jaccard: None,
        rows: None,
        same_shape: true,
        components: 384,
        max_abs_expected: 0.2,
    };
    let failed = failed_checks(&metrics, &tokens, None, tol);
    RowResult { index, id: id.to_string(), metrics, score_diff: None, tokens, failed, diagnosis: None }
}

fn pipeline(kind: PipelineKind, rows: Vec<RowResult>, tolerance: Tolerance) -> PipelineResult {
    let summary = Summary::of(&rows);
    PipelineResult { pipeline: kind, tolerance, rows, summary }
}

fn suite(name: &str, pipelines: Vec<PipelineResult>, skipped: Option<&str>) -> SuiteReport {
    SuiteReport {
        suite: name.to_string(),
        dir: PathBuf::from("fixtures/suites").join(name),
        model: "sentence-transformers/all-MiniLM-L6-v2".into(),
        dtype: "f32".into(),
        source: crate::source::SourceInfo::own_pipeline("sentence-transformers/all-MiniLM-L6-v2"),
        max_length: pipelines.iter().map(|p| (p.pipeline.name().to_string(), 256)).collect(),
        reference_metadata: BTreeMap::from([("transformers".to_string(), "4.44.2".to_string())]),
        pipelines,
        skipped: skipped.map(str::to_string),
        changed_files: Vec::new(),
        notes: Vec::new(),
        error: None,
    }
}

/// Deterministic values log-uniform in [lo, hi].
fn log_uniform(n: usize, lo: f64, hi: f64, seed: u64) -> Vec<f64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            10f64.powf(lo.log10() + u * (hi.log10() - lo.log10()))
        })
        .collect()
}

fn passing_suite() -> SuiteReport {
    let tol = f32_tolerance();
    let rows = log_uniform(40, 1e-8, 1e-6, 1)
        .into_iter()
        .enumerate()
        .map(|(i, r)| row(i, &format!("t{i:03}"), r, TokenMatch::Same, &tol));
    let mut rows: Vec<RowResult> = rows.collect();
    rows[3].metrics.rel_l2 = 0.0; // an exact match must land in the "0" bin
    rows[3].metrics.cosine = 1.0;
    suite("tiny-bert-mean", vec![pipeline(PipelineKind::SentenceTransformers, rows, tol)], None)
}

fn failing_suite() -> SuiteReport {
    let tol = f32_tolerance();
    let mut rows: Vec<RowResult> =
        (0..20).map(|i| row(i, &format!("q-{i}"), 1e-7 * (i + 1) as f64, TokenMatch::Same, &tol)).collect();
    let mut nan = row(20, "nan <row> & \"quoted\"", f64::NAN, TokenMatch::Same, &tol);
    nan.metrics.cosine = f64::NAN;
    nan.metrics.max_abs_diff = f64::NAN;
    nan.diagnosis = Some(Diagnosis { stage: Stage::NonFinite, detail: "our value has NaN at component 3".into() });
    rows.push(nan);
    let differ =
        TokenMatch::Differ { position: 5, actual: Some(2023), expected: Some(1996), actual_len: 12, expected_len: 12 };
    let mut tok = row(21, "ws|strip_me", 3e-2, differ, &tol);
    tok.diagnosis = Some(Diagnosis {
        stage: Stage::Tokenization,
        detail: "token ids differ from position 5: <b>whitespace</b>".into(),
    });
    rows.push(tok);
    let passing = (0..10).map(|i| row(i, &format!("p{i}"), 1e-8, TokenMatch::Same, &tol)).collect();
    suite(
        "bge-small <en>",
        vec![pipeline(PipelineKind::RawCls, passing, tol), pipeline(PipelineKind::NormalizedCls, rows, tol)],
        None,
    )
}

fn skipped_suite() -> SuiteReport {
    suite("bge-m3", Vec::new(), Some("model missing: BAAI/bge-m3 not in the hub cache"))
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn writes_every_report_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let suites = [passing_suite(), failing_suite(), skipped_suite()];
    let mut written = write_all(dir.path(), &suites).unwrap();
    written.sort();
    assert_eq!(written, all_files(dir.path()), "no stray temporary files, every file reported");
    assert_eq!(written.len(), 3 * 3 + 5, "three per suite; index.html, summary.md, summary.json, junit.xml, shard.cbor");
    // The shard file gives back exactly what was written (NaN included), for merge-reports.
    let back = super::read_shard(dir.path()).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(&suites).unwrap());
    for name in ["tiny-bert-mean", "bge-small__en_", "bge-m3"] {
        for f in ["diff.csv", "summary.md", "report.html"] {
            assert!(dir.path().join(name).join(f).is_file(), "{name}/{f}");
        }
    }
}

#[test]
fn csv_has_the_columns_a_row_per_text_and_nan_as_nan() {
    let s = failing_suite();
    let results: Vec<&PipelineResult> = s.pipelines.iter().collect();
    let mut buf = Vec::new();
    write_csv(&mut buf, &s.suite, &results).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header.join(","),
        "suite,pipeline,id,cosine,l2,rel_l2,max_abs_diff,max_abs_index,norm_actual,norm_expected,tokens_match,pass,\
         diagnosis,first_token_diff,jaccard,rows_actual,rows_expected,score_diff,failed_checks,detail"
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 10 + 22);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let nan = records.iter().find(|r| r[col("id")].starts_with("nan <row>")).unwrap();
    assert_eq!(&nan[col("cosine")], "NaN");
    assert_eq!(&nan[col("rel_l2")], "NaN");
    assert_eq!(&nan[col("pass")], "false");
    assert_eq!(&nan[col("diagnosis")], "non-finite");
    assert!(nan[col("failed_checks")].contains("non-finite;cosine"));
    let tok = records.iter().find(|r| &r[col("id")] == "ws|strip_me").unwrap();
    assert_eq!((&tok[col("tokens_match")], &tok[col("first_token_diff")]), ("false", "5"));
    let ok = &records[0];
    assert_eq!((&ok[col("pass")], &ok[col("diagnosis")], &ok[col("jaccard")]), ("true", "", ""));
    // Full precision: the value parses back exactly.
    assert_eq!(ok[col("rel_l2")].parse::<f64>().unwrap(), s.pipelines[0].rows[0].metrics.rel_l2);
}

#[test]
fn junit_has_a_failure_and_a_skip_never_a_pass_for_them() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &[passing_suite(), failing_suite(), skipped_suite()]).unwrap();
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(xml.contains("<failure") && xml.contains("<skipped"));
    let report = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    assert_eq!(report.test_suites.len(), 3);
    let failing = &report.test_suites[1];
    assert_eq!(failing.test_cases.len(), 2);
    let case = &failing.test_cases[1];
    assert_eq!((case.name.as_str(), case.classname.as_deref()), ("normalized-cls", Some("bge-small <en>")));
    let quick_junit::TestCaseStatus::NonSuccess { message, description, .. } = &case.status else {
        panic!("normalized-cls must fail: {:?}", case.status)
    };
    let message = message.as_deref().unwrap();
    assert!(message.starts_with("2/22 texts out of tolerance") && message.contains("non-finite"), "{message}");
    assert!(description.as_deref().unwrap().contains("ws|strip_me"));
    let skipped = &report.test_suites[2].test_cases[0];
    assert!(
        matches!(&skipped.status, quick_junit::TestCaseStatus::Skipped { message: Some(m), .. } if m.contains("model missing"))
    );
}

#[test]
fn markdown_shows_status_lines_totals_and_numpy_style_failures() {
    let md = markdown_summary(&[passing_suite(), failing_suite(), skipped_suite()]);
    assert!(md.starts_with("# embcheck: ❌ FAILED"));
    assert!(md.contains("- ✅ pass tiny-bert-mean / sentence-transformers: 40 texts"));
    assert!(md.contains("- ❌ **FAIL** bge-small \\<en\\> / normalized-cls: **2 / 22** texts"));
    assert!(md.contains("- ⏭ **SKIPPED** bge-m3: model missing"));
    assert!(md.contains("suites 1 passed, 1 failed, 1 skipped"));
    assert!(md.contains("Mismatched elements: 2 / 22 (9.09%)"));
    assert!(md.contains("Max absolute difference: NaN"));
    assert!(md.contains("SKIPPED — this suite was not verified"));
    // The failing pipeline lists its failing rows, the passing ones their five worst.
    assert!(md.contains("Failing texts, worst first (2 of 2"));
    assert!(md.contains("Largest relative L2 (5 of 40 texts"));
}

#[test]
fn json_is_valid_with_non_finite_values() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &[failing_suite(), skipped_suite()]).unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(v["status"], "failed");
    assert_eq!(v["totals"]["rows_failed"], 2);
    assert_eq!(v["suites"][0]["status"], "failed");
    assert_eq!(v["suites"][1]["status"], "skipped");
    assert!(v["suites"][0]["pipelines"][1]["rows"][20]["metrics"]["cosine"].is_null());
    let only_skipped = json::render(&[skipped_suite()]).unwrap();
    assert!(String::from_utf8(only_skipped).unwrap().contains("\"status\": \"skipped-only\""));
}

#[test]
fn html_is_self_contained_and_escaped() {
    for s in [passing_suite(), failing_suite(), skipped_suite()] {
        let page = html::page(&s);
        assert!(!page.contains("http://") && !page.contains("https://"), "{}", s.suite);
        assert!(!page.contains("<link") && !page.contains("<script") && !page.contains(" src="));
        if s.skipped.is_none() {
            assert_eq!(page.matches("<svg").count(), 2 * s.pipelines.len());
        } else {
            assert!(page.contains("SKIPPED — this suite was not verified"));
        }
    }
    let page = html::page(&failing_suite());
    assert!(page.contains("nan &lt;row&gt; &amp; &quot;quoted&quot;"));
    assert!(page.contains("&lt;b&gt;whitespace&lt;/b&gt;"));
    assert!(!page.contains("<b>whitespace"));
    assert!(page.contains("bin “NaN”: 1 NaN"));
}

#[test]
fn suite_directory_names_are_safe_and_unique() {
    let mut used = HashSet::new();
    assert_eq!(unique_dir_name("a/../b", &mut used), "a_.._b");
    assert_eq!(unique_dir_name("..", &mut used), "_..");
    assert_eq!(unique_dir_name("x", &mut used), "x");
    assert_eq!(unique_dir_name("x", &mut used), "x-2");
}

/// Writes a realistic report for looking at: `cargo test --release --lib report::tests::demo -- --ignored`,
/// then open `target/report-demo/<suite>/report.html`.
#[test]
#[ignore]
fn demo() {
    let tol = f32_tolerance();
    let passing: Vec<RowResult> = log_uniform(200, 1e-8, 1e-6, 7)
        .into_iter()
        .enumerate()
        .map(|(i, r)| row(i, &format!("msmarco-{i:04}"), r, TokenMatch::Same, &tol))
        .collect();
    let mut failing: Vec<RowResult> = log_uniform(200, 1e-8, 1e-6, 11)
        .into_iter()
        .enumerate()
        .map(|(i, r)| row(i, &format!("msmarco-{i:04}"), r, TokenMatch::Same, &tol))
        .collect();
    for (k, &i) in [5usize, 17, 42, 99, 150].iter().enumerate() {
        let r = &mut failing[i];
        *r = row(i, &r.id.clone(), 8e-3 + 4e-3 * k as f64, TokenMatch::Same, &tol);
        r.diagnosis = Some(Diagnosis {
            stage: Stage::Tokenization,
            detail:
                "sentence-transformers strips surrounding whitespace; the text stripped matches (cosine 1 − 3.1e-8)"
                    .into(),
        });
    }
    failing[3].metrics.rel_l2 = 0.0;
    failing[3].metrics.cosine = 1.0;
    failing[7] = row(7, "empty <text> & \"quotes\"", f64::NAN, TokenMatch::Same, &tol);
    failing[7].metrics.cosine = f64::NAN;
    failing[7].diagnosis =
        Some(Diagnosis { stage: Stage::NonFinite, detail: "NaN from a zero-length attention mask".into() });
    let report = suite(
        "bge-small-en-v1.5",
        vec![pipeline(PipelineKind::RawCls, passing, tol), pipeline(PipelineKind::NormalizedCls, failing, tol)],
        None,
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report-demo");
    for p in write_all(&dir, &[report, skipped_suite()]).unwrap() {
        println!("{}", p.display());
    }
}

/// A suite that could not be checked appears in every report as an error with its message, and makes the
/// whole document's status `error` even beside a passing suite: the reports agree with exit code 2.
#[test]
fn errored_suite_is_an_error_in_every_report() {
    let err = crate::Error::input("fixtures/suites/broken/texts.jsonl", "line 3: invalid JSON: expected value");
    let errored = SuiteReport::errored(std::path::Path::new("fixtures/suites/broken"), &err);
    assert_eq!(errored.status(), crate::suite::Status::Error);
    assert!(!errored.passed());
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &[passing_suite(), errored]).unwrap();
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
    let message = "texts.jsonl: line 3: invalid JSON: expected value";

    let v: serde_json::Value = serde_json::from_str(&read("summary.json")).unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["totals"]["suites_errored"], 1);
    assert_eq!(v["suites"][1]["status"], "error");
    assert!(v["suites"][1]["error"].as_str().unwrap().contains(message));

    let md = read("summary.md");
    assert!(md.contains("ERROR") && md.contains(&md_escaped(message)) && md.contains("1 errors"), "{md}");
    let page = read("broken/summary.md");
    assert!(page.contains("could not be checked"), "{page}");

    let xml = read("junit.xml");
    let report = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    let case = &report.test_suites[1].test_cases[0];
    assert_eq!(case.name.as_str(), "all-pipelines");
    assert!(
        matches!(&case.status, quick_junit::TestCaseStatus::NonSuccess { kind: quick_junit::NonSuccessKind::Error, message: Some(m), .. } if m.contains(message)),
        "{xml}"
    );
    let html = read("broken/report.html");
    assert!(html.contains("ERROR") && html.contains("could not be checked"), "{html}");
}

fn md_escaped(s: &str) -> String {
    s.replace('_', "\\_")
}

/// 60 failing texts, each diagnosed `truncation`.
fn many_failing_suite() -> SuiteReport {
    let tol = f32_tolerance();
    let rows = (0..60)
        .map(|i| {
            let mut r = row(i, &format!("long-{i:02}"), 0.1 + i as f64 / 1000.0, TokenMatch::Unknown, &tol);
            r.diagnosis = Some(Diagnosis::new(Stage::Truncation, format!("the system under test matches this text recomputed with max length {}", 100 + i)));
            r
        })
        .collect();
    suite("cut-late", vec![pipeline(PipelineKind::NormalizedCls, rows, tol)], None)
}

#[test]
fn every_report_words_a_diagnosis_alike_and_says_how_many_more() {
    let s = many_failing_suite();
    let worst = s.pipelines[0].rows.iter().find(|r| r.id == "long-59").unwrap();
    let words = "truncation: the system under test matches this text recomputed with max length 159";
    assert_eq!(worst.diagnosis.as_ref().unwrap().to_string(), words);
    assert!(worst.failure_line().ends_with(&format!("; {words}")), "{}", worst.failure_line());
    // The library's failure message: its first 10 rows, one line each, then how many more.
    let message = s.failure_message();
    let first = &s.pipelines[0].rows[0];
    assert!(message.contains(&format!("  {}\n", first.failure_line())), "{message}");
    assert!(message.contains("… and 50 more failing texts"), "{message}");
    // Markdown: the same words (escaped for Markdown), 10 rows, then how many more.
    let md = markdown_summary(std::slice::from_ref(&s));
    assert!(md.contains(&md_escaped(words)), "{md}");
    assert!(md.contains("… and 50 more failing texts (every text is in diff.csv)"), "{md}");
    // HTML: the keyword set off, the same words, 50 rows, then how many more.
    let page = html::page(&s);
    assert!(page.contains(r#"<span class="kw">truncation</span>: the system under test matches this text recomputed with max length 159"#));
    assert!(page.contains("… and 10 more failing texts (every text is in diff.csv)"));
    // JUnit: the same words (it lists up to 200 texts: all 60 here).
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &[s]).unwrap();
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(xml.contains(words), "{xml}");
    assert!(!xml.contains("more failing texts"), "{xml}");
}
