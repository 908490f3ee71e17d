//! Throughput of the embedding path (tokenize → length-sorted batches → encoder → pooling).
//! Uses all-MiniLM-L6-v2 when fetched (scripts/fetch-models.sh), else the tiny bundled BERT.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use embcheck::{embed_many, BatchOptions, Model, Pipeline, PipelineKind, PipelineOptions};

fn bench(c: &mut Criterion) {
    let root = env!("CARGO_MANIFEST_DIR");
    let real = format!("{root}/fixtures/external/all-MiniLM-L6-v2");
    let model_dir = if std::path::Path::new(&real).is_dir() { real } else { format!("{root}/fixtures/models/tiny-bert-mean") };
    let model = Model::load(&model_dir, candle_core::DType::F32).expect("model");
    let texts: Vec<String> = embcheck::fixture::read_texts(std::path::Path::new(&format!("{root}/fixtures/texts/core.jsonl")))
        .expect("texts")
        .into_iter()
        .map(|t| t.text)
        .collect();
    let pipeline = Pipeline::build(PipelineKind::SentenceTransformers, &model, &PipelineOptions::default()).expect("pipeline");
    let tokens: usize = model.tokenizer.encode_all(&texts, pipeline.max_length).expect("ids").iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("embed");
    g.throughput(Throughput::Elements(tokens as u64));
    g.sample_size(10);
    g.bench_function(format!("sentence-transformers/{}", model_dir.rsplit('/').next().unwrap_or("")), |b| {
        b.iter(|| embed_many(&model, std::slice::from_ref(&pipeline), &texts, BatchOptions { batch_size: 32, progress: false }).expect("embed"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
