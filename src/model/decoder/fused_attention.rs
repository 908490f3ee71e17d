//! The decoder's attention in f32 on the CPU over its fused QKV projection `[rows, (heads + 2·kv_heads)·d]`, the
//! texts' rows one after another (packed: no padding): Qwen3's per-head RMSNorm and the rotary positions applied
//! in place ([`PrepareQk`]), then causal grouped-query attention ([`CausalAttention`]) giving the context
//! `[rows, heads·d]` directly.
//!
//! Why: [`super::attention::at_positions`] on candle's ops, per text per layer, copies q, k, v into head-major
//! tensors, builds a mask vector and tensor per block, adds it, softmaxes and copies the context back, each op
//! ending at candle's thread barrier. Here each (text, query head, block of query rows) is one task on the rayon
//! pool: the scores of its queries against the keys they may see (the text's own, causal, within the window)
//! by gemm as candle's matmul computes them, the mask applied by index inside the softmax
//! ([`crate::model::softmax::softmax_row`]), `P V` written into the head's columns of the context. Its
//! semantics are `at_positions`' (tested against it): queries at any positions (padded positions read after
//! the text), a query that sees no key gets a context of 0.

use candle_core::{CpuStorage, CustomOp1, InplaceOp1, Layout, Shape, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use crate::model::modernbert::rope::RopeTables;
use crate::model::simd::par_rows_mut;

/// Query rows per task: bounds the scratch (`rows × keys` scores) and splits long texts across the cores.
const QUERY_BLOCK: usize = 128;

/// The rows of one text of the batch: where they start, its `keys` real tokens, and the position of each query
/// row (`0..keys`, then any padded positions read after the text). Rows of no text are left alone by
/// [`PrepareQk`] and 0 in the context.
#[derive(Debug, Clone)]
pub struct Text {
    /// Its first row.
    pub start: usize,
    /// Real tokens (the keys).
    pub keys: usize,
    /// The position of each query row, not decreasing.
    pub positions: Vec<usize>,
}

/// The shape of the heads in a fused QKV row.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (query head `h` reads `h / (heads / kv_heads)`, as transformers' `repeat_kv`).
    pub kv_heads: usize,
    /// Width of a head.
    pub dim: usize,
}

impl Heads {
    fn row(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.dim
    }
}

/// In place on a fused QKV tensor: each query and key head RMS-normed (Qwen3's `q_norm`, `k_norm`) and
/// rotated at its row's position, as `RmsNorm::forward` then `rope::apply` compute them in f32.
pub struct PrepareQk<'a> {
    /// The texts of the batch, in order.
    pub texts: &'a [Text],
    /// The head layout.
    pub heads: Heads,
    /// The query and key norms' weights, and their epsilon.
    pub norms: Option<(&'a [f32], &'a [f32], f32)>,
    /// cos and sin for every position read.
    pub tables: &'a RopeTables,
}

impl InplaceOp1 for PrepareQk<'_> {
    fn name(&self) -> &'static str {
        "decoder-prepare-qk-f32"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(v), Some((start, end)), &[rows, w]) = (storage, layout.contiguous_offsets(), layout.shape().dims()) else {
            candle_core::bail!("decoder-prepare-qk-f32 needs a contiguous f32 [rows, W] tensor")
        };
        let (hd, d, half) = (self.heads, self.heads.dim, self.tables.half);
        let top = self.texts.iter().flat_map(|t| t.positions.iter()).max().map_or(0, |&p| p + 1);
        if w != hd.row() || 2 * half != d || self.tables.cos.len() < top * half || !fits(self.texts, rows) {
            candle_core::bail!("decoder-prepare-qk-f32: [{rows}, {w}] for {} texts, {hd:?}, tables of {} values", self.texts.len(), self.tables.cos.len())
        }
        par_rows_mut(&mut v[start..end], w, 8, |first, part| {
            for (r, row) in part.chunks_mut(w).enumerate() {
                let r = first + r;
                // The text whose rows hold r (texts are in order, their rows disjoint), and r's position in it.
                let t = self.texts.partition_point(|t| t.start <= r);
                let Some(&p) = t.checked_sub(1).and_then(|t| self.texts[t].positions.get(r - self.texts[t].start)) else { continue };
                let (c, s) = (&self.tables.cos[p * half..(p + 1) * half], &self.tables.sin[p * half..(p + 1) * half]);
                let (q, rest) = row.split_at_mut(hd.heads * d);
                let k = &mut rest[..hd.kv_heads * d];
                for (part, norm) in [(q, self.norms.map(|n| (n.0, n.2))), (k, self.norms.map(|n| (n.1, n.2)))] {
                    for x in part.chunks_mut(d) {
                        if let Some((weight, eps)) = norm {
                            super::fused::rms_row_inplace(x, weight, eps);
                        }
                        rotate(x, c, s);
                    }
                }
            }
        });
        Ok(())
    }
}

/// Whether `texts` lie in order in disjoint rows of `rows`, each with its keys among its rows and positions not
/// decreasing.
fn fits(texts: &[Text], rows: usize) -> bool {
    let mut next = 0;
    texts.iter().all(|t| {
        let ok = t.start >= next && t.start + t.positions.len() <= rows && (1..=t.positions.len()).contains(&t.keys) && t.positions.windows(2).all(|p| p[0] <= p[1]);
        next = t.start + t.positions.len();
        ok
    })
}

/// `x · cos + rotate_half(x) · sin` for one head, PyTorch's two products and one sum (as `rope::RotateQk`).
#[inline(always)]
fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let (x1, x2) = x.split_at_mut(cos.len());
    for i in 0..cos.len() {
        let (a, b) = (x1[i], x2[i]);
        x1[i] = a * cos[i] + (-b) * sin[i];
        x2[i] = b * cos[i] + a * sin[i];
    }
}

/// Causal grouped-query attention over a fused (prepared) QKV tensor: query row `r` of a text at
/// `positions[r]` attends the text's keys `j ≤ positions[r]`, and with a window `w` only those with
/// `j > positions[r] − w`; scores scaled by `scale`.
pub struct CausalAttention<'a> {
    /// The texts of the batch, in order.
    pub texts: &'a [Text],
    /// The head layout.
    pub heads: Heads,
    /// Sliding window, if any.
    pub window: Option<usize>,
    /// 1/√d.
    pub scale: f32,
}

/// A raw pointer the tasks write through: each writes a disjoint block of rows × columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint regions (their own text, head columns and query rows); see `run`.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl CustomOp1 for CausalAttention<'_> {
    fn name(&self) -> &'static str {
        "decoder-attention-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(v), Some((start, end)), &[rows, w]) = (storage, layout.contiguous_offsets(), layout.shape().dims()) else {
            candle_core::bail!("decoder-attention-f32 needs a contiguous f32 [rows, W] tensor")
        };
        let hd = self.heads;
        if w != hd.row() || hd.kv_heads == 0 || hd.heads % hd.kv_heads != 0 || !fits(self.texts, rows) {
            candle_core::bail!("decoder-attention-f32: [{rows}, {w}] for {} texts, {hd:?}", self.texts.len())
        }
        let out = self.run(&v[start..end], rows);
        Ok((CpuStorage::F32(out), Shape::from_dims(&[rows, hd.heads * hd.dim])))
    }
}

impl CausalAttention<'_> {
    fn run(&self, qkv: &[f32], rows: usize) -> Vec<f32> {
        let Heads { heads, kv_heads, dim: d } = self.heads;
        let (w, hw, group) = (self.heads.row(), heads * d, heads / kv_heads);
        let mut out = vec![0f32; rows * hw];
        let dst = Out(out.as_mut_ptr());
        let tasks: Vec<(usize, usize, usize)> = (0..self.texts.len())
            .flat_map(|t| (0..heads).flat_map(move |h| (0..self.texts[t].positions.len()).step_by(QUERY_BLOCK).map(move |q0| (t, h, q0))))
            .collect();
        let window = self.window;
        // The keys query position p sees: lo..hi (empty when the window ends before the text does).
        let reach = move |p: usize, n: usize| (window.map_or(0, |w| (p + 1).saturating_sub(w)), (p + 1).min(n));
        tasks.into_par_iter().for_each(|(t, h, q0)| {
            // Captures the whole Send wrapper, not its raw-pointer field (closures capture fields apart).
            #[allow(clippy::redundant_locals)]
            let dst = dst;
            let text = &self.texts[t];
            let q1 = (q0 + QUERY_BLOCK).min(text.positions.len());
            let block = &text.positions[q0..q1];
            let m = block.len();
            let (k0, _) = reach(block[0], text.keys);
            let (_, k1) = reach(block[m - 1], text.keys);
            let o = (text.start + q0) * hw + h * d;
            if k0 >= k1 {
                return; // No query of the block sees a key: its context stays 0.
            }
            let span = k1 - k0;
            let g = h / group;
            let base = text.start * w;
            let q = &qkv[base + q0 * w + h * d..];
            let k = &qkv[base + k0 * w + hw + g * d..];
            let v = &qkv[base + k0 * w + hw + kv_heads * d + g * d..];
            let mut scores = vec![0f32; m * span];
            // SAFETY: every pointer/stride pair stays inside its slice: q rows q0..q1 of text t, k and v rows k0..k1
            // (k1 ≤ keys ≤ its rows; `fits` checked the texts against the rows), columns of one head (d wide);
            // `scores` is m × span; the output block (rows q0..q1 of text t, head h's columns) belongs to this task
            // alone.
            unsafe {
                // scores[i, j] = Σ_c q[i, c] · k[j, c]
                gemm(m, span, d, scores.as_mut_ptr(), 1, span as isize, false, q.as_ptr(), 1, w as isize, k.as_ptr(), w as isize, 1, 0.0, 1.0, false, false, false, Parallelism::None);
            }
            let mut empty = Vec::new();
            for (r, (row, &p)) in scores.chunks_mut(span).zip(block).enumerate() {
                let (lo, hi) = reach(p, text.keys);
                if lo >= hi {
                    row.fill(0.0);
                    empty.push(r);
                    continue;
                }
                row[..lo - k0].fill(0.0);
                crate::model::softmax::softmax_row(&mut row[lo - k0..], hi - lo, self.scale);
            }
            unsafe {
                // ctx[i, c] = Σ_j p[i, j] · v[j, c]
                gemm(m, d, span, dst.0.add(o), 1, hw as isize, false, scores.as_ptr(), 1, span as isize, v.as_ptr(), 1, w as isize, 0.0, 1.0, false, false, false, Parallelism::None);
                // A query that sees no key: 0, as PyTorch's sdpa gives a fully masked row (0 · a non-finite value
                // would not be).
                for r in empty {
                    std::slice::from_raw_parts_mut(dst.0.add(o + r * hw), d).fill(0.0);
                }
            }
        });
        out
    }
}

/// Prepares `qkv` (a fresh `[rows, W]` f32 projection, overwritten) and returns the attention context
/// `[rows, heads·d]`.
pub fn attention(qkv: Tensor, texts: &[Text], heads: Heads, norms: Option<(&[f32], &[f32], f32)>, tables: &RopeTables, window: Option<usize>, scale: f32) -> candle_core::Result<Tensor> {
    let qkv = qkv.contiguous()?;
    qkv.inplace_op1(&PrepareQk { texts, heads, norms, tables })?;
    qkv.apply_op1_no_bwd(&CausalAttention { texts, heads, window, scale })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    fn t(dims: &[usize], seed: usize) -> Tensor {
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n).map(|i| ((((i + seed * 101) * 7919) % 1013) as f32 / 1013.0 - 0.5) * 3.0).collect();
        Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// The fused path equals the tensor path it replaces — per-head RMSNorm, `rope::apply` and
    /// `attention::at_positions` per text — on texts packed with gaps (rows of no text: 0 in the context), a
    /// text longer than a query block, grouped heads, windows (one ending before a read position: context 0)
    /// and padded positions read after a text.
    #[test]
    fn equals_the_tensor_path() {
        let hd = Heads { heads: 4, kv_heads: 2, dim: 8 };
        let (l, theta, eps, gap) = (300usize, 10_000.0, 1e-6, 3usize);
        let shapes: [Vec<(usize, Vec<usize>)>; 2] = [
            vec![(300, (0..300).collect()), (17, (0..17).collect()), (1, vec![0])],
            vec![(290, (0..290).chain([290, 295, 299, 299]).collect())],
        ];
        let (qn, kn) = (t(&[hd.dim], 7).affine(0.2, 1.0).unwrap(), t(&[hd.dim], 8).affine(0.2, 1.0).unwrap());
        let (qw, kw) = (super::super::fused::values(&qn).unwrap(), super::super::fused::values(&kn).unwrap());
        let norm = |x: &Tensor, w: &Tensor| -> Tensor {
            let inv = (x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + eps).unwrap().sqrt().unwrap().recip().unwrap();
            x.broadcast_mul(&inv).unwrap().broadcast_mul(w).unwrap()
        };
        let tables = RopeTables::new(theta, hd.dim, l);
        let (cos, sin) = tables.tensors(l, candle_core::DType::F32, &Device::Cpu).unwrap();
        for shape in &shapes {
            let padded = t(&[shape.len(), l, hd.row()], 1);
            // Each text's rows, then `gap` rows of no text.
            let mut texts = Vec::new();
            let mut parts = Vec::new();
            for (i, (keys, positions)) in shape.iter().enumerate() {
                texts.push(Text { start: texts.last().map_or(0, |t: &Text| t.start + t.positions.len() + gap), keys: *keys, positions: positions.clone() });
                parts.push(padded.get(i).unwrap().narrow(0, 0, positions.len()).unwrap());
                parts.push(t(&[gap, hd.row()], 9));
            }
            let packed = Tensor::cat(&parts, 0).unwrap();
            for normed in [false, true] {
                for window in [None, Some(1), Some(5), Some(200), Some(5000)] {
                    let norms = normed.then_some((&qw[..], &kw[..], eps as f32));
                    let got = attention(packed.copy().unwrap(), &texts, hd, norms, &tables, window, 0.35).unwrap();
                    for (i, text) in texts.iter().enumerate() {
                        let (n, m) = (text.keys, text.positions.len());
                        let at = Tensor::from_vec(text.positions.iter().map(|&p| p as u32).collect::<Vec<_>>(), m, &Device::Cpu).unwrap();
                        let (c, s) = (cos.index_select(&at, 0).unwrap(), sin.index_select(&at, 0).unwrap());
                        let row = padded.get(i).unwrap();
                        let split = |col: usize, heads: usize, rows: usize, w: Option<&Tensor>| -> Tensor {
                            let x = row.narrow(0, 0, rows).unwrap().narrow(1, col, heads * hd.dim).unwrap().reshape((rows, heads, hd.dim)).unwrap();
                            let x = if let Some(w) = w { norm(&x, w) } else { x };
                            let x = x.transpose(0, 1).unwrap().contiguous().unwrap();
                            crate::model::modernbert::rope::apply(&x, &c.narrow(0, 0, rows).unwrap(), &s.narrow(0, 0, rows).unwrap()).unwrap()
                        };
                        let q = split(0, hd.heads, m, normed.then_some(&qn));
                        let k = split(hd.heads * hd.dim, hd.kv_heads, n, normed.then_some(&kn));
                        let v = row.narrow(0, 0, n).unwrap().narrow(1, (hd.heads + hd.kv_heads) * hd.dim, hd.kv_heads * hd.dim).unwrap();
                        let v = v.reshape((n, hd.kv_heads, hd.dim)).unwrap().transpose(0, 1).unwrap().contiguous().unwrap();
                        let want = super::super::attention::at_positions(&q, &k, &v, &text.positions, window, 0.35).unwrap();
                        let have = got.narrow(0, text.start, m).unwrap();
                        let diff = max_diff(&have, &want);
                        assert!(diff < 2e-6, "text {i}, norms {normed}, window {window:?}: {diff:e}");
                        let gap_rows = got.narrow(0, text.start + m, gap).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
                        assert_eq!(gap_rows, 0.0, "rows of no text are 0");
                        if let Some(w) = window {
                            for (r, &p) in text.positions.iter().enumerate() {
                                if p + 1 >= n + w {
                                    let z = have.get(r).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
                                    assert_eq!(z, 0.0, "a query at {p} with no key in reach gets 0");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Inconsistent shapes are errors, not panics.
    #[test]
    fn rejects_bad_shapes() {
        let hd = Heads { heads: 4, kv_heads: 2, dim: 8 };
        let tables = RopeTables::new(10_000.0, 8, 8);
        let text = |start: usize, keys: usize, positions: Vec<usize>| Text { start, keys, positions };
        assert!(attention(t(&[4, hd.row()], 1), &[text(0, 5, (0..5).collect())], hd, None, &tables, None, 1.0).is_err(), "more positions than rows");
        assert!(attention(t(&[4, hd.row()], 1), &[text(0, 3, vec![0, 2, 1])], hd, None, &tables, None, 1.0).is_err(), "decreasing positions");
        assert!(attention(t(&[8, hd.row()], 1), &[text(0, 3, vec![0, 1, 2]), text(2, 3, vec![0, 1, 2])], hd, None, &tables, None, 1.0).is_err(), "overlapping texts");
        assert!(attention(t(&[4, hd.row() + 1], 1), &[], hd, None, &tables, None, 1.0).is_err(), "a row of the wrong width");
        assert!(attention(t(&[4, hd.row()], 1), &[text(0, 0, vec![])], hd, None, &tables, None, 1.0).is_err(), "a text without keys");
    }
}
