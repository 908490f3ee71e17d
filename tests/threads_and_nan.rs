//! Output does not depend on the thread count (`--threads`, `RAYON_NUM_THREADS`), and a NaN inside the
//! model reaches the output as it does in PyTorch — through the real CLI on real files.

mod common;

use std::path::Path;

use common::{embcheck, embcheck_env, read_tensors, show, write_tensors};

fn embed(model: &str, pipeline: &str, input: &str, out: &Path, threads: Option<&str>, env: &[(&str, &str)]) {
    let out = out.to_str().unwrap();
    let mut args = vec!["embed", "--model", model, "--pipeline", pipeline, "--input", input, "--output", out];
    if let Some(t) = threads {
        args.extend(["--threads", t]);
    }
    let o = embcheck_env(&args, env);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

/// Every f32 tensor of `a` equals `b`'s within f32 noise (relative L2 ≤ 1e-6 per tensor; the split by
/// rows keeps each row's arithmetic, so they are in fact identical), and the integer tensors exactly.
fn assert_same(a: &Path, b: &Path) {
    let (a, b) = (read_tensors(a), read_tensors(b));
    assert_eq!(a.i64s, b.i64s);
    assert_eq!(a.f32s.len(), b.f32s.len());
    for (name, (shape, va)) in &a.f32s {
        let (shape_b, vb) = &b.f32s[name];
        assert_eq!(shape, shape_b, "{name}");
        assert!(va.iter().all(|x| x.is_finite()), "{name} has non-finite values");
        let r = common::rel_l2(va, vb);
        assert!(r <= 1e-6, "{name}: relative L2 {r:e} between thread counts");
    }
}

#[test]
fn output_is_independent_of_the_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    for (model, pipeline) in [
        ("fixtures/models/tiny-bert-mean", "sentence-transformers"),
        ("fixtures/models/tiny-xlmr-m3", "m3-colbert"),
        ("fixtures/models/tiny-xlmr-m3", "m3-sparse"),
    ] {
        let one = tmp.path().join("one.safetensors");
        embed(model, pipeline, "fixtures/texts/long.jsonl", &one, Some("1"), &[]);
        for (threads, env) in [(Some("2"), vec![]), (Some("3"), vec![("RAYON_NUM_THREADS", "1")]), (None, vec![("RAYON_NUM_THREADS", "3")]), (None, vec![])] {
            let other = tmp.path().join("other.safetensors");
            embed(model, pipeline, "fixtures/texts/long.jsonl", &other, threads, &env);
            assert_same(&other, &one);
        }
    }
}

#[test]
fn zero_threads_is_a_usage_error() {
    let o = embcheck(&["--threads", "0", "diff", "a", "b"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

/// A NaN in the key bias of the first layer: PyTorch (sentence-transformers 5.1, torch 2.9) returns an
/// all-NaN embedding for every text, since every attention score is NaN. With an exp that clamped NaN to
/// e^88, the softmax weights came out finite (0) and the embeddings looked valid.
#[test]
fn nan_in_the_model_reaches_the_output_as_in_pytorch() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    common::copy_dir(Path::new("fixtures/models/tiny-bert-mean"), &model);
    let weights = model.join("model.safetensors");
    let mut t = read_tensors(&weights);
    t.f32s.get_mut("encoder.layer.0.attention.self.key.bias").expect("key bias").1[0] = f32::NAN;
    write_tensors(&weights, &t);
    let out = tmp.path().join("out.safetensors");
    embed(model.to_str().unwrap(), "sentence-transformers", "fixtures/texts/core.jsonl", &out, None, &[]);
    let (shape, v) = &read_tensors(&out).f32s["embeddings"];
    assert!(shape[0] > 1 && v.iter().all(|x| x.is_nan()), "expected every value NaN");
}
