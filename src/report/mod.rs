//! Reports of `embcheck check` for people and CI, written under one directory:
//!
//! | file | for |
//! |---|---|
//! | `summary.md` | people and `$GITHUB_STEP_SUMMARY`: a status line per suite × pipeline, totals, each suite |
//! | `summary.json` | scripts: every [`SuiteReport`] with its status, plus totals (NaN/inf as `null`) |
//! | `junit.xml` | CI test views: one testsuite per suite, one testcase per pipeline |
//! | `<suite>/diff.csv` | one row per text × pipeline, every number at full precision |
//! | `<suite>/summary.md` | that suite's section of `summary.md` |
//! | `<suite>/report.html` | one self-contained page: tables, histograms, the worst texts |
//! | `index.html` | the run at a glance: totals and every suite with its status, linking its page |
//! | `shard.cbor` | every [`SuiteReport`] exactly (CBOR keeps NaN), for `embcheck merge-reports` |
//! | `partition.json` | with `check --partition`: which job of which matrix wrote them ([`partition`]) |
//!
//! `embcheck gate` writes its own files through [`gate`], and `embcheck bisect` through [`bisect`], with the same
//! page style, escaping and charts.
//!
//! Every file is written through [`crate::atomic::write`], so a crash never leaves half a report.

pub mod bisect;
mod diff_csv;
mod format;
pub mod gate;
mod histogram;
mod html;
mod json;
mod junit;
mod markdown;
pub mod partition;

use std::cmp::Ordering;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::compare::{PipelineResult, RowResult};
use crate::error::Result;
use crate::suite::{Status, SuiteReport};

pub use diff_csv::write_csv;
pub use markdown::summary as markdown_summary;

/// The file `write_all` keeps every report in, exactly, for [`read_shard`].
pub const SHARD: &str = "shard.cbor";

/// The reports a `check` run wrote under `dir` (its [`SHARD`] file), to merge shards of a CI matrix.
pub fn read_shard(dir: &Path) -> Result<Vec<SuiteReport>> {
    let path = dir.join(SHARD);
    let bytes = std::fs::read(&path).map_err(|e| crate::Error::io(&path, e))?;
    ciborium::from_reader(bytes.as_slice()).map_err(|e| crate::Error::input(&path, format!("not an embcheck shard report: {e}")))
}

/// Writes every report for `suites` under `dir`; returns the paths written.
///
/// A suite's files go to `dir/<suite>/` (the name made safe for a path, and made unique when two suites
/// share it); a skipped or errored suite still gets all three, saying it was skipped or why it errored. `$GITHUB_STEP_SUMMARY` is left
/// to the caller (see [`markdown_summary`]).
pub fn write_all(dir: &Path, suites: &[SuiteReport]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut write = |path: PathBuf, bytes: &[u8]| -> Result<()> {
        crate::atomic::write(&path, bytes)?;
        written.push(path);
        Ok(())
    };
    let mut used = HashSet::new();
    let mut dirs = Vec::new();
    for s in suites {
        let name = unique_dir_name(&s.suite, &mut used);
        let sub = dir.join(&name);
        dirs.push(name);
        let results: Vec<&PipelineResult> = s.pipelines.iter().collect();
        let mut csv = Vec::new();
        write_csv(&mut csv, &s.suite, &results)?;
        write(sub.join("diff.csv"), &csv)?;
        write(sub.join("summary.md"), markdown::suite_page(s).as_bytes())?;
        write(sub.join("report.html"), html::page(s).as_bytes())?;
    }
    write(dir.join("index.html"), html::index(suites, &dirs).as_bytes())?;
    write(dir.join("summary.md"), markdown_summary(suites).as_bytes())?;
    write(dir.join("summary.json"), &json::render(suites)?)?;
    write(dir.join("junit.xml"), &junit::render(suites, &dir.join("junit.xml"))?)?;
    let mut shard = Vec::new();
    ciborium::into_writer(suites, &mut shard).map_err(|e| crate::Error::Usage(format!("cannot encode {}: {e}", dir.join(SHARD).display())))?;
    write(dir.join(SHARD), &shard)?;
    Ok(written)
}

/// Counts over all suites.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Totals {
    suites: usize,
    suites_passed: usize,
    suites_failed: usize,
    suites_skipped: usize,
    suites_errored: usize,
    pipelines: usize,
    pipelines_failed: usize,
    rows: usize,
    rows_failed: usize,
}

impl Totals {
    fn of(suites: &[SuiteReport]) -> Self {
        let mut t = Totals { suites: suites.len(), ..Totals::default() };
        for s in suites {
            match s.status() {
                Status::Passed => t.suites_passed += 1,
                Status::Failed => t.suites_failed += 1,
                Status::Skipped => t.suites_skipped += 1,
                Status::Error => t.suites_errored += 1,
            }
            for p in &s.pipelines {
                t.pipelines += 1;
                t.pipelines_failed += usize::from(!p.passed());
                t.rows += p.summary.rows;
                t.rows_failed += p.summary.failed;
            }
        }
        t
    }

    /// `error` if any suite could not be checked (exit code 2); else `failed` if any suite failed; `passed`
    /// if at least one passed and none failed; else `skipped-only` (every suite skipped, or no suite at all:
    /// nothing was verified). The same precedence as the exit code.
    fn status(&self) -> &'static str {
        if self.suites_errored > 0 {
            "error"
        } else if self.suites_failed > 0 {
            "failed"
        } else if self.suites_passed > 0 {
            "passed"
        } else {
            "skipped-only"
        }
    }
}

/// A directory name for a suite: characters outside `[A-Za-z0-9._-]` become `_`, never `.`/`..`, and a
/// name already used gets `-2`, `-3`, ...
fn unique_dir_name(suite: &str, used: &mut HashSet<String>) -> String {
    let mut base: String =
        suite.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if base.is_empty() || base.chars().all(|c| c == '.') {
        base = format!("_{base}");
    }
    let mut name = base.clone();
    let mut n = 1;
    while !used.insert(name.clone()) {
        n += 1;
        name = format!("{base}-{n}");
    }
    name
}

/// Orders rows from best to worst: by relative L2, NaN worst of all.
fn severity(a: &RowResult, b: &RowResult) -> Ordering {
    let (x, y) = (a.metrics.rel_l2, b.metrics.rel_l2);
    x.is_nan().cmp(&y.is_nan()).then(x.total_cmp(&y))
}

/// The rows to show first, worst first: up to `failing` failing rows, or when none failed the `passing`
/// rows with the largest relative L2.
fn worst_rows(p: &PipelineResult, failing: usize, passing: usize) -> Vec<&RowResult> {
    let mut rows: Vec<&RowResult> = p.rows.iter().filter(|r| !r.pass()).collect();
    let limit = if rows.is_empty() {
        rows = p.rows.iter().collect();
        passing
    } else {
        failing
    };
    rows.sort_by(|a, b| severity(b, a));
    rows.truncate(limit);
    rows
}

/// The row with the worst value of `f` (largest, or smallest when `lowest`); NaN counts as the worst.
fn worst_by<'a>(
    rows: impl IntoIterator<Item = &'a RowResult>,
    f: impl Fn(&RowResult) -> f64,
    lowest: bool,
) -> Option<&'a RowResult> {
    rows.into_iter().max_by(|a, b| {
        let (x, y) = (f(a), f(b));
        let o = x.total_cmp(&y);
        x.is_nan().cmp(&y.is_nan()).then(if lowest { o.reverse() } else { o })
    })
}


/// Writes each `(name, bytes)` under `dir`, atomically; returns the paths written (for gate and bisect, whose
/// reports are one directory of named files).
pub(crate) fn write_named(dir: &Path, files: Vec<(&str, Vec<u8>)>) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        crate::atomic::write(&path, &bytes)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests;
