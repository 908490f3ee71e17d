//! Properties of the maths and of the batching engine.

mod common;

use std::sync::OnceLock;

use embcheck::compare::metrics::{cosine, dense};
use embcheck::pipeline::{normalize, PipelineKind, PipelineOptions};
use embcheck::{embed_many, BatchOptions, Model, Pipeline, Vector};
use proptest::prelude::*;

fn vector_of(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-100f32..100f32, n).prop_filter("non-zero", |v| v.iter().any(|x| x.abs() > 1e-3))
}

fn vector() -> impl Strategy<Value = Vec<f32>> {
    (1usize..64).prop_flat_map(vector_of)
}

fn pair() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    (1usize..64).prop_flat_map(|n| (vector_of(n), vector_of(n)))
}

proptest! {
    #[test]
    fn normalization_is_idempotent(v in vector()) {
        let mut once = v.clone();
        normalize(&mut once);
        let mut twice = once.clone();
        normalize(&mut twice);
        let m = dense(&twice, &once);
        prop_assert!(m.max_abs_diff <= 1e-6, "{}", m.max_abs_diff);
        prop_assert!((m.norm_actual - 1.0).abs() <= 1e-6);
    }

    #[test]
    fn cosine_is_scale_invariant((a, b) in pair(), s in 1e-3f32..1e3f32) {
        let scaled: Vec<f32> = a.iter().map(|x| x * s).collect();
        prop_assert!((cosine(&a, &b) - cosine(&scaled, &b)).abs() <= 1e-5);
    }

    #[test]
    fn cosine_of_a_vector_with_itself_is_one(a in vector()) {
        prop_assert!((cosine(&a, &a) - 1.0).abs() <= 1e-9);
        prop_assert_eq!(dense(&a, &a).rel_l2, 0.0);
    }
}

const WORDS: &[&str] = &["the", "cat", "Ünïcode", "日本語", "  ", "\n", "emoji 🎉", "long-word-here", "fn main() {}", "Привет", "x"];

fn model() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| Model::load(&common::root().join("fixtures/models/tiny-xlmr-m3").to_string_lossy(), candle_core::DType::F32).unwrap())
}

/// Decoders: tiny-qwen3 (EOS by its tokenizer, full attention) and tiny-mistral (an 8-token sliding window, EOS
/// by hand).
fn decoders() -> &'static [Model; 2] {
    static M: OnceLock<[Model; 2]> = OnceLock::new();
    M.get_or_init(|| ["tiny-qwen3", "tiny-mistral"].map(|m| Model::load(&common::root().join("fixtures/models").join(m).to_string_lossy(), candle_core::DType::F32).unwrap()))
}

fn run_decoder(m: &Model, texts: &[String], batch_size: usize) -> Vec<Vec<Vector>> {
    let opts = PipelineOptions { max_length: Some(64), ..Default::default() };
    let pipelines: Vec<Pipeline> =
        [PipelineKind::RawLast, PipelineKind::NormalizedLast, PipelineKind::SentenceTransformers].iter().map(|&k| Pipeline::build(k, m, &opts).unwrap()).collect();
    embed_many(m, &pipelines, texts, BatchOptions { batch_size, progress: false }).unwrap().into_iter().map(|e| e.vectors).collect()
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::collection::vec(prop::sample::select(WORDS), 1..40).prop_map(|w| w.join(" ")), 1..12)
}

fn run(texts: &[String], batch_size: usize) -> Vec<Vec<Vector>> {
    let m = model();
    let opts = PipelineOptions { max_length: Some(64), ..Default::default() };
    let pipelines: Vec<Pipeline> = [PipelineKind::NormalizedCls, PipelineKind::SentenceTransformers, PipelineKind::M3Colbert, PipelineKind::M3Sparse]
        .iter()
        .map(|&k| Pipeline::build(k, m, &opts).unwrap())
        .collect();
    embed_many(m, &pipelines, texts, BatchOptions { batch_size, progress: false }).unwrap().into_iter().map(|e| e.vectors).collect()
}

fn assert_close(a: &Vector, b: &Vector) {
    let m = embcheck::compare::metrics::compare(a, b);
    assert!(m.same_shape && m.max_abs_diff <= 2e-6, "differ by {} (jaccard {:?})", m.max_abs_diff, m.jaccard);
    if let Some(j) = m.jaccard {
        assert_eq!(j, 1.0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn output_does_not_depend_on_batch_size_or_order(texts in texts(), batch in 1usize..6, seed in any::<u64>()) {
        let base = run(&texts, 32);
        let mut order: Vec<usize> = (0..texts.len()).collect();
        // A cheap deterministic shuffle from the seed.
        order.sort_by_key(|&i| (i as u64).wrapping_mul(seed | 1).rotate_left(17));
        let shuffled: Vec<String> = order.iter().map(|&i| texts[i].clone()).collect();
        let other = run(&shuffled, batch);
        for (b, o) in base.iter().zip(&other) {
            for (k, &i) in order.iter().enumerate() {
                assert_close(&o[k], &b[i]);
            }
        }
    }

    /// The same for the decoders: a text's last token never sees the padding of its batch, whatever the batch.
    #[test]
    fn decoder_output_does_not_depend_on_batch_size_or_order(texts in texts(), batch in 1usize..6, seed in any::<u64>()) {
        for m in decoders() {
            let base = run_decoder(m, &texts, 32);
            let mut order: Vec<usize> = (0..texts.len()).collect();
            order.sort_by_key(|&i| (i as u64).wrapping_mul(seed | 1).rotate_left(17));
            let shuffled: Vec<String> = order.iter().map(|&i| texts[i].clone()).collect();
            let other = run_decoder(m, &shuffled, batch);
            for (b, o) in base.iter().zip(&other) {
                for (k, &i) in order.iter().enumerate() {
                    // Relative: raw-last vectors are the last hidden state, of norm ~√hidden, not unit vectors.
                    let d = embcheck::compare::metrics::compare(&o[k], &b[i]);
                    prop_assert!(d.same_shape && d.rel_l2 <= 1e-6, "differ by relative L2 {:e}", d.rel_l2);
                }
            }
        }
    }
}
