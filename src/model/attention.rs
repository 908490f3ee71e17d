//! Self-attention for f32 (and f64, the exact value f32 noise is measured against) on the CPU as one op over the fused QKV projection `[B, L, 3H]`, giving the
//! context `[B, L, H]` directly.
//!
//! Why: candle's path copies Q, K and V into `[B, heads, L, head_dim]`, materializes every score of the
//! padded batch (`[B, heads, L, L]`: 137 GB for 32 texts of 8192 tokens in bge-m3's layout), runs one
//! small parallel matmul per head with a thread hand-off each, and copies the context back. Here each
//! (text, head, block of queries) is one task on the rayon pool: `scores = Q Kᵀ` over the text's own
//! tokens only (padding is neither computed nor read), the scaled softmax in place, `ctx = P V` written
//! into its columns of the output. Scratch is one `[≤256, n]` block per task. The matrix products are
//! gemm's, as in candle, on the same operands: the results are candle's (checked by the tests). Rows of
//! padding queries are left 0: nothing reads them (keys past a text's length are masked).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Query rows per task: bounds the scratch (256 × n scores) and splits long texts across the cores.
const QUERY_BLOCK: usize = 256;

/// Multi-head self-attention over a `[B, L, 3H]` fused QKV tensor (q, k, v side by side, heads
/// contiguous within each), keys past `lengths[b]` masked, scores scaled by `scale`.
pub struct Attention {
    /// Real tokens per sequence of the batch.
    pub lengths: Vec<usize>,
    /// Attention heads.
    pub heads: usize,
    /// Applied to every score before the softmax (1/√head_dim).
    pub scale: f32,
    /// Added to the scaled scores (MPNet's relative position bias), by head and key offset.
    pub bias: Option<super::layer::PositionBias>,
    /// Sliding-window attention (ModernBERT's local layers): each query attends only the keys at most this
    /// many positions away. Only those keys' scores are formed, so the scratch is `block × (block + 2w)`.
    pub window: Option<usize>,
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "attention-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (Some((start, end)), &[b, l, h3]) = (layout.contiguous_offsets(), layout.shape().dims()) else {
            candle_core::bail!("attention needs a contiguous [B, L, 3H] tensor")
        };
        match storage {
            CpuStorage::F32(v) => Ok((CpuStorage::F32(self.run(&v[start..end], b, l, h3)?), Shape::from_dims(&[b, l, h3 / 3]))),
            // The f64 recomputation that f32 noise is measured against (`compare::noise`): the same tasks.
            CpuStorage::F64(v) => Ok((CpuStorage::F64(self.run(&v[start..end], b, l, h3)?), Shape::from_dims(&[b, l, h3 / 3]))),
            _ => candle_core::bail!("attention needs an f32 or f64 tensor"),
        }
    }
}

/// What the attention tasks compute in: f32, or f64 for the exact value.
trait Elem: Copy + Send + Sync + 'static + std::ops::Mul<Output = Self> + std::ops::Add<Output = Self> {
    const ZERO: Self;
    const ONE: Self;
    fn of(x: f32) -> Self;
    /// The masked softmax of one row of scores, scaled, in place.
    fn softmax(row: &mut [Self], n: usize, scale: Self);
}

impl Elem for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    fn of(x: f32) -> f32 {
        x
    }
    fn softmax(row: &mut [f32], n: usize, scale: f32) {
        super::softmax::softmax_row(row, n, scale)
    }
}

impl Elem for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    fn of(x: f32) -> f64 {
        x as f64
    }
    fn softmax(row: &mut [f64], n: usize, scale: f64) {
        super::softmax::softmax_row_f64(row, n, scale)
    }
}

/// A raw pointer the tasks write through: each writes a disjoint block of rows × columns.
#[derive(Clone, Copy)]
struct Out<T>(*mut T);
// SAFETY: tasks write disjoint regions (their own text, head columns and query rows); see `run`.
unsafe impl<T> Send for Out<T> {}
unsafe impl<T> Sync for Out<T> {}

impl Attention {
    fn run<T: Elem>(&self, qkv: &[T], b: usize, l: usize, h3: usize) -> candle_core::Result<Vec<T>> {
        let heads = self.heads.max(1);
        if h3 % 3 != 0 || (h3 / 3) % heads != 0 || self.lengths.len() != b {
            candle_core::bail!("attention: [{b}, {l}, {h3}] with {heads} heads and {} lengths", self.lengths.len())
        }
        if self.window.is_some() && self.bias.is_some() {
            candle_core::bail!("attention: a position bias and a window together are not implemented")
        }
        if let Some(bias) = &self.bias {
            if bias.len != l || bias.table.len() != heads * (2 * l).saturating_sub(1) {
                candle_core::bail!("attention: a position bias for length {} ({} values) on [{b}, {l}, {h3}] with {heads} heads", bias.len, bias.table.len())
            }
        }
        let (h, d) = (h3 / 3, h3 / 3 / heads);
        let mut out = vec![T::ZERO; b * l * h];
        let dst = Out(out.as_mut_ptr());
        let mut tasks = Vec::new();
        for (s, &len) in self.lengths.iter().enumerate() {
            let n = len.clamp(1, l);
            for head in 0..heads {
                for q0 in (0..n).step_by(QUERY_BLOCK) {
                    tasks.push((s, head, q0, (q0 + QUERY_BLOCK).min(n), n));
                }
            }
        }
        let scale = T::of(self.scale);
        tasks.into_par_iter().for_each(|(s, head, q0, q1, n)| {
            // Captures the whole Send wrapper, not its raw-pointer field (closures capture fields apart).
            #[allow(clippy::redundant_locals)]
            let dst = dst;
            let m = q1 - q0;
            // The keys this block of queries may attend: all n, or those within the window of some query.
            let (k0, k1) = match self.window {
                None => (0, n),
                Some(w) => (q0.saturating_sub(w), (q1 - 1).saturating_add(w).saturating_add(1).min(n)),
            };
            let span = k1 - k0;
            let base = s * l * h3 + head * d;
            let (q, k, v) = (&qkv[base + q0 * h3..], &qkv[base + k0 * h3 + h..], &qkv[base + k0 * h3 + 2 * h..]);
            let mut scores = vec![T::ZERO; m * span];
            // SAFETY: every pointer/stride pair stays inside its slice: q rows q0..q1, k and v rows k0..k1 of
            // text s (k1 ≤ n ≤ l), head columns head·d..(head+1)·d; `scores` is m × span; the output block (rows
            // q0..q1 of text s, this head's columns) belongs to this task alone.
            unsafe {
                // scores[i, j] = Σ_c q[i, c] · k[j, c]
                gemm(m, span, d, scores.as_mut_ptr(), 1, span as isize, false, q.as_ptr(), 1, h3 as isize, k.as_ptr(), h3 as isize, 1, T::ZERO, T::ONE, false, false, false, Parallelism::None);
            }
            match (&self.bias, self.window) {
                (None, None) => scores.chunks_mut(n).for_each(|row| T::softmax(row, n, scale)),
                (None, Some(w)) => {
                    // Query i attends keys max(0, i − w) ..= min(n − 1, i + w): the others get weight 0, as the
                    // finfo.min of transformers' sliding-window mask gives after the softmax.
                    for (r, row) in scores.chunks_mut(span).enumerate() {
                        let i = q0 + r;
                        let (lo, hi) = (i.saturating_sub(w) - k0, (i + w + 1).min(n) - k0);
                        row[..lo].iter_mut().for_each(|x| *x = T::ZERO);
                        T::softmax(&mut row[lo..], hi - lo, scale);
                    }
                }
                (Some(bias), _) => {
                    // Query q0 + r, key j: entry (L − 1 − (q0 + r)) + j of the head's row of 2L − 1 offsets.
                    let per_head = &bias.table[head * (2 * bias.len - 1)..(head + 1) * (2 * bias.len - 1)];
                    for (r, row) in scores.chunks_mut(n).enumerate() {
                        let offsets = &per_head[bias.len - 1 - (q0 + r)..][..n];
                        row.iter_mut().zip(offsets).for_each(|(s, &o)| *s = *s * scale + T::of(o));
                        T::softmax(row, n, T::ONE);
                    }
                }
            }
            unsafe {
                // ctx[i, c] = Σ_j p[i, j] · v[j, c]
                let o = dst.0.add(s * l * h + q0 * h + head * d);
                gemm(m, d, span, o, 1, h as isize, false, scores.as_ptr(), 1, span as isize, v.as_ptr(), 1, h3 as isize, T::ZERO, T::ONE, false, false, false, Parallelism::None);
            }
        });
        Ok(out)
    }
}

/// The attention context `[B, L, H]` of a contiguous f32 or f64 `[B, L, 3H]` QKV tensor, `bias` added to the scaled
/// scores.
pub fn attention(qkv: &Tensor, lengths: &[usize], heads: usize, scale: f32, bias: Option<&super::layer::PositionBias>) -> candle_core::Result<Tensor> {
    let bias = bias.map(|b| super::layer::PositionBias { table: b.table.clone(), len: b.len, full: None });
    qkv.contiguous()?.apply_op1_no_bwd(&Attention { lengths: lengths.to_vec(), heads, scale, bias, window: None })
}

/// The same with sliding-window attention: query `i` attends keys `j` with `|i − j| ≤ window` only.
pub fn windowed_attention(qkv: &Tensor, lengths: &[usize], heads: usize, scale: f32, window: usize) -> candle_core::Result<Tensor> {
    qkv.contiguous()?.apply_op1_no_bwd(&Attention { lengths: lengths.to_vec(), heads, scale, bias: None, window: Some(window) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Equals the unfused computation (split heads, masked softmax of the full padded scores, P V) on the
    /// real query rows, including a text longer than one query block.
    #[test]
    fn equals_the_unfused_attention_on_real_rows() {
        let (b, l, heads, d) = (3usize, 300usize, 2usize, 8usize);
        let h = heads * d;
        let data: Vec<f32> = (0..b * l * 3 * h).map(|i| (((i * 7919) % 1013) as f32 / 1013.0 - 0.5) * 3.0).collect();
        let qkv = Tensor::from_vec(data, (b, l, 3 * h), &Device::Cpu).unwrap();
        let lengths = [300usize, 17, 1];
        let scale = 0.35f32;
        let got = attention(&qkv, &lengths, heads, scale, None).unwrap();
        let split = qkv.reshape((b, l, 3, heads, d)).unwrap().permute((2, 0, 3, 1, 4)).unwrap().contiguous().unwrap();
        let (q, k, v) = (split.get(0).unwrap(), split.get(1).unwrap(), split.get(2).unwrap());
        let probs = crate::model::softmax::masked_softmax(q.matmul(&k.t().unwrap()).unwrap(), &lengths, scale).unwrap();
        let want = probs.matmul(&v).unwrap().transpose(1, 2).unwrap().reshape((b, l, h)).unwrap();
        assert_equal_on_real_rows(&got, &want, &lengths);
    }

    /// Within 1e-6 on the rows of real tokens (padding rows are not read).
    fn assert_equal_on_real_rows(got: &Tensor, want: &Tensor, lengths: &[usize]) {
        for (s, &n) in lengths.iter().enumerate() {
            let diff = (got.get(s).unwrap().narrow(0, 0, n).unwrap() - want.get(s).unwrap().narrow(0, 0, n).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff <= 1e-6, "text {s}: max |difference| {diff:e}");
        }
    }

    /// With a window: equals the masked softmax of the full scores with every key farther than the window
    /// from its query masked (transformers' sliding-window mask), windows smaller and larger than a block.
    #[test]
    fn a_window_masks_far_keys() {
        let (b, l, heads, d) = (2usize, 600usize, 2usize, 4usize);
        let h = heads * d;
        let data: Vec<f32> = (0..b * l * 3 * h).map(|i| (((i * 7919) % 1013) as f32 / 1013.0 - 0.5) * 3.0).collect();
        let qkv = Tensor::from_vec(data, (b, l, 3 * h), &Device::Cpu).unwrap();
        let lengths = [600usize, 37];
        let scale = 0.5f32;
        for w in [0usize, 3, 64, 300, 1000] {
            let got = windowed_attention(&qkv, &lengths, heads, scale, w).unwrap();
            let split = qkv.reshape((b, l, 3, heads, d)).unwrap().permute((2, 0, 3, 1, 4)).unwrap().contiguous().unwrap();
            let (q, k, v) = (split.get(0).unwrap(), split.get(1).unwrap(), split.get(2).unwrap());
            let mask: Vec<f32> = (0..l).flat_map(|i| (0..l).map(move |j| if i.abs_diff(j) <= w { 0.0 } else { f32::MIN })).collect();
            let mask = Tensor::from_vec(mask, (1, 1, l, l), &Device::Cpu).unwrap();
            let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale as f64).unwrap().broadcast_add(&mask).unwrap();
            let probs = crate::model::softmax::masked_softmax(scores, &lengths, 1.0).unwrap();
            let want = probs.matmul(&v).unwrap().transpose(1, 2).unwrap().reshape((b, l, h)).unwrap();
            assert_equal_on_real_rows(&got, &want, &lengths);
        }
    }

    /// With a relative position bias: equals scaling the scores, adding the bias of each (query, key) offset
    /// per head, then the masked softmax and P V, as MPNet's eager attention does.
    #[test]
    fn a_position_bias_is_added_per_head_and_offset() {
        let (b, l, heads, d) = (2usize, 300usize, 2usize, 4usize);
        let h = heads * d;
        let data: Vec<f32> = (0..b * l * 3 * h).map(|i| (((i * 7919) % 1013) as f32 / 1013.0 - 0.5) * 3.0).collect();
        let qkv = Tensor::from_vec(data, (b, l, 3 * h), &Device::Cpu).unwrap();
        let width = 2 * l - 1;
        let table: Vec<f32> = (0..heads * width).map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0).collect();
        let full: Vec<f32> = (0..heads).flat_map(|hd| (0..l).flat_map(move |i| (0..l).map(move |j| (hd, i, j)))).map(|(hd, i, j)| table[hd * width + j + l - 1 - i]).collect();
        let full = Tensor::from_vec(full, (1, heads, l, l), &Device::Cpu).unwrap();
        let bias = crate::model::layer::PositionBias { table: std::sync::Arc::new(table), len: l, full: None };
        let lengths = [300usize, 41];
        let scale = 0.5f32;
        let got = attention(&qkv, &lengths, heads, scale, Some(&bias)).unwrap();
        let split = qkv.reshape((b, l, 3, heads, d)).unwrap().permute((2, 0, 3, 1, 4)).unwrap().contiguous().unwrap();
        let (q, k, v) = (split.get(0).unwrap(), split.get(1).unwrap(), split.get(2).unwrap());
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale as f64).unwrap().broadcast_add(&full).unwrap();
        let probs = crate::model::softmax::masked_softmax(scores, &lengths, 1.0).unwrap();
        let want = probs.matmul(&v).unwrap().transpose(1, 2).unwrap().reshape((b, l, h)).unwrap();
        assert_equal_on_real_rows(&got, &want, &lengths);
    }
}
