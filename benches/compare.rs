//! The compare engine's arithmetic: rows per second for dense vectors of 384 and 1024 dimensions, sparse
//! weights (~60 ids a text) and ColBERT vectors (~60 rows of 1024 a text), each with the retrieval score
//! against 16 other texts that sparse and ColBERT rows are also checked on.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use embcheck::compare::metrics::{compare, score};
use embcheck::pipeline::Vector;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// `rows` pairs (actual, expected) differing by f32-noise-sized perturbations.
fn pairs(rows: usize, make: impl Fn(u64) -> Vector) -> Vec<(Vector, Vector)> {
    (0..rows as u64)
        .map(|i| {
            let e = make(i);
            let a = match &e {
                Vector::Dense(v) => Vector::Dense(v.iter().map(|x| x * (1.0 + 1e-7)).collect()),
                Vector::Sparse(v) => Vector::Sparse(v.iter().map(|&(id, w)| (id, w * (1.0 + 1e-7))).collect()),
                Vector::Multi(m) => Vector::Multi(m.iter().map(|r| r.iter().map(|x| x * (1.0 + 1e-7)).collect()).collect()),
            };
            (a, e)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rows = 256;
    let kinds: Vec<(&str, Vec<(Vector, Vector)>)> = vec![
        ("dense-384", pairs(rows, |i| Vector::Dense(values(384, i)))),
        ("dense-1024", pairs(rows, |i| Vector::Dense(values(1024, i)))),
        (
            "sparse-60",
            pairs(rows, |i| {
                let w = values(60, i);
                Vector::Sparse(w.iter().enumerate().map(|(k, x)| ((k as u32) * 97 + (i as u32 % 50), x.abs() + 0.01)).collect())
            }),
        ),
        ("colbert-60x1024", pairs(8, |i| Vector::Multi((0..60).map(|r| values(1024, i * 100 + r)).collect()))),
    ];
    let mut g = c.benchmark_group("compare");
    g.sample_size(10);
    for (name, data) in &kinds {
        g.throughput(Throughput::Elements(data.len() as u64));
        g.bench_with_input(BenchmarkId::new("rows", name), data, |b, data| {
            b.iter(|| {
                let mut acc = 0f64;
                for (a, e) in data {
                    acc += compare(a, e).rel_l2;
                    if !matches!(e, Vector::Dense(_)) {
                        // Score agreement against the first 16 texts, both sides.
                        for (qa, qe) in data.iter().take(16) {
                            acc += score(qa, a) - score(qe, e);
                        }
                    }
                }
                acc
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
