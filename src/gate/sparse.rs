//! Top-k neighbours of sparse (lexical) values through an inverted index: a row's score with every
//! passage sharing a token is accumulated posting list by posting list, in increasing token id, which is
//! the order [`lexical_score`] sums in, so each score is its value bit for bit; passages sharing no token
//! score what an empty sum is. Time follows the postings touched instead of texts², memory the weights.

use rayon::prelude::*;

#[cfg(doc)]
use crate::compare::metrics::lexical_score;

/// Postings per token id: (position among the indexed values, weight), positions increasing.
#[derive(Debug, Clone)]
pub struct Inverted {
    postings: std::collections::HashMap<u32, Vec<(u32, f32)>>,
}

impl Inverted {
    /// Indexes `cols` (sparse values, ids strictly increasing within each).
    pub fn new(cols: &[&[(u32, f32)]]) -> Self {
        let mut postings: std::collections::HashMap<u32, Vec<(u32, f32)>> = std::collections::HashMap::new();
        for (p, v) in cols.iter().enumerate() {
            for &(id, w) in v.iter() {
                postings.entry(id).or_default().push((p as u32, w));
            }
        }
        Inverted { postings }
    }

    /// The `k` best indexed positions for `query` (ties to the lower position, NaN last), `skip` left out.
    pub fn top_k(&self, query: &[(u32, f32)], n: usize, k: usize, skip: Option<usize>) -> Vec<usize> {
        let empty = std::iter::empty::<f64>().sum::<f64>();
        let mut acc: std::collections::HashMap<u32, f64> = std::collections::HashMap::new();
        for &(id, w) in query {
            if let Some(list) = self.postings.get(&id) {
                for &(p, wp) in list {
                    *acc.entry(p).or_insert(empty) += w as f64 * wp as f64;
                }
            }
        }
        let key = |x: f64| if x.is_nan() { f64::NEG_INFINITY } else { x };
        let touched: std::collections::HashSet<usize> = acc.keys().map(|&p| p as usize).collect();
        let mut scored: Vec<(f64, usize)> = acc.into_iter().map(|(p, s)| (key(s), p as usize)).filter(|&(_, p)| Some(p) != skip).collect();
        let by_rank = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if scored.len() > k {
            scored.select_nth_unstable_by(k, by_rank);
            scored.truncate(k);
        }
        // Untouched positions all score the empty sum: the first k of them by position can still rank.
        scored.extend((0..n).filter(|&p| Some(p) != skip && !touched.contains(&p)).take(k).map(|p| (key(empty), p)));
        scored.sort_by(by_rank);
        scored.truncate(k);
        scored.into_iter().map(|(_, p)| p).collect()
    }

    /// [`Inverted::top_k`] for many queries on the rayon pool.
    pub fn top_k_many(&self, queries: &[(&[(u32, f32)], Option<usize>)], n: usize, k: usize) -> Vec<Vec<usize>> {
        queries.par_iter().map(|&(q, skip)| self.top_k(q, n, k, skip)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::metrics::lexical_score;
    use crate::gate::metrics::top_k as exact_top_k;

    #[test]
    fn a_touched_position_cut_from_the_top_k_does_not_come_back_as_untouched() {
        // Every other value shares token 22 with the last one, whose NaN weight makes those scores NaN
        // (ranked last), below the empty sum of the untouched: found by the property below.
        let v: Vec<Vec<(u32, f32)>> = vec![vec![(22, 0.0)], vec![(22, 0.0)], vec![(22, 0.0)], vec![(22, 0.0)], vec![(7, 0.0), (22, f32::NAN)]];
        let refs: Vec<&[(u32, f32)]> = v.iter().map(Vec::as_slice).collect();
        let index = Inverted::new(&refs);
        for (i, q) in v.iter().enumerate() {
            let row: Vec<f64> = v.iter().map(|p| lexical_score(q, p)).collect();
            for k in 1..5 {
                assert_eq!(index.top_k(q, v.len(), k, None), exact_top_k(&row, k, None), "query {i}, k {k}");
                assert_eq!(index.top_k(q, v.len(), k, Some(i)), exact_top_k(&row, k, Some(i)), "query {i}, k {k}");
            }
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::compare::metrics::lexical_score;
    use crate::gate::metrics::top_k as exact_top_k;

    fn value() -> impl Strategy<Value = Vec<(u32, f32)>> {
        prop::collection::btree_map(0u32..30, prop_oneof![8 => 0.0f32..2.0, 1 => Just(0.0f32), 1 => Just(-0.5f32), 1 => Just(f32::NAN)], 0..8)
            .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn inverted_top_k_is_the_exact_ranking(v in prop::collection::vec(value(), 2..50), k in 1usize..12) {
            let refs: Vec<&[(u32, f32)]> = v.iter().map(Vec::as_slice).collect();
            let index = Inverted::new(&refs);
            let k = k.min(v.len() - 1);
            for (i, q) in v.iter().enumerate() {
                let row: Vec<f64> = v.iter().map(|p| lexical_score(q, p)).collect();
                prop_assert_eq!(index.top_k(q, v.len(), k, Some(i)), exact_top_k(&row, k, Some(i)));
                prop_assert_eq!(index.top_k(q, v.len(), k + 1, None), exact_top_k(&row, k + 1, None));
            }
        }
    }
}
