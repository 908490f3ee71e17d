//! Element-wise loops compiled for the widest vector unit the CPU has (AVX-512, else AVX2), chosen at run
//! time, and split across the cores. Without it the loop is built for baseline x86-64 (SSE2: 2 doubles a step). No fast-math:
//! every path computes the same IEEE operations in the same order, so results do not depend on the CPU.

/// A new buffer of `src.len()` filled by `f(first_row, src_rows, dst_rows)` on whole rows of `width`
/// values, split across the cores in parts of at least `min_rows` rows (smaller inputs stay on one).
pub fn par_rows(src: &[f32], width: usize, min_rows: usize, f: impl Fn(usize, &[f32], &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; src.len()];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rows = src.len() / width.max(1);
    let part = rows.div_ceil(threads).max(min_rows).max(1) * width.max(1);
    std::thread::scope(|s| {
        for (k, (o, i)) in out.chunks_mut(part).zip(src.chunks(part)).enumerate() {
            let f = &f;
            s.spawn(move || f(k * part / width.max(1), i, o));
        }
    });
    out
}

/// Applies `f` to every element of `src`, writing `dst`.
#[inline]
pub fn map(src: &[f32], dst: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked on the line above.
            return unsafe { map_avx512(src, dst, f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked on the line above.
            return unsafe { map_avx2(src, dst, f) };
        }
    }
    map_generic(src, dst, f)
}

#[inline(always)]
fn map_generic(src: &[f32], dst: &mut [f32], f: impl Fn(f32) -> f32) {
    dst.iter_mut().zip(src).for_each(|(d, &x)| *d = f(x));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn map_avx512(src: &[f32], dst: &mut [f32], f: impl Fn(f32) -> f32) {
    map_generic(src, dst, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn map_avx2(src: &[f32], dst: &mut [f32], f: impl Fn(f32) -> f32) {
    map_generic(src, dst, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector paths give bit-identical results to the scalar one (no fused or reordered operations).
    #[test]
    fn dispatched_paths_match_the_baseline_bit_for_bit() {
        let src: Vec<f32> = (0..10_007).map(|i| (i as f32 - 5000.0) * 0.0173).collect();
        for f in [super::super::gelu::gelu as fn(f32) -> f32, super::super::softmax::exp] {
            let (mut a, mut b) = (vec![0f32; src.len()], vec![0f32; src.len()]);
            map(&src, &mut a, f);
            map_generic(&src, &mut b, f);
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }
}
