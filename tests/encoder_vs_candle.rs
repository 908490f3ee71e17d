//! Our encoder against candle-transformers' `BertModel` / `XLMRobertaModel` in f32, on the same weights:
//! the arithmetic is the same, only position ids, masking and the GELU/softmax kernels are our own.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{bert, xlm_roberta};

/// Token ids of three lengths (right-padded by the encoders), from the model's vocabulary.
fn batch(vocab: u32, first: u32) -> Vec<Vec<u32>> {
    [17usize, 9, 3]
        .iter()
        .enumerate()
        .map(|(s, &n)| (0..n).map(|i| if i == 0 { first } else { 5 + ((i * 7 + s * 13) as u32) % (vocab - 6) }).collect())
        .collect()
}

fn padded(ids: &[Vec<u32>], pad: u32) -> (Tensor, Tensor) {
    let l = ids.iter().map(Vec::len).max().unwrap();
    let flat: Vec<u32> = ids.iter().flat_map(|s| s.iter().copied().chain(std::iter::repeat(pad)).take(l)).collect();
    let mask: Vec<u32> = ids.iter().flat_map(|s| (0..l).map(move |j| u32::from(j < s.len()))).collect();
    (Tensor::from_vec(flat, (ids.len(), l), &Device::Cpu).unwrap(), Tensor::from_vec(mask, (ids.len(), l), &Device::Cpu).unwrap())
}

/// Largest |difference| over the real (unpadded) token rows.
fn max_diff(ours: &Tensor, theirs: &Tensor, ids: &[Vec<u32>]) -> f32 {
    let (a, b) = (ours.to_vec3::<f32>().unwrap(), theirs.to_vec3::<f32>().unwrap());
    let mut worst = 0f32;
    for (s, seq) in ids.iter().enumerate() {
        for t in 0..seq.len() {
            for (x, y) in a[s][t].iter().zip(&b[s][t]) {
                worst = worst.max((x - y).abs());
            }
        }
    }
    worst
}

fn load(name: &str) -> (embcheck::Model, VarBuilder<'static>, String) {
    let dir = common::root().join("fixtures/models").join(name);
    let model = embcheck::Model::load(dir.to_str().unwrap(), DType::F32).unwrap();
    // SAFETY: the fixture is memory-mapped read-only and not written during the test.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu) }.unwrap();
    (model, vb, std::fs::read_to_string(dir.join("config.json")).unwrap())
}

#[test]
fn bert_matches_candle_transformers() {
    let (ours, vb, config) = load("tiny-bert-mean");
    let theirs = bert::BertModel::load(vb, &serde_json::from_str::<bert::Config>(&config).unwrap()).unwrap();
    let ids = batch(ours.config.vocab_size as u32, 2);
    let (ids_t, mask) = padded(&ids, ours.pad_id);
    let expected = theirs.forward(&ids_t, &ids_t.zeros_like().unwrap(), Some(&mask)).unwrap();
    let d = max_diff(&ours.hidden_states(&ids).unwrap(), &expected, &ids);
    assert!(d <= 1e-5, "max |difference| {d:e}");
}

#[test]
fn xlm_roberta_matches_candle_transformers() {
    let (ours, vb, config) = load("tiny-xlmr-m3");
    let theirs = xlm_roberta::XLMRobertaModel::new(&serde_json::from_str::<xlm_roberta::Config>(&config).unwrap(), vb).unwrap();
    let ids = batch(ours.config.vocab_size as u32, 0);
    let (ids_t, mask) = padded(&ids, ours.pad_id);
    let expected = theirs.forward(&ids_t, &mask, &ids_t.zeros_like().unwrap(), None, None, None).unwrap();
    let d = max_diff(&ours.hidden_states(&ids).unwrap(), &expected, &ids);
    assert!(d <= 1e-5, "max |difference| {d:e}");
}
