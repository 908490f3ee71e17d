//! Part M of N: which share of the work one job of a CI matrix does. `check --partition hash:M/N` splits
//! suites by a hash of their name ([`crate::report::partition`]); `embed --partition M/N` splits a list of
//! texts by position ([`Part::range`], [`crate::source::parts`]). One parser serves both.

use std::ops::Range;

use crate::error::{Error, Result};

/// Part `m` (1-based) of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// This part's number, 1 to `n`.
    pub m: u64,
    /// How many parts there are.
    pub n: u64,
}

impl Part {
    /// Parses `{scheme}M/N` (`scheme` is `"hash:"` for `check`, `""` for `embed`); `flag` names the
    /// option in the message.
    pub fn parse(flag: &str, spec: &str, scheme: &str) -> Result<Part> {
        let bad = || Error::Usage(format!("{flag} {spec:?}: expected {scheme}M/N with 1 <= M <= N"));
        let (m, n) = spec.strip_prefix(scheme).and_then(|r| r.split_once('/')).ok_or_else(bad)?;
        let (m, n): (u64, u64) = (m.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if n == 0 || m == 0 || m > n {
            return Err(bad());
        }
        Ok(Part { m, n })
    }

    /// This part's items among `total`, by position: the contiguous range
    /// `[(m−1)·total/N, m·total/N)` (rounded down). The N ranges tile `0..total` in order, and their sizes
    /// differ by at most one.
    pub fn range(&self, total: usize) -> Range<usize> {
        // u128: total · N cannot overflow.
        let at = |k: u64| (total as u128 * k as u128 / self.n as u128) as usize;
        at(self.m - 1)..at(self.m)
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.m, self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_both_schemes() {
        assert_eq!(Part::parse("--partition", "2/3", "").unwrap(), Part { m: 2, n: 3 });
        assert_eq!(Part::parse("--partition", "hash:1/1", "hash:").unwrap(), Part { m: 1, n: 1 });
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "-1/2", "hash:1/2", ""] {
            let e = Part::parse("--partition", bad, "").unwrap_err().to_string();
            assert!(e.contains("expected M/N"), "{bad}: {e}");
        }
        assert!(Part::parse("--partition", "1/2", "hash:").is_err());
    }

    #[test]
    fn ranges_by_hand() {
        let ranges = |n: u64, total: usize| (1..=n).map(|m| Part { m, n }.range(total)).collect::<Vec<_>>();
        assert_eq!(ranges(3, 10), [0..3, 3..6, 6..10]);
        assert_eq!(ranges(4, 4), [0..1, 1..2, 2..3, 3..4]);
        assert_eq!(ranges(1, 7), vec![0..7]);
        assert_eq!(ranges(3, 2), [0..0, 0..1, 1..2]);
    }

    proptest! {
        /// Every item is in exactly one part, in order; sizes differ by at most one.
        #[test]
        fn parts_tile_the_items(total in 0usize..5000, n in 1u64..64) {
            let ranges: Vec<Range<usize>> = (1..=n).map(|m| Part { m, n }.range(total)).collect();
            let mut next = 0;
            for r in &ranges {
                prop_assert_eq!(r.start, next, "contiguous and disjoint");
                prop_assert!(r.end >= r.start);
                next = r.end;
            }
            prop_assert_eq!(next, total, "the union is every item");
            let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "sizes {:?}", sizes);
            prop_assert_eq!(sizes.iter().sum::<usize>(), total);
        }

        /// Huge counts do not overflow.
        #[test]
        fn no_overflow(total in 0usize..usize::MAX, n in 1u64..u64::MAX, m_frac in 0.0f64..1.0) {
            let m = ((n as f64 * m_frac) as u64).clamp(1, n);
            let r = Part { m, n }.range(total);
            prop_assert!(r.start <= r.end && r.end <= total);
        }
    }
}
