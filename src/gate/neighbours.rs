//! Top-k neighbours of dense vectors at corpus scale: blocked f32 matrix products (gemm, on the project's
//! rayon pool) with a streaming selection per row, then an exact f64 rescoring of the few survivors, so the
//! result is the one a full f64 similarity matrix gives (same order, ties to the lower index) while memory
//! grows with the texts, not with their square.
//!
//! Why exact: every vector is normalized in f64 and rounded to f32 (relative error ≤ 2⁻²⁴ per component),
//! and an f32 dot product of width d in any summation order is within γ_d ≈ d·2⁻²⁴ of the true one for unit
//! vectors. So |f32 score − f64 cosine| ≤ ε with ε = (d + 4)·2⁻²³ (twice that bound). Let T be the k-th best
//! f32 score of a row: every member of the exact top k (ties included) scores ≥ T − 2ε in f32. A row keeps
//! every column scoring ≥ (its running k-th best) − 2ε; the running k-th best only rises towards T, so no
//! member is ever dropped, and a column it keeps that is not a member loses to the members once rescored.

use std::sync::Mutex;

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use crate::compare::metrics::{cosine_with_norms, norm};

/// Rows (and columns) per tile of the blocked product: a 512 × 512 f32 tile is 1 MiB, within L2.
const BLOCK: usize = 512;

/// What a vector is, for the closed-form scores of the special cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Finite with a non-zero norm: scored by the products.
    Normal,
    /// All components zero (or no components): cosine 0 against everything.
    Zero,
    /// Holds a NaN or an infinity: cosine NaN against everything but a zero vector.
    NonFinite,
}

/// Dense vectors to be multiplied as unit rows in f32: each is normalized (in f64, rounded to f32) as its
/// tile is gathered, so no normalized copy of every vector is held.
#[derive(Debug, Clone)]
pub struct UnitRows<'a> {
    width: usize,
    rows: Vec<&'a [f32]>,
    norms: Vec<f64>,
    class: Vec<Class>,
}

impl<'a> UnitRows<'a> {
    /// Classifies `vectors` and computes their norms. `None` when the non-empty vectors differ in width:
    /// then a cosine is not a product of unit rows (the caller scores pairs instead).
    pub fn new(vectors: &[&'a [f32]]) -> Option<Self> {
        let mut width = None;
        for v in vectors.iter().filter(|v| !v.is_empty()) {
            match width {
                None => width = Some(v.len()),
                Some(w) if w != v.len() => return None,
                Some(_) => {}
            }
        }
        let (norms, class): (Vec<f64>, Vec<Class>) = vectors
            .par_iter()
            .map(|v| {
                let norm = norm(v);
                let c = if !v.iter().all(|x| x.is_finite()) {
                    Class::NonFinite
                } else if norm == 0.0 {
                    Class::Zero
                } else {
                    Class::Normal
                };
                (norm, c)
            })
            .unzip();
        Some(UnitRows { width: width.unwrap_or(0), rows: vectors.to_vec(), norms, class })
    }

    /// Appends row `i` as a unit vector in f32 (zeros for a row that is not `Normal`).
    fn push_row(&self, i: usize, out: &mut Vec<f32>) {
        if self.class[i] == Class::Normal {
            out.extend(self.rows[i].iter().map(|&x| (x as f64 / self.norms[i]) as f32));
        } else {
            out.resize(out.len() + self.width, 0.0);
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.class.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.class.is_empty()
    }

    /// The bound on |f32 product − f64 cosine| (see the module's note).
    fn epsilon(&self) -> f32 {
        ((self.width as f64 + 4.0) * f32::EPSILON as f64) as f32
    }

    /// The cosine of rows `i` and `j` when one of them is not `Normal` (embcheck's dense cosine: 0 when
    /// either norm is 0, NaN when either side is not finite).
    fn special(&self, i: usize, j: usize) -> f64 {
        if self.class[i] == Class::Zero || self.class[j] == Class::Zero {
            0.0
        } else {
            f64::NAN
        }
    }
}

/// Exact f64 cosines of dense vectors, bit for bit [`cosine`]'s, with each norm computed once and four
/// dot products interleaved (each still summed in order: only independent sums run side by side).
#[derive(Debug, Clone)]
pub struct ExactCosine<'a> {
    rows: Vec<&'a [f32]>,
    norms: Vec<f64>,
}

impl<'a> ExactCosine<'a> {
    /// Norms of `rows`, computed once.
    pub fn new(rows: Vec<&'a [f32]>) -> Self {
        let norms = rows.par_iter().map(|r| norm(r)).collect();
        ExactCosine { rows, norms }
    }

    /// The cosine of rows `i` and `j`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        cosine_with_norms(self.rows[i], self.rows[j], self.norms[i], self.norms[j])
    }

    /// The cosines of `pairs`, in order.
    pub fn many(&self, pairs: &[(usize, usize)]) -> Vec<f64> {
        // The value `Sum` starts from (−0.0 in current Rust): a dot of only −0.0 products keeps its sign.
        let start = std::iter::empty::<f64>().sum::<f64>();
        let mut out = Vec::with_capacity(pairs.len());
        let mut quads = pairs.chunks_exact(4);
        for q in &mut quads {
            let q: [(usize, usize); 4] = q.try_into().expect("chunks of four");
            let a = q.map(|(i, _)| self.rows[i]);
            let b = q.map(|(_, j)| self.rows[j]);
            let w = a[0].len();
            let plain = (0..4).all(|p| a[p].len() == w && b[p].len() == w && self.norms[q[p].0] != 0.0 && self.norms[q[p].1] != 0.0);
            if !plain {
                out.extend(q.iter().map(|&(i, j)| self.get(i, j)));
                continue;
            }
            let mut acc = [start; 4];
            for l in 0..w {
                for p in 0..4 {
                    acc[p] += a[p][l] as f64 * b[p][l] as f64;
                }
            }
            out.extend((0..4).map(|p| acc[p] / (self.norms[q[p].0] * self.norms[q[p].1])));
        }
        out.extend(quads.remainder().iter().map(|&(i, j)| self.get(i, j)));
        out
    }
}

/// One row's survivors: (f32 score, column position), and the floor a new column must reach.
#[derive(Debug, Clone)]
struct Survivors {
    items: Vec<(f32, u32)>,
    floor: f32,
    cap: usize,
}

impl Survivors {
    fn new(k: usize) -> Self {
        Survivors { items: Vec::new(), floor: f32::NEG_INFINITY, cap: (2 * k).max(k + 32) }
    }

    #[inline]
    fn push(&mut self, score: f32, col: u32, k: usize, margin: f32) {
        self.items.push((score, col));
        if self.items.len() >= self.cap {
            self.prune(k, margin);
        }
    }

    /// Raises the floor to (k-th best so far) − margin and drops what is below it.
    fn prune(&mut self, k: usize, margin: f32) {
        if self.items.len() > k {
            self.items.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            self.floor = self.floor.max(self.items[k - 1].0 - margin);
            let floor = self.floor;
            self.items.retain(|x| x.0 >= floor);
        }
        // Many columns within the margin of each other (duplicates): grow instead of pruning every push.
        self.cap = self.cap.max(2 * self.items.len());
    }
}

/// The `k` best columns of each row by cosine, as positions into `cols`, best first, ties to the lower
/// position, NaN last; with `skip_self`, a column holding the row's own vector index is left out. `rows` and
/// `cols` index `unit`; `exact(i, j)` is the f64 cosine of vectors `i` and `j` (the value the ranking
/// follows). Identical to ranking each row of the full f64 matrix ([`super::metrics::top_k`]).
pub fn top_k(unit: &UnitRows, rows: &[usize], cols: &[usize], k: usize, skip_self: bool, exact: &(dyn Fn(usize, usize) -> f64 + Sync)) -> Vec<Vec<usize>> {
    let k = k.min(cols.len());
    if k == 0 {
        return vec![Vec::new(); rows.len()];
    }
    let margin = 2.0 * unit.epsilon();
    let symmetric = rows == cols;
    let row_blocks: Vec<&[usize]> = rows.chunks(BLOCK).collect();
    let col_blocks: Vec<&[usize]> = cols.chunks(BLOCK).collect();
    let buffers: Vec<Mutex<Vec<Survivors>>> = row_blocks.iter().map(|b| Mutex::new(vec![Survivors::new(k); b.len()])).collect();
    let tiles: Vec<(usize, usize)> = (0..row_blocks.len())
        .flat_map(|i| (if symmetric { i } else { 0 }..col_blocks.len()).map(move |j| (i, j)))
        .collect();
    let width = unit.width;
    let gather = |ids: &[usize], out: &mut Vec<f32>| {
        out.clear();
        for &i in ids {
            unit.push_row(i, out);
        }
    };
    tiles.par_iter().for_each_init(
        || (Vec::new(), Vec::new(), Vec::new()),
        |(a, b, c): &mut (Vec<f32>, Vec<f32>, Vec<f32>), &(bi, bj)| {
            let (ri, cj) = (row_blocks[bi], col_blocks[bj]);
            let (m, n) = (ri.len(), cj.len());
            gather(ri, a);
            gather(cj, b);
            c.clear();
            c.resize(m * n, 0.0);
            if width > 0 {
                // SAFETY: a is m × width, b is n × width and c is m × n, all row-major and live; gemm reads
                // a and bᵀ and writes c within those bounds.
                unsafe {
                    gemm(m, n, width, c.as_mut_ptr(), 1, n as isize, false, a.as_ptr(), 1, width as isize, b.as_ptr(), width as isize, 1, 0.0, 1.0, false, false, false, Parallelism::None);
                }
            }
            let col0 = bj * BLOCK;
            {
                let mut rows_buf = buffers[bi].lock().expect("a panicking tile would have aborted the gate");
                for (r, s) in rows_buf.iter_mut().enumerate() {
                    if unit.class[ri[r]] != Class::Normal {
                        continue;
                    }
                    let line = &c[r * n..(r + 1) * n];
                    for (p, &x) in line.iter().enumerate() {
                        if x >= s.floor && unit.class[cj[p]] != Class::NonFinite && !(skip_self && cj[p] == ri[r]) {
                            s.push(x, (col0 + p) as u32, k, margin);
                        }
                    }
                }
            }
            if symmetric && bi != bj {
                // The tile's transpose: rows of block bj against columns of block bi.
                let mut cols_buf = buffers[bj].lock().expect("a panicking tile would have aborted the gate");
                let row0 = bi * BLOCK;
                for r in 0..m {
                    if unit.class[ri[r]] == Class::NonFinite {
                        continue;
                    }
                    let line = &c[r * n..(r + 1) * n];
                    for (p, &x) in line.iter().enumerate() {
                        let s = &mut cols_buf[p];
                        if x >= s.floor && unit.class[cj[p]] == Class::Normal && !(skip_self && cj[p] == ri[r]) {
                            s.push(x, (row0 + r) as u32, k, margin);
                        }
                    }
                }
            }
        },
    );
    let survivors: Vec<Survivors> = buffers.into_iter().flat_map(|m| m.into_inner().expect("not poisoned")).collect();
    rows.par_iter()
        .zip(survivors)
        .map(|(&i, mut s)| {
            s.prune(k, margin);
            let key = |x: f64| if x.is_nan() { f64::NEG_INFINITY } else { x };
            let mut scored: Vec<(f64, usize)> = match unit.class[i] {
                Class::Normal => {
                    let mut v: Vec<(f64, usize)> = s.items.iter().map(|&(_, p)| (key(exact(i, cols[p as usize])), p as usize)).collect();
                    v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                    v.truncate(k);
                    v
                }
                _ => Vec::new(),
            };
            if scored.len() < k {
                // Columns the products leave out: non-finite ones for a normal row, every one for a zero or
                // non-finite row. Their scores are 0 or NaN in closed form, ranked by value, then position.
                let mut rest: Vec<(f64, usize)> = (0..cols.len())
                    .filter(|&p| !(skip_self && cols[p] == i))
                    .filter(|&p| unit.class[i] != Class::Normal || unit.class[cols[p]] == Class::NonFinite)
                    .map(|p| (key(unit.special(i, cols[p])), p))
                    .collect();
                rest.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                scored.extend(rest.into_iter().take(k - scored.len()));
                scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            }
            scored.into_iter().map(|(_, p)| p).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::metrics::cosine;
    use crate::gate::metrics::top_k as exact_top_k;

    fn reference(v: &[Vec<f32>], rows: &[usize], cols: &[usize], k: usize, skip_self: bool) -> Vec<Vec<usize>> {
        rows.iter()
            .map(|&i| {
                let row: Vec<f64> = cols.iter().map(|&j| cosine(&v[i], &v[j])).collect();
                let skip = if skip_self { cols.iter().position(|&j| j == i) } else { None };
                exact_top_k(&row, k, skip)
            })
            .collect()
    }

    fn blocked(v: &[Vec<f32>], rows: &[usize], cols: &[usize], k: usize, skip_self: bool) -> Vec<Vec<usize>> {
        let refs: Vec<&[f32]> = v.iter().map(Vec::as_slice).collect();
        let unit = UnitRows::new(&refs).unwrap();
        top_k(&unit, rows, cols, k, skip_self, &|i, j| cosine(&v[i], &v[j]))
    }

    #[test]
    fn special_scores_are_the_dense_cosines() {
        let v: Vec<Vec<f32>> = vec![vec![0.0, 0.0], vec![f32::NAN, 1.0], vec![f32::INFINITY, 0.0], vec![1.0, 2.0], vec![]];
        let refs: Vec<&[f32]> = v.iter().map(Vec::as_slice).collect();
        let unit = UnitRows::new(&refs).unwrap();
        for i in 0..v.len() {
            for j in 0..v.len() {
                if unit.class[i] != Class::Normal || unit.class[j] != Class::Normal {
                    let (a, b) = (unit.special(i, j), cosine(&v[i], &v[j]));
                    assert!(a == b || (a.is_nan() && b.is_nan()), "{i} {j}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn exact_cosines_are_bit_for_bit_the_plain_ones() {
        let vals = [-1.0f32, -0.0, 0.0, 0.5, 1e-30, 3.0];
        let v: Vec<Vec<f32>> = (0..200).map(|i| (0..5).map(|l| vals[(i * 7 + l * l * 3 + i / 5) % vals.len()]).collect()).collect();
        let v: Vec<Vec<f32>> = v.into_iter().chain([vec![-1.0, 0.0, 0.0, 0.0, 0.0], vec![0.0, -1.0, -0.0, 0.0, 0.0], vec![], vec![0.0; 5]]).collect();
        let e = ExactCosine::new(v.iter().map(Vec::as_slice).collect());
        let pairs: Vec<(usize, usize)> = (0..v.len()).flat_map(|i| (0..v.len()).map(move |j| (i, j))).collect();
        let got = e.many(&pairs);
        for (&(i, j), g) in pairs.iter().zip(got) {
            assert_eq!(g.to_bits(), cosine(&v[i], &v[j]).to_bits(), "{:?} {:?}", v[i], v[j]);
            assert_eq!(e.get(i, j).to_bits(), g.to_bits());
        }
    }

    #[test]
    fn near_ties_below_f32_resolution_follow_the_f64_cosines() {
        // 600 copies of one vector of width 384, each moved by ~1e-6: their cosines to a query differ by
        // about as much as f32 rounding, so the f32 order is scrambled and only the margin and the f64
        // rescoring keep the exact order.
        let mut s = 3u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let base: Vec<f32> = (0..384).map(|_| next()).collect();
        let q: Vec<f32> = base.iter().map(|x| x + 0.3 * next()).collect();
        let v: Vec<Vec<f32>> = std::iter::once(q).chain((0..600).map(|_| base.iter().map(|x| x + 2e-6 * next()).collect())).collect();
        let cols: Vec<usize> = (1..v.len()).collect();
        assert_eq!(blocked(&v, &[0], &cols, 20, false), reference(&v, &[0], &cols, 20, false));
        let all: Vec<usize> = (0..v.len()).collect();
        assert_eq!(blocked(&v, &all, &all, 20, true), reference(&v, &all, &all, 20, true));
    }

    #[test]
    fn blocks_beyond_one_tile_and_exact_ties_match_the_full_matrix() {
        // 1200 texts (three tiles a side) of width 8 with many exact duplicates: ties everywhere.
        let mut s = 7u64;
        let v: Vec<Vec<f32>> = (0..1200)
            .map(|i| {
                if i % 5 == 0 {
                    return vec![1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0];
                }
                (0..8)
                    .map(|_| {
                        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        ((s >> 40) % 7) as f32 - 3.0
                    })
                    .collect()
            })
            .collect();
        let all: Vec<usize> = (0..v.len()).collect();
        assert_eq!(blocked(&v, &all, &all, 10, true), reference(&v, &all, &all, 10, true));
        let queries: Vec<usize> = (0..v.len()).step_by(7).collect();
        let corpus: Vec<usize> = (3..v.len()).step_by(2).collect();
        assert_eq!(blocked(&v, &queries, &corpus, 10, false), reference(&v, &queries, &corpus, 10, false));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::compare::metrics::cosine;
    use crate::gate::metrics::top_k as exact_top_k;

    fn component() -> impl Strategy<Value = f32> {
        prop_oneof![
            8 => -2.0f32..2.0,
            // Few distinct values make exact ties common; rare zeros, NaN and infinities test the closed forms.
            4 => prop::sample::select(vec![-1.0f32, 0.0, 0.5, 1.0]),
            1 => prop::sample::select(vec![f32::NAN, f32::INFINITY, 1e-30, 1e30]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn blocked_top_k_is_the_exact_ranking(
            v in prop::collection::vec(prop::collection::vec(component(), 3), 2..60),
            zero_rows in prop::collection::vec(any::<bool>(), 60),
            k in 1usize..12,
            split in 0usize..60,
        ) {
            let v: Vec<Vec<f32>> = v.into_iter().zip(&zero_rows).map(|(x, &z)| if z && x[0] > 1.5 { vec![0.0; 3] } else { x }).collect();
            let refs: Vec<&[f32]> = v.iter().map(Vec::as_slice).collect();
            let unit = UnitRows::new(&refs).unwrap();
            let exact = |i: usize, j: usize| cosine(&v[i], &v[j]);
            let all: Vec<usize> = (0..v.len()).collect();
            let kk = k.min(v.len() - 1);
            let want: Vec<Vec<usize>> = all.iter().map(|&i| {
                let row: Vec<f64> = all.iter().map(|&j| exact(i, j)).collect();
                exact_top_k(&row, kk, Some(i))
            }).collect();
            prop_assert_eq!(top_k(&unit, &all, &all, kk, true, &exact), want);
            let s = split.min(v.len() - 1);
            let (q, c): (Vec<usize>, Vec<usize>) = (all[..=s].to_vec(), all[s..].to_vec());
            let want: Vec<Vec<usize>> = q.iter().map(|&i| {
                let row: Vec<f64> = c.iter().map(|&j| exact(i, j)).collect();
                exact_top_k(&row, k.min(c.len()), None)
            }).collect();
            prop_assert_eq!(top_k(&unit, &q, &c, k, false, &exact), want);
        }
    }
}
