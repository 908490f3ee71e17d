//! Which part of a CI matrix a `check --partition hash:M/N` job ran, kept next to its reports
//! ([`PARTITION`]) so that `merge-reports` can refuse a shard given twice, a missing one, or shards of
//! different matrices, instead of reporting the suites it happened to get as everything.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The file a shard's partition is kept in.
pub const PARTITION: &str = "partition.json";

/// One job's part of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// This job's number, 1-based.
    pub m: u64,
    /// How many jobs split the suites.
    pub n: u64,
    /// Every suite directory the matrix splits (before partitioning), in order.
    pub suites: Vec<PathBuf>,
}

impl Partition {
    /// Parses `hash:M/N` over the suite directories `suites` (every one of the matrix, in order).
    pub fn parse(spec: &str, suites: Vec<PathBuf>) -> Result<Partition> {
        let crate::partition::Part { m, n } = crate::partition::Part::parse("--partition", spec, "hash:")?;
        Ok(Partition { m, n, suites })
    }

    /// This job's suites: those whose directory name hashes (FNV-1a, 64 bits) to M − 1 modulo N. Stable
    /// across machines and runs, so the jobs of a CI matrix split the suites between them.
    pub fn mine(&self) -> Vec<PathBuf> {
        let fnv = |s: &str| s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
        self.suites
            .iter()
            .filter(|d| {
                let name = d.file_name().map_or_else(|| d.to_string_lossy(), |n| n.to_string_lossy());
                fnv(&name) % self.n == self.m - 1
            })
            .cloned()
            .collect()
    }
}

/// Writes `p` under the report directory `dir`.
pub fn write(dir: &Path, p: &Partition) -> Result<()> {
    let json = serde_json::to_vec_pretty(p).map_err(|e| Error::Usage(format!("cannot encode {}: {e}", dir.join(PARTITION).display())))?;
    crate::atomic::write(&dir.join(PARTITION), &json)
}

/// The partition a shard directory records.
pub fn read(dir: &Path) -> Result<Partition> {
    let path = dir.join(PARTITION);
    if !path.is_file() {
        return Err(Error::input(&path, "missing: merge-reports takes the report directories of `check --partition hash:M/N` jobs"));
    }
    crate::error::read_json(&path)
}

/// Checks that `shards` (directory, partition) are every job of one matrix, each once.
pub fn check_complete(shards: &[(PathBuf, Partition)]) -> Result<()> {
    let Some((first_dir, first)) = shards.first() else { return Err(Error::Usage("merge-reports needs at least one shard".into())) };
    for (dir, p) in shards {
        if p.n != first.n || p.suites != first.suites {
            return Err(Error::Usage(format!(
                "{} is shard {}/{} of another matrix than {} (shard {}/{}, or other suites): merge the shards of one run",
                dir.display(),
                p.m,
                p.n,
                first_dir.display(),
                first.m,
                first.n
            )));
        }
    }
    for m in 1..=first.n {
        let with: Vec<&PathBuf> = shards.iter().filter(|(_, p)| p.m == m).map(|(d, _)| d).collect();
        match with.as_slice() {
            [] => return Err(Error::Usage(format!("shard hash:{m}/{} is missing: its suites would not be reported", first.n))),
            [_] => {}
            [a, b, ..] => return Err(Error::Usage(format!("shard hash:{m}/{} is given twice ({} and {})", first.n, a.display(), b.display()))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(m: u64, n: u64) -> (PathBuf, Partition) {
        (PathBuf::from(format!("shard-{m}")), Partition { m, n, suites: vec!["a".into(), "b".into()] })
    }

    #[test]
    fn every_shard_once() {
        assert!(check_complete(&[p(1, 2), p(2, 2)]).is_ok());
        assert!(check_complete(&[p(1, 2)]).unwrap_err().to_string().contains("hash:2/2 is missing"));
        assert!(check_complete(&[p(1, 2), p(1, 2), p(2, 2)]).unwrap_err().to_string().contains("given twice"));
        assert!(check_complete(&[p(1, 2), p(2, 3)]).unwrap_err().to_string().contains("another matrix"));
    }
}
