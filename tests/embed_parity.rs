//! `embcheck embed` agrees with the committed Python references on every bundled model and pipeline.

mod common;

use common::*;
use embcheck::fixture::SuiteSpec;
use embcheck::pipeline::OutputKind;

/// Per text: the suite's tolerance. For f32 that is the default, dense 1e-5 relative L2, sparse weights
/// 1e-5 abs, ColBERT 2e-5 abs; half-precision suites get that dtype's defaults.
fn bounds(spec: &SuiteSpec, p: embcheck::PipelineKind) -> embcheck::compare::Tolerance {
    spec.tolerance_for(p)
}

fn offsets(t: &Tensors, name: &str) -> Vec<usize> {
    t.i64s[name].1.iter().map(|&x| x as usize).collect()
}

fn check_suite(dir: &std::path::Path) {
    let spec = SuiteSpec::load(dir).unwrap();
    let reference = read_tensors(&spec.reference_path());
    let tmp = tempfile::tempdir().unwrap();
    for p in &spec.pipelines {
        let out = tmp.path().join(format!("{}.safetensors", p.name()));
        let mut args = vec![
            "embed".to_string(),
            "--model".into(),
            spec.model_location.clone(),
            "--pipeline".into(),
            p.name().into(),
            "--input".into(),
            spec.texts_path().to_string_lossy().into_owned(),
            "--output".into(),
            out.to_string_lossy().into_owned(),
            "--batch-size".into(),
            "7".into(),
        ];
        if let Some(n) = spec.options.max_length {
            args.extend(["--max-length".into(), n.to_string()]);
        }
        args.extend(["--dtype".into(), embcheck::model::dtype_name(spec.dtype).into()]);
        // The stack the reference was made with (references from transformers 5 are tokenized as it does).
        let stack = embcheck::model::Stack::from_reference(&reference.metadata.clone().into_iter().collect()).unwrap();
        if stack.rebuilds_tokenizers() {
            args.extend(["--stack".into(), "transformers5".into()]);
        }
        let o = &spec.options;
        for (flag, value) in [("--instruction", &o.instruction), ("--prompt-name", &o.prompt_name), ("--prompt", &o.prompt)] {
            if let Some(v) = value {
                args.extend([flag.to_string(), v.clone()]);
            }
        }
        let tol = bounds(&spec, *p);
        let o = embcheck(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{} {p}: {}", spec.name, show(&o));
        let ours = read_tensors(&out);
        let name = p.name();
        // Token ids first: every later difference starts there.
        let (a, e) = (&ours.i64s["input_ids"].1, &reference.i64s[&format!("{name}.input_ids")].1);
        let first = a.iter().zip(e).position(|(x, y)| x != y);
        assert!(a == e, "{} {p}: token ids differ (lengths {} vs {}, first difference at {first:?})", spec.name, a.len(), e.len());
        let mut worst = 0f64;
        match p.output() {
            OutputKind::Dense => {
                let (shape, e) = &reference.f32s[name];
                let (our_shape, a) = &ours.f32s["embeddings"];
                assert_eq!(shape, our_shape, "{} {p}: shape", spec.name);
                let dim = shape[1];
                for i in 0..shape[0] {
                    let r = rel_l2(&a[i * dim..(i + 1) * dim], &e[i * dim..(i + 1) * dim]);
                    assert!(r <= tol.max_rel_l2, "{} {p}: text {i} relative L2 {r:e}", spec.name);
                    worst = worst.max(r);
                }
            }
            OutputKind::Sparse => {
                assert_eq!(ours.i64s["token_ids"].1, reference.i64s[&format!("{name}.token_ids")].1, "{} {p}: sparse ids", spec.name);
                assert_eq!(offsets(&ours, "offsets"), offsets(&reference, &format!("{name}.offsets")));
                for (a, e) in ours.f32s["weights"].1.iter().zip(&reference.f32s[name].1) {
                    let d = (a - e).abs() as f64;
                    assert!(d <= tol.max_abs, "{} {p}: weight differs by {d:e}", spec.name);
                    worst = worst.max(d);
                }
            }
            OutputKind::Multi => {
                assert_eq!(offsets(&ours, "offsets"), offsets(&reference, &format!("{name}.offsets")), "{} {p}: rows", spec.name);
                for (a, e) in ours.f32s["vectors"].1.iter().zip(&reference.f32s[name].1) {
                    let d = (a - e).abs() as f64;
                    assert!(d <= tol.max_abs, "{} {p}: ColBERT component differs by {d:e}", spec.name);
                    worst = worst.max(d);
                }
            }
        }
        eprintln!("{} {p}: worst {worst:e}", spec.name);
    }
}

#[test]
fn every_bundled_suite_matches_its_python_reference() {
    for dir in bundled_suites() {
        check_suite(&dir);
    }
}

#[test]
#[ignore = "needs all-MiniLM-L6-v2 in fixtures/external: run scripts/fetch-models.sh (scripts/test.sh does)"]
fn all_minilm_l6_v2_matches_its_python_reference() {
    let dir = suite("all-minilm-l6-v2");
    let spec = SuiteSpec::load(&dir).unwrap();
    assert!(
        std::path::Path::new(&spec.model_location).join("config.json").is_file(),
        "all-MiniLM-L6-v2 is missing at {}: run scripts/fetch-models.sh",
        spec.model_location
    );
    check_suite(&dir);
    let report = embcheck::Suite::load(&dir).unwrap().run().unwrap();
    assert!(report.changed_files.is_empty(), "the fetched model is not the one the reference was made from: {:?}", report.changed_files);
    report.assert_passed();
}

#[test]
#[ignore = "needs all-mpnet-base-v2 in fixtures/external: run scripts/fetch-models.sh (scripts/test.sh does)"]
fn all_mpnet_base_v2_matches_its_python_reference() {
    let dir = suite("all-mpnet-base-v2");
    let spec = SuiteSpec::load(&dir).unwrap();
    assert!(
        std::path::Path::new(&spec.model_location).join("config.json").is_file(),
        "all-mpnet-base-v2 is missing at {}: run scripts/fetch-models.sh",
        spec.model_location
    );
    check_suite(&dir);
    let report = embcheck::Suite::load(&dir).unwrap().run().unwrap();
    assert!(report.changed_files.is_empty(), "the fetched model is not the one the reference was made from: {:?}", report.changed_files);
    report.assert_passed();
}

/// sentence-transformers 5.4+ under transformers 4 no longer strips: `--st-strip false` then tokenizes the
/// text as given, exactly as FlagEmbedding does (its ids are in the reference).
#[test]
fn sentence_transformers_without_strip_tokenizes_the_text_as_given() {
    let dir = suite("tiny-xlmr-m3");
    let tmp = tempfile::tempdir().unwrap();
    let run = |strip: &str| {
        let out = tmp.path().join(format!("{strip}.safetensors"));
        let o = embcheck(&[
            "embed", "--model", "fixtures/models/tiny-xlmr-m3", "--pipeline", "sentence-transformers",
            "--input", dir.join("texts.jsonl").to_str().unwrap(), "--output", out.to_str().unwrap(),
            "--max-length", "128", "--st-strip", strip,
        ]);
        assert!(o.status.success(), "{}", show(&o));
        read_tensors(&out).i64s["input_ids"].1.clone()
    };
    let reference = read_tensors(&dir.join("reference.safetensors"));
    assert_eq!(run("true"), reference.i64s["sentence-transformers.input_ids"].1);
    assert_eq!(run("false"), reference.i64s["normalized-cls.input_ids"].1);
    assert_ne!(reference.i64s["sentence-transformers.input_ids"].1, reference.i64s["normalized-cls.input_ids"].1);
}
