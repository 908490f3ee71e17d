//! The encoder alone, per layer size and sequence length: one transformer layer (plus the embeddings) of
//! MiniLM's size (hidden 384, 12 heads, feed-forward 1536) and of bge-m3's (1024, 16 heads, 4096), random
//! weights, batches of 8 texts of 16, 64 and 256 tokens (and one of 1024 for bge-m3's size). Throughput in
//! tokens. A regression in a kernel (matmul, softmax, GELU, LayerNorm) or in the thread pool shows here.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Activation, VarBuilder};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use embcheck::model::{Encoder, EncoderConfig, Family};

/// Deterministic pseudo-random weights, scaled like a trained model's (std ≈ 0.02·√3).
fn random(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.07
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn encoder(h: usize, heads: usize, inter: usize) -> Encoder {
    let cfg = EncoderConfig {
        family: Family::Bert,
        vocab_size: 1000,
        hidden_size: h,
        num_hidden_layers: 1,
        num_attention_heads: heads,
        intermediate_size: inter,
        hidden_act: Activation::Gelu,
        max_position_embeddings: 1024,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        pad_token_id: 0,
        relative_attention_num_buckets: 32,
        sinusoidal_positions: false,
        modernbert: None,
        decoder: None,
        gemma3: None,
    };
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let mut add = |name: &str, shape: &[usize]| {
        let seed = t.len() as u64;
        let mut w = random(shape, seed);
        if name.ends_with("LayerNorm.weight") {
            w = (w + 1.0).unwrap();
        }
        t.insert(name.to_string(), w);
    };
    add("embeddings.word_embeddings.weight", &[1000, h]);
    add("embeddings.position_embeddings.weight", &[1024, h]);
    add("embeddings.token_type_embeddings.weight", &[2, h]);
    add("embeddings.LayerNorm.weight", &[h]);
    add("embeddings.LayerNorm.bias", &[h]);
    let p = "encoder.layer.0";
    for (name, out, inp) in [
        ("attention.self.query", h, h),
        ("attention.self.key", h, h),
        ("attention.self.value", h, h),
        ("attention.output.dense", h, h),
        ("intermediate.dense", inter, h),
        ("output.dense", h, inter),
    ] {
        add(&format!("{p}.{name}.weight"), &[out, inp]);
        add(&format!("{p}.{name}.bias"), &[out]);
    }
    for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
        add(&format!("{p}.{ln}.weight"), &[h]);
        add(&format!("{p}.{ln}.bias"), &[h]);
    }
    Encoder::load(VarBuilder::from_tensors(t, DType::F32, &Device::Cpu), &cfg, "bench").expect("encoder")
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("encoder-layer");
    g.sample_size(10);
    for (name, h, heads, inter, lengths) in
        [("minilm-384", 384, 12, 1536, &[16usize, 64, 256][..]), ("bge-m3-1024", 1024, 16, 4096, &[16, 64, 256, 1024][..])]
    {
        let enc = encoder(h, heads, inter);
        for &len in lengths {
            let batch = if len >= 1024 { 1 } else { 8 };
            let ids: Vec<Vec<u32>> = (0..batch).map(|b| (0..len).map(|i| ((i * 7 + b * 13) % 997 + 1) as u32).collect()).collect();
            g.throughput(Throughput::Elements((batch * len) as u64));
            g.bench_with_input(BenchmarkId::new(name, format!("{batch}x{len}")), &ids, |bch, ids| {
                bch.iter(|| enc.forward(ids, 0).expect("forward"))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
