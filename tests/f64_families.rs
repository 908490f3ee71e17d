//! `embed --dtype f64` (the value f32 noise is measured against) on every family embcheck computes: BERT,
//! XLM-R, MPNet, DistilBERT and ModernBERT (windowed attention, rotary, GeGLU; to 8192 tokens). Its vectors
//! pass the check against the Python reference, and are not the f32 ones (the dtype was not ignored). The
//! decoder families refuse f64.

mod common;

use common::{embcheck, read_tensors, rel_l2, show, suite};

#[test]
fn every_family_embeds_in_f64_within_the_tolerance_of_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["tiny-bert-mean", "tiny-xlmr-m3-long", "tiny-mpnet", "tiny-distilbert", "tiny-modernbert-long"] {
        let dir = suite(name);
        let mut vectors = Vec::new();
        for dtype in ["f64", "f32"] {
            let out_path = tmp.path().join(format!("{name}-{dtype}.safetensors"));
            let o = embcheck(&["embed", "--suite", dir.to_str().unwrap(), "--pipeline", "normalized-cls", "--dtype", dtype, "--output", out_path.to_str().unwrap()]);
            assert_eq!(o.status.code(), Some(0), "{name} {dtype}: {}", show(&o));
            vectors.push(read_tensors(&out_path).f32s.remove("embeddings").expect("embeddings").1);
        }
        let f64_path = tmp.path().join(format!("{name}-f64.safetensors"));
        let reports = tmp.path().join(format!("reports-{name}"));
        let o = embcheck(&[
            "check",
            dir.to_str().unwrap(),
            "--against",
            f64_path.to_str().unwrap(),
            "--pipeline",
            "normalized-cls",
            "--report-dir",
            reports.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", show(&o));
        let d = rel_l2(&vectors[0], &vectors[1]);
        assert!(d > 0.0 && d < 1e-5, "{name}: f64 vs f32 relative L2 {d:e} (0: the dtype was ignored)");
    }
}

/// The decoders and Gemma 3 compute attention and RMSNorm in f32 whatever the dtype: an f64 value of theirs
/// would not be one, so `--dtype f64` is refused (exit 2, naming why), and their f32 noise is never "proven"
/// against it (their failures stay failures).
#[test]
fn families_without_an_f64_path_refuse_it() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["tiny-qwen3", "tiny-embeddinggemma-tf5"] {
        let out_path = tmp.path().join(format!("{name}.safetensors"));
        let o = embcheck(&["embed", "--suite", suite(name).to_str().unwrap(), "--pipeline", "sentence-transformers", "--dtype", "f64", "--output", out_path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", show(&o));
        assert!(show(&o).contains("f64 is not implemented for this family"), "{name}: {}", show(&o));
    }
}
