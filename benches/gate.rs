//! The gate's kernels at scale: top-k neighbours of every text among all (blocked products, streaming
//! selection, exact rescoring) for 2,000 and 10,000 dense texts of width 384; 100 queries against 50,000
//! passages; Spearman of pairwise similarities on a 2,000,000-pair sample. Whole-gate timings with peak
//! memory come from scripts/bench_gate_scale.py.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use embcheck::compare::metrics::cosine;
use embcheck::gate::metrics::pairwise_spearman;
use embcheck::gate::neighbours::{top_k, ExactCosine, UnitRows};

/// `n` clustered vectors of width 384 (xorshift; about 50 texts a cluster, so neighbours mean something).
fn vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let centers: Vec<Vec<f32>> = (0..(n / 50).max(1)).map(|_| (0..384).map(|_| next()).collect()).collect();
    (0..n).map(|i| centers[i % centers.len()].iter().map(|c| c + 0.6 * next()).collect()).collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("gate");
    g.sample_size(10);
    for n in [2_000usize, 10_000] {
        let v = vectors(n, 1);
        let refs: Vec<&[f32]> = v.iter().map(Vec::as_slice).collect();
        let unit = UnitRows::new(&refs).unwrap();
        let all: Vec<usize> = (0..n).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("neighbours-top10", n), &n, |b, _| {
            b.iter(|| top_k(&unit, &all, &all, 10, true, &|i, j| cosine(&v[i], &v[j])))
        });
    }
    let v = vectors(50_100, 2);
    let refs: Vec<&[f32]> = v.iter().map(Vec::as_slice).collect();
    let unit = UnitRows::new(&refs).unwrap();
    let (queries, corpus): (Vec<usize>, Vec<usize>) = ((0..100).collect(), (100..50_100).collect());
    g.throughput(Throughput::Elements(100));
    g.bench_function("retrieval-top10/100x50000", |b| b.iter(|| top_k(&unit, &queries, &corpus, 10, false, &|i, j| cosine(&v[i], &v[j]))));
    let w = vectors(20_000, 3);
    let ev = ExactCosine::new(v.iter().take(20_000).map(Vec::as_slice).collect());
    let ew = ExactCosine::new(w.iter().map(Vec::as_slice).collect());
    g.throughput(Throughput::Elements(2_000_000));
    g.bench_function("spearman-sample/2000000-pairs", |b| {
        b.iter(|| pairwise_spearman(20_000, &|p| ev.many(p), &|p| ew.many(p), 2_000_000, 0.95, 7))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
