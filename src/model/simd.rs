//! Element-wise loops compiled for the widest vector unit the CPU has (AVX-512, else AVX2), chosen at run
//! time, and split across the cores of the current rayon pool. Without the dispatch the loop is built for
//! baseline x86-64 (SSE2). No fast-math: every path computes the same IEEE operations in the same order, so
//! results depend neither on the CPU nor on the thread count.

use rayon::prelude::*;

/// Calls `f(first_row, rows)` on `data` cut into parts of whole rows of `width` values, in parallel on the
/// current rayon pool (candle's, inside the encoder: no thread is started per call). Parts hold at least
/// `min_rows` rows, so small inputs stay on one thread.
pub fn par_rows_mut<T: Send>(data: &mut [T], width: usize, min_rows: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    let width = width.max(1);
    let rows = data.len() / width;
    // A few parts per thread so a thread that was preempted (shared machines) does not hold the others up.
    let parts = rayon::current_num_threads() * 4;
    let part_rows = rows.div_ceil(parts).max(min_rows).max(1);
    if part_rows >= rows {
        return f(0, data);
    }
    data.par_chunks_mut(part_rows * width).enumerate().for_each(|(k, chunk)| f(k * part_rows, chunk));
}

/// Lanes of the explicit vector reductions below: one AVX-512 register of f32.
const LANES: usize = 16;

/// The sum of `xs` in 16 interleaved partial sums (element i into lane i mod 16), then lane 0 + 1 + ... +
/// 15, then the remainder in order. A fixed order, so the same on every CPU path; vectorizable, unlike
/// the strictly sequential sum (one add latency per element).
#[inline(always)]
pub fn sum_lanes(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().chain(rest).fold(0.0, |a, x| a + x)
}

/// The largest value of `xs`, NaN if any is NaN (as `torch.max`; `f32::max` would drop the NaN). Exact
/// whatever the order, so computed in vector lanes.
#[inline(always)]
pub fn nan_max(xs: &[f32]) -> f32 {
    let pick = |m: f32, x: f32| if x > m || x.is_nan() { x } else { m };
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = pick(*l, x);
        }
    }
    lanes.iter().chain(rest).fold(f32::NEG_INFINITY, |m, &x| pick(m, x))
}

/// Replaces every element `x` of `data` by `f(x)`.
#[inline]
pub fn map_inplace(data: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked on the line above.
            return unsafe { map_avx512(data, f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked on the line above.
            return unsafe { map_avx2(data, f) };
        }
    }
    map_generic(data, f)
}

#[inline(always)]
fn map_generic(data: &mut [f32], f: impl Fn(f32) -> f32) {
    data.iter_mut().for_each(|d| *d = f(*d));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn map_avx512(data: &mut [f32], f: impl Fn(f32) -> f32) {
    map_generic(data, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn map_avx2(data: &mut [f32], f: impl Fn(f32) -> f32) {
    map_generic(data, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector paths give bit-identical results to the scalar one (no fused or reordered operations),
    /// special values included.
    #[test]
    fn dispatched_paths_match_the_baseline_bit_for_bit() {
        let mut src: Vec<f32> = (0..10_007).map(|i| (i as f32 - 5000.0) * 0.0173).collect();
        src.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 88.5, 88.8, -87.5, 0.0, -0.0]);
        for f in [super::super::gelu::gelu as fn(f32) -> f32, super::super::softmax::exp] {
            let (mut a, mut b) = (src.clone(), src.clone());
            map_inplace(&mut a, f);
            map_generic(&mut b, f);
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }

    #[test]
    fn lane_reductions() {
        let xs: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let seq = xs.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        assert_eq!(nan_max(&xs), seq);
        let mut with_nan = xs.clone();
        with_nan[3] = f32::NAN;
        assert!(nan_max(&with_nan).is_nan());
        with_nan[3] = 0.0;
        with_nan[36] = f32::NAN;
        assert!(nan_max(&with_nan).is_nan());
        assert_eq!(nan_max(&[]), f32::NEG_INFINITY);
        let exact: f64 = xs.iter().map(|&x| x as f64).sum();
        assert!((sum_lanes(&xs) as f64 - exact).abs() <= 1e-5);
        assert_eq!(sum_lanes(&[1.5, 2.0]), 3.5);
    }

    #[test]
    fn every_row_is_visited_once_with_its_index() {
        let width = 7;
        let mut data = vec![0f32; width * 1001];
        par_rows_mut(&mut data, width, 3, |first, rows| {
            for (r, row) in rows.chunks_mut(width).enumerate() {
                row.iter_mut().for_each(|x| *x += (first + r) as f32);
            }
        });
        assert!(data.chunks(width).enumerate().all(|(r, row)| row.iter().all(|&x| x == r as f32)));
    }
}
